"""How a config key is declared, read, checked and written: one frozen dataclass field per key.

A section is a frozen dataclass; each field is one key, declared with ``setting(default, *checks)``.
Its type annotation says what the key takes and how the error reads when it gets something else:
``int``, ``float`` (an int is widened), ``bool``, ``str``, ``tuple[int, ...]`` (a TOML list),
a union of those, ``X | None`` (None: the run fills it in), another frozen dataclass (a nested
table, e.g. ``[train.early_stopping]``) or ``tuple[Dataclass, ...]`` (a list of tables, e.g.
``[[model.layers]]``). A check is ``(dotted_key, value) -> None`` raising ``ConfigError``; the
factories below write the messages. A section may define the hooks ``known_keys(table)`` (which
keys apply, given the table: the optimizer's arguments), ``finish(self)`` (checks across its keys,
returning the section, possibly normalized) and ``from_table(table, where)`` / ``to_table(self)``
(its own reading and writing: a layer's free options).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any, Callable

from ..errors import ConfigError, did_you_mean

Check = Callable[[str, Any], None]
_SCALARS = {int: ("an integer, e.g. 10", "a list of integers, e.g. [64, 64]"),
            float: ("a number, e.g. 0.1", "a list of numbers, e.g. [0.1, 0.3]"),
            bool: ("true or false", "a list of true/false"),
            str: ('a string, e.g. "relu"', 'a list of strings, e.g. ["relu", "tanh"]')}
_IS = {int: lambda v: isinstance(v, int) and not isinstance(v, bool),
       float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
       bool: lambda v: isinstance(v, bool), str: lambda v: isinstance(v, str)}


def setting(default, *checks: Check, help: str = ""):
    """One config key: its default and the checks its value passes (None, "the run fills it in", is not checked).

    ``help`` says what an unset (None) key becomes; ``--print-config`` shows it.
    """
    return dataclasses.field(default=default, metadata={"checks": checks, "help": help})


# ---- checks: each names the dotted key, the allowed range and the value it got -----------------------------

def at_least(low) -> Check:
    def check(where, value):
        if value < low:
            raise ConfigError(f"{where} must be >= {low}; got {value}")
    return check


def above(low, context: str = "") -> Check:
    def check(where, value):
        if not value > low:
            raise ConfigError(f"{where} must be > {low}{context}; got {value}")
    return check


def one_of(*choices: str) -> Check:
    def check(where, value):
        if value not in choices:
            raise ConfigError(f"unknown {where} {value!r}; known: {', '.join(choices)}." + did_you_mean(value, choices))
    return check


def in_range(low: float, high: float, low_in: bool, high_in: bool, why: str) -> Check:
    """Every number (each entry of a list) in the interval; ``why`` says what the key means."""
    interval = f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"

    def check(where, value):
        for number in value if isinstance(value, tuple) else (value,):
            inside = math.isfinite(number) and (low <= number if low_in else low < number) and (
                number <= high if high_in else number < high)
            if not inside:
                raise ConfigError(f"{where} must be a number in {interval} ({why}); got {number!r}")
    return check


def each_at_least(low: int, what: str) -> Check:
    def check(where, value):
        if any(v < low for v in value):
            raise ConfigError(f"{where} must list {what}; got {list(value)}")
    return check


# ---- reading: a table (dict) into a section, every value coerced and checked once ----------------------------

@functools.lru_cache(maxsize=None)
def hints(cls) -> dict[str, Any]:
    """Field name -> its type annotation, resolved."""
    return typing.get_type_hints(cls)


def _alternatives(kind) -> list:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return [k for k in typing.get_args(kind) if k is not type(None)]
    return [kind]


def _item(kind):
    """X of ``tuple[X, ...]``, else None."""
    return typing.get_args(kind)[0] if typing.get_origin(kind) is tuple else None


def describe(kind) -> str:
    words = []
    for option in _alternatives(kind):
        item = _item(option)
        if item in _SCALARS:
            words.append(_SCALARS[item][1])
        elif item is not None:
            words.append("a list of tables")
        elif dataclasses.is_dataclass(option):
            words.append("a table of keys")
        else:
            words.append(_SCALARS[option][0])
    return " or ".join(words)


def coerce(where: str, value, kind):
    """``value`` as ``kind`` says (a TOML list becomes a tuple; an int a float where a number is due), else the error."""
    for option in _alternatives(kind):
        item = _item(option)
        if option in _IS and _IS[option](value):
            return float(value) if option is float else value
        if item in _IS and isinstance(value, (list, tuple)) and all(_IS[item](v) for v in value):
            return tuple(float(v) if item is float else v for v in value)
        if item is not None and item not in _IS and isinstance(value, (list, tuple)):
            return tuple(read(item, entry, f"{where}[{i}]") for i, entry in enumerate(value))
        if dataclasses.is_dataclass(option) and (isinstance(value, (dict, option)) or len(_alternatives(kind)) == 1):
            return read(option, value, where)  # a table; read() says what is wrong with anything else
    raise ConfigError(f"{where} must be {describe(kind)}; got {value!r} ({type(value).__name__})")


def read(cls, table, where: str):
    """The section ``cls`` from ``table`` (a dict, or a ``cls`` to check again), under the dotted name ``where``."""
    if isinstance(table, cls):
        table = write(table)
    if hasattr(cls, "from_table"):
        return cls.from_table(table, where)
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table of keys, got {table!r}")
    known = cls.known_keys(table) if hasattr(cls, "known_keys") else [f.name for f in dataclasses.fields(cls)]
    extra = sorted(set(table) - set(known))
    if extra:
        raise ConfigError(f"unknown key(s) {', '.join(f'{where}.{k}' for k in extra)}; known keys of [{where}]: "
                          f"{', '.join(known)}." + did_you_mean(extra[0], known))
    kinds, values = hints(cls), {}
    for field in dataclasses.fields(cls):
        if field.name not in known or table.get(field.name) is None:
            continue  # the default
        dotted = f"{where}.{field.name}" if where else field.name
        value = values[field.name] = coerce(dotted, table[field.name], kinds[field.name])
        for check in field.metadata.get("checks", ()):
            check(dotted, value)
    section = cls(**values)
    return section.finish() if hasattr(section, "finish") else section


# ---- writing: a section back to a table of plain TOML values ---------------------------------------------------

def keys(section) -> list[str]:
    """The keys ``section`` holds, in order (the optimizer holds only its own arguments)."""
    cls = type(section)
    names = [f.name for f in dataclasses.fields(cls)]
    return cls.known_keys(write_all(section, names)) if hasattr(cls, "known_keys") else names


def write_all(section, names) -> dict:
    return {name: _plain(getattr(section, name)) for name in names}


def write(section) -> dict:
    """The section as a dict of plain values (tuples as lists, nested sections as dicts); None kept."""
    if hasattr(section, "to_table"):
        return section.to_table()
    return write_all(section, keys(section))


def _plain(value):
    if dataclasses.is_dataclass(value):
        return write(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def help_of(cls, name: str) -> str:
    return next(f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.name == name)
