"""Run configuration: defaults, TOML files, ``--set`` overrides, and the optimizer they name.

A config is a dict of four sections of scalars and lists, the same shape as its TOML file::

    [data]       dataset name and split                 -> jaxbp.datasets.load
    [model]      hidden sizes, activation(s), loss, rule -> jaxbp.mlp([d, *hidden, k])
    [optimizer]  an optax optimizer by name, its arguments, a learning-rate schedule
    [train]      epochs, batch size, seed, replicas, checkpoints, plots, devices, precision
    [privacy]    differentially private training: clip norm, noise or target epsilon, delta, accountant

``load_config`` fills every missing key from ``SCHEMA`` and type-checks the rest; a key whose
default is None (``data.n``, ``data.noise``...) is filled in by the run from the dataset, and
``decay_steps = 0`` becomes the run length, so a run folder's config.toml is fully resolved.
"""

from __future__ import annotations

import copy
import os
import tomllib

import optax
import tomli_w

from ..errors import ConfigError, did_you_mean
from .limits import check_ranges

# section -> key -> (default, kind); a kind is "int", "float", "bool", "str", "ints", "strs", "floats" or "a|b"
SCHEMA = {
    "data": {
        "name": ("spiral", "str"), "n": (None, "int"), "test_fraction": (0.2, "float"), "noise": (None, "float"),
        "standardize": (True, "bool"), "classes": (None, "int"), "factor": (None, "float"), "seed": (0, "int"),
        "label_column": (None, "str"),  # a .csv/.tsv file's label column ("label" when not set)
    },
    "model": {
        "hidden": ([64, 64], "ints"), "activation": ("relu", "str|strs"), "loss": ("softmax_cross_entropy", "str"),
        "rule": ("backprop", "str"),
    },
    "optimizer": {"name": ("sgd", "str"), "learning_rate": (0.2, "float|floats"), "schedule": ("constant", "str")},
    "train": {
        "epochs": (60, "int"), "batch_size": (32, "int"), "seed": (0, "int"), "replicas": (1, "int"),
        "per_example": (False, "bool"), "checkpoint_every": (10, "int"), "plots": (True, "bool"),
        "on_nonfinite": ("stop", "str"),  # a NaN/Inf loss or params: stop (keeping the last finite checkpoint) or continue
        "final_params": ("last_finite", "str"),  # what params.npz holds after on_nonfinite = "continue": or "last"
        "devices": (1, "int"), "replica_devices": (0, "int"), "precision": ("float32", "str"),
    },
    "privacy": {  # DP-SGD (jaxbp.privacy); noise_multiplier or target_epsilon, the other is filled in
        "enabled": (False, "bool"), "clip_norm": (1.0, "float"), "noise_multiplier": (None, "float"),
        "target_epsilon": (None, "float"), "delta": (1e-5, "float"), "accountant": ("rdp", "str"),
        "sampling": ("poisson", "str"),
    },
}
# optimizer name -> (optax factory, its arguments with defaults); momentum 0 means none
OPTIMIZERS = {
    "sgd": (optax.sgd, {"momentum": 0.0, "nesterov": False}),
    "adam": (optax.adam, {"b1": 0.9, "b2": 0.999, "eps": 1e-8}),
    "adamw": (optax.adamw, {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-4}),
    "rmsprop": (optax.rmsprop, {"decay": 0.9, "eps": 1e-8, "momentum": 0.0, "nesterov": False}),
}
# schedule name -> its arguments; lr(t) = learning_rate * shape(t), decay_steps = 0 means the whole run
SCHEDULES = {
    "constant": {},
    "linear": {"end_factor": 0.0, "decay_steps": 0},
    "cosine": {"end_factor": 0.0, "decay_steps": 0},
    "warmup_cosine": {"warmup_steps": 100, "end_factor": 0.0, "decay_steps": 0},
    "exponential": {"decay_rate": 0.1, "decay_steps": 0},
}
_DESCRIBE = {
    "int": "an integer, e.g. 10", "float": "a number, e.g. 0.1", "bool": "true or false",
    "str": 'a string, e.g. "relu"',
    "ints": "a list of integers, e.g. [64, 64]", "strs": 'a list of strings, e.g. ["relu", "tanh"]',
    "floats": "a list of numbers, e.g. [0.1, 0.3]",
}


