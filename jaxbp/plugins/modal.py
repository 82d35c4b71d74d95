"""Layers with modes: dropout (a key in train mode) and batch norm (batch statistics and running averages).

Both are ``modal`` layers (plugins/modes.py): ``forward(params, x, ctx) -> (y, cache, new_state)``; the
backward is the plain ``backward(params, cache, dJ/dy)``, the mode's decisions read from the cache.
Both work on any per-example shape: batch norm normalizes each channel (the last axis) over the batch
and any spatial axes, as for NHWC images.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..errors import ConfigError
from .layers import Layer, register_layer


def _mask_bits(rate: float) -> tuple[int, int]:
    """(b, kept): each unit is kept when its b random bits, read as an integer, are below ``kept``, so
    P(keep) = kept / 2^b. b is the fewest bits that hold 1 - rate exactly (1 bit for rate 0.5, 2 for 0.25
    and 0.75, 4 for 0.1875, 8 for 30/256); a rate that needs more (0.1) takes 16 bits and is held to 1.5e-5."""
    for bits in (1, 2, 4, 8):
        if ((1 - rate) * 2**bits).is_integer():
            return bits, int((1 - rate) * 2**bits)
    return 16, min(max(round((1 - rate) * 2**16), 1), 2**16 - 1)


def _keep(key, shape, bits: int, kept: int) -> jax.Array:
    """Bernoulli(kept / 2^bits) draws, 32 / bits units from each random 32-bit word: the draw is most of
    dropout's cost (threefry's), so a mask of rate 0.5 costs 1/32 of jax.random.bernoulli's words. Word j is
    threefry of counter j (jax_threefry_partitionable, JAX's default), so a batch padded at the end (a private
    batch's capacity rounded up for a mesh) keeps its rows' masks."""
    size, per_word = math.prod(shape), 32 // bits
    words = jax.random.bits(key, (-(-size // per_word),), jnp.uint32)
    fields = (words[:, None] >> (jnp.arange(per_word, dtype=jnp.uint32) * bits)) & jnp.uint32(2**bits - 1)
    return fields.reshape(-1)[:size].reshape(shape) < jnp.uint32(kept)


def dropout(rate: float) -> Layer:
    """Inverted dropout: in train mode y = x * m / p, m ~ Bernoulli(p), p = 1 - rate (exact for rates that are
    multiples of 1/256, else to 16 bits: rate 0.1 drops with probability 0.1 +- 8e-6; E[y] = x exactly);
    in eval mode y = x."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ConfigError(f"dropout rate must be a number in [0, 1), the probability of dropping a unit; got {rate!r}")
    rate = float(rate)
    bits, kept = _mask_bits(rate)

    def init(key, shape):
        del key
        return shape, {}  # nothing trained; the same shape out

    def forward(params, x, ctx):
        if not ctx.train or rate == 0:
            return x, None, ctx.state  # the identity (eval mode, or nothing to drop)
        keep = _keep(ctx.key, x.shape, bits, kept)  # the mask, drawn once from this step's key
        scale = jnp.where(keep, jnp.asarray(2**bits / kept, x.dtype), jnp.zeros((), x.dtype))  # 1 / P(keep)
        return x * scale, scale, ctx.state

    def backward(params, cache, g):
        # dJ/dx = dJ/dy * m / p: the cached mask, never drawn again; the identity when none was drawn
        return {}, g if cache is None else g * cache

    return Layer(init, forward, backward, shaped=True, modal=True)


class _Train(NamedTuple):
    xhat: jax.Array
    inv_std: jax.Array


class _Eval(NamedTuple):
    xhat: jax.Array
    inv_std: jax.Array


def _channels(shape) -> int:
    return shape if isinstance(shape, int) else shape[-1]


def batch_norm(momentum: float = 0.9, eps: float = 1e-5) -> Layer:
    """y = gamma * xhat + beta per channel (the last axis). Train mode: xhat from the batch's mean and variance
    (over every axis but the last), and running = momentum * running + (1 - momentum) * batch statistic;
    eval mode: xhat from the running averages, an affine map."""
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    if not number(momentum) or not 0 <= momentum < 1:
        raise ConfigError(f"batch_norm momentum must be a number in [0, 1) (the running averages' decay); "
                          f"got {momentum!r}")
    if not number(eps) or not eps > 0:
        raise ConfigError(f"batch_norm eps must be a number > 0 (it keeps 1/sqrt(var + eps) finite); got {eps!r}")

    def init(key, shape):
        del key
        c = _channels(shape)
        return shape, {"gamma": jnp.ones((c,)), "beta": jnp.zeros((c,))}

    def init_state(shape):
        c = _channels(shape)
        return {"mean": jnp.zeros((c,)), "var": jnp.ones((c,))}

    def forward(params, x, ctx):
        axes = tuple(range(x.ndim - 1))  # the batch and spatial axes: statistics per channel
        if ctx.train:
            mean = jnp.mean(x, axis=axes)
            centred = x - mean
            var = jnp.mean(centred * centred, axis=axes)  # the biased batch variance, as used to normalize
            new_state = {k: (momentum * ctx.state[k] + (1 - momentum) * v).astype(ctx.state[k].dtype)
                         for k, v in (("mean", mean), ("var", var))}
            inv_std = jax.lax.rsqrt(var + eps)
            xhat, cache = centred * inv_std, _Train
        else:
            inv_std = jax.lax.rsqrt(ctx.state["var"].astype(x.dtype) + eps)
            xhat, cache, new_state = (x - ctx.state["mean"].astype(x.dtype)) * inv_std, _Eval, ctx.state
        return params["gamma"] * xhat + params["beta"], cache(xhat, inv_std), new_state

    def backward(params, cache, g):
        axes = tuple(range(g.ndim - 1))
        grads = {"gamma": jnp.sum(g * cache.xhat, axis=axes), "beta": jnp.sum(g, axis=axes)}  # dJ/dgamma, dJ/dbeta
        gx = g * params["gamma"]  # dJ/dxhat
        if isinstance(cache, _Eval):
            return grads, gx * cache.inv_std  # dJ/dx = gamma / sqrt(var_run + eps) * dJ/dy: the statistics are constants
        # dJ/dx = inv_std * (gx - mean(gx) - xhat * mean(gx * xhat)): through the batch's mean and variance (CS231n)
        dx = cache.inv_std * (gx - jnp.mean(gx, axis=axes) - cache.xhat * jnp.mean(gx * cache.xhat, axis=axes))
        return grads, dx

    return Layer(init, forward, backward, shaped=True, init_state=init_state, modal=True, mixes_examples=True)


register_layer("dropout", dropout, example={"rate": 0.5})
register_layer("batch_norm", batch_norm, example={}, input_shape=(3, 3, 2))  # NHWC: over batch and space
