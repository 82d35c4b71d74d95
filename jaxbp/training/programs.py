"""The compiled programs of a run: model, optimizer, jitted init and epoch, kept per spec so a shape compiles once."""

from __future__ import annotations

import functools
import json
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..config import OptimizerConfig
from ..networks import from_tables, mlp
from ..regularize import regularized
from ..plugins.rules import trainable
from ..privacy import fold_noise, private_optimizer
from ..privacy import training as _privacy
from ..scale.precision import get_policy, mixed_precision
from .optimizer import make_optimizer
from .epochs import make_epoch_fn


class Spec(NamedTuple):
    """What a run's compiled programs depend on; the learning rates are data (in the optimizer state), not part of it."""

    sizes: tuple[int, ...]
    activation: str | tuple[str, ...]
    loss: str
    rule: str
    optimizer: OptimizerConfig  # learning_rate 1.0
    batch: int
    per_example: bool
    replicas: int  # train.replicas: seeds that differ
    rates: int  # how many learning rates
    precision: str
    privacy: tuple | None  # the private run's settings as (key, value) pairs, with its seed and steps per epoch
    dropout: float = 0.0  # model.dropout, model.batch_norm: modal layers after each hidden layer
    batch_norm: bool = False
    penalty: tuple = ()  # (l2, l1, biases) of model.l2 / model.l1 / model.regularize_biases; (): none
    tables: str = ""  # the layers' tables as JSON ([[model.layers]], a preset); "": the MLP of ``sizes``
    input_shape: tuple = ()  # one example's shape, e.g. (28, 28, 1), for ``tables``
    init: str = "auto"  # model.init, model.bias_init: how the dense layers are drawn
    bias_init: float = 0.0


@functools.lru_cache(maxsize=8)
def programs(spec: Spec, plugins: tuple, mesh=None):
    """Model, optimizer and jitted init and epoch for one spec, kept so that runs of one shape in a process
    (sweeps, resume) compile once; the registered plugins are in the key, so re-registering a name rebuilds."""
    del plugins
    private_plan = spec.privacy and dict(spec.privacy)
    private = private_plan and _privacy.dp_config(private_plan, private_plan["seed"])
    model = (from_tables(spec.input_shape, json.loads(spec.tables), spec.sizes[-1], spec.loss, spec.rule) if spec.tables
             else mlp(list(spec.sizes), spec.activation, spec.loss, spec.rule, spec.dropout, spec.batch_norm,
                      spec.init, spec.bias_init))
    optimizer = make_optimizer(spec.optimizer, private and functools.partial(private_optimizer, privacy=private))
    policy = get_policy(spec.precision)  # float32: the model as it is, the program unchanged
    model = model if spec.precision == "float32" else mixed_precision(model, policy)
    model = regularized(model, *spec.penalty) if spec.penalty else model  # in the param dtype, after the casts
    replicas = max(spec.replicas, spec.rates)
    offsets = jnp.arange(replicas) if spec.replicas > 1 else jnp.zeros(replicas, int)

    def init(run_key, rates):
        init_key, _ = jax.random.split(run_key)
        params = policy.cast_to_param(jax.vmap(model.init)(jax.vmap(jax.random.fold_in, (None, 0))(init_key, offsets)))
        opt_state = jax.vmap(optimizer.init)(trainable(params))  # a rule's fixed feedback is not the optimizer's
        opt_state = jax.vmap(fold_noise)(opt_state, offsets)  # private seed replicas: each its own noise
        lr = rates.astype(opt_state.hyperparams["learning_rate"].dtype)
        return params, opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": lr})

    epoch = make_epoch_fn(model, optimizer, spec.batch, per_example=spec.per_example, privacy=private,
                          sample=private and _privacy.sampler(private_plan, private_plan["steps"]), mesh=mesh)
    return model, optimizer, jax.jit(init), epoch, replicas
