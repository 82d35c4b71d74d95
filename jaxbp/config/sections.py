"""The sections of a run's config, one frozen dataclass each, and every key's default and check.

A key is one field: ``name: type = setting(default, *checks)``. How to add a key, a nested table,
a list of tables or a section: the package's docstring (``jaxbp/config/__init__.py``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import optax

from .. import datasets
from ..errors import ConfigError, did_you_mean
from ..privacy.accounting import ACCOUNTANTS
from ..privacy.training import SAMPLINGS
from .fields import above, at_least, each_at_least, in_range, one_of, setting, write

MAX_LEARNING_RATE = 1e6  # beyond this no network trains; 1e308 overflows the update itself
TABLE_FILES = (".csv", ".tsv")


@dataclass(frozen=True)
class DataConfig:
    """[data]: the dataset and its split -> jaxbp.datasets.load."""

    name: str = setting("spiral")
    n: int | None = setting(None, help="the run writes the dataset's size (a generator's default n)")
    test_fraction: float = setting(0.2)
    noise: float | None = setting(None, help="the run writes the generator's default noise")
    standardize: bool = setting(True)
    classes: int | None = setting(None, help="the run writes the generator's default (blobs, spiral)")
    factor: float | None = setting(None, help="the run writes the generator's default (circles)")
    seed: int = setting(0)
    label_column: str | None = setting(None, help='a .csv/.tsv file\'s label column, "label" when unset')

    def finish(self) -> DataConfig:
        name = self.name
        if name.lower().endswith((".npz", *TABLE_FILES)):
            name = os.path.abspath(name)  # the resolved config works from any folder
        elif name not in datasets.names():
            raise ConfigError(f"unknown data.name {name!r}; known datasets: {', '.join(datasets.names())}, "
                              f"or a path ending in .npz, .csv or .tsv." + did_you_mean(name, datasets.names()))
        if self.label_column is not None and not name.lower().endswith(TABLE_FILES):
            raise ConfigError(f"data.label_column names the label column of a .csv/.tsv file; {name!r} has "
                              f"none: drop data.label_column")
        return dataclasses.replace(self, name=name)


@dataclass(frozen=True)
class LayerSpec:
    """One ``[[model.layers]]`` table: a registered layer kind and the options its factory takes."""

    kind: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict:
        return dict(self.options)

    @classmethod
    def from_table(cls, table, where: str) -> LayerSpec:
        if not isinstance(table, dict) or not isinstance(table.get("kind"), str):
            raise ConfigError(f"{where} must be a table with a kind, e.g. {{kind = \"dense\", features = 64}}; "
                              f"got {table!r}")
        options = tuple((key, _frozen(value)) for key, value in table.items() if key != "kind")
        return cls(table["kind"], options)

    def to_table(self) -> dict:
        return {"kind": self.kind, **{key: _thawed(value) for key, value in self.options}}


def _frozen(value):
    return tuple(map(_frozen, value)) if isinstance(value, list) else value


def _thawed(value):
    return list(map(_thawed, value)) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class ModelConfig:
    """[model]: hidden sizes, activation(s), loss and backward rule -> jaxbp.mlp([d, *hidden, k])."""

    hidden: tuple[int, ...] = setting((64, 64), each_at_least(1, "positive layer widths"))
    activation: str | tuple[str, ...] = setting("relu")
    loss: str = setting("softmax_cross_entropy")
    rule: str = setting("backprop")
    layers: tuple[LayerSpec, ...] = setting(())  # [[model.layers]]; empty: the layers are hidden + activation

    @property
    def activations(self) -> tuple[str, ...]:
        """One activation name per hidden layer."""
        return (self.activation,) * len(self.hidden) if isinstance(self.activation, str) else self.activation


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


def _rates_given(where, value):
    if value == ():
        raise ConfigError(f"{where} must be a number > 0 or a non-empty list of them; got []")


@dataclass(frozen=True)
class OptimizerConfig:
    """[optimizer]: an optax optimizer by name, its arguments and a learning-rate schedule.

    The arguments that apply are the chosen optimizer's and schedule's (OPTIMIZERS, SCHEDULES); the
    others are None and absent from the table. A value outside its range does not fail loudly in optax
    (``eps = 0`` divides by zero, ``b1 = -5`` diverges), so each has its range here.
    """

    name: str = setting("sgd", one_of(*OPTIMIZERS))
    learning_rate: float | tuple[float, ...] = setting(
        0.2, _rates_given, in_range(0.0, MAX_LEARNING_RATE, False, True, "the step size"))
    schedule: str = setting("constant", one_of(*SCHEDULES))
    momentum: float | None = setting(None, in_range(0.0, 1.0, True, False, "0 is none; 1 or more never forgets and diverges"))
    nesterov: bool | None = setting(None)
    b1: float | None = setting(None, in_range(0.0, 1.0, True, False, "the first-moment decay"))
    b2: float | None = setting(None, in_range(0.0, 1.0, True, False, "the second-moment decay"))
    decay: float | None = setting(None, in_range(0.0, 1.0, True, False, "the squared-gradient decay"))
    eps: float | None = setting(None, in_range(0.0, 1.0, False, True, "added to a denominator: 0 divides by zero"))
    weight_decay: float | None = setting(None, in_range(
        0.0, 1.0, True, True, "the fraction of the weights removed per unit of learning rate"))
    end_factor: float | None = setting(None, in_range(0.0, 1.0, True, True, "the final learning rate as a fraction of the peak"))
    decay_rate: float | None = setting(None, in_range(0.0, 1.0, False, True, "the factor the rate falls by over decay_steps"))
    warmup_steps: int | None = setting(None, at_least(0))
    decay_steps: int | None = setting(None, at_least(0))  # 0: the run's length, filled in by the run

    @classmethod
    def known_keys(cls, table: dict) -> list[str]:
        """name, learning_rate, schedule, then the chosen optimizer's and schedule's arguments."""
        name, schedule = table.get("name") or "sgd", table.get("schedule") or "constant"
        for key, value, choices in (("name", name, OPTIMIZERS), ("schedule", schedule, SCHEDULES)):
            if not isinstance(value, str):
                raise ConfigError(f"optimizer.{key} must be a string, e.g. \"relu\"; got {value!r} ({type(value).__name__})")
            one_of(*choices)(f"optimizer.{key}", value)
        return ["name", "learning_rate", "schedule", *OPTIMIZERS[name][1], *SCHEDULES[schedule]]

    @property
    def arguments(self) -> dict:
        """The optimizer's own arguments (momentum, b1, ...), as optax takes them."""
        return {key: getattr(self, key) for key in OPTIMIZERS[self.name][1]}

    @property
    def rates(self) -> tuple[float, ...]:
        """The peak learning rate of each replica (one entry unless ``learning_rate`` is a list)."""
        return self.learning_rate if isinstance(self.learning_rate, tuple) else (self.learning_rate,)

    def finish(self) -> OptimizerConfig:
        applicable = {**OPTIMIZERS[self.name][1], **SCHEDULES[self.schedule]}
        return dataclasses.replace(self, **{k: v for k, v in applicable.items() if getattr(self, k) is None})

    def resolved(self, total_steps: int) -> OptimizerConfig:
        """``decay_steps = 0`` replaced by the run length; the warmup must fit inside it."""
        section = self
        if section.decay_steps == 0:
            section = dataclasses.replace(section, decay_steps=max(int(total_steps), 1))
        if (section.warmup_steps or 0) >= (section.decay_steps or 1):
            raise ConfigError(f"optimizer.warmup_steps ({section.warmup_steps}) must be below optimizer.decay_steps "
                              f"({section.decay_steps}, which counts the warmup too); lower warmup_steps")
        return section