def load_config(source=None, overrides=()) -> dict:
    """Defaults <- ``source`` (None, a dict, or a .toml path) <- ``overrides`` ("section.key=value")."""
    if source is None:
        raw = {}
    elif isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        raw = read_toml(source)
    for text in overrides:
        section, key, value = parse_override(text)
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] must be a table of keys, got {table!r}")
        table[key] = value
    return _resolve(raw)


def read_toml(path) -> dict:
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} not found; check the path (start from `jaxbp train --out DIR`'s "
                          f"DIR/config.toml for a complete example)") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path!r} is not valid TOML: {error}; fix that line") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path!r}: {error}") from None


def parse_override(text: str) -> tuple[str, str, object]:
    """``"train.epochs=50"`` -> ("train", "epochs", 50); the value is a TOML value, or else a bare string."""
    dotted, equals, value = str(text).partition("=")
    parts = dotted.strip().split(".")
    if not equals or len(parts) != 2 or not all(p.isidentifier() for p in parts):
        raise ConfigError(f"bad --set {text!r}: use --set section.key=value, e.g. --set train.epochs=50 "
                          f"(sections: {', '.join(SCHEMA)})")
    try:
        value = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = value.strip()  # a bare word such as moons or relu
    return parts[0], parts[1], value


def known_keys(section: str, table: dict) -> dict:
    """key -> (default, kind) for ``section``; [optimizer] adds the chosen optimizer's and schedule's arguments."""
    keys = dict(SCHEMA[section])
    if section == "optimizer":
        name = _coerce("optimizer.name", table.get("name", "sgd"), "str")
        schedule = _coerce("optimizer.schedule", table.get("schedule", "constant"), "str")
        _check_choice("optimizer.name", name, OPTIMIZERS)
        _check_choice("optimizer.schedule", schedule, SCHEDULES)
        for default in (*OPTIMIZERS[name][1].items(), *SCHEDULES[schedule].items()):
            keys[default[0]] = (default[1], type(default[1]).__name__)
    return keys


def _resolve(raw: dict) -> dict:
    unknown = sorted(set(raw) - set(SCHEMA))
    if unknown:
        raise ConfigError(f"unknown config section(s) {', '.join(unknown)}; known sections: {', '.join(SCHEMA)}."
                          + did_you_mean(unknown[0], SCHEMA))
    config = {}
    for section in SCHEMA:
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] must be a table of keys, got {table!r}")
        keys = known_keys(section, table)
        extra = sorted(set(table) - set(keys))
        if extra:
            raise ConfigError(f"unknown key(s) {', '.join(f'{section}.{k}' for k in extra)}; "
                              f"known keys of [{section}]: {', '.join(keys)}." + did_you_mean(extra[0], keys))
        config[section] = {key: default if table.get(key) is None else _coerce(f"{section}.{key}", table[key], kind)
                           for key, (default, kind) in keys.items()}
    _check_values(config)
    return config


_IS = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
       "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
       "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str)}


def _coerce(where: str, value, kind: str):
    """``value`` if it fits ``kind`` ("ints" is a list of int...), ints widened to float where a number is due."""
    for option in kind.split("|"):
        base = option.rstrip("s")
        if option == base and _IS[base](value):
            return float(value) if base == "float" else value
        if option != base and isinstance(value, list) and all(_IS[base](v) for v in value):
            return [float(v) for v in value] if base == "float" else value
    wanted = " or ".join(_DESCRIBE[option] for option in kind.split("|"))
    raise ConfigError(f"{where} must be {wanted}; got {value!r} ({type(value).__name__})")


def _check_choice(where: str, name: str, known) -> None:
    if name not in known:
        raise ConfigError(f"unknown {where} {name!r}; known: {', '.join(known)}." + did_you_mean(name, known))


