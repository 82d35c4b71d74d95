"""Loss plugins, each fused with its output nonlinearity and written for ONE example.

``value(z, y) -> scalar`` and ``backward(z, y) -> dJ/dz``, with z the last layer's
pre-activation (k,) and y the target (k,). All three built-ins share the notes' shortcut
dJ/dz = a - y. ``link(z) -> a`` is the fused nonlinearity, ``encode(y, k) -> (n, k)``
turns a user's labels into float targets at the boundary.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ..errors import ShapeError
from .registry import Registry, require_callable
from ..boundary.validate import check_int_labels, check_range, check_shape


def float_targets(y, k: int) -> jax.Array:
    """(n, k) float targets as given; (n,) is accepted when k == 1."""
    y = jnp.asarray(y)
    if y.ndim == 1 and k == 1:
        y = y[:, None]
    check_shape("y", y, (None, k), f"one row of {k} float target(s) per example")
    return y.astype(jnp.result_type(float))


class Loss(NamedTuple):
    """A per-example loss J(z, y) with dJ/dz = backward(z, y); a = link(z) is the prediction."""

    value: Callable[[jax.Array, jax.Array], jax.Array]
    backward: Callable[[jax.Array, jax.Array], jax.Array]
    link: Callable[[jax.Array], jax.Array] = lambda z: z
    encode: Callable[[jax.Array, int], jax.Array] = float_targets
    smooth: bool = True  # False: a kink (e.g. hinge), checked in the 1e-4 finite-difference band


LOSSES: Registry[Loss] = Registry("loss", "jaxbp.register_loss(name, value=..., backward=...)")


def register_loss(name, *, value, backward, link=None, encode=None, smooth=True, replace=False) -> Loss:
    """Register a per-example loss: ``value(z, y) -> scalar``, ``backward(z, y) -> dJ/dz``."""
    require_callable(name, value=value, backward=backward, link=link or (lambda z: z), encode=encode or float_targets)
    loss = Loss(value, backward, link or (lambda z: z), encode or float_targets, smooth)
    return LOSSES.register(name, loss, replace=replace)


def get_loss(name: str) -> Loss:
    return LOSSES.get(name)


def _class_targets(y, k: int) -> jax.Array:
    """Int labels (n,) -> one-hot (n, k); (n, k) probabilities pass through."""
    y = jnp.asarray(y)
    if y.ndim == 1 and jnp.issubdtype(y.dtype, jnp.integer):
        check_int_labels(y, k)
        return jax.nn.one_hot(y, k, dtype=jnp.result_type(float))
    if y.ndim == 1:
        raise ShapeError(f"softmax_cross_entropy labels of shape {y.shape} must be ints 0..{k - 1}, got dtype {y.dtype}")
    targets = float_targets(y, k)
    check_range("softmax_cross_entropy target", targets, 0.0, jnp.inf, "class weights must be >= 0 (soft labels)")
    return targets


def _binary_targets(y, k: int) -> jax.Array:
    """0/1 labels (n,) or (n, 1) -> (n, 1) floats."""
    y = jnp.asarray(y)
    if y.ndim == 1:
        y = y[:, None]
    if jnp.issubdtype(y.dtype, jnp.integer):
        check_int_labels(y, 2)
    targets = float_targets(y, k)
    check_range("binary_cross_entropy target", targets, 0.0, 1.0, "targets are probabilities in [0, 1]")
    return targets


register_loss(
    "binary_cross_entropy",
    # J = -(y log a + (1 - y) log(1 - a)) with a = sigma(z), as log-sigmoids: softplus(z) - y z
    value=lambda z, y: jnp.sum(jax.nn.softplus(z) - y * z),
    # dJ/dz = a - y, written as (1 - y) sigma(z) - y sigma(-z) so it does not round to 0 in float32
    backward=lambda z, y: (1 - y) * jax.nn.sigmoid(z) - y * jax.nn.sigmoid(-z),
    link=jax.nn.sigmoid,
    encode=_binary_targets,
)


def _log_sum_exp(z) -> jax.Array:
    """log sum_k exp z_k, shifted by max z so exp never overflows (the shift's gradient is exactly 0)."""
    shift = jax.lax.stop_gradient(jnp.max(z))
    return shift + jnp.log(jnp.sum(jnp.exp(z - shift)))


register_loss(
    "softmax_cross_entropy",
    # J = -sum_k y_k log a_k with log a = z - lse(z), a = softmax(z): J = sum(y) lse(z) - y.z
    value=lambda z, y: jnp.sum(y) * _log_sum_exp(z) - jnp.sum(y * z),
    # dJ/dz = a sum(y) - y, which is the notes' a - y whenever y is a distribution (one-hot or soft)
    backward=lambda z, y: jnp.exp(z - _log_sum_exp(z)) * jnp.sum(y) - y,
    link=jax.nn.softmax,
    encode=_class_targets,
)
register_loss(
    "mse",
    value=lambda z, y: 0.5 * jnp.sum((z - y) ** 2),  # J = 1/2 ||a - y||^2, a = z
    backward=lambda z, y: z - y,  # dJ/dz = a - y
)
