"""Declared ranges are tested ranges: what pyproject.toml says, what a user sees, and the floors CI installs."""

import logging
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from fgdense import versions

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# The packages whose newest release must never reach a user untested: each has a floor and a ceiling.
CEILINGED = ("torch", "torchvision", "transformers", "tokenizers", "pillow", "mmengine", "supervision")


def requirements():
    return {Requirement(line).name.lower().replace("_", "-"): Requirement(line)
            for line in PYPROJECT["project"]["dependencies"]}


def test_every_model_dependency_has_a_floor_and_a_ceiling():
    found = requirements()
    for name in CEILINGED:
        operators = {spec.operator for spec in found[name].specifier}
        assert operators == {">=", "<="}, f"{name}: {found[name]} must be '>=floor,<=newest tested'"


def test_the_stack_asks_for_one_opencv():
    """mmengine needs opencv-python; asking for -headless too would put two packages over one cv2."""
    names = set(requirements())
    assert "opencv-python" in names and "opencv-python-headless" not in names


def test_test_only_packages_stay_out_of_a_users_install():
    runtime = set(requirements())
    assert not runtime & {"pytest", "playwright", "scikit-image", "gradio"}


def test_floor_constraints_pin_every_dependency_to_its_floor(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "floor_constraints.py")], capture_output=True,
                          text=True, check=True)
    pins = dict(line.split("==") for line in done.stdout.split())
    for name, requirement in requirements().items():
        floor = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        assert pins[requirement.name] == floor[0]
    # A dependency without a floor cannot be tested at its floor: the script refuses it.
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from floor_constraints import floors
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    bad = tmp_path / "pyproject.toml"
    bad.write_text('[project]\ndependencies = ["numpy>=1.26", "tqdm"]\n')
    with pytest.raises(SystemExit, match="tqdm"):
        floors(bad)


def test_the_installed_ranges_are_pyprojects():
    ranges = versions.declared_ranges()
    for name, requirement in requirements().items():
        assert set(ranges[name].split(",")) == {str(spec) for spec in requirement.specifier}, name


def test_status_says_tested_untested_and_missing(monkeypatch):
    monkeypatch.setattr(versions, "declared_ranges", lambda: {"transformers": ">=5.4.0,<=5.25.0",
                                                              "tokenizers": ">=0.22.1"})
    monkeypatch.setattr(versions, "installed_version",
                        lambda name: {"transformers": "5.26.0", "tokenizers": "0.22.1"}.get(name))
    assert versions.status_of("transformers") == ("5.26.0", ">=5.4.0,<=5.25.0", "UNTESTED")
    assert versions.status_of("tokenizers")[2] == "tested"
    monkeypatch.setattr(versions, "declared_ranges", lambda: {"mmengine": ">=0.10.0"})
    assert versions.status_of("mmengine") == (None, ">=0.10.0", "missing")


def test_an_untested_transformers_is_one_warning_line(monkeypatch, caplog):
    monkeypatch.setattr(versions, "declared_ranges", lambda: {"transformers": ">=5.4.0,<=5.25.0",
                                                              "tokenizers": ">=0.22.1,<=0.23.3"})
    monkeypatch.setattr(versions, "installed_version",
                        lambda name: {"transformers": "5.26.0", "tokenizers": "0.23.3"}[name])
    with caplog.at_level(logging.WARNING, logger="fgdense"):
        versions.warn_if_untested()
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "\n" not in message and "transformers >=5.4.0,<=5.25.0" in message and "5.26.0" in message


def test_python_m_fgdense_env_prints_each_key_package():
    done = subprocess.run([sys.executable, "-m", "fgdense.env"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr  # this suite runs inside the tested ranges
    for name in versions.KEY_PACKAGES:
        assert f"\n{name} " in done.stdout
    assert "every key package is inside its tested range" in done.stdout
    assert done.stderr == ""


def test_every_tool_answers_version():
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "segment.py"), "--version"], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 0 and "transformers" in done.stdout and "tested" in done.stdout


def test_the_docs_table_of_tested_versions_is_pyprojects():
    """docs/architecture.md's "Dependencies" table names each floor and ceiling as pyproject.toml has them."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    found = requirements()
    rows = 0
    for line in text.split("## Dependencies", 1)[1].split("\n## ", 1)[0].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 4 or cells[0] in ("package", "---"):
            continue
        names, floors, ceilings = (cell.split(" / ") for cell in cells[:3])
        for name, floor, ceiling in zip(names, floors, ceilings):
            specs = {spec.operator: spec.version for spec in found[name.lower()].specifier}
            assert specs[">="] == floor, name
            assert specs.get("<=", "(none)") == ceiling, name
            rows += 1
    assert rows >= 7
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    transformers = {spec.operator: spec.version for spec in found["transformers"].specifier}
    assert f"transformers {transformers['>=']} to {transformers['<=']}" in readme
