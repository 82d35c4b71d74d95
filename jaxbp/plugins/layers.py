"""Layer plugins, stax-style pure functions with the backward beside the forward.

A layer is ``init(key, d_in) -> (d_out, params)``, ``forward(params, x) -> (y, cache)`` and
``backward(params, cache, dJ/dy) -> (dJ/dparams, dJ/dx)``. ``x`` is one example (d,) or a
batch (n, d): leading axes are batch axes and the parameter gradient sums over them.
A ``shaped`` layer's init takes and returns a per-example shape tuple instead, e.g. (H, W, C), and its
forward takes one example (H, W, C) or a batch (n, H, W, C).
A layer with a key, state or train/eval behaviour is ``modal`` (plugins/modes.py; dropout and batch norm
in plugins/modal.py).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from .activations import get_activation
from .initializers import bias_init as bias_init_fn
from .initializers import weight_init
from ..errors import ConfigError
from .registry import Registry, require_callable
from .sharding import contraction_sharding


class Layer(NamedTuple):
    init: Callable[[jax.Array, int], tuple[int, Any]]
    forward: Callable[[Any, jax.Array], tuple[jax.Array, Any]]
    backward: Callable[[Any, Any, jax.Array], tuple[Any, jax.Array]]
    # optional, for private training: (params, cache, dJ_i/dy (n, ...)) -> each example's squared gradient norm (n,);
    # without it jaxbp.privacy vmaps the single-example backward (correct, but builds per-example gradients)
    per_example_sq_norms: Callable[[Any, Any, jax.Array], jax.Array] | None = None
    # False: init gets and returns an int width (flat vectors); True: a per-example shape tuple, e.g. (H, W, C)
    shaped: bool = False
    # (input_shape) -> the layer's non-trainable state (batch norm's running averages); None: stateless
    init_state: Callable[[Any], Any] | None = None
    # True: forward(params, x, ctx) -> (y, cache, new_state), ctx = jaxbp.Context(train, key, state) (plugins/modes.py)
    modal: bool = False
    # True: in train mode one example's output depends on the others (batch norm's batch statistics): no example
    # has a gradient of its own, so per-example and private training refuse the layer
    mixes_examples: bool = False


class LayerPlugin(NamedTuple):
    """A registered layer: ``make(**options) -> Layer``, and options for the automatic check."""

    make: Callable[..., Layer]
    example: dict
    smooth: bool = True  # False: finite differences are checked in the 1e-4 kink band
    input_shape: tuple = (4,)  # one example's shape in the check, e.g. (6, 6, 2) for an image layer


LAYERS: Registry[LayerPlugin] = Registry("layer", "jaxbp.register_layer(name, make, example={...})")


def register_layer(name: str, make: Callable[..., Layer], *, example: dict, smooth: bool = True,
                   input_shape: tuple = (4,), replace: bool = False) -> LayerPlugin:
    """Register a layer factory; ``make(**example)`` on a batch of ``input_shape`` examples is what
    ``check_plugin('layer', name)`` verifies."""
    require_callable(name, make=make)
    return LAYERS.register(name, LayerPlugin(make, dict(example), smooth, tuple(input_shape)), replace=replace)


def layer(name: str, **options) -> Layer:
    """Build a registered layer by name, e.g. ``layer("dense", features=16, activation="tanh")``."""
    return LAYERS.get(name).make(**options)


def _batch_axes(x) -> tuple[int, ...]:
    return tuple(range(x.ndim - 1))


def dense(features: int, activation: str = "identity", init: str | None = None,
          bias_init: float | str = 0.0) -> Layer:
    """a = act(z), z = w x + b with w of shape (features, d_in): the notes' layer A = a(XW + b).

    ``init``: how w is drawn (jaxbp.plugins.initializers: "auto" -- He after a relu-like activation, Glorot
    otherwise --, he/glorot/lecun _normal or _uniform, normal(std), uniform(a)); ``bias_init``: a constant,
    normal(std) or uniform(a)."""
    if isinstance(features, bool) or not hasattr(features, "__index__") or features < 1:
        raise ConfigError(f"dense features must be a positive int, got {features!r}")
    features = int(features)  # numpy ints too
    act = get_activation(activation)
    draw_w, draw_b = weight_init(init, act.init), bias_init_fn(bias_init)

    def init_params(key, d_in):
        w = draw_w(key, (features, d_in), jnp.result_type(float))
        return features, {"w": w, "b": draw_b(jax.random.fold_in(key, 1), (features,), w.dtype)}

    def forward(params, x):
        z = x @ params["w"].T + params["b"]  # z = w x + b
        a = act.forward(z)
        return a, (x, z, a)

    def backward(params, cache, g):
        x, z, a = cache
        dz = act.backward(z, a, g)  # dJ/dz = dJ/da * da/dz
        axes = _batch_axes(dz)
        batch = "abcdefgh"[: len(axes)]  # a sharded batch (Explicit mesh) names the output's sharding
        sharded = contraction_sharding(batch + "k", batch + "d", "kd", dz, x)
        dw = jnp.tensordot(dz, x, axes=(axes, axes), **sharded)  # dJ/dw = sum_i dz_i x_i^T
        db = jnp.sum(dz, axis=axes)  # dJ/db = sum_i dz_i
        dx = dz @ params["w"]  # dJ/dx = w^T dz
        return {"w": dw, "b": db}, dx

    def per_example_sq_norms(params, cache, g):
        x, z, a = cache
        dz = act.backward(z, a, g)
        # ||dz_i x_i^T||_F^2 + ||dz_i||^2 = ||dz_i||^2 (||x_i||^2 + 1): weight and bias, no outer product built
        return jnp.sum(dz * dz, axis=-1) * (jnp.sum(x * x, axis=-1) + 1)

    return Layer(init_params, forward, backward, per_example_sq_norms)


def layer_norm(eps: float = 1e-5) -> Layer:
    """y = scale * xhat + offset, xhat = (x - mean(x)) / sqrt(var(x) + eps) over the feature axis."""

    def init(key, d_in):
        del key
        return d_in, {"scale": jnp.ones((d_in,)), "offset": jnp.zeros((d_in,))}

    def forward(params, x):
        centred = x - jnp.mean(x, axis=-1, keepdims=True)
        inv_std = jax.lax.rsqrt(jnp.mean(centred**2, axis=-1, keepdims=True) + eps)
        xhat = centred * inv_std
        return params["scale"] * xhat + params["offset"], (xhat, inv_std)

    def backward(params, cache, g):
        xhat, inv_std = cache
        axes = _batch_axes(g)
        grads = {"scale": jnp.sum(g * xhat, axis=axes), "offset": jnp.sum(g, axis=axes)}  # dJ/dscale, dJ/doffset
        gx = g * params["scale"]  # dJ/dxhat
        # dJ/dx = inv_std * (gx - mean(gx) - xhat * mean(gx * xhat))
        dx = inv_std * (gx - jnp.mean(gx, -1, keepdims=True) - xhat * jnp.mean(gx * xhat, -1, keepdims=True))
        return grads, dx

    return Layer(init, forward, backward)


register_layer("dense", dense, example={"features": 3, "activation": "tanh"})
register_layer("layer_norm", layer_norm, example={})
