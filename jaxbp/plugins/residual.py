"""The residual block ``y = x + f(x)``: f is a chain of layers; the skip path adds its gradient to the branch's.

When f changes the shape, the skip path is a projection ``P x`` that maps x to f(x)'s shape: a 1x1
convolution with the stride that matches the branch's output size (images), or a dense layer
without activation (flat vectors). Its backward is its own layer's; the sum splits the gradient:
dJ/dx = dJ/dx through f + dJ/dx through the skip (g itself, or P^T g).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..errors import ConfigError, ShapeError
from .conv import conv2d
from .layers import Layer, dense, register_layer
from .presets import from_spec


def _name(layer: Layer) -> str:
    return getattr(layer.init, "__qualname__", "layer").split(".")[0]


def _shape(out) -> tuple:
    return (int(out),) if hasattr(out, "__index__") else tuple(out)


def _projection(shape: tuple, out: tuple) -> Layer | None:
    """The skip path's layer from ``shape`` to ``out``: None (identity) when they agree."""
    if shape == out:
        return None
    if len(shape) == len(out) == 1:
        return dense(out[0])
    if len(shape) == len(out) == 3:
        stride = -(-shape[0] // out[0])  # a 1x1 VALID convolution gives ceil(H / stride) rows
        if all(-(-size // stride) == o for size, o in zip(shape[:2], out[:2])):
            return conv2d(out[2], 1, stride, "VALID")
    raise ShapeError(f"maps per-example shape {shape} to {out}, and no projection (a strided 1x1 convolution, or a "
                     f"dense layer for flat vectors) maps one to the other: use padding='SAME' in the branch")


def _sq_norms(layer: Layer):
    """Each example's squared gradient norm of one branch layer; without a rule, its single-example backward vmapped."""
    if layer.per_example_sq_norms is not None:
        return layer.per_example_sq_norms

    def one(params, cache, g):
        return sum(jnp.sum(leaf * leaf) for leaf in jax.tree.leaves(layer.backward(params, cache, g)[0]))

    return jax.vmap(one, in_axes=(None, 0, 0))


def residual(*layers: Layer) -> Layer:
    """y = x + f(x), with f the chain ``layers`` (x + P x's projection in place of x when f changes the shape)."""
    if not layers or not all(isinstance(layer, Layer) for layer in layers):
        raise ConfigError(f"residual takes one or more layers, e.g. jaxbp.residual(jaxbp.conv2d(8, 3, "
                          f"activation='relu'), jaxbp.conv2d(8, 3)); got {layers!r}")
    if any(layer.modal for layer in layers):
        raise ConfigError("residual's branch takes layers without a train/eval mode; put dropout and batch_norm "
                          "before or after the residual block")

    built = {}  # what init found: the per-example input shape and the skip path's layer (None: identity)

    def init(key, shape):
        shape, params = _shape(shape), []
        keys = jax.random.split(key, len(layers) + 1)
        out = shape
        for index, (layer, k) in enumerate(zip(layers, keys)):
            if not layer.shaped and len(out) != 1:
                raise ShapeError(f"branch layer {index} ({_name(layer)}) takes flat vectors, got per-example shape "
                                 f"{out}: put jaxbp.flatten() before it")
            try:
                size, p = layer.init(k, out if layer.shaped else out[0])
            except ShapeError as error:
                raise ShapeError(f"branch layer {index} ({_name(layer)}) {error}") from None
            out = _shape(size)
            params.append(p)
        if built and built["shape"] != shape:
            raise ShapeError(f"was built for per-example shape {built['shape']}, got {shape}: make a new "
                             f"jaxbp.residual(...) for each network")
        built.update(shape=shape, skip=_projection(shape, out))
        if built["skip"] is None:
            return out, {"branch": params}
        skip = built["skip"]
        return out, {"branch": params, "skip": skip.init(keys[-1], shape if skip.shaped else shape[0])[1]}

    def forward(params, x):
        caches, fx = [], x
        for layer, p in zip(layers, params["branch"]):
            fx, cache = layer.forward(p, fx)
            caches.append(cache)
        if built["skip"] is None:
            return x + fx, (caches, None)  # y = x + f(x)
        px, skip_cache = built["skip"].forward(params["skip"], x)
        return px + fx, (caches, skip_cache)  # y = P x + f(x)

    def backward(params, cache, g):
        caches, skip_cache = cache
        grads, dx = [], g
        for layer, p, c in zip(reversed(layers), reversed(params["branch"]), reversed(caches)):
            grad, dx = layer.backward(p, c, dx)  # back through f, layer by layer
            grads.append(grad)
        out = {"branch": grads[::-1]}
        if skip_cache is None:
            return out, dx + g  # dJ/dx = dJ/dx through f + g through the identity
        skip_grads, skip_dx = built["skip"].backward(params["skip"], skip_cache, g)
        return {**out, "skip": skip_grads}, dx + skip_dx  # ... + P^T g through the projection

    def per_example_sq_norms(params, cache, g):
        caches, skip_cache = cache
        sq, dx = jnp.zeros(g.shape[:1], g.dtype), g
        for layer, p, c in zip(reversed(layers), reversed(params["branch"]), reversed(caches)):
            sq = sq + _sq_norms(layer)(p, c, dx)
            dx = layer.backward(p, c, dx)[1]
        if skip_cache is not None:
            sq = sq + built["skip"].per_example_sq_norms(params["skip"], skip_cache, g)
        return sq

    return Layer(init, forward, backward, per_example_sq_norms, shaped=True)


def residual_of(layers: list) -> Layer:
    """``residual`` from the branch's layer tables, as a config file gives them (``jaxbp.layer("residual", ...)``)."""
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ConfigError(f"residual takes layers = a list of layer tables, e.g. [{{kind = 'conv2d', features = 8, "
                          f"kernel_size = 3}}]; got {layers!r}")
    return residual(*map(from_spec, layers))


register_layer("residual", residual_of, example={"layers": [
    {"kind": "conv2d", "features": 3, "kernel_size": 3, "stride": 2, "activation": "tanh"},  # strided: a projection
    {"kind": "conv2d", "features": 3, "kernel_size": 3}]}, input_shape=(5, 5, 2))
