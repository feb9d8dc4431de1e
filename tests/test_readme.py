"""The README as printed: every ```bash command and ```python snippet runs, in a fresh folder, offline,
with the tiny checkpoint the README's second command writes (```text blocks are usage synopses)."""

import codeop
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(bash|python)\n(.*?)```", README, flags=re.S)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder that looks like the checkout (tools, docs, configs) but starts with no outputs in it."""
    folder = tmp_path_factory.mktemp("readme")
    for name in ("tools", "docs", "configs", "benchmarks"):
        (folder / name).symlink_to(ROOT / name)
    return folder


def test_the_readme_has_runnable_blocks():
    kinds = [kind for kind, _ in BLOCKS]
    assert kinds.count("bash") >= 3 and kinds.count("python") >= 3
    # A user installs fgdense alone; the tests' own packages come with the test command.
    assert BLOCKS[0][1].splitlines()[0] == "pip install -e ."
    assert BLOCKS[-1][1].strip().splitlines() == ['pip install -e ".[test,demo]"', "python -m pytest"]


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=lambda i: f"block{i}-{BLOCKS[i][0]}")
def test_readme_block_runs_as_printed(workdir, index):
    kind, text = BLOCKS[index]
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin:" + str(Path(sys.executable).parent)}
    if kind == "bash":
        # Installing and running this very suite are what the test environment is already doing.
        lines = [line for line in text.splitlines()
                 if line.strip() and not line.startswith(("pip install", "python -m pytest"))]
        if not lines:
            pytest.skip("the install or test command: this run is it")
        script = "set -e\n" + "\n".join(lines).replace("python ", f"{sys.executable} ")
        done = subprocess.run(["bash", "-c", script], cwd=workdir, capture_output=True, text=True, timeout=600, env=env)
    else:
        done = subprocess.run([sys.executable, "-c", text], cwd=workdir, capture_output=True, text=True, timeout=600,
                              env=env)
    assert done.returncode == 0, f"{kind} block {index} failed:\n{text}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr


def _first_paste_error(text: str):
    """The SyntaxError an interactive prompt gives when ``text`` is pasted into it line by line (a statement
    right after an indented block, with no blank line, is one), else None. Nothing is run."""
    buffer: list[str] = []
    for line in text.splitlines() + [""]:
        buffer.append(line)
        try:
            done = codeop.compile_command("\n".join(buffer), "<stdin>", "single")
        except SyntaxError as err:
            return err
        if done is not None:
            buffer = []
    return None


def test_paste_check_catches_a_statement_after_a_block():
    assert _first_paste_error("with open('x') as f:\n    a = 1\nb = 2\n") is not None
    assert _first_paste_error("with open('x') as f:\n    a = 1\n\nb = 2\n") is None


PYTHON_BLOCKS = [(path, text) for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
                 for text in re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)]


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)),
                         ids=lambda i: f"{PYTHON_BLOCKS[i][0].name}-{i}")
def test_python_blocks_paste_into_a_prompt(index):
    path, text = PYTHON_BLOCKS[index]
    assert _first_paste_error(text) is None, f"{path.name}: this block cannot be pasted into python:\n{text}"
