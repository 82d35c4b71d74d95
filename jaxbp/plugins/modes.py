"""Modes, keys and state: what a layer needs beyond ``forward(params, x)`` -- dropout's key, batch norm's averages.

A layer built with ``modal=True`` has ``forward(params, x, ctx) -> (y, cache, new_state)``, where
``ctx = Context(train, key, state)``: ``train`` says which mode runs (a Python bool, so each mode is its
own program), ``key`` is this layer's key for this step (None in eval mode) and ``state`` the layer's
non-trainable state (``init_state(input_shape)``'s pytree; None when it has none). Its backward is the
usual ``backward(params, cache, dJ/dy)``: the cache remembers whatever the mode decided (the mask, the
batch statistics). Layers that need none of this keep the plain signature.

The network carries the state and the key inside its params, beside the trained params, the way a
rule's fixed feedback matrices ride: ``Stateful(params, state, key)``. ``jaxbp.trainable`` strips them,
so the optimizer never sees them; checkpoints, params.npz, replicas and meshes carry them as any leaf.
The key is raw ``uint32`` key data; each training step splits it into the key carried on and the step's
key, then folds in each layer's index -- so a resumed run draws the same masks as one that never stopped.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from ..errors import ConfigError, ShapeError

MODES_STREAM = 0x5EED  # the carried key comes from fold_in(init_key, MODES_STREAM): the layers' own draws stay


class Context(NamedTuple):
    """What a modal layer's forward gets besides params and inputs."""

    train: bool  # True in a training step; False in apply, predict, evaluate
    key: jax.Array | None  # this layer's key for this step (train mode); None in eval mode
    state: Any  # the layer's state (init_state's pytree), or None


class Stateful(NamedTuple):
    """Params of a network with modal layers: the optimizer sees only ``params``."""

    params: Any  # exactly the params the network would have without modes (a list, or a rule's feedback tuple)
    state: list  # per layer: its state pytree, or None
    key: jax.Array  # uint32 key data, split by every training step


def initial_key(key: jax.Array) -> jax.Array:
    """The carried key's data for a network initialized from ``key``."""
    return jax.random.key_data(jax.random.fold_in(key, MODES_STREAM))


def step_keys(key_data: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(the key data carried to the next step, this step's key): one split per step."""
    carried, step = jax.random.split(jax.random.wrap_key_data(key_data))
    return jax.random.key_data(carried), step


def layer_context(train: bool, step_key, index: int, state) -> Context:
    """Layer ``index``'s context: in train mode its own key, ``fold_in(step key, index)``."""
    return Context(train, jax.random.fold_in(step_key, index) if train else None, state)


def _name(layer) -> str:
    return getattr(layer.init, "__qualname__", "layer").split(".")[0]


def refuse_mixing(layers, what: str) -> None:
    """A ConfigError when a layer mixes the examples of a batch in train mode (batch norm): no example then has a
    gradient of its own for ``what`` (per-example or private training) to take."""
    names = sorted({_name(layer) for layer in layers if layer.mixes_examples})
    if names:
        alternative = ("use jaxbp.layer_norm (each example normalized on its own) in its place" if "batch_norm" in names
                       else f"train without {what}")
        said = " and ".join(name.replace("_", " ") for name in names)  # batch_norm: "batch norm"
        raise ConfigError(f"{what} needs each example's own gradient, and {said} has none: examples "
                          f"interact through the batch statistics; {alternative}")


def each_example(caches, n: int, layers) -> tuple[list, Callable]:
    """(the cache leaves with a batch axis, ``rebuild(leaves) -> caches``): vmapped over the leaves' first axis,
    rebuild gives one example's caches, as its own forward would keep them (dropout's row of the batch mask);
    shapes and scalars (a pooling layer's input shape) are shared by every example."""
    for index, (layer, cache) in enumerate(zip(layers, caches)):
        if any(jnp.ndim(leaf) > 0 and jnp.shape(leaf)[0] != n for leaf in jax.tree.leaves(cache)):
            raise ShapeError(f"layer {index} ({_name(layer)}) keeps a cache without the batch axis first; "
                             f"per-example and private training read each example's row of it")
    flat, tree = jax.tree.flatten(caches)
    rows = [i for i, leaf in enumerate(flat) if jnp.ndim(leaf) > 0]

    def rebuild(leaves):
        full = list(flat)
        for i, leaf in zip(rows, leaves):
            full[i] = leaf
        return jax.tree.unflatten(tree, full)

    return [flat[i] for i in rows], rebuild
