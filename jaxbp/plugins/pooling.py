"""Layers without weights that change an example's shape: flatten, max and average pooling (NHWC).

Each is ``shaped``: ``init(key, (H, W, C)) -> ((H', W', C'), {})``, and its forward takes one example
(H, W, C) or a batch (n, H, W, C). The backward passes the gradient back to where each output came from.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ..errors import ConfigError, ShapeError
from .layers import Layer, register_layer


def _no_params(params, cache, g) -> jax.Array:
    """Each example's squared gradient norm: a layer without params adds zero (private training)."""
    return jnp.zeros(g.shape[:1], g.dtype)


def flatten() -> Layer:
    """One example's (H, W, C) as a flat vector (H * W * C,) in row-major (C fastest) order."""
    built = []  # the per-example shape init was given: forward keeps the batch axes in front of it

    def init(key, shape):
        del key
        if built and built[0] != tuple(shape):
            raise ShapeError(f"was built for per-example shape {built[0]}, got {tuple(shape)}: make a new "
                             f"jaxbp.flatten() for each network")
        built[:] = [tuple(shape)]
        return (math.prod(shape),), {}

    def forward(params, x):
        return x.reshape(x.shape[: x.ndim - len(built[0])] + (-1,)), ()

    def backward(params, cache, g):
        return {}, g.reshape(g.shape[:-1] + built[0])  # dJ/dx = dJ/dy, each entry back in its place

    return Layer(init, forward, backward, _no_params, shaped=True)


def _pool_sizes(name: str, window, stride) -> tuple[int, int]:
    stride = window if stride is None else stride
    for what, value in (("window", window), ("stride", stride)):
        if isinstance(value, bool) or not hasattr(value, "__index__") or value < 1:
            raise ConfigError(f"{name} {what} must be a positive int, got {value!r}")
    return int(window), int(stride)


def _image(shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"takes images (H, W, C) per example, got per-example shape {tuple(shape)}")
    return tuple(shape)


def _pooled(shape, window: int, stride: int) -> tuple[int, int, int]:
    """A pooling layer's output shape: VALID windows, (H - window) // stride + 1 rows out."""
    h, w, c = _image(shape)
    if h < window or w < window:
        raise ShapeError(f"takes images of at least {window}x{window} (its window), got per-example shape "
                         f"{tuple(shape)}")
    return (h - window) // stride + 1, (w - window) // stride + 1, c


def _windows(x, window: int, stride: int) -> jax.Array:
    """(..., H, W, C) -> (..., H', W', C, window * window): each output's window, read by strided slices."""
    h_out, w_out = (x.shape[-3] - window) // stride + 1, (x.shape[-2] - window) // stride + 1
    lead = x.ndim - 3
    slices = [jax.lax.slice_in_dim(jax.lax.slice_in_dim(x, i, i + (h_out - 1) * stride + 1, stride, lead),
                                   j, j + (w_out - 1) * stride + 1, stride, lead + 1)
              for i in range(window) for j in range(window)]
    return jnp.stack(slices, axis=-1)


def _unwindows(d, shape, window: int, stride: int) -> jax.Array:
    """The transpose of ``_windows``: each window entry's gradient added back at its input position, by
    padding (interior padding spreads it by the stride; no scatter, so a sharded batch stays sharded)."""
    (h, w), (h_out, w_out), dx = shape[-3:-1], d.shape[-4:-2], 0
    for k, (i, j) in enumerate((i, j) for i in range(window) for j in range(window)):
        config = [(0, 0, 0)] * (d.ndim - 4) + [(i, h - i - (h_out - 1) * stride - 1, stride - 1),
                                               (j, w - j - (w_out - 1) * stride - 1, stride - 1), (0, 0, 0)]
        dx = dx + jax.lax.pad(d[..., k], jnp.zeros((), d.dtype), config)
    return dx


def max_pool2d(window: int, stride: int | None = None) -> Layer:
    """y = the max of each window x window patch (stride defaults to the window), per channel.

    Ties: the gradient is split equally between the tied maxima of a window (JAX's convention for a max,
    so that ``jax.grad`` agrees even on ties, as after a relu: a window of zeros); overlapping windows
    (stride < window) add their gradients.
    """
    window, stride = _pool_sizes("max_pool2d", window, stride)

    def init(key, shape):
        return _pooled(shape, window, stride), {}

    def forward(params, x):
        patches = _windows(x, window, stride)
        y = jnp.max(patches, axis=-1)
        return y, (x.shape, patches == y[..., None])  # which entries of each window are its maximum

    def backward(params, cache, g):
        shape, argmax = cache
        share = argmax / jnp.sum(argmax, axis=-1, keepdims=True)  # 1 at a single maximum, 1/m for m tied ones
        d = g[..., None] * share.astype(g.dtype)  # dJ/dx = dJ/dy at the arg-max
        return {}, _unwindows(d, shape, window, stride)

    return Layer(init, forward, backward, _no_params, shaped=True)


def avg_pool2d(window: int, stride: int | None = None) -> Layer:
    """y = the mean of each window x window patch (stride defaults to the window), per channel."""
    window, stride = _pool_sizes("avg_pool2d", window, stride)

    def init(key, shape):
        return _pooled(shape, window, stride), {}

    def forward(params, x):
        return jnp.mean(_windows(x, window, stride), axis=-1), x.shape

    def backward(params, cache, g):
        d = jnp.broadcast_to(g[..., None] / (window * window), g.shape + (window * window,))  # dJ/dx = dJ/dy / k^2
        return {}, _unwindows(d, cache, window, stride)

    return Layer(init, forward, backward, _no_params, shaped=True)


register_layer("flatten", flatten, example={}, input_shape=(3, 2, 2))
register_layer("max_pool2d", max_pool2d, example={"window": 2}, smooth=False, input_shape=(4, 4, 2))
register_layer("avg_pool2d", avg_pool2d, example={"window": 3, "stride": 2}, input_shape=(5, 5, 2))
