"""Name -> plugin registries, one per kind, plus third-party plugins from entry points.

An installed package adds plugins by declaring, in its pyproject.toml::

    [project.entry-points."jaxbp.plugins"]
    my_plugins = "my_package.jaxbp_plugins:register"

where ``register()`` takes no arguments and calls ``jaxbp.register_activation`` etc.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.metadata
import sys
from typing import Generic, TypeVar

from ..errors import ConfigError, JaxbpError, UnknownPluginError, did_you_mean

ENTRY_POINT_GROUP = "jaxbp.plugins"
T = TypeVar("T")
REGISTRIES: dict[str, "Registry"] = {}  # kind -> its registry, filled as each kind's registry is made
_ORIGIN = contextvars.ContextVar("jaxbp_plugin_origin", default=None)  # set while a plugin file or entry point loads


@contextlib.contextmanager
def origin(text: str):
    """Plugins registered inside this block are recorded as coming from ``text`` (e.g. "--plugins my_act.py")."""
    token = _ORIGIN.set(text)
    try:
        yield
    finally:
        _ORIGIN.reset(token)


def _caller() -> str:
    """Where a register call came from: "built in" for jaxbp's own modules, else the calling module's name."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("jaxbp.plugins") \
            and frame.f_code.co_name != "<module>":  # past register_* and the factories, to their caller
        frame = frame.f_back
    module = "" if frame is None else frame.f_globals.get("__name__", "")
    return "built in" if module.startswith("jaxbp.") or module == "jaxbp" else f"module {module}"


class Registry(Generic[T]):
    """A dict of plugins of one kind. Lookups of unknown names list the known ones."""

    def __init__(self, kind: str, how_to_add: str):
        self.kind = kind
        self.how_to_add = how_to_add
        self._plugins: dict[str, T] = {}
        self.origins: dict[str, str] = {}  # name -> where it was registered (jaxbp plugins lists them)
        REGISTRIES[kind] = self

    def register(self, name: str, plugin: T, *, replace: bool = False) -> T:
        if not isinstance(name, str) or not name.isidentifier():
            raise JaxbpError(f"{self.kind} name must be an identifier-like string, got {name!r}")
        if name in self._plugins and not replace:
            raise JaxbpError(
                f"{self.kind} {name!r} is already registered; pick another name "
                f"or pass replace=True to overwrite it"
            )
        self._plugins[name] = plugin
        self.origins[name] = _ORIGIN.get() or _caller()
        return plugin

    def unregister(self, name: str) -> None:
        self.get(name)
        del self._plugins[name]

    def get(self, name: str) -> T:
        if name not in self._plugins:
            load_entry_points()
        if name not in self._plugins:
            plural = self.kind + ("es" if self.kind.endswith("s") else "s")
            raise UnknownPluginError(
                f"unknown {self.kind} {name!r}; known {plural}: {', '.join(self.names())}. "
                f"Add one with {self.how_to_add}, or on the command line with --plugins my_plugins.py "
                f"(a module or file that registers it)." + did_you_mean(name, self.names())
            )
        return self._plugins[name]

    def names(self) -> tuple[str, ...]:
        load_entry_points()
        return tuple(sorted(self._plugins))

    def __contains__(self, name: object) -> bool:
        return name in self._plugins


def require_callable(name: str, **functions) -> None:
    """A plugin's functions must be callable: refuse at registration, not at the first trace."""
    for role, function in functions.items():
        if not callable(function):
            raise ConfigError(f"plugin {name!r}: {role} must be a function, got {function!r} "
                              f"({type(function).__name__})")


_loaded_entry_points: set[str] = set()


def load_entry_points() -> tuple[str, ...]:
    """Call every ``jaxbp.plugins`` entry point once; returns the names loaded so far."""
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in _loaded_entry_points:
            continue
        _loaded_entry_points.add(entry_point.name)
        try:
            with origin(f"entry point {entry_point.name} ({entry_point.value})"):
                entry_point.load()()
        except Exception as error:  # a broken third-party plugin must not hide the cause
            raise JaxbpError(
                f"plugin entry point {entry_point.name!r} ({entry_point.value}) failed: "
                f"{type(error).__name__}: {error}. Fix or uninstall the package that provides it."
            ) from error
    return tuple(sorted(_loaded_entry_points))
