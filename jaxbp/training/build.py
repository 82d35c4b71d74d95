"""Building a run: the config's data, model, optimizer and device mesh, and the values it leaves to the data.

``build`` loads the data, writes the dataset's sizes and the generator's defaults into the config
(so a run folder's config.toml is fully resolved), and asks ``programs`` for the compiled parts.
"""

from __future__ import annotations

import json
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .. import datasets
from ..datasets import synthetic as _synthetic
from ..errors import ConfigError
from ..networks import Model
from ..plugins.activations import get_activation
from ..plugins.losses import get_loss
from ..plugins.probe import probe
from ..plugins.rules import get_rule
from ..privacy import training as _privacy
from ..scale import cluster as _cluster
from ..scale.precision import with_inputs_in
from ..scale.sharded import check_batch_split
from .config import learning_rates, resolve_schedule
from .programs import programs


class Run(NamedTuple):
    """Everything a resolved config builds."""

    config: dict
    data: datasets.Dataset
    model: Model
    optimizer: optax.GradientTransformation
    init: Callable[[jax.Array], tuple[Any, Any]]  # run key -> stacked (params, opt_state)
    epoch: Callable  # jitted (params, opt_state, shuffle_key, epoch, x, y, x_test, y_test) -> (..., metrics)
    steps_per_epoch: int
    replicas: int
    privacy: dict | None = None  # the resolved [privacy] settings of a DP-SGD run
    mesh: Any = None  # replica x data; None: one device, one process


def build(config: dict) -> Run:
    """Load the data, build model and optimizer, and fill in the config's data-dependent values."""
    config = {section: dict(table) for section, table in config.items()}
    data_cfg, model_cfg, train_cfg = config["data"], config["model"], config["train"]
    options = {key: data_cfg[key] for key in ("classes", "factor") if data_cfg[key] is not None}
    data = datasets.load(data_cfg["name"], key=jax.random.key(data_cfg["seed"]), n=data_cfg["n"],
                         test_fraction=data_cfg["test_fraction"], noise=data_cfg["noise"],
                         standardize=data_cfg["standardize"], label_column=data_cfg["label_column"], **options)
    n_train = data.x_train.shape[0]
    data_cfg["n"] = n_train + data.x_test.shape[0]
    if data_cfg["name"] in _synthetic.GENERATORS:  # write the generator's defaults into the resolved config
        _, _, noise, defaults = _synthetic.GENERATORS[data_cfg["name"]]
        data_cfg["noise"] = noise if data_cfg["noise"] is None else data_cfg["noise"]
        data_cfg.update({key: data_cfg[key] if data_cfg[key] is not None else value for key, value in defaults.items()})
    batch = train_cfg["batch_size"] or n_train  # 0 means full batch
    if batch > n_train:
        raise ConfigError(f"train.batch_size = {batch} is more than the {n_train} training examples; "
                          f"use at most {n_train}, or 0 for full batch")
    data = with_inputs_in(data, train_cfg["precision"])
    mesh = check_batch_split(batch, _cluster.run_mesh(train_cfg["devices"], max(train_cfg["replicas"], len(
        learning_rates(config["optimizer"]))), train_cfg["replica_devices"]))
    out = 1 if model_cfg["loss"] == "binary_cross_entropy" else data.num_classes
    steps = n_train // batch
    privacy = _privacy.plan(config["privacy"], n_train, batch, train_cfg["epochs"] * steps, not train_cfg["batch_size"],
                            1 if mesh is None else mesh.shape["data"])
    config["optimizer"] = resolve_schedule(config["optimizer"], train_cfg["epochs"] * steps)
    rates = learning_rates(config["optimizer"])
    spec = {"sizes": [data.x_train.shape[1], *model_cfg["hidden"], out], "activation": model_cfg["activation"],
            "loss": model_cfg["loss"], "optimizer": {**config["optimizer"], "learning_rate": 1.0}, "batch": batch,
            "per_example": train_cfg["per_example"], "replicas": train_cfg["replicas"], "rates": len(rates),
            "rule": model_cfg["rule"], "precision": train_cfg["precision"],
            "privacy": privacy and {**privacy, "seed": train_cfg["seed"], "steps": steps}}
    activation = model_cfg["activation"]
    names = [activation] * len(model_cfg["hidden"]) if isinstance(activation, str) else activation
    probe(names, model_cfg["hidden"], model_cfg["loss"], out)  # a plugin's wrong shape named here, abstractly
    plugins = (get_loss(model_cfg["loss"]), *map(get_activation, names), get_rule(model_cfg["rule"]))
    model, optimizer, init, epoch, replicas = programs(json.dumps(spec, sort_keys=True), plugins, mesh)
    rates = jnp.asarray(rates * (replicas // len(rates)))  # each replica's peak learning rate
    return Run(config, data, model, optimizer, lambda key: init(key, rates), epoch, steps, replicas, privacy, mesh)
