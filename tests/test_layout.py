"""The tree shows the architecture: data flows one way, no import goes in a circle, no module outgrows a screenful or three.

The folders are layered, bottom to top (LAYERS); a module imports only from its own layer or below,
and the module graph has no cycle. A module added anywhere in jaxbp/ is checked with no new test;
a new top-level folder must be given its layer here.
"""

import ast
import functools
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "jaxbp"
MODULES = sorted(PACKAGE.rglob("*.py"))
LAYERS = (  # bottom to top
    ("errors", "boundary", "version"),  # the error classes; arrays checked and .npz files read at the boundary
    ("datasets", "plugins"),
    ("networks", "weights", "regularize"),  # weights: other libraries' dense weights as params
    ("checking", "privacy", "scale", "config"),  # config: the run's settings, read once (it names datasets and accountants)
    ("training",),
    ("inference", "testing", "bench"),
    ("cli",),
    ("__init__", "__main__"),  # the public face re-exports from every layer
)
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}
MAX_LINES = 300
STRING_LOOKUP = re.compile(r"""\b\w*(config|cfg)\w*(\(\))?\s*\[\s*["']""")  # config["train"], train_cfg["epochs"]


def dotted(module: Path) -> str:
    """jaxbp/training/runner.py -> "jaxbp.training.runner"; a package's __init__.py is the package."""
    parts = module.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


NAMES = {dotted(module) for module in MODULES}


def imported_modules(source: str, module: Path, known=NAMES) -> set[str]:
    """The jaxbp modules ``source`` (the text of ``module``) imports, lazy imports inside functions included."""
    here = dotted(module).split(".")
    package = here if module.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *(node.module or "").split(".")]).strip(".")
            for alias in node.names:  # "from .. import datasets" imports the module jaxbp.datasets
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == "jaxbp"} - {dotted(module)}


def owner(name: str) -> str:
    """The folder (or top-level module) of a dotted jaxbp name; "__init__" for jaxbp itself."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_violations(module: Path, source: str) -> list[str]:
    where = owner(dotted(module)) if module.name != "__main__.py" else "__main__"
    if where not in RANK:
        return [f"{module.relative_to(PACKAGE)} is in a folder no layer holds: add {where!r} to LAYERS"]
    return [f"{module.relative_to(PACKAGE)} imports {name}, a layer up"
            for name in sorted(imported_modules(source, module)) if RANK.get(owner(name), len(LAYERS)) > RANK[where]]


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle ([a, b, ..., a]) in ``graph`` (module -> modules it imports), or [] when there is none."""
    state, path = {}, []  # state: 1 on the current path, 2 finished

    def visit(name):
        state[name] = 1
        path.append(name)
        for other in sorted(graph.get(name, ())):
            if state.get(other) == 1:
                return path[path.index(other):] + [other]
            if other not in state and (cycle := visit(other)):
                return cycle
        state[name] = 2
        path.pop()
        return []

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)):
            return cycle
    return []


@functools.lru_cache(maxsize=1)
def _graph() -> dict[str, frozenset[str]]:
    return {dotted(m): frozenset(imported_modules(m.read_text(encoding="utf-8"), m)) for m in MODULES}


def import_graph(replace: dict[Path, str] | None = None) -> dict[str, set[str]]:
    """module -> the modules it imports; ``replace`` gives some modules other source text (a planted import)."""
    graph = dict(_graph())
    graph.update({dotted(m): imported_modules(text, m) for m, text in (replace or {}).items()})
    return graph


@pytest.mark.parametrize("module", MODULES, ids=lambda m: str(m.relative_to(PACKAGE)))
def test_imports_flow_one_way(module):
    assert layer_violations(module, module.read_text(encoding="utf-8")) == []


def test_no_import_goes_in_a_circle():
    cycle = find_cycle(import_graph())
    assert cycle == [], f"import circle: {' -> '.join(cycle)}; move what both need below them"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: str(m.relative_to(PACKAGE)))
def test_no_module_is_over_300_lines(module):
    lines = len(module.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module.name} has {lines} lines; split it by idea"


def test_a_planted_circle_is_caught():
    record = PACKAGE / "training" / "record.py"
    planted = record.read_text(encoding="utf-8") + "\n\ndef later():\n    from .runner import train\n"
    cycle = find_cycle(import_graph({record: planted}))  # the runner writes records; the record now needs the runner
    assert cycle[0] == cycle[-1] and {"jaxbp.training.record", "jaxbp.training.runner"} <= set(cycle), cycle
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
    root = PACKAGE / "checking" / "transforms.py"  # a name taken from the package's face imports the whole package
    assert "jaxbp.checking" in imported_modules("from . import CheckReport\n", root)
    assert find_cycle(import_graph({root: "from . import CheckReport\n"}))


def test_a_backwards_import_is_caught():
    runner = PACKAGE / "training" / "runner.py"
    assert layer_violations(runner, "from ..cli import main\n") == ["training/runner.py imports jaxbp.cli.main, a layer up"]
    assert layer_violations(runner, "from jaxbp.bench.suite import run\n") == [
        "training/runner.py imports jaxbp.bench.suite, a layer up"]
    loading = PACKAGE / "datasets" / "loading.py"
    assert layer_violations(loading, "from ..networks import mlp\nfrom ..errors import DataError\n") == [
        "datasets/loading.py imports jaxbp.networks, a layer up"]
    assert layer_violations(loading, "from . import synthetic\nfrom .. import training\n") == [
        "datasets/loading.py imports jaxbp.training, a layer up"]
    checking = PACKAGE / "checking" / "models.py"
    assert layer_violations(checking, "def f():\n    from ..training.steps import evaluate\n") == [
        "checking/models.py imports jaxbp.training.steps, a layer up"]  # a lazy import counts too
    assert layer_violations(PACKAGE / "cli" / "train.py", "from ..training import runner\n") == []
    assert layer_violations(PACKAGE / "networks.py", "from .plugins.layers import dense\n") == []
    assert layer_violations(PACKAGE / "newroom" / "x.py", "") == [
        "newroom/x.py is in a folder no layer holds: add 'newroom' to LAYERS"]


def config_lookups(source: str) -> list[str]:
    return [line.strip() for line in source.splitlines() if STRING_LOOKUP.search(line)]


def test_past_the_door_the_config_is_read_as_fields():
    """jaxbp/config/ reads the config once; everywhere else reads fields (config.train.epochs), never strings."""
    found = {str(m.relative_to(PACKAGE)): config_lookups(m.read_text(encoding="utf-8"))
             for m in MODULES if m.relative_to(PACKAGE).parts[0] != "config"}
    assert {module: lines for module, lines in found.items() if lines} == {}
    assert config_lookups('epochs = config["train"]["epochs"]\nb = train_cfg["batch_size"]\n') == [
        'epochs = config["train"]["epochs"]', 'b = train_cfg["batch_size"]']  # the check can fail
    assert config_lookups("d = mesh.shape['data']\nx = config.train.epochs\n") == []
