"""DP-SGD from the hand-written backward: per-example norms from each layer's cache, no per-example gradient.

The book-keeping method (Bu et al. 2023, on ghost norms: Goodfellow 2015, Li et al. 2022):

1. one forward pass keeps every layer's cache; the loss gives each example's own error dJ_i/dz (not / n);
2. walking back, each layer gets its incoming errors g_i and adds example i's squared gradient norm --
   for a dense layer ||dz_i x_i^T||^2 + ||dz_i||^2 = ||dz_i||^2 (||x_i||^2 + 1), from the cache alone;
3. the clip factors c_i = min(1, C / ||g_i||) over ALL layers (global, not per layer);
4. the layers' backwards run once more on c_i g_i: each batch rule sums over examples, so a dense layer
   gives sum_i c_i dz_i x_i^T = (c * dZ)^T X, one matmul -- no (n, d_out, d_in) array is built;
5. ``private_optimizer`` adds N(0, (sigma C)^2) from a key in its optax state and divides by the
   expected batch size B (privacy/noise.py: drawn block by block on the CPU, all at once on accelerators).

Step 4 keeps only two layers' errors from step 2: the output layer's and the first layer's. The
backward is linear in the errors, so the layers between get theirs by walking down again from
c * (output errors); only the first layer's input gradient, the costliest one, is never recomputed.
The extra work is the input-gradient matmuls of layers 3..L: for the 784-512-512-10 MLP 0.3% of a
step's FLOPs. The private step's temporary memory is then 1.20x an ordinary step's (``jaxbp bench
--suite privacy``); keeping every layer's errors measured 1.41x.

A layer without a ``per_example_sq_norms`` rule falls back to vmapping its single-example backward and
taking the norm of each example's gradient: correct, but it builds that layer's per-example gradients.
Layers must treat examples independently (the batch rule is a sum over examples) and keep the batch
axis first in every cache leaf. Dropout runs in train mode with the batched step's masks (example i's is
row i); batch norm mixes the examples (``Layer.mixes_examples``) and is refused.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from ..errors import ConfigError
from ..networks import Model
from ..plugins.layers import Layer
from ..plugins.losses import get_loss
from ..plugins.modes import refuse_mixing
from ..plugins.rules import join, layer_params, split
from ..boundary.validate import check_batch
from .noise import DPConfig, check_privacy, has_noise


def _fallback_sq_norms(layer: Layer) -> Callable:
    """Squared norm of each example's gradient, from the single-example backward vmapped (builds them)."""

    def one(params, cache, g):
        grads = layer.backward(params, cache, g)[0]
        return sum(jnp.sum(leaf * leaf) for leaf in jax.tree.leaves(grads))

    return jax.vmap(one, in_axes=(None, 0, 0))


def sq_norm_rule(layer: Layer) -> Callable:
    return layer.per_example_sq_norms or _fallback_sq_norms(layer)


def _scale_rows(c, g):
    return c.reshape(c.shape + (1,) * (g.ndim - 1)) * g


def _walk_back(model: Model, params, x, y, mask):
    """Forward, then back with per-example errors.

    Returns (losses (n,), caches, the output layer's errors, the first layer's errors, sq norms (n,), the params
    carried on).
    """
    if not model.layers or model.train_forward is None:
        raise ConfigError("private training needs a model built by jaxbp.network or jaxbp.mlp (it walks their layers)")
    refuse_mixing(model.layers, "private training")  # batch norm: no example has a gradient of its own
    check_batch(x, y, model.input_shape)
    loss = get_loss(model.loss_name)
    z, caches, carried = model.train_forward(params, x)  # with modes: the batched train step's masks, row i
    params = layer_params(params)
    t = model.targets(y).astype(z.dtype)
    losses = jax.vmap(loss.value)(z, t)
    g = jax.vmap(loss.backward)(z, t)  # dJ_i/dz for each example, not divided by n
    if mask is not None:
        g = _scale_rows(mask.astype(g.dtype), g)  # padding rows: zero error, zero norm, zero gradient
    top, sq = g, jnp.zeros(x.shape[0], g.dtype)
    for i in reversed(range(len(caches))):
        layer, p = model.layers[i], params[i]
        sq = sq + sq_norm_rule(layer)(p, caches[i], g)  # ||g_i||^2 summed over layers
        if i:  # dJ/dx down to the layer below (the weight sums go unused: XLA drops them); none below the first
            g = layer.backward(p, caches[i], g)[1]
    return losses, caches, top, g, sq, carried


