"""Building a run: the config's data, model, optimizer and device mesh, and the values it leaves to the data.

``build`` loads the data, writes the dataset's sizes and the generator's defaults into the config
(so a run folder's config.toml is fully resolved), and asks ``programs`` for the compiled parts.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .. import datasets
from ..config import DataConfig, RunConfig, TrainConfig
from ..config.optimizer import default_rate
from ..datasets import synthetic as _synthetic
from ..datasets.preprocess import held_out
from ..errors import ConfigError
from ..networks import Model, from_tables
from ..plugins.layers import LAYERS
from ..plugins.presets import from_spec
from ..plugins.activations import get_activation
from ..plugins.losses import get_loss, output_size

REGRESSION_LOSSES = ("mse", "huber")  # on a user file these read the label column as float targets
from ..plugins.probe import probe
from ..plugins.rules import get_rule
from ..privacy import training as _privacy
from ..scale import cluster as _cluster
from ..scale.precision import with_inputs_in
from ..scale.sharded import check_batch_split
from . import resources
from .programs import Spec, programs


class Run(NamedTuple):
    """Everything a resolved config builds."""

    config: RunConfig  # resolved: the data's size, the schedule's length, a private run's noise
    data: datasets.Dataset
    model: Model
    optimizer: optax.GradientTransformation
    init: Callable[[jax.Array], tuple[Any, Any]]  # run key -> stacked (params, opt_state)
    epoch: Callable  # jitted (params, opt_state, shuffle_key, epoch, x, y, x_test, y_test) -> (..., metrics)
    steps_per_epoch: int
    replicas: int
    privacy: dict | None = None  # the resolved [privacy] settings of a DP-SGD run
    mesh: Any = None  # replica x data; None: one device, one process
    validation: tuple | None = None  # (x_val, y_val) held out of the training split (data.validation_fraction)


def build(config: RunConfig) -> Run:
    """Load the data, build model and optimizer, and fill in the config's data-dependent values."""
    data_cfg, model_cfg, train_cfg = config.data, config.model, config.train
    tables = model_cfg.tables  # the layers' tables (a preset's, [[model.layers]]); () for the MLP of model.hidden
    if tables and (model_cfg.dropout or model_cfg.batch_norm):
        raise ConfigError("model.dropout and model.batch_norm add layers to the MLP of model.hidden; with model.layers "
                          "or model.preset, add {kind = \"dropout\", rate = ...} or {kind = \"batch_norm\"} tables")
    if tables and (model_cfg.init != "auto" or model_cfg.bias_init != 0.0):
        raise ConfigError("model.init and model.bias_init draw the MLP of model.hidden; with model.layers or "
                          "model.preset, give each dense table its own, e.g. {kind = \"dense\", features = 64, "
                          "init = \"glorot_uniform\", bias_init = 0.01}")
    options = {key: getattr(data_cfg, key) for key in ("classes", "factor") if getattr(data_cfg, key) is not None}
    data = datasets.load(data_cfg.name, key=jax.random.key(data_cfg.seed), n=data_cfg.n,
                         test_fraction=data_cfg.test_fraction, noise=data_cfg.noise,
                         standardize=data_cfg.standardize, label_column=data_cfg.label_column,
                         targets=model_cfg.loss in REGRESSION_LOSSES,
                         standardize_targets=data_cfg.standardize_targets,
                         validation_fraction=data_cfg.validation_fraction, **options)
    data_cfg = resolved_data(data_cfg, data.x_train.shape[0] + data.x_test.shape[0])
    _check_metric(train_cfg.early_stopping.metric, data.y_train.dtype.kind == "f")
    data, validation = hold_out(data, data_cfg.validation_fraction)
    n_train = data.x_train.shape[0]
    mesh = _cluster.run_mesh(train_cfg.devices, config.replicas, train_cfg.replica_devices)
    train_cfg = resolved_train(train_cfg, n_train, config.privacy.enabled, 1 if mesh is None else mesh.shape["data"])
    batch = train_cfg.batch_size or n_train  # 0 means full batch
    if batch > n_train:
        held = (f" ({validation[1].shape[0]} of the training split are held out by data.validation_fraction = "
                f"{data_cfg.validation_fraction}; lower it, or 0 for none)" if validation is not None else "")
        raise ConfigError(f"train.batch_size = {batch} is more than the {n_train} training examples{held}; "
                          f"use at most {n_train}, or 0 for full batch")
    data = with_inputs_in(data, train_cfg.precision)
    input_shape = (data.x_train.shape[1],)
    if tables:
        input_shape = _input_shape(data, tables)
        data = data._replace(x_train=data.x_train.reshape(-1, *input_shape), x_test=data.x_test.reshape(-1, *input_shape))
    if validation is not None:  # the same dtype and per-example shape as the training inputs
        validation = (jnp.asarray(validation[0], data.x_train.dtype).reshape(-1, *data.x_train.shape[1:]), validation[1])
    mesh = check_batch_split(batch, mesh)
    out = output_size(model_cfg.loss, data.num_classes)
    steps = n_train // batch
    privacy = _privacy.plan(config.privacy, n_train, batch, train_cfg.epochs * steps,
                            1 if mesh is None else mesh.shape["data"])
    optimizer_cfg = config.optimizer.resolved(train_cfg.epochs * steps,
                                              default_rate(model_cfg.loss in REGRESSION_LOSSES, privacy and batch,
                                                           config.optimizer.name))
    config = dataclasses.replace(config, data=data_cfg, train=train_cfg, optimizer=optimizer_cfg, privacy=config.privacy if not privacy
                                 else dataclasses.replace(config.privacy, noise_multiplier=privacy["noise_multiplier"]))
    spec = Spec((data.x_train.shape[1], *model_cfg.hidden, out), model_cfg.activation, model_cfg.loss, model_cfg.rule,
                dataclasses.replace(optimizer_cfg, learning_rate=1.0), batch, train_cfg.per_example,
                train_cfg.replicas, len(optimizer_cfg.rates), train_cfg.precision,
                privacy and tuple(sorted({**privacy, "seed": train_cfg.seed, "steps": steps}.items())),
                model_cfg.dropout, model_cfg.batch_norm,
                (model_cfg.l2, model_cfg.l1, model_cfg.regularize_biases) if model_cfg.l2 or model_cfg.l1 else (),
                json.dumps(tables, sort_keys=True) if tables else "", input_shape, model_cfg.init, model_cfg.bias_init)
    layered = from_tables(input_shape, tables, out, model_cfg.loss, model_cfg.rule) if tables else None  # a wrong
    # shape is named here, in one line; its shapes give the memory estimate (a convnet's are not model.hidden's)
    resources.check([math.prod(input_shape), *model_cfg.hidden, out],
                    network=resources.counts(layered) if layered else None, replicas=max(train_cfg.replicas,
                    len(optimizer_cfg.rates)), rows=max(batch, n_train, data.x_test.shape[0]), batch=batch, n=data_cfg.n,
                    optimizer={"name": optimizer_cfg.name, "momentum": getattr(optimizer_cfg, "momentum", None)},
                    itemsize=8 if train_cfg.precision == "float64" else 4,
                    per_example=bool(train_cfg.per_example or privacy), devices=1 if mesh is None else mesh.size)
    if tables:
        plugins = (get_loss(model_cfg.loss), get_rule(model_cfg.rule), *(LAYERS.get(t["kind"]).make for t in tables))
    else:
        probe(list(model_cfg.activations), list(model_cfg.hidden), model_cfg.loss, out)  # a plugin's wrong shape named
        plugins = (get_loss(model_cfg.loss), *map(get_activation, model_cfg.activations), get_rule(model_cfg.rule))
    model, optimizer, init, epoch, replicas = programs(spec, plugins, mesh)
    rates = jnp.asarray(optimizer_cfg.rates * (replicas // len(optimizer_cfg.rates)))  # each replica's peak rate
    return Run(config, data, model, optimizer, lambda key: init(key, rates), epoch, steps, replicas, privacy, mesh,
               validation)


def hold_out(data, fraction: float):
    """The training split's last ``fraction`` of rows (at least one) as (x_val, y_val), and the data without them;
    the split is already shuffled, so they are a random sample, and ``datasets.load`` left them out of the
    standardization's statistics. (data, None) when ``fraction`` is 0."""
    m = held_out(data.x_train.shape[0], fraction)
    if not m:
        return data, None
    return (data._replace(x_train=data.x_train[:-m], y_train=data.y_train[:-m]),
            (data.x_train[-m:], data.y_train[-m:]))


def _input_shape(data, tables) -> tuple:
    """One example's shape for the layers: the data's images (H, W, C) when the first layer takes images."""
    d = data.x_train.shape[1]
    if not from_spec(tables[0]).shaped:
        return (d,)
    shape = datasets.IMAGE_SHAPES.get(data.name)
    if shape is None or math.prod(shape) != d:
        raise ConfigError(f"model layer 0 ({tables[0]['kind']}) takes images, but data {data.name!r} has flat rows of "
                          f"{d} features; use data.name = \"mnist5k\" (28, 28, 1) or \"digits\" (8, 8, 1), or start "
                          f"with a dense layer")
    return shape


def resolved_data(section: DataConfig, n: int) -> DataConfig:
    """The [data] section with the dataset's size and, for a generator, its defaults written in."""
    section = dataclasses.replace(section, n=n)
    if section.name in _synthetic.GENERATORS:  # write the generator's defaults into the resolved config
        _, _, noise, defaults = _synthetic.GENERATORS[section.name]
        filled = {"noise": noise, **defaults}
        section = dataclasses.replace(section, **{k: v for k, v in filled.items() if getattr(section, k) is None})
    return section


def resolved_train(section: TrainConfig, n_train: int, private: bool, split: int = 1) -> TrainConfig:
    """The [train] section with an unset batch size written in: 32, or for a private run 256, at most a quarter of
    the training split (DP-SGD's noise in the mean gradient, sigma C / B, shrinks with the batch); on a mesh
    rounded down to a multiple of the ``split`` devices of its data axis (30 on 3), so that it splits evenly."""
    if section.batch_size is not None:
        return section
    batch = max(1, min(256, n_train // 4)) if private else 32
    return dataclasses.replace(section, batch_size=max(split, batch // split * split))


def _check_metric(metric: str, regression: bool) -> None:
    """train.early_stopping.metric must be one the run reports: accuracy for a classifier, mse/mae/r2 for a regression."""
    if regression and metric == "val_accuracy":
        raise ConfigError("train.early_stopping.metric = \"val_accuracy\" but this run is a regression (float targets); "
                          "use val_loss, val_mse, val_mae or val_r2")
    if not regression and metric in ("val_mse", "val_mae", "val_r2"):
        raise ConfigError(f"train.early_stopping.metric = \"{metric}\" is a regression metric but this run classifies; "
                          f"use val_loss or val_accuracy")
