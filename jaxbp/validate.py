"""Boundary checks on what a user passes in: ranks and shapes (chex), finiteness, label range.

Shapes are checked always; values (NaN/Inf, label range) only when the arrays are concrete,
i.e. outside ``jit`` -- inside a traced step use ``jax.experimental.checkify`` instead.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

from .errors import DataError, ShapeError


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_shape(name: str, x, expected: tuple, what: str) -> None:
    """Raise ShapeError naming ``expected`` (None = any) and the actual shape of ``x``."""
    try:
        chex.assert_shape(x, expected)
    except AssertionError:
        shown = "(" + ", ".join("n" if s is None else str(s) for s in expected) + ("," if len(expected) == 1 else "") + ")"
        raise ShapeError(f"{name} must have shape {shown} ({what}); got shape {jnp.shape(x)}") from None


def check_finite(name: str, x) -> None:
    if not is_concrete(x):
        return
    values = np.asarray(x)
    if np.issubdtype(values.dtype, np.floating) and not np.all(np.isfinite(values)):
        bad = np.argwhere(~np.isfinite(values))
        raise DataError(
            f"{name} holds {len(bad)} NaN/Inf value(s), first at index {tuple(int(i) for i in bad[0])}; "
            f"clean or impute the data before training"
        )


def check_inputs(x, d: int) -> None:
    """x must be (n, d) floats with no NaN/Inf."""
    check_shape("x", x, (None, d), f"n examples of {d} features")
    check_finite("x", x)


def check_batch(x, y, d: int) -> None:
    check_inputs(x, d)
    n = jnp.shape(x)[0]
    if jnp.ndim(y) == 0 or jnp.shape(y)[0] != n:
        raise ShapeError(f"y must have one row per example of x: x has n={n}, y has shape {jnp.shape(y)}")
    check_finite("y", y)


def check_int_labels(y, k: int) -> None:
    if is_concrete(y):
        labels = np.asarray(y)
        bad = (labels < 0) | (labels >= k)
        if np.any(bad):
            raise DataError(
                f"label {int(labels[bad][0])} is out of range for {k} classes (labels must be 0..{k - 1}); "
                f"{int(bad.sum())} label(s) are out of range -- check num_classes / the last layer size"
            )
