"""The package's layers: every import points down (docs/architecture.md), and no module imports itself back."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fgdense"
# Bottom to top; a module may import its own layer or lower ones. model and processing are siblings that
# share only fgdense.config, so they may not import each other.
LAYERS = [
    {"errors", "versions", "labels", "defaults", "jsontext", "paths", "lazy"},
    {"checkpoint", "config", "devices"},
    {"model", "processing"},
    {"dense", "prompts", "superpixels", "tiny"},
    {"task"},
    {"regions", "segment", "classify", "classify_masks", "ground", "embed"},
    {"io"},
    {"bulk"},
    {"evaluation", "train", "search"},
    {"cli", "env", "eval_tools"},
    {"demo"},
]
SIBLINGS_APART = {("model", "processing"), ("processing", "model")}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every fgdense module a file imports, anywhere in it (functions included), absolute names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "fgdense"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "fgdense":
                continue
            # "from . import x" / "from .pkg import mod": the names may be modules themselves.
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _is_module(candidate) else target)
    return {f for f in found if f != name}


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def layer_of(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else "__init__"
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS and docs/architecture.md")


FILES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_module_has_a_layer():
    for path in FILES:
        layer_of(module_name(path))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    module = module_name(path)
    rank = layer_of(module)
    for target in imports_of(path):
        if target == "fgdense":
            raise AssertionError(f"{module} imports the package root; import the module that defines the name")
        assert layer_of(target) <= rank, f"{module} (layer {rank}) imports {target} (layer {layer_of(target)})"
        pair = (module.split(".")[1], target.split(".")[1])
        assert pair not in SIBLINGS_APART, f"{module} imports its sibling {target}"


def test_no_import_circles():
    graph = {module_name(p): {t for t in imports_of(p) if t != "fgdense"} for p in FILES}
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_the_installed_package_holds_no_benchmark_or_reference_code():
    names = {p.stem for p in FILES}
    assert "benchmarking" not in names
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        assert "dense_head_reference" not in text and "official_4d_mask" not in text, path


# ------------------------------------------------------------------------ one pipeline, one of each
EVALUATIONS = {"boxclass": "fgdense.classify", "segmentation": "fgdense.segment", "grounding": "fgdense.ground",
               "fgovd": "fgdense.classify", "retrieval": "fgdense.embed", "zeroshot": "fgdense.embed"}


@pytest.mark.parametrize("name, task", EVALUATIONS.items())
def test_each_evaluation_calls_its_task_on_the_bulk_runner(name, task):
    """An evaluation measures the task users run, through the one many-image pipeline: it imports the
    task and the evaluation jobs, and the jobs import the bulk runner. No evaluation builds its own
    DataLoader or dense pass."""
    path = PACKAGE / "evaluation" / f"{name}.py"
    found = imports_of(path)
    # Directly, or through embedding_runs (the embedding evaluations' shared job), which runs on runs.py.
    assert task in found and found & {"fgdense.evaluation.runs", "fgdense.evaluation.embedding_runs"}, found
    assert "fgdense.evaluation.runs" in imports_of(PACKAGE / "evaluation" / "embedding_runs.py")
    assert "fgdense.bulk.runner" in imports_of(PACKAGE / "evaluation" / "runs.py")
    text = path.read_text(encoding="utf-8")
    for own_engine in ("DataLoader", "dense_grids", "dense_features_batch", "get_image_dense_feature"):
        assert own_engine not in text, f"{name}.py runs its own {own_engine}"


def _touches_torch_distributed(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr == "distributed" and \
                isinstance(node.value, ast.Name) and node.value.id == "torch":
            return True
        if isinstance(node, ast.ImportFrom) and node.module and (
                node.module.startswith("torch.distributed") or (node.module == "torch" and
                                                                any(a.name == "distributed" for a in node.names))):
            return True
        if isinstance(node, ast.Import) and any(a.name.startswith("torch.distributed") for a in node.names):
            return True
    return False


def test_one_module_touches_torch_distributed():
    """Joining, ranks, barriers and gathers live in bulk/distributed.py; the SigLIP loss's gradient-carrying
    gather (train/losses.py) is part of the objective's maths. Tools and benchmarks go through the module too."""
    root = PACKAGE.parent
    files = FILES + sorted((root / "tools").glob("*.py")) + sorted((root / "benchmarks").glob("*.py"))
    touching = {str(p.relative_to(root)) for p in files if _touches_torch_distributed(p)}
    assert touching == {"fgdense/bulk/distributed.py", "fgdense/train/losses.py"}


def test_one_tokenizer_loader():
    """Every tokenizer comes from processing.text.load_tokenizer, and only FGCLIP2Processor calls it: the
    library, the tools, the demo and training take a checkpoint's tokenizer through the one processor
    (tiny.py builds the tiny checkpoints' tokenizer from scratch)."""
    root = PACKAGE.parent
    files = FILES + sorted((root / "tools").glob("*.py")) + sorted((root / "benchmarks").glob("*.py"))
    loading = {str(p.relative_to(root)) for p in files
               if any(word in p.read_text(encoding="utf-8") for word in ("AutoTokenizer", "TokenizerFast",
                                                                         "GemmaTokenizer"))}
    assert loading <= {"fgdense/processing/text.py", "fgdense/tiny.py"}, loading
    calling = {str(p.relative_to(root)) for p in files if "load_tokenizer(" in p.read_text(encoding="utf-8")}
    assert calling == {"fgdense/processing/text.py", "fgdense/processing/processor.py"}, calling


def test_modules_and_functions_stay_small():
    """Small modules named for what they do, small functions: no module of the package or a tool over 400
    lines, no function over 80 (a review found five engines and 600-line modules grown past this)."""
    root = PACKAGE.parent
    files = FILES + sorted((root / "tools").glob("*.py"))
    long_modules = {str(p.relative_to(root)): n for p in files
                    if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert not long_modules
    long_functions = [f"{p.relative_to(root)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
                      for p in files for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
                      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.end_lineno - node.lineno + 1 > 80]
    assert not long_functions
