"""What a non-editable install holds: the package's data files (font, prompt templates, class names) travel
in the wheel, and nothing outside the package does."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_carries_every_asset_the_package_reads(tmp_path):
    # Built from a copy: an in-tree build folder left by an earlier build would hide a missing rule.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "fgdense", source / "fgdense", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and "No module named" in done.stderr:
        pytest.skip(f"cannot build here: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = next(tmp_path.glob("fgdense-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assets = {str(p.relative_to(ROOT)) for p in (ROOT / "fgdense" / "assets").rglob("*") if p.is_file()}
    assert assets and assets <= names, sorted(assets - names)
    assert not any(n.startswith(("tests/", "benchmarks/", "tools/")) for n in names)