def _check_values(config: dict) -> None:
    from .. import datasets

    data, train, opt = config["data"], config["train"], config["optimizer"]
    if data["name"].lower().endswith((".npz", ".csv", ".tsv")):
        data["name"] = os.path.abspath(data["name"])  # the resolved config works from any folder
    elif data["name"] not in datasets.names():
        raise ConfigError(f"unknown data.name {data['name']!r}; known datasets: {', '.join(datasets.names())}, "
                          f"or a path ending in .npz, .csv or .tsv." + did_you_mean(data["name"], datasets.names()))
    if data["label_column"] is not None and not data["name"].lower().endswith((".csv", ".tsv")):
        raise ConfigError(f"data.label_column names the label column of a .csv/.tsv file; {data['name']!r} has "
                          f"none: drop data.label_column")
    for key, low in (("epochs", 1), ("batch_size", 0), ("replicas", 1), ("checkpoint_every", 0), ("devices", 0),
                     ("replica_devices", 0)):
        if train[key] < low:
            raise ConfigError(f"train.{key} must be >= {low}; got {train[key]}")
    _check_choice("train.precision", train["precision"], ("float32", "bfloat16", "float64"))
    if any(h < 1 for h in config["model"]["hidden"]):
        raise ConfigError(f"model.hidden must list positive layer widths; got {config['model']['hidden']}")
    _check_choice("train.on_nonfinite", train["on_nonfinite"], ("stop", "continue"))
    _check_choice("train.final_params", train["final_params"], ("last_finite", "last"))
    rates = learning_rates(opt)
    if not rates:
        raise ConfigError(f"optimizer.learning_rate must be a number > 0 or a non-empty list of them; got {rates}")
    check_ranges(opt)
    if isinstance(opt["learning_rate"], list) and train["replicas"] not in (1, len(rates)):
        raise ConfigError(f"optimizer.learning_rate lists {len(rates)} rates, one replica each, but train.replicas = "
                          f"{train['replicas']}: set train.replicas = 1 (same initial weights for every rate) "
                          f"or {len(rates)} (a different seed for each rate too)")
    for key in ("decay_steps", "warmup_steps"):
        if opt.get(key, 0) < 0:
            raise ConfigError(f"optimizer.{key} must be >= 0; got {opt[key]}")


def learning_rates(section: dict) -> list[float]:
    """The peak learning rate of each replica (one entry unless ``learning_rate`` is a list)."""
    rate = section["learning_rate"]
    return list(rate) if isinstance(rate, list) else [rate]


def resolve_schedule(section: dict, total_steps: int) -> dict:
    """Replace ``decay_steps = 0`` by the run length; check warmup fits inside it."""
    section = dict(section)
    if section.get("decay_steps") == 0:
        section["decay_steps"] = max(int(total_steps), 1)
    if section.get("warmup_steps", 0) >= section.get("decay_steps", 1):
        raise ConfigError(f"optimizer.warmup_steps ({section['warmup_steps']}) must be below optimizer.decay_steps "
                          f"({section['decay_steps']}, which counts the warmup too); lower warmup_steps")
    return section


def make_optimizer(section: dict, wrap=None) -> optax.GradientTransformation:
    """The optax optimizer the [optimizer] section names, its learning rate injected as a hyperparameter.

    ``opt_state.hyperparams["learning_rate"]`` holds the peak rate, so replicas stacked with
    ``jax.vmap`` can each carry their own; the schedule multiplies it: lr(t) = rate * shape(t).
    """
    factory, defaults = OPTIMIZERS[section["name"]]
    args = {key: section[key] for key in defaults}
    if "momentum" in args and args["momentum"] == 0.0:
        args["momentum"] = None  # optax's plain (momentum-free) form
    shape = _schedule_shape(section)

    def build(learning_rate):
        def rate(count):  # the schedule sees a float step, so it is as precise as the params
            return learning_rate * shape(count.astype(learning_rate.dtype))

        optimizer = factory(learning_rate if shape is None else rate, **args)
        return optimizer if wrap is None else wrap(optimizer)  # e.g. jaxbp.private_optimizer: DP noise first

    return optax.inject_hyperparams(build)(learning_rate=learning_rates(section)[0])


def _schedule_shape(section: dict):
    """The schedule with peak 1, or None for a constant rate."""
    name, steps = section["schedule"], section.get("decay_steps")
    if name == "constant":
        return None
    if name == "linear":
        return optax.linear_schedule(1.0, section["end_factor"], steps)
    if name == "cosine":
        return optax.cosine_decay_schedule(1.0, steps, alpha=section["end_factor"])
    if name == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, 1.0, section["warmup_steps"], steps, section["end_factor"])
    return optax.exponential_decay(1.0, steps, section["decay_rate"])  # rate ** (t / decay_steps)


def to_toml(config: dict) -> str:
    """The config as TOML (tomli-w): one table per section; None (filled in by the run) is left out."""
    return tomli_w.dumps({section: {key: value for key, value in table.items() if value is not None}
                          for section, table in config.items()})
