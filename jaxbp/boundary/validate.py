"""Boundary checks on what a user passes in: ranks and shapes (chex), finiteness, label range.

Shapes are checked always; values (NaN/Inf, label range, target range) when the arrays are
concrete, i.e. outside ``jit``. Inside a step traced under ``traced_checks()`` (what
``make_train_step(..., checks=True)`` does) the same checks become ``checkify.check`` s with the
same messages; elsewhere inside ``jit`` they cost nothing and check nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import operator

import chex
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ConfigError, DataError, ShapeError

_TRACED_CHECKS = contextvars.ContextVar("jaxbp_traced_checks", default=False)


@contextlib.contextmanager
def traced_checks():
    """Trace the value checks into the program as ``checkify.check`` s (wrap the step in ``checkify``)."""
    token = _TRACED_CHECKS.set(True)
    try:
        yield
    finally:
        _TRACED_CHECKS.reset(token)


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_values(bad, message: str, values=None) -> None:
    """Raise DataError(message) if any entry of the bool array ``bad`` is set; ``{count}``, ``{first}`` and
    ``{value}`` in ``message`` become the number of bad entries, the first one's index and its entry of
    ``values``. Inside a step traced under ``traced_checks()`` it is a ``checkify.check`` instead."""
    if is_concrete(bad):
        bad = np.asarray(bad)
        if np.any(bad):
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            value = None if values is None else np.asarray(values)[first]
            raise DataError(message.format(count=int(bad.sum()), first=first, value=value))
    elif _TRACED_CHECKS.get():
        from jax.experimental import checkify

        index = jnp.unravel_index(jnp.argmax(bad.ravel()), bad.shape)
        names = {f"i{axis}": i for axis, i in enumerate(index)}
        shown = "(" + ", ".join("{" + name + "}" for name in names) + ("," if len(names) == 1 else "") + ")"
        value = {} if values is None else {"value": jnp.asarray(values)[index]}
        checkify.check(~jnp.any(bad), message.replace("{first}", shown), count=jnp.sum(bad), **names, **value)


def check_shape(name: str, x, expected: tuple, what: str) -> None:
    """Raise ShapeError naming ``expected`` (None = any) and the actual shape of ``x``."""
    try:
        chex.assert_shape(x, expected)
    except AssertionError:
        shown = "(" + ", ".join("n" if s is None else str(s) for s in expected) + ("," if len(expected) == 1 else "") + ")"
        raise ShapeError(f"{name} must have shape {shown} ({what}); got shape {jnp.shape(x)}") from None


def _array(x):
    """``x`` as numpy when concrete, else as a traced jax array (checked only under ``traced_checks``)."""
    if is_concrete(x):
        return np, np.asarray(x)
    return (jnp, jnp.asarray(x)) if _TRACED_CHECKS.get() else (None, None)


def check_finite(name: str, x) -> None:
    xp, x = _array(x)
    if xp is not None and xp.issubdtype(x.dtype, xp.floating):
        _check_values(~xp.isfinite(x), f"{name} holds {{count}} NaN/Inf value(s), first at index {{first}}; "
                                       f"clean or impute the data before training")


def check_range(name: str, y, low: float, high: float, what: str) -> None:
    """Float targets must lie in [low, high] (NaN is check_finite's)."""
    xp, y = _array(y)
    if xp is not None:
        _check_values((y < low) | (y > high), f"{name} value {{value}} at index {{first}} is out of range: {what}; "
                                              f"{{count}} value(s) are out of range", y)


def as_shape(shape, what: str) -> tuple[int, ...]:
    """One example's shape as a tuple of positive ints: an int width ``d`` is ``(d,)``."""
    try:
        dims = (shape,) if hasattr(shape, "__index__") else tuple(shape)
        ok = len(dims) > 0 and all(not isinstance(s, (bool, np.bool_)) and operator.index(s) > 0 for s in dims)
    except TypeError:
        ok = False
    if not ok:
        raise ShapeError(f"{what} must be a positive int width or a tuple of positive ints such as (28, 28, 1); "
                         f"got {shape!r}")
    return tuple(operator.index(s) for s in dims)


def check_inputs(x, shape) -> None:
    """x must be (n, *shape) floats with no NaN/Inf; ``shape`` is one example's shape, or an int width d."""
    shape = as_shape(shape, "the input shape")
    what = f"n examples of {shape[0]} features" if len(shape) == 1 else f"n examples of shape {shape}"
    check_shape("x", x, (None, *shape), what)
    check_finite("x", x)


def check_batch(x, y, shape) -> None:
    check_inputs(x, shape)
    n = jnp.shape(x)[0]
    if jnp.ndim(y) == 0 or jnp.shape(y)[0] != n:
        raise ShapeError(f"y must have one row per example of x: x has n={n}, y has shape {jnp.shape(y)}")
    if n == 0:  # the mean loss of no examples is nan, and its gradient zero
        raise DataError(f"the batch is empty (x has shape {jnp.shape(x)}); a loss and its gradient need at least "
                        f"one example -- check the batch size and the data")
    check_finite("y", y)


def check_int_labels(y, k: int) -> None:
    xp, labels = _array(y)
    if xp is not None:
        _check_values((labels < 0) | (labels >= k),
                      f"label {{value}} is out of range for {k} classes (labels must be 0..{k - 1}); {{count}} "
                      f"label(s) are out of range -- check num_classes / the last layer size", labels)


def widths(sizes) -> list[int]:
    """Layer widths as ints: numpy ints are accepted, bools and non-integers refused."""
    try:
        sizes = list(sizes)
        ok = all(not isinstance(s, (bool, np.bool_)) and operator.index(s) > 0 for s in sizes)
    except TypeError:
        ok = False
    if not ok or len(sizes) < 2:
        raise ConfigError(f"sizes must be >= 2 positive ints [d_in, hidden..., d_out], e.g. [2, 16, 3]; got {sizes!r}")
    return [operator.index(s) for s in sizes]


def check_params(params, expected, input_shape) -> None:
    """``params`` must have the structure and shapes the model's ``init`` makes (checked at trace time, free);
    a ShapeError names the first layer that differs."""
    if not isinstance(params, (list, tuple)) or len(params) != len(expected):
        count = len(params) if isinstance(params, (list, tuple)) else type(params).__name__
        raise ShapeError(f"params has {count} entries but the network has {len(expected)} layers; "
                         f"pass the params of this model (model.init(key))")
    for index, (got, want) in enumerate(zip(params, expected)):
        got_leaves, got_tree = jax.tree.flatten(got)
        want_leaves, want_tree = jax.tree.flatten(want)
        if got_tree != want_tree:
            raise ShapeError(f"params of layer {index} have structure {got_tree} but this model's layer {index} "
                             f"makes {want_tree}; pass the params of this model (model.init(key))")
        for (path, leaf), spec in zip(jax.tree_util.tree_flatten_with_path(got)[0], want_leaves):
            if jnp.shape(leaf) != spec.shape:
                name = jax.tree_util.keystr(path)
                inputs = f"{input_shape[0]} inputs" if len(input_shape) == 1 else f"inputs of shape {input_shape}"
                raise ShapeError(f"params of layer {index}: {name} has shape {jnp.shape(leaf)} but this model "
                                 f"({inputs}) makes {spec.shape} there; the params come from another model "
                                 f"-- pass the params of this model (model.init(key))")
