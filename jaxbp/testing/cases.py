"""One test case per plugin per variant, for every plugin a package registers.

A plugin belongs to the package that defines one of its functions (its forward, backward, value or
layer factory), so the plugins found are the same whether the package registered them on import or
through its ``jaxbp.plugins`` entry point.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

from .. import checking
from ..errors import JaxbpError
from ..plugins.registry import REGISTRIES, load_entry_points
from .assertions import assert_plugin_correct


class PluginCase(NamedTuple):
    kind: str
    name: str
    variant: str

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}[{self.variant}]"


def _defined_in(plugin, package: str) -> bool:
    functions = [field for field in plugin if callable(field)] if isinstance(plugin, tuple) else [plugin]
    modules = [getattr(f, "__module__", None) or "" for f in functions]
    return any(m == package or m.startswith(package + ".") for m in modules)


def plugin_cases(package: str, variants=None) -> list[PluginCase]:
    """Import ``package``, load the ``jaxbp.plugins`` entry points, and list its plugins x their kind's variants.

    ``variants`` (e.g. ``("vmap",)``) keeps only those; by default every variant the plugin's kind supports.
    """
    try:
        importlib.import_module(package)
    except ImportError as error:
        raise JaxbpError(f"cannot import {package!r} to find its jaxbp plugins ({error}); install it or add its "
                         f"folder to PYTHONPATH") from error
    load_entry_points()
    cases = [PluginCase(kind, name, variant)
             for kind, names in checking.plugin_names().items()
             for name in names if _defined_in(REGISTRIES[kind].get(name), package)
             for variant in checking.variants(kind) if variants is None or variant in variants]
    if not cases:
        raise JaxbpError(f"{package!r} registers no jaxbp plugins: none of the registered plugins' functions is "
                         f"defined in it. Register them on import or through a 'jaxbp.plugins' entry point")
    return cases


def run_case(case: PluginCase) -> None:
    __tracebackhide__ = True
    assert_plugin_correct(case.kind, case.name, variants=(case.variant,))


def plugin_tests(package: str, variants=None):
    """A pytest test function with one case per plugin of ``package`` per variant, ids like ``activation:f[jit]``.

    In a test file: ``test_my_plugins = jaxbp.testing.plugin_tests(package="my_package")``.
    """
    import pytest  # only the test run needs it

    cases = plugin_cases(package, variants)

    @pytest.mark.parametrize("case", cases, ids=[case.id for case in cases])
    def test_plugin(case):
        __tracebackhide__ = True
        run_case(case)

    return test_plugin
