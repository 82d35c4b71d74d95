"""The compiled programs of a run: model, optimizer, jitted init and epoch, kept per spec so a shape compiles once."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp

from ..networks import mlp
from ..plugins.rules import trainable
from ..privacy import fold_noise, private_optimizer
from ..privacy import training as _privacy
from ..scale.precision import get_policy, mixed_precision
from .config import make_optimizer
from .epochs import make_epoch_fn


@functools.lru_cache(maxsize=8)
def programs(spec: str, plugins: tuple, mesh=None):
    """Model, optimizer and jitted init and epoch for one spec (learning rates are data, not part of it), kept
    so that runs of one shape in a process (sweeps, resume) compile once; the registered plugins are in the
    key, so re-registering a name rebuilds."""
    del plugins
    spec = json.loads(spec)
    private = spec["privacy"] and _privacy.dp_config(spec["privacy"], spec["privacy"]["seed"])
    model = mlp(spec["sizes"], spec["activation"], spec["loss"], spec["rule"])
    optimizer = make_optimizer(spec["optimizer"], private and functools.partial(private_optimizer, privacy=private))
    policy = get_policy(spec["precision"])  # float32: the model as it is, the program unchanged
    model = model if spec["precision"] == "float32" else mixed_precision(model, policy)
    replicas = max(spec["replicas"], spec["rates"])
    offsets = jnp.arange(replicas) if spec["replicas"] > 1 else jnp.zeros(replicas, int)

    def init(run_key, rates):
        init_key, _ = jax.random.split(run_key)
        params = policy.cast_to_param(jax.vmap(model.init)(jax.vmap(jax.random.fold_in, (None, 0))(init_key, offsets)))
        opt_state = jax.vmap(optimizer.init)(trainable(params))  # a rule's fixed feedback is not the optimizer's
        opt_state = jax.vmap(fold_noise)(opt_state, offsets)  # private seed replicas: each its own noise
        lr = rates.astype(opt_state.hyperparams["learning_rate"].dtype)
        return params, opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": lr})

    epoch = make_epoch_fn(model, optimizer, spec["batch"], per_example=spec["per_example"], privacy=private,
                          sample=private and _privacy.sampler(spec["privacy"], spec["privacy"]["steps"]), mesh=mesh)
    return model, optimizer, jax.jit(init), epoch, replicas
