import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

# The suite's exact checks compare fp32 numbers; on a CPU with AMX ``--precision auto`` would be bf16 autocast.
# The rule itself is tested in test_precision_paths.py; tools started by the tests inherit this.
os.environ.setdefault("FGDENSE_CPU_AUTO_PRECISION", "fp32")

FIXTURE = Path(__file__).parent / "fixtures" / "fgclip2-reference"
CHECKPOINT = FIXTURE / "checkpoint"


@pytest.fixture(scope="session")
def manifest():
    return json.loads((FIXTURE / "manifest.json").read_text())


@pytest.fixture(scope="session")
def expected():
    return load_file(str(FIXTURE / "expected.safetensors"))


@pytest.fixture(scope="session")
def ref_model():
    from fgdense import FGCLIP2Model

    return FGCLIP2Model.from_pretrained(CHECKPOINT)


@pytest.fixture(scope="session")
def ref_processor():
    from fgdense import FGCLIP2ImageProcessor

    return FGCLIP2ImageProcessor.from_pretrained(CHECKPOINT)


@pytest.fixture(scope="session")
def ref_tokenizer():
    from fgdense import load_tokenizer

    return load_tokenizer(CHECKPOINT)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    from fgdense.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", seed=0)


def cases_of(kind):
    manifest = json.loads((FIXTURE / "manifest.json").read_text())
    return [pytest.param(case, id=case["id"]) for case in manifest["cases"] if case["kind"] == kind]


def assert_close(actual, expected, atol, what=""):
    actual = torch.as_tensor(actual).to(torch.float64)
    expected = torch.as_tensor(expected).to(torch.float64)
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual - expected).abs().max().item() if actual.numel() else 0.0
    assert diff <= atol, f"{what}: max abs diff {diff:.3g} > {atol}"


@pytest.fixture
def ckpt_copy(tmp_path):
    """A writable copy of the reference checkpoint, to break on purpose."""
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(CHECKPOINT, folder)
    for f in folder.iterdir():
        f.chmod(0o644)
    return folder


@pytest.fixture()
def read_only(monkeypatch):
    """``read_only(folder)`` makes a folder unwritable, for every user: chmod 555, and as root (whom the
    mode does not stop, and CI runs as root) the refusal a non-root user gets from the kernel, raised
    where fgdense asks (os.access, a temporary file in it)."""
    import os
    import tempfile

    locked = []

    def lock(folder):
        folder = Path(folder)
        folder.chmod(0o555)
        locked.append(folder)
        if os.geteuid() != 0:
            return folder
        inside = lambda path: any(Path(path).resolve() == f.resolve() for f in locked)  # noqa: E731
        real_access, real_file, real_mkstemp = os.access, tempfile.TemporaryFile, tempfile.mkstemp

        def access(path, mode, *args, **kwargs):
            return False if inside(path) and mode & os.W_OK else real_access(path, mode, *args, **kwargs)

        def temporary_file(*args, dir=None, **kwargs):
            if dir is not None and inside(dir):
                raise PermissionError(13, "Permission denied", str(dir))
            return real_file(*args, dir=dir, **kwargs)

        def mkstemp(*args, dir=None, **kwargs):
            if dir is not None and inside(dir):
                raise PermissionError(13, "Permission denied", str(dir))
            return real_mkstemp(*args, dir=dir, **kwargs)

        monkeypatch.setattr(os, "access", access)
        monkeypatch.setattr(tempfile, "TemporaryFile", temporary_file)
        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
        return folder

    yield lock
    for folder in locked:
        folder.chmod(0o755)
