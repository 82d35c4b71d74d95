"""Activation plugins: ``forward(z) -> a`` and its VJP ``backward(z, a, g) -> dJ/dz`` with g = dJ/da.

Each backward sits beside its forward with the derivative as a comment. Derivatives are
computed from ``z`` where ``a`` would round (e.g. sigma' = a(1 - a) is 0 in float32 once
a rounds to 1, though the true value ~e^-|z| is representable).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ..errors import ConfigError, did_you_mean
from .registry import Registry, require_callable


class Activation(NamedTuple):
    """An activation: a = forward(z); dJ/dz = backward(z, a, dJ/da).

    ``smooth=False`` marks a kink (checked in the CS231n 1e-4 finite-difference band);
    ``init`` is "he" for relu-like activations, "glorot" otherwise.
    """

    forward: Callable[[jax.Array], jax.Array]
    backward: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
    smooth: bool = True
    init: str = "glorot"


ACTIVATIONS: Registry[Activation] = Registry("activation", "jaxbp.register_activation(name, forward=..., backward=...)")


def register_activation(name, *, forward, backward, smooth=True, init="glorot", replace=False) -> Activation:
    """Register ``forward(z)`` and ``backward(z, a, g) -> g * da/dz`` (a VJP) under ``name``."""
    if init not in ("he", "glorot"):
        raise ConfigError(f"activation {name!r}: init must be 'he' (relu-like) or 'glorot' (others), got "
                          f"{init!r}{did_you_mean(init, ('he', 'glorot'))}")
    require_callable(name, forward=forward, backward=backward)
    return ACTIVATIONS.register(name, Activation(forward, backward, smooth, init), replace=replace)


def get_activation(name: str) -> Activation:
    return ACTIVATIONS.get(name)


def _sigmoid_prime(z):
    return jax.nn.sigmoid(z) * jax.nn.sigmoid(-z)  # a(1 - a), without the rounding of 1 - a


def _tanh_prime(z):
    e = jnp.exp(-2.0 * jnp.abs(z))
    return 4.0 * e / (1.0 + e) ** 2  # 1 - a^2 = sech^2 z, without the rounding of 1 - a^2


def _normal_cdf(z):
    return 0.5 * jax.lax.erfc(-z / jnp.sqrt(2.0).astype(z.dtype))


LEAKY_SLOPE = 0.01

register_activation(
    "identity",
    forward=lambda z: z,
    backward=lambda z, a, g: g,  # da/dz = 1
)
register_activation(
    "sigmoid",
    forward=jax.nn.sigmoid,
    backward=lambda z, a, g: g * _sigmoid_prime(z),  # da/dz = a(1 - a)
)
register_activation(
    "tanh",
    forward=jnp.tanh,
    backward=lambda z, a, g: g * _tanh_prime(z),  # da/dz = 1 - a^2
)
register_activation(
    "relu",
    forward=jax.nn.relu,  # jnp.maximum(z, 0), whose autodiff takes 1/2 at z = 0: jax.nn.relu's takes 0, as here
    backward=lambda z, a, g: jnp.where(z > 0, g, 0),  # da/dz = [z > 0]
    smooth=False,
    init="he",
)
register_activation(
    "leaky_relu",
    forward=lambda z: jnp.where(z > 0, z, LEAKY_SLOPE * z),
    backward=lambda z, a, g: jnp.where(z > 0, g, LEAKY_SLOPE * g),  # da/dz = 1 or 0.01
    smooth=False,
    init="he",
)
register_activation(
    "elu",
    forward=lambda z: jnp.where(z > 0, z, jnp.expm1(jnp.minimum(z, 0))),
    backward=lambda z, a, g: jnp.where(z > 0, g, g * jnp.exp(jnp.minimum(z, 0))),  # da/dz = 1 or e^z
    smooth=False,  # C1, but d2a/dz2 jumps at 0: wide finite-difference stencils straddling 0 are off by O(h)
    init="he",
)
register_activation(
    "softplus",
    forward=jax.nn.softplus,
    backward=lambda z, a, g: g * jax.nn.sigmoid(z),  # da/dz = sigma(z)
)
register_activation(
    "gelu",
    forward=lambda z: z * _normal_cdf(z),
    backward=lambda z, a, g: g * (_normal_cdf(z) + z * jnp.exp(-0.5 * z * z) / jnp.sqrt(2 * jnp.pi).astype(z.dtype)),
    # da/dz = Phi(z) + z phi(z)
    init="he",
)
register_activation(
    "softmax",
    forward=lambda z: jax.nn.softmax(z, axis=-1),
    backward=lambda z, a, g: a * (g - jnp.sum(g * a, axis=-1, keepdims=True)),  # J^T g = a * (g - <g, a>)
)
