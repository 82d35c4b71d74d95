"""The sections of a run's config, one frozen dataclass each, and every key's default and check.

A key is one field: ``name: type = setting(default, *checks)``. How to add a key, a nested table,
a list of tables or a section: the package's docstring (``jaxbp/config/__init__.py``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from .. import datasets
from ..errors import ConfigError, did_you_mean
from ..plugins.presets import PRESETS, preset
from ..privacy.accounting import ACCOUNTANTS
from ..privacy.training import SAMPLINGS
from .fields import above, at_least, each_at_least, in_range, one_of, setting, write
from .optimizer import OptimizerConfig

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
    # a regression's targets (mse / huber on a file) trained as (y - mean) / std of the train split; undone at predict
    standardize_targets: bool = setting(True)
    # held out of the training split (its last rows) for model selection: val_loss / val_accuracy each epoch;
    # 0: none. A run folder saved before the key existed held nothing out (load.ADDED_LATER)
    validation_fraction: float = setting(0.1, in_range(0.0, 1.0, True, False, "the share of the training split "
                                                                              "held out for validation"))

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
    """[model]: hidden sizes, activation(s), loss, backward rule, dropout, batch norm -> jaxbp.mlp([d, *hidden, k]);
    or the layers' tables (a preset's, then [[model.layers]]) -> jaxbp.network(input shape, [*layers, dense(k)])."""

    hidden: tuple[int, ...] = setting((64, 64), each_at_least(1, "positive layer widths"))
    activation: str | tuple[str, ...] = setting("relu")
    loss: str = setting("softmax_cross_entropy")
    rule: str = setting("backprop")
    layers: tuple[LayerSpec, ...] = setting(())  # [[model.layers]]; empty: the layers are hidden + activation
    # after each hidden layer: dropout with this probability (0: none), batch norm (jaxbp.mlp's options)
    dropout: float = setting(0.0, in_range(0.0, 1.0, True, False, "the probability of dropping a unit"))
    batch_norm: bool = setting(False)
    l2: float = setting(0.0, at_least(0))  # l2/2 sum ||W||^2 in the loss (jaxbp.regularized); 0: none
    l1: float = setting(0.0, at_least(0))  # l1 sum |W| in the loss (a subgradient, sign(W)); 0: none
    regularize_biases: bool = setting(False)  # the penalty on biases (every trained leaf) too, not weights only
    # how dense weights are drawn: auto (He after relu-like, else Glorot), he/glorot/lecun[_normal|_uniform],
    # normal(std), uniform(a) (jaxbp.plugins.initializers); biases: a constant
    init: str = setting("auto")
    bias_init: float = setting(0.0)
    preset: str | None = setting(None, one_of(*PRESETS), help="a named network's layers, e.g. \"lenet5\"")

    @property
    def tables(self) -> tuple[dict, ...]:
        """The hidden layers as tables when the config gives them (a preset's, then [[model.layers]]), else ()."""
        return tuple(preset(self.preset) if self.preset else ()) + tuple(spec.to_table() for spec in self.layers)

    @property
    def activations(self) -> tuple[str, ...]:
        """One activation name per hidden layer."""
        return (self.activation,) * len(self.hidden) if isinstance(self.activation, str) else self.activation


@dataclass(frozen=True)
class EarlyStopping:
    """[train.early_stopping]: stop when the validation metric has not improved for ``patience`` epochs."""

    patience: int = setting(0, at_least(0))  # 0: never stop early (the best epoch is still kept)
    metric: str = setting("val_loss", one_of("val_loss", "val_accuracy", "val_mse", "val_mae", "val_r2"))
    mode: str = setting("auto", one_of("auto", "min", "max"))  # auto: min for a loss, max for an accuracy
    min_delta: float = setting(0.0, at_least(0))  # an improvement must beat the best by more than this


@dataclass(frozen=True)
class TrainConfig:
    """[train]: epochs, batch size, seed, replicas, checkpoints, plots, devices, precision."""

    epochs: int = setting(60, at_least(1))
    batch_size: int | None = setting(None, at_least(0), help="the run writes 32; a private run 256, at most a "
                                     "quarter of the training split; on a mesh a multiple of its data devices "
                                     "(0: full batch)")
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
    early_stopping: EarlyStopping = setting(EarlyStopping())


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
        norms = [name for name, on in (("model.batch_norm", self.model.batch_norm), ("a batch_norm table in "
                 "model.layers", any(table["kind"] == "batch_norm" for table in self.model.tables))) if on]
        if norms and (self.train.per_example or self.privacy.enabled):  # dropout has one: its mask's row
            what = "train.per_example" if self.train.per_example else "privacy.enabled"
            raise ConfigError(f"{what} = true cannot train with {' and '.join(norms)}: batch norm has no per-example "
                              f"gradient (examples interact through the batch statistics); use a layer_norm in its "
                              f"place, or set {what} = false")
        if self.train.early_stopping.patience and not self.data.validation_fraction:
            raise ConfigError("train.early_stopping.patience stops on the validation split, and there is none: set "
                              "data.validation_fraction, e.g. 0.1 (the default: a tenth of the training split held out)")
        if self.privacy.enabled and self.train.batch_size == 0:
            raise ConfigError("train.batch_size = 0 (full batch) cannot be private: every step sees every example, so "
                              "there is no sampling to amplify privacy; set train.batch_size to e.g. 1/20 of the data")
        return self
