"""pytest plugin for jaxbp (the ``pytest11`` entry point): ``pytest --jaxbp-plugins PACKAGE``.

Every jaxbp plugin that PACKAGE registers becomes one test case per check variant, with ids like
``activation:my_swish[jit]``. It lives outside the ``jaxbp`` package so that loading it (pytest loads it in
every run where jaxbp is installed) imports neither jaxbp nor jax unless the option is given.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    parser.getgroup("jaxbp").addoption(
        "--jaxbp-plugins", action="append", default=[], metavar="PACKAGE",
        help="check every jaxbp plugin PACKAGE registers against jax.grad and finite differences, "
             "under jax.jit, without jit and under jax.vmap: one test per plugin per variant (repeatable)",
    )


class JaxbpPluginItem(pytest.Item):
    """One plugin under one variant."""

    def __init__(self, *, case, **kwargs):
        super().__init__(**kwargs)
        self.case = case

    def runtest(self):
        from jaxbp.testing.cases import run_case

        run_case(self.case)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, AssertionError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, self.name


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    packages = config.getoption("jaxbp_plugins")
    if not packages:
        return
    from jaxbp.errors import JaxbpError
    from jaxbp.testing.cases import plugin_cases

    try:
        cases = [case for package in packages for case in plugin_cases(package)]
    except JaxbpError as error:
        raise pytest.UsageError(f"--jaxbp-plugins: {error}") from error
    items[:0] = [JaxbpPluginItem.from_parent(session, name=case.id, nodeid=case.id, case=case) for case in cases]
