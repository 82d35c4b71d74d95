"""Loss plugins, each fused with its output nonlinearity and written for ONE example.

``value(z, y) -> scalar`` and ``backward(z, y) -> dJ/dz``, with z the last layer's
pre-activation (k,) and y the target (k,). The cross-entropies and mse share the notes' shortcut
dJ/dz = a - y; the hinges (CS231n's SVM) are piecewise linear, with kinks. ``link(z) -> a`` is the
fused nonlinearity, ``encode(y, k) -> (n, k)`` turns a user's labels into float targets at the boundary.
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


BINARY = ("binary_cross_entropy", "binary_hinge")  # one output, the class is z > 0


def output_size(name: str, num_classes: int) -> int:
    """The last layer's width for ``num_classes`` classes: 1 for a binary loss, else one per class."""
    return 1 if name in BINARY else num_classes


def class_targets(y, k: int, name: str = "this loss") -> jax.Array:
    """Int labels (n,) -> one-hot (n, k); (n, k) class weights (one-hot or soft, >= 0) pass through."""
    y = jnp.asarray(y)
    if y.ndim == 1 and jnp.issubdtype(y.dtype, jnp.integer):
        check_int_labels(y, k)
        return jax.nn.one_hot(y, k, dtype=jnp.result_type(float))
    if y.ndim == 1:
        raise ShapeError(f"{name} labels of shape {y.shape} must be ints 0..{k - 1}, got dtype {y.dtype}")
    targets = float_targets(y, k)
    check_range(f"{name} target", targets, 0.0, jnp.inf, "class weights must be >= 0 (soft labels)")
    return targets


def binary_targets(y, k: int, name: str = "this loss") -> jax.Array:
    """0/1 labels (n,) or (n, 1) -> (n, 1) floats in [0, 1]."""
    y = jnp.asarray(y)
    if y.ndim == 1:
        y = y[:, None]
    if jnp.issubdtype(y.dtype, jnp.integer):
        check_int_labels(y, 2)
    targets = float_targets(y, k)
    check_range(f"{name} target", targets, 0.0, 1.0, "targets are probabilities in [0, 1]")
    return targets


def value_targets(y, k: int) -> jax.Array:
    """mse: int class labels (n,) -> one-hot (the notes' squared error on a classifier); floats as given."""
    y = jnp.asarray(y)
    if y.ndim == 1 and jnp.issubdtype(y.dtype, jnp.integer) and k > 1:
        return class_targets(y, k, "mse")
    return float_targets(y, k)


register_loss(
    "binary_cross_entropy",
    # J = -(y log a + (1 - y) log(1 - a)) with a = sigma(z), as log-sigmoids: softplus(z) - y z
    value=lambda z, y: jnp.sum(jax.nn.softplus(z) - y * z),
    # dJ/dz = a - y, written as (1 - y) sigma(z) - y sigma(-z) so it does not round to 0 in float32
    backward=lambda z, y: (1 - y) * jax.nn.sigmoid(z) - y * jax.nn.sigmoid(-z),
    link=jax.nn.sigmoid,
    encode=lambda y, k: binary_targets(y, k, "binary_cross_entropy"),
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
    backward=lambda z, y: _at_least_f32(lambda z, y: jnp.exp(z - _log_sum_exp(z)) * jnp.sum(y) - y, z, y),
    link=jax.nn.softmax,
    encode=lambda y, k: class_targets(y, k, "softmax_cross_entropy"),
)
register_loss(
    "mse",
    value=lambda z, y: 0.5 * jnp.sum((z - y) ** 2),  # J = 1/2 ||a - y||^2, a = z
    backward=lambda z, y: z - y,  # dJ/dz = a - y
    encode=value_targets,
)


register_loss(
    "huber",
    # J = sum_k 1/2 r_k^2 where |r_k| <= 1, |r_k| - 1/2 beyond (r = a - y, a = z): mse near the target, l1 far off
    value=lambda z, y: jnp.sum(jnp.where(jnp.abs(z - y) <= 1.0, 0.5 * (z - y) ** 2, jnp.abs(z - y) - 0.5)),
    # dJ/dz = r where |r| <= 1, sign(r) beyond: a - y clipped to [-1, 1]
    backward=lambda z, y: jnp.clip(z - y, -1.0, 1.0),
    encode=value_targets,
    smooth=False,  # J'' jumps at |r| = 1: finite differences in the kink band
)


def _at_least_f32(backward, z, y) -> jax.Array:
    """``backward`` computed in float32 (or wider) and returned in z's dtype. In bfloat16, a - y rounds the true
    class's a = 1 - e to 1 while the other classes keep their small a: the output gradient no longer sums to
    zero, every output bias drifts the same way, and Adam (steps of a fixed size) lets the logits grow until
    bfloat16 cannot tell the classes apart. In float32 the true class keeps its -e."""
    wide = jnp.promote_types(z.dtype, jnp.float32)
    return backward(z.astype(wide), y.astype(wide)).astype(z.dtype)


def _margins(z) -> jax.Array:
    """m[c, j] = z_j - z_c + 1: class j's margin violation when c is the true class (CS231n's delta = 1)."""
    return z[None, :] - z[:, None] + 1.0


def _off_diagonal(z) -> jax.Array:
    return 1.0 - jnp.eye(z.shape[0], dtype=z.dtype)


def _multiclass_hinge_backward(z, y):
    active = (_margins(z) > 0) * _off_diagonal(z)  # M[c, j] = 1 where the margin of j against c is violated
    # dJ/dz_j = sum_c y_c M[c, j]  (z_j pushed down)  -  y_j sum_i M[j, i]  (the true class pushed up by each)
    return y @ active - y * jnp.sum(active, axis=1)


register_loss(
    "multiclass_hinge",
    # J = sum_c y_c sum_{j != c} max(0, z_j - z_c + 1): CS231n's SVM loss for one-hot y, its expectation for soft y
    value=lambda z, y: jnp.sum(y[:, None] * _off_diagonal(z) * jax.nn.relu(_margins(z))),
    backward=_multiclass_hinge_backward,
    encode=lambda y, k: class_targets(y, k, "multiclass_hinge"),
    smooth=False,
)
register_loss(
    "binary_hinge",
    # J = max(0, 1 - s z) with the sign s = 2y - 1 in {-1, +1} of a 0/1 label y; the class is z > 0
    value=lambda z, y: jnp.sum(jax.nn.relu(1.0 - (2 * y - 1) * z)),
    # dJ/dz = -s where the margin s z < 1 is violated, else 0 (0 at the kink itself, as jax.grad's relu)
    backward=lambda z, y: jnp.where((2 * y - 1) * z < 1.0, -(2 * y - 1), 0.0).astype(z.dtype),
    encode=lambda y, k: binary_targets(y, k, "binary_hinge"),
    smooth=False,
)
