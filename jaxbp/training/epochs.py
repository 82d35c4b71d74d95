"""One training epoch as one jitted call: shuffle, every full batch through the fused ``lax.scan`` step, evaluate.

The ``n % B`` examples left over are dropped, so every step has one shape and nothing recompiles.
Replicas are a leading K axis on params and optimizer state, vmapped; the batches are shared.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from . import guard as _guard
from ..networks import Model
from ..scale.sharded import sharded_epoch
from .steps import scan_steps, scores, train_step_fn


def epoch_batches(key: jax.Array, n: int, batch_size: int) -> jax.Array:
    """Indices (n // B, B) of one shuffled epoch; the ragged n % B examples left over are dropped."""
    steps = n // batch_size
    return jax.random.permutation(key, n)[: steps * batch_size].reshape(steps, batch_size)


def make_epoch_fn(model: Model, optimizer: optax.GradientTransformation, batch_size: int, *,
                  per_example: bool = False, privacy=None, sample=None, mesh=None) -> Callable:
    """One jitted epoch for stacked replicas: shuffle, all full batches in one scan, then evaluate.

    A private run (``privacy``) may ``sample(key, n) -> (indices, masks, dropped)`` its batches instead.
    """
    run_steps = scan_steps(train_step_fn(model, optimizer, per_example=per_example, privacy=privacy))

    def one(params, opt_state, batches, x, y, x_test, y_test):
        params, opt_state, losses = run_steps(params, opt_state, *batches)
        metrics = {"batch_loss": jnp.mean(losses),
                   **{f"train_{k}": v for k, v in scores(model, params, x, y).items()},
                   **{f"test_{k}": v for k, v in scores(model, params, x_test, y_test).items()},
                   "params_finite": _guard.all_finite(params)}  # divergence, in the epoch's one host sync
        return params, opt_state, metrics

    batches = sample or (lambda key, n: (epoch_batches(key, n, batch_size),))  # (order, [masks, dropped])
    if mesh is not None:  # the batches split over the data axis, the replicas over the replica axis
        return sharded_epoch(one, batches, mesh)

    def epoch(params, opt_state, shuffle_key, index, x, y, x_test, y_test):
        order, *masks = batches(jax.random.fold_in(shuffle_key, index), x.shape[0])
        shared = (None,) * 5
        params, opt_state, metrics = jax.vmap(one, in_axes=(0, 0, *shared))(
            params, opt_state, (x[order], y[order], *masks[:1]), x, y, x_test, y_test)
        return params, opt_state, {**metrics, "dropped": masks[1]} if masks else metrics

    return jax.jit(epoch)
