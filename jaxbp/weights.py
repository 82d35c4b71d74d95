"""Weights from elsewhere as jaxbp params: each dense layer's ``w`` is ``(d_out, d_in)``, as the notes write it.

numpy code, CS231n's assignments, Keras and Flax keep a dense weight as ``(d_in, d_out)`` and compute
``x @ W``; PyTorch's ``nn.Linear`` keeps ``(d_out, d_in)`` and computes ``x @ W.T``, as jaxbp does. The
layout cannot be told from the shapes (a square layer looks the same both ways), so it is always named:

>>> params = jaxbp.dense_params({"W1": W1, "b1": b1, "W2": W2, "b2": b2}, layout="in_out", model=model)  # CS231n
>>> params = jaxbp.dense_params(torch_model.state_dict(), layout="out_in", model=model)           # PyTorch
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from .errors import ConfigError, ShapeError
from .plugins.rules import layer_params
from .boundary.validate import check_params

LAYOUTS = {"in_out": "(d_in, d_out): x @ W, as numpy, CS231n, Keras and Flax keep it",
           "out_in": "(d_out, d_in): x @ W.T, as PyTorch's nn.Linear and jaxbp keep it"}


def _array(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _pairs(weights) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) pairs: given as pairs, or a mapping's values in order (W1, b1, W2, b2 / 0.weight, 0.bias)."""
    if isinstance(weights, Mapping):
        values = [_array(v) for v in weights.values()]
        if len(values) % 2 or any(v.ndim != 2 for v in values[::2]) or any(v.ndim != 1 for v in values[1::2]):
            shapes = ", ".join(f"{k}: {_array(v).shape}" for k, v in weights.items())
            raise ShapeError(f"weights must alternate a 2-D weight and its 1-D bias, layer by layer, in order; "
                             f"got {shapes}. Pass a list of (w, b) pairs to say which is which")
        return list(zip(values[::2], values[1::2]))
    pairs = [tuple(_array(v) for v in pair) for pair in weights]
    for index, pair in enumerate(pairs):
        if len(pair) != 2 or pair[0].ndim != 2 or pair[1].ndim != 1:
            raise ShapeError(f"layer {index}: give (w, b) with a 2-D w and a 1-D b; got shapes "
                             f"{[p.shape for p in pair]}")
    return pairs


def dense_params(weights, layout: str, model=None, dtype=None) -> list[dict]:
    """Dense layers' weights and biases from another library, as jaxbp params ``[{"w": (d_out, d_in), "b"}, ...]``.

    ``weights``: a list of ``(w, b)`` pairs, or a mapping whose values alternate weight and bias in layer order
    (a CS231n ``{"W1", "b1", "W2", "b2"}`` dict, a PyTorch ``state_dict()`` of a Linear/activation stack).
    ``layout``: "in_out" when each ``w`` is ``(d_in, d_out)`` (transposed here), "out_in" when ``(d_out, d_in)``.
    ``model``: checks the result against the model's params (shapes, one entry per layer), naming the layer.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of: " + "; ".join(f"{k!r} {v}" for k, v in LAYOUTS.items())
                          + f"; got {layout!r}")
    params = []
    for index, (w, b) in enumerate(_pairs(weights)):
        w = w.T if layout == "in_out" else w
        if w.shape[0] != b.shape[0]:
            other = "out_in" if layout == "in_out" else "in_out"
            raise ShapeError(f"layer {index}: the weight read as {LAYOUTS[layout].split(':')[0]} is {w.shape} "
                             f"(d_out = {w.shape[0]}) but its bias has {b.shape[0]} entries; the weights may be "
                             f"stored the other way: try layout={other!r}")
        params.append({"w": w, "b": b})
    dtype = dtype or jnp.result_type(float)
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
    if model is not None:
        expected = jax.eval_shape(model.init, jax.random.key(0))
        try:
            check_params(params, layer_params(expected), model.input_shape)
        except ShapeError as error:
            raise ShapeError(f"{error}. (Read with layout={layout!r}: {LAYOUTS[layout]})") from None
    return params
