"""What a user runs (``python -m fgdense.env``): fgdense and its key dependencies, each against the range the test suite passed on.

Every floor and ceiling in pyproject.toml is a version the suite has passed on (docs/architecture.md,
"Dependencies"), so "inside the range" means "tested". ``python -m fgdense.env`` (or any tool's
``--version``) prints the table; importing fgdense with a transformers or tokenizers outside its range
logs one warning line, since those two decide the model's numbers and the text policy.

Only the standard library and ``packaging`` (a transformers dependency) are used here: this module is
read at ``import fgdense`` and must stay quick.
"""

from __future__ import annotations

import logging
import platform
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

# The packages whose behaviour the model, the processor or a protocol relies on, in the table's order.
KEY_PACKAGES = (
    "torch", "torchvision", "transformers", "tokenizers", "safetensors", "huggingface-hub", "numpy",
    "pillow", "mmengine", "supervision", "opencv-python", "pycocotools",
)
# Checked at import: a release outside these ranges changes numbers silently, or breaks later.
CHECKED_AT_IMPORT = ("transformers", "tokenizers")

VERSION = "0.1.0"  # pyproject.toml's [project] version; fgdense.__version__

log = logging.getLogger("fgdense")


@lru_cache(maxsize=1)
def declared_ranges() -> dict[str, str]:
    """{normalised name: specifier} of fgdense's runtime dependencies (extras left out).

    Read from the installed package's metadata, or from pyproject.toml beside the package when fgdense
    runs from a source tree without being installed; empty when neither can be read.
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    try:
        lines = metadata.requires("fgdense") or []
    except metadata.PackageNotFoundError:
        lines = _pyproject_dependencies()
    ranges = {}
    for line in lines:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue
        # floor first: ">=5.4.0,<=5.25.0"
        parts = sorted(requirement.specifier, key=lambda s: (not s.operator.startswith(">"), s.version))
        ranges[canonicalize_name(requirement.name)] = ",".join(str(part) for part in parts)
    return ranges


def _pyproject_dependencies() -> list[str]:
    path = Path(__file__).resolve().parents[1] / "pyproject.toml"
    try:
        import tomllib
    except ImportError:  # Python 3.10: no TOML reader in the standard library
        return []
    try:
        return list(tomllib.loads(path.read_text(encoding="utf-8"))["project"]["dependencies"])
    except (OSError, KeyError, ValueError):
        return []


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def status_of(name: str) -> tuple[str | None, str, str]:
    """(installed version or None, declared range or "", verdict): verdict is ``tested`` (inside the
    range), ``UNTESTED`` (outside it), ``missing``, or ``no range`` (not a declared dependency)."""
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    version = installed_version(name)
    spec = declared_ranges().get(canonicalize_name(name), "")
    if version is None:
        return None, spec, "missing" if spec else "not installed"
    if not spec:
        return version, spec, "no range"
    try:
        inside = Version(version) in SpecifierSet(spec)
    except InvalidVersion:
        inside = False
    return version, spec, "tested" if inside else "UNTESTED"


def report() -> str:
    """The table ``python -m fgdense.env`` prints."""
    rows = [("package", "installed", "tested range", "")]
    rows.append(("fgdense", VERSION, "", str(Path(__file__).resolve().parent)))
    rows.append(("python", platform.python_version(), "", sys.executable))
    for name in KEY_PACKAGES:
        version, spec, verdict = status_of(name)
        rows.append((name, version or "-", spec, verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3] for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def untested() -> list[str]:
    """One phrase per key package installed outside its tested range, or declared and missing."""
    found = []
    for name in KEY_PACKAGES:
        version, spec, verdict = status_of(name)
        if verdict in ("UNTESTED", "missing"):
            found.append(f"{name} {version or 'missing'} (tested: {spec})")
    return found


def warn_if_untested(names=CHECKED_AT_IMPORT) -> None:
    """Log one warning line for each of ``names`` installed outside its tested range."""
    for name in names:
        try:
            version, spec, verdict = status_of(name)
        except Exception:  # a broken metadata install must not stop the import
            return
        if verdict == "UNTESTED":
            log.warning(f"warning: fgdense was tested with {name} {spec}, this environment has {version}; "
                        f"results may differ (python -m fgdense.env lists every dependency)")


def main(argv=None) -> int:
    """Print the table; exit 1 when a key package is outside its tested range or missing."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print("usage: python -m fgdense.env\n\nPrint fgdense's version and its key dependencies', each against the "
              "range the test suite passed on;\nexit 1 when one is outside it (UNTESTED) or missing.")
        return 0
    print(report())
    problems = untested()
    if problems:
        print(f"outside the tested ranges: {'; '.join(problems)}")
        return 1
    print("every key package is inside its tested range")
    return 0