@dataclass(frozen=True)
class TrainConfig:
    """[train]: epochs, batch size, seed, replicas, checkpoints, plots, devices, precision."""

    epochs: int = setting(60, at_least(1))
    batch_size: int = setting(32, at_least(0))  # 0: full batch
    seed: int = setting(0)
    replicas: int = setting(1, at_least(1))
    per_example: bool = setting(False)
    checkpoint_every: int = setting(10, at_least(0))
    plots: bool = setting(True)
    # a NaN/Inf loss or params: stop (keeping the last finite checkpoint) or continue
    on_nonfinite: str = setting("stop", one_of("stop", "continue"))
    final_params: str = setting("last_finite", one_of("last_finite", "last"))  # params.npz after "continue"
    devices: int = setting(1, at_least(0))
    replica_devices: int = setting(0, at_least(0))
    precision: str = setting("float32", one_of("float32", "bfloat16", "float64"))


@dataclass(frozen=True)
class PrivacyConfig:
    """[privacy]: DP-SGD (jaxbp.privacy); noise_multiplier or target_epsilon, the run fills in the other."""

    enabled: bool = setting(False)
    clip_norm: float = setting(1.0, above(0))
    noise_multiplier: float | None = setting(None, above(0, " for a private run"),
                                             help="a private run with target_epsilon writes the noise it calibrates")
    target_epsilon: float | None = setting(None, help="the epsilon follows from noise_multiplier")
    delta: float = setting(1e-5)
    accountant: str = setting("rdp", one_of(*ACCOUNTANTS))
    sampling: str = setting("poisson", one_of(*SAMPLINGS))


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, read and checked once: ``jaxbp.load_config(...)``, ``jaxbp.train(config)``."""

    data: DataConfig = setting(DataConfig())
    model: ModelConfig = setting(ModelConfig())
    optimizer: OptimizerConfig = setting(OptimizerConfig().finish())
    train: TrainConfig = setting(TrainConfig())
    privacy: PrivacyConfig = setting(PrivacyConfig())

    def to_dict(self) -> dict:
        """The config as plain values, section by section, the shape of its TOML file (unset keys as None)."""
        return write(self)

    @property
    def replicas(self) -> int:
        """How many models train side by side: train.replicas seeds, or one per learning rate."""
        return max(self.train.replicas, len(self.optimizer.rates))

    def finish(self) -> RunConfig:
        rates = self.optimizer.rates
        if isinstance(self.optimizer.learning_rate, tuple) and self.train.replicas not in (1, len(rates)):
            raise ConfigError(f"optimizer.learning_rate lists {len(rates)} rates, one replica each, but train.replicas = "
                              f"{self.train.replicas}: set train.replicas = 1 (same initial weights for every rate) "
                              f"or {len(rates)} (a different seed for each rate too)")
        if self.privacy.enabled and self.train.batch_size == 0:
            raise ConfigError("train.batch_size = 0 (full batch) cannot be private: every step sees every example, so "
                              "there is no sampling to amplify privacy; set train.batch_size to e.g. 1/20 of the data")
        return self
