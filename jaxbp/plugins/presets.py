"""Layers from tables, and named networks as lists of them: the form a config file writes
(``[[model.layers]]`` tables, ``model.preset = "lenet5"``)."""

from __future__ import annotations

import inspect

from ..errors import ConfigError, did_you_mean
from .layers import LAYERS, Layer


def from_spec(spec) -> Layer:
    """A layer from its table, as in a config file: ``{"kind": "conv2d", "features": 6, "kernel_size": 5}``."""
    if not isinstance(spec, dict) or not isinstance(spec.get("kind"), str):
        raise ConfigError(f"a layer is a table with a kind and its options, e.g. {{kind = 'conv2d', features = 6, "
                          f"kernel_size = 5}}; got {spec!r}")
    options = {k: v for k, v in spec.items() if k != "kind"}
    make = LAYERS.get(spec["kind"]).make
    try:
        return make(**options)
    except TypeError as error:  # an option the factory does not take, or a missing one
        raise ConfigError(f"layer {spec['kind']!r}: {error}; its options are those of jaxbp.{spec['kind']}"
                          f"({', '.join(inspect.signature(make).parameters)})") from None


PRESETS = {
    # LeNet-5's shape (LeCun et al. 1998) with ReLU and max pooling: 28x28x1 -> 6@28x28 -> 6@14x14 -> 16@10x10
    # -> 16@5x5 -> 120 -> 84 -> k (the last dense layer's width is the data's number of classes)
    "lenet5": (
        {"kind": "conv2d", "features": 6, "kernel_size": 5, "activation": "relu"},
        {"kind": "max_pool2d", "window": 2},
        {"kind": "conv2d", "features": 16, "kernel_size": 5, "padding": "VALID", "activation": "relu"},
        {"kind": "max_pool2d", "window": 2},
        {"kind": "flatten"},
        {"kind": "dense", "features": 120, "activation": "relu"},
        {"kind": "dense", "features": 84, "activation": "relu"},
    ),
}


def preset(name: str) -> list[dict]:
    """The hidden layers of a named network (the output layer is added for the data's classes)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; known presets: {', '.join(sorted(PRESETS))}"
                          + did_you_mean(name, PRESETS))
    return [dict(spec) for spec in PRESETS[name]]