def per_example_norms(model: Model, params, x, y) -> jax.Array:
    """Each example's global gradient norm ||g_i|| (n,), from the layers' caches (a model with modes: in train mode,
    with the masks of the step ``params`` would take next)."""
    return jnp.sqrt(_walk_back(model, params, x, y, None)[4])


def _clipped_grads(model: Model, params, caches, top, first, c) -> list:
    """sum_i c_i g_i per layer: down from c * (output errors), the first layer on c * (its kept errors)."""
    grads, g = [None] * len(caches), _scale_rows(c.astype(top.dtype), top)
    for i in reversed(range(1, len(caches))):
        grads[i], g = model.layers[i].backward(params[i], caches[i], g)  # (c * dZ)^T X; layer 1's dJ/dx goes unused
    grads[0] = model.layers[0].backward(params[0], caches[0], _scale_rows(c.astype(first.dtype), first))[0]
    return grads


def _clipped_sum_carried(model: Model, clip_norm: float) -> Callable:
    """``clipped_sum``'s function, which also returns the params carried on (new state, next key)."""

    def value_and_sum(params, x, y, mask=None):
        losses, caches, top, first, sq, carried = _walk_back(model, params, x, y, mask)
        norms = jnp.sqrt(sq)
        c = clip_norm / jnp.maximum(norms, clip_norm)  # c_i = min(1, C / ||g_i||), 1 at ||g_i|| = 0
        grads = _clipped_grads(model, layer_params(params), caches, top, first, c)
        weights = jnp.ones_like(losses) if mask is None else mask.astype(losses.dtype)
        loss = jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1)
        return loss, grads, norms, carried

    return value_and_sum


def clipped_sum(model: Model, clip_norm: float) -> Callable:
    """``(params, x, y, mask=None) -> (mean loss over the real rows, sum_i c_i g_i, norms (n,))``; a model with
    modes runs in train mode, with the masks of the step ``params`` would take next."""
    value_and_sum = _clipped_sum_carried(model, clip_norm)
    return lambda params, x, y, mask=None: value_and_sum(params, x, y, mask)[:3]


def private_step_fn(model: Model, optimizer: optax.GradientTransformation, privacy: DPConfig) -> Callable:
    """The pure DP-SGD step ``(params, opt_state, x, y, mask=None) -> (params, opt_state, loss)``.

    ``optimizer`` must come from ``private_optimizer(..., privacy)`` (it adds the noise and divides by B);
    ``mask`` marks the real rows of a fixed-capacity Poisson batch.
    """
    check_privacy(privacy)
    value_and_sum = _clipped_sum_carried(model, privacy.clip_norm)

    def step(params, opt_state, x, y, mask=None):
        if not has_noise(opt_state):
            raise ConfigError("a private step needs the noise in its optimizer: build it with "
                              "jaxbp.private_optimizer(optimizer, privacy) and init that one")
        loss, grads, _, carried = value_and_sum(params, x, y, mask)  # hand-written, never jax.grad
        if model.penalty is not None:  # after clipping: B x the penalty's gradient, which the noise step divides by B
            value_of, grad_of = model.penalty
            loss = loss + value_of(params)
            grads = jax.tree.map(lambda g, e: g + privacy.expected_batch_size * e.astype(g.dtype), grads, grad_of(params))
        trained, fixed = split(carried)  # a model with modes: the layers' state and the next key beside the optimizer
        updates, opt_state = optimizer.update(grads, opt_state, trained)
        return join(optax.apply_updates(trained, updates), fixed), opt_state, loss

    return step
