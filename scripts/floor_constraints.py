"""Print pip constraints that pin each of fgdense's runtime dependencies to its declared floor.

``.ci/run`` installs a second environment with them (``pip install -e ".[test]" -c FILE``) and runs the
model's parity, text-policy and training tests there, so every floor in pyproject.toml is a version the
suite has passed on. A dependency without a ``>=`` floor is an error: every range is to be tested.

    python scripts/floor_constraints.py > floors.txt
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def floors(pyproject: Path = PYPROJECT) -> list[str]:
    """``name==floor`` for every runtime dependency, in pyproject's order."""
    dependencies = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    pins = []
    for line in dependencies:
        requirement = Requirement(line)
        lower = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if len(lower) != 1:
            raise SystemExit(f"error: {line!r} in {pyproject.name} has no single '>=' floor to test")
        pins.append(f"{requirement.name}=={lower[0]}")
    return pins


if __name__ == "__main__":
    print("\n".join(floors()))
    sys.exit(0)
