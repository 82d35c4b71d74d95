"""The door: a run's config read once from the defaults, a TOML file or a dict, and ``--set`` overrides.

``load_config`` is where a config is parsed and every value checked; what it returns is a frozen
``RunConfig`` whose fields the rest of the library reads. ``to_toml`` writes it back as the file
it came from (a run folder's config.toml); ``print_config`` shows every key, the unset ones too.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
import tomllib

import tomli_w

from ..errors import ConfigError, did_you_mean
from .fields import help_of, hints, keys, read, write
from .sections import RunConfig

SECTIONS = tuple(field.name for field in dataclasses.fields(RunConfig))

# Keys added later: value for old runs. A run folder's config.toml saved before a key existed lacks it, and the
# run was trained as if it held this value, which is not always the key's default today (the default is what a
# NEW config without the key gets). ``load_saved`` reads run folders with it: resume, load_run, predict, evaluate.
ADDED_LATER = {
    "data.validation_fraction": 0.0,  # the default became 0.1; earlier runs held nothing out
}


def load_config(source=None, overrides=()) -> RunConfig:
    """Defaults <- ``source`` (None, a dict, a .toml path or a RunConfig) <- ``overrides`` ("section.key=value")."""
    if isinstance(source, RunConfig):
        raw = write(source)  # checked again: a config built by hand passes the same door
    elif source is None:
        raw = {}
    elif isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        raw = read_toml(source)
    for text in overrides:
        section, key, value = parse_override(text)
        table, where = raw, []
        for part in [section, *key.split(".")[:-1]]:
            where.append(part)
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"[{'.'.join(where)}] must be a table of keys, got {table!r}")
        table[key.split(".")[-1]] = value
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown config section(s) {', '.join(unknown)}; known sections: {', '.join(SECTIONS)}."
                          + did_you_mean(unknown[0], SECTIONS))
    return read(RunConfig, raw, "")


def load_saved(path, overrides=()) -> RunConfig:
    """A run folder's config.toml, as ``load_config``, with each ``ADDED_LATER`` key it lacks at its value for
    old runs: a folder saved by an older jaxbp resumes, loads and reports as it was trained."""
    raw = read_toml(path)
    for dotted, value in ADDED_LATER.items():
        *tables, key = dotted.split(".")
        table = raw
        for name in tables:
            table = table.setdefault(name, {}) if isinstance(table, dict) else None
        if isinstance(table, dict):  # else not a table: load_config names the bad section
            table.setdefault(key, value)
    return load_config(raw, overrides)


def read_toml(path) -> dict:
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} not found; check the path (start from `jaxbp train --out DIR`'s "
                          f"DIR/config.toml for a complete example)") from None
    except RecursionError:
        raise ConfigError(f"config file {path!r} nests arrays or tables too deeply to read; no config key takes "
                          f"more than a list of numbers or names") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path!r} is not valid TOML: {error}; fix that line") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path!r}: {error}") from None


def _nested_table(path: list[str]) -> bool:
    """Whether ``path`` (e.g. ["train", "early_stopping"]) names a table of the config, not a key."""
    cls = RunConfig
    for name in path:
        kind = hints(cls).get(name) if dataclasses.is_dataclass(cls) else None
        options = [k for k in getattr(kind, "__args__", (kind,)) if k is not type(None)]
        if len(options) != 1 or not dataclasses.is_dataclass(options[0]):
            return False
        cls = options[0]
    return True


MAX_NESTING = 8  # brackets in one --set value (a list of tables of lists is 3)


def parse_override(text: str) -> tuple[str, str, object]:
    """``"train.epochs=50"`` -> ("train", "epochs", 50); the value is a TOML value, or else a bare string.

    A key of a nested table is dotted: ``train.early_stopping.patience=5`` -> ("train", "early_stopping.patience", 5).
    """
    dotted, equals, value = str(text).partition("=")
    parts = dotted.strip().split(".")
    if (not equals or len(parts) < 2 or not all(p.isidentifier() for p in parts)
            or (len(parts) > 2 and not _nested_table(parts[:-1]))):
        raise ConfigError(f"bad --set {text!r}: use --set section.key=value, e.g. --set train.epochs=50 "
                          f"(sections: {', '.join(SECTIONS)})")
    depth = max(itertools.accumulate((c in "[{") - (c in "]}") for c in value), default=0)
    if depth > MAX_NESTING:  # tomllib would recurse once per level: refuse before it can overflow the stack
        raise ConfigError(f"bad --set {dotted.strip()}: the value nests {depth} levels of brackets; no config key "
                          f"takes more than {MAX_NESTING}")
    try:
        value = tomllib.loads(f"v = {value.strip()}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        value = value.strip()  # a bare word such as moons or relu
    return parts[0], ".".join(parts[1:]), value


def _without_none(table):
    if isinstance(table, dict):
        return {key: _without_none(value) for key, value in table.items() if value is not None}
    if isinstance(table, list):
        return [_without_none(value) for value in table]
    return table


def to_toml(config: RunConfig) -> str:
    """The config as TOML (tomli-w): one table per section; an unset key (None, filled in by the run) is left out."""
    return tomli_w.dumps(_without_none(write(config)))


def _unset(section, header: str, found: dict) -> dict:
    """header -> comment lines for the unset keys of ``section`` and of the tables inside it."""
    for name in keys(section):
        value = getattr(section, name)
        if value is None:
            found.setdefault(header, []).append(f"# {name} is unset: {help_of(type(section), name)}")
        elif dataclasses.is_dataclass(value) and not hasattr(value, "to_table"):
            _unset(value, f"{header}.{name}", found)
    return found


def print_config(config: RunConfig) -> str:
    """Every key the config holds with its value, as TOML; each unset key as a comment saying what the run fills in."""
    comments = {}
    for name in SECTIONS:
        _unset(getattr(config, name), name, comments)
    lines = []
    for line in to_toml(config).splitlines():
        lines.append(line)
        if line.startswith("[") and not line.startswith("[["):
            lines += comments.get(line.strip("[]"), [])
    return "\n".join(lines) + "\n"
