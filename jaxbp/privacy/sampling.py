"""Poisson sampling with static shapes: each example joins each batch independently with rate q.

DP-SGD's accounting (``PoissonSampledDpEvent``) assumes exactly this; shuffled fixed-size batches
are a different mechanism. To keep one compiled step, a batch is a fixed ``capacity`` of rows plus a
mask: the sampled examples first, padding after. Should more than ``capacity`` be sampled, the extra
ones are dropped and counted (the capacity sits 5 standard deviations above q n, so that is rare).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def capacity(n: int, q: float, sigmas: float = 5.0) -> int:
    """Rows per batch: q n plus ``sigmas`` standard deviations of the Binomial(n, q) batch size, at most n."""
    mean = q * n
    return int(min(n, math.ceil(mean + sigmas * math.sqrt(mean * (1 - q)) + 1)))


def poisson_batches(key: jax.Array, n: int, q: float, steps: int, rows: int):
    """``steps`` Poisson batches of ``n`` examples: indices (steps, rows), mask (steps, rows), dropped (scalar)."""

    def one(key):
        chosen = jax.random.bernoulli(key, q, (n,))
        count = jnp.sum(chosen)
        index = jnp.nonzero(chosen, size=rows, fill_value=0)[0]  # the chosen examples in order, then padding
        return index, jnp.arange(rows) < count, jnp.maximum(count - rows, 0)

    index, mask, dropped = jax.vmap(one)(jax.random.split(key, steps))
    return index, mask, jnp.sum(dropped)
