"""Plugins from the user's own module or file, the way ``pytest -p`` loads one: ``--plugins my_act.py``.

A plugin module registers what it adds when imported (``jaxbp.register_activation(...)`` at top level).
A file is recorded by its absolute path and a module by its import name, so a run folder can load the
same plugins again (``jaxbp predict``, ``jaxbp train --resume``); each is imported once per process.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from ..errors import ConfigError
from .registry import origin

_loaded: dict[str, object] = {}  # recorded spec -> its module


def resolve(spec: str) -> str:
    """A ``.py`` file as an absolute path, a module name as given."""
    spec = os.fspath(spec)
    return os.path.abspath(spec) if spec.endswith(".py") else spec


def load_plugins(specs) -> tuple[str, ...]:
    """Import each plugin module or ``.py`` file (once); returns their recorded specs in order."""
    resolved = tuple(dict.fromkeys(resolve(spec) for spec in specs or ()))
    for spec in resolved:
        if spec not in _loaded:
            with origin(f"--plugins {spec}"):
                _loaded[spec] = _import_file(spec) if spec.endswith(".py") else _import_module(spec)
    return resolved


def _import_file(path: str):
    if not os.path.isfile(path):
        raise ConfigError(f"plugin file {path} not found; pass --plugins PATH/TO/FILE.py (a run records the "
                          f"absolute path: put the file back there, or pass its new path with --plugins)")
    name = f"jaxbp_user_plugin_{len(_loaded)}_{os.path.splitext(os.path.basename(path))[0]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as error:  # sys.exit() in a plugin must not end jaxbp silently
        del sys.modules[name]
        raise ConfigError(f"plugin file {path} failed on import: {_failure(error)}; fix the file") from None
    return module


def _import_module(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and name.startswith(error.name):
            raise ConfigError(f"plugin module {name!r} not found; give an importable module name or a path ending "
                              f"in .py") from None
        raise ConfigError(f"plugin module {name!r} failed on import: {error}") from None
    except (Exception, SystemExit) as error:
        raise ConfigError(f"plugin module {name!r} failed on import: {_failure(error)}") from None


def _failure(error: BaseException) -> str:
    if isinstance(error, SystemExit):
        return f"it called sys.exit({error.code!r}) (a plugin registers what it adds; it must not end the program)"
    return f"{type(error).__name__}: {error}"
