"""The tree shows the architecture: data flows one way, and no module outgrows a screenful or three.

datasets -> networks + plugins -> training -> a run folder; bench/ and cli/ sit on top. A module
added anywhere in jaxbp/ is checked with no new test.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "jaxbp"
MODULES = sorted(PACKAGE.rglob("*.py"))
TOP = {"bench", "cli"}  # use the rest; nothing below may import them
BASE = {"datasets", "plugins", "errors", "validate", "archive"}  # the bottom: they import no model, training or command
MAX_LINES = 300


def imported_parts(source: str, module: Path) -> set[str]:
    """The first component below jaxbp/ of every jaxbp module that ``source`` (the text of ``module``) imports."""
    package = module.relative_to(PACKAGE).parent.parts  # () for jaxbp/x.py, ("training",) for jaxbp/training/x.py
    parts = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:  # relative: climb, then follow the dotted name
            names = [*package[: max(len(package) - node.level + 1, 0)], *(node.module or "").split(".")]
            names = [name for name in names if name]
            parts.update([names[0]] if names else [alias.name for alias in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "jaxbp":
            names = node.module.split(".")[1:]
            parts.update(names[:1] or [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            parts.update(a.name.split(".")[1] for a in node.names if a.name.startswith("jaxbp."))
    return parts


def owner(module: Path) -> str:
    return module.relative_to(PACKAGE).parts[0].removesuffix(".py")  # the folder, or the top-level module


def layer_violations(module: Path, source: str) -> list[str]:
    where, used = owner(module), imported_parts(source, module) - {owner(module)}
    bad = [] if where in TOP or where in ("__init__", "__main__") else sorted(used & TOP)
    if where in BASE:
        bad += sorted(used - BASE)
    return [f"{module.relative_to(PACKAGE)} imports jaxbp.{part}" for part in bad]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: str(m.relative_to(PACKAGE)))
def test_imports_flow_one_way(module):
    assert layer_violations(module, module.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("module", MODULES, ids=lambda m: str(m.relative_to(PACKAGE)))
def test_no_module_is_over_300_lines(module):
    lines = len(module.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module.name} has {lines} lines; split it by idea"


def test_a_backwards_import_is_caught():
    runner = PACKAGE / "training" / "runner.py"
    assert layer_violations(runner, "from ..cli import main\n") == ["training/runner.py imports jaxbp.cli"]
    assert layer_violations(runner, "from jaxbp.bench.suite import run\n") == ["training/runner.py imports jaxbp.bench"]
    loading = PACKAGE / "datasets" / "loading.py"
    assert layer_violations(loading, "from ..networks import mlp\nfrom ..errors import DataError\n") == [
        "datasets/loading.py imports jaxbp.networks"]
    assert layer_violations(loading, "from . import synthetic\nfrom .. import training\n") == [
        "datasets/loading.py imports jaxbp.training"]
    assert layer_violations(PACKAGE / "cli" / "train.py", "from ..training import runner\n") == []
    assert layer_violations(PACKAGE / "networks.py", "from .plugins.layers import dense\n") == []
