"""Networks: layers chained forward, then walked back in reverse with their hand-written backwards.

The batched form is the notes' matrix rule: dJ/dZ = (A - Y) / n at the output, then each
dense layer gives dJ/dW = dZ^T X -- no per-example weight gradient is ever built.
The per-example form is the notes' single-point rule ``dw = (a - y) x^T``, vmapped.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from .boundary.validate import as_shape, check_batch, check_inputs, check_params, widths
from .errors import ConfigError, ShapeError
from .plugins.layers import Layer, dense
from .plugins import modal
from .plugins.presets import from_spec
from .plugins.losses import get_loss
from .plugins.modes import Stateful, each_example, initial_key, layer_context, refuse_mixing, step_keys
from .plugins.rules import attach, get_rule, layer_params, without_state

Params = Any  # a list with one pytree per layer


class Model(NamedTuple):
    """A network as pure functions. ``loss`` is plain JAX: its ``jax.grad`` is the reference for ``value_and_grad``."""

    init: Callable[[jax.Array], Params]
    apply: Callable[[Params, jax.Array], jax.Array]  # (n, d) -> (n, k) output pre-activations
    predict: Callable[[Params, jax.Array], jax.Array]  # link(apply): probabilities or values
    loss: Callable[[Params, jax.Array, jax.Array], jax.Array]  # mean over the batch
    value_and_grad: Callable[[Params, jax.Array, jax.Array], tuple[jax.Array, Params]]
    per_example_grads: Callable[[Params, jax.Array, jax.Array], Params]  # each leaf gains a leading n axis
    per_example_value_and_grad: Callable[[Params, jax.Array, jax.Array], tuple[jax.Array, Params]]  # (n,) losses too
    targets: Callable[[jax.Array], jax.Array]  # labels -> (n, k) float targets, checked
    d_in: int  # the flat input width, prod(input_shape)
    d_out: int
    loss_name: str
    rule: str = "backprop"  # the backward rule (jaxbp.plugins.rules): what each layer sends back
    layers: tuple = ()  # the Layer plugins, in order (private training walks their caches)
    input_shape: tuple = ()  # one example's shape, e.g. (784,) or (28, 28, 1); batches are (n, *input_shape)
    # Train mode (the steps use these): the loss with this step's key and batch statistics, and
    # (value, grads of the trainable params, params with the new state and key). The fields above run in
    # eval mode. Without modal layers: model.loss, and value_and_grad with the params passed through.
    train_loss: Callable[[Params, jax.Array, jax.Array], jax.Array] | None = None
    train_value_and_grad: Callable[[Params, jax.Array, jax.Array], tuple[jax.Array, Params, Params]] | None = None
    modal: bool = False  # some layer takes a key, state or the mode (params are then a jaxbp.plugins.Stateful)
    penalty: tuple | None = None  # jaxbp.regularized: (value(params), grads(params)) of the weight penalty
    shapes: tuple = ()  # one example's shape into each layer, then the output's (the memory estimate reads them)
    # Train mode, each example's own gradient: (losses (n,), grads with a leading n axis, params with the new
    # state and key). Example i's dropout mask is row i of the batched train step's: their mean is its gradient.
    train_per_example_value_and_grad: Callable[[Params, jax.Array, jax.Array], tuple] | None = None
    # Train mode's forward: (outputs, each layer's cache, the params carried on); private training walks it back.
    train_forward: Callable[[Params, jax.Array], tuple] | None = None


def layer_name(layer: Layer) -> str:
    """The factory a layer came from (``conv2d``, ``dense``...), for messages."""
    return getattr(layer.init, "__qualname__", "layer").split(".")[0]


def modal_names(model: Model) -> list[str]:
    """The factories of a model's modal layers (``["batch_norm", "dropout"]``), for messages and the run's record."""
    return sorted({layer_name(layer) for layer in model.layers if layer.modal})


def _takes(layer: Layer, index: int, shape: tuple):
    """What ``layer.init`` takes for one example of ``shape``: the shape itself, or a flat layer's int width."""
    if layer.shaped:
        return shape
    if len(shape) != 1:
        raise ShapeError(f"layer {index} ({layer_name(layer)}) takes flat vectors, got per-example shape {shape}: "
                         f"put jaxbp.flatten() before it")
    return shape[0]


def _output_shape(layer: Layer, index: int, shape: tuple) -> tuple:
    """Run ``layer.init`` abstractly (no arrays are made) to read the shape of one example's output."""
    shapes, takes = [], _takes(layer, index, shape)
    try:
        jax.eval_shape(lambda key: shapes.append(layer.init(key, takes)[0]), jax.random.key(0))
    except ShapeError as error:  # a layer's own message says what it takes; the network adds which layer
        raise ShapeError(f"layer {index} ({layer_name(layer)}) {error}") from None
    return as_shape(shapes[0], f"layer {index} ({layer_name(layer)})'s output shape")


def _mean(losses: jax.Array) -> jax.Array:
    """The batch mean, summed and returned in at least float32 (a bfloat16 loss is averaged in float32)."""
    return jnp.mean(losses, dtype=jnp.promote_types(losses.dtype, jnp.float32))


def network(input_shape: int | tuple, layers: Sequence[Layer], loss: str, rule: str = "backprop") -> Model:
    """Chain ``layers`` on examples of ``input_shape`` (an int width, or a shape such as ``(28, 28, 1)``);
    the last layer's output feeds ``loss``; ``rule`` names what each layer sends back (jaxbp.register_rule),
    backprop by default. A layer that cannot take its input's shape is a ShapeError here, at build time."""
    layers = tuple(layers)
    input_shape = as_shape(input_shape, "input_shape")
    d_in = math.prod(input_shape)
    loss_name, loss = loss, get_loss(loss)
    rule_plugin = get_rule(rule)
    if not layers:
        raise ConfigError("a network needs at least one layer")
    shapes = [input_shape]  # shapes[i]: one example's shape into layer i; shapes[-1]: the network's output
    for index, layer in enumerate(layers):
        shapes.append(_output_shape(layer, index, shapes[-1]))
    if len(shapes[-1]) != 1:
        raise ShapeError(f"layer {len(layers) - 1} ({layer_name(layers[-1])}) gives per-example shape {shapes[-1]}, "
                         f"but the loss takes flat vectors: end with jaxbp.flatten() and jaxbp.dense(k)")
    d_out = shapes[-1][0]
    takes = [_takes(layer, i, shape) for i, (layer, shape) in enumerate(zip(layers, shapes))]
    modal = any(layer.modal for layer in layers)

    def init(key):
        params = []
        for layer, layer_key, t in zip(layers, jax.random.split(key, len(layers)), takes):
            params.append(layer.init(layer_key, t)[1])
        return params

    def forward(params, x, key=None):
        """Outputs, caches and the layers' new state; ``key``: this step's key (train mode), None: eval mode."""
        state = params.state if modal else [None] * len(layers)
        params = layer_params(params)  # a rule's feedback matrices (and the layers' state) ride beside them
        check_params(params, layer_params(expected), input_shape)  # shapes only: free at trace time
        caches, new_state = [], []
        for i, (layer, p) in enumerate(zip(layers, params)):
            if layer.modal:
                x, cache, s = layer.forward(p, x, layer_context(key is not None, key, i, state[i]))
            else:
                (x, cache), s = layer.forward(p, x), None
            caches.append(cache)
            new_state.append(s)
        return x, caches, new_state

    def backward(params, caches, dz):
        grads = []
        for layer, p, cache in zip(reversed(layers), reversed(params), reversed(caches)):
            g, dz = layer.backward(p, cache, dz)  # chain rule, one layer back
            grads.append(g)
        return grads[::-1]

    if rule != "backprop":  # the same forward; another signal sent back (value_and_grad calls this backward)
        init, backward = attach(rule_plugin, layers, init, d_out, shapes[:-1])
    if modal:  # the layers' state and the key ride beside the params
        init = _with_state(init, layers, takes)
    # The params' shapes, traced once here, abstractly: inside a step's trace the key would be staged as an op.
    expected = jax.eval_shape(init, jax.random.key(0))

    def targets(y):
        return loss.encode(y, d_out)

    def encode_first(y):
        # The targets as their own op, ready before the forward pass: XLA:CPU runs a step's first ready
        # op on the calling thread, and the first layer's matmul there misses the intra-op thread pool
        # (measured 5-15% on the whole mnist-sized step; `jaxbp bench`).
        return jax.lax.optimization_barrier(targets(y))

    def apply(params, x):
        check_inputs(x, input_shape)
        return forward(params, x)[0]

    def predict(params, x):
        return loss.link(apply(params, x))

    def loss_at(params, x, y, key):
        check_batch(x, y, input_shape)
        z, _, new_state = forward(params, x, key)
        return _mean(jax.vmap(loss.value)(z, targets(y).astype(z.dtype))), new_state

    def mean_loss(params, x, y):
        return loss_at(params, x, y, None)[0]

    def value_grad_state(params, x, y, key=None):
        check_batch(x, y, input_shape)
        t = encode_first(y)
        z, caches, new_state = forward(params, x, key)
        t = t.astype(z.dtype)
        value = _mean(jax.vmap(loss.value)(z, t))
        dz = jax.vmap(loss.backward)(z, t) / x.shape[0]  # dJ/dZ = (A - Y) / n
        return value, backward(without_state(params), caches, dz), new_state

    def value_and_grad(params, x, y):
        return value_grad_state(params, x, y)[:2]

    def written(params, new_state, carried):  # the params with the layers' new state and the key carried on
        return params._replace(state=[o if n is None else n for o, n in zip(params.state, new_state)], key=carried)

    def train_loss(params, x, y, *, with_state=False):
        """``with_state=True``: (loss, params with the new state), an auxiliary output for a reference gradient."""
        if not modal:
            value = mean_loss(params, x, y)
            return (value, params) if with_state else value
        carried, key = step_keys(params.key)
        value, new_state = loss_at(params, x, y, key)
        return (value, written(params, new_state, carried)) if with_state else value

    def train_forward(params, x):
        """Outputs, caches and the params carried on (the layers' new state, the next key): train mode's forward
        (without modes: the forward, the params unchanged)."""
        if not modal:
            return (*forward(params, x)[:2], params)
        carried, key = step_keys(params.key)
        z, caches, new_state = forward(params, x, key)
        return z, caches, written(params, new_state, carried)

    def train_value_and_grad(params, x, y):
        if not modal:  # the eval-mode program, the params passed through unchanged
            return (*value_and_grad(params, x, y), params)
        carried, key = step_keys(params.key)  # the key carried on, this step's key
        value, grads, new_state = value_grad_state(params, x, y, key)
        return value, grads, written(params, new_state, carried)

    def single_example(params, x, t):
        z, caches, _ = forward(params, x)
        return loss.value(z, t), backward(without_state(params), caches, loss.backward(z, t))  # dw = (a - y) x^T

    def per_example_value_and_grad(params, x, y):
        check_batch(x, y, input_shape)
        dtype = jnp.result_type(x, *jax.tree.leaves(params))
        return jax.vmap(single_example, in_axes=(None, 0, 0))(params, x, encode_first(y).astype(dtype))

    def per_example_grads(params, x, y):
        return per_example_value_and_grad(params, x, y)[1]

    def train_per_example_value_and_grad(params, x, y):
        """The batched train-mode forward (the masks as the batched train step draws them, example i on row i),
        then each example's backward on its row of the caches: dw = (a - y) x^T, vmapped."""
        if not modal:
            return (*per_example_value_and_grad(params, x, y), params)
        refuse_mixing(layers, "per-example training")
        check_batch(x, y, input_shape)
        t = encode_first(y)
        z, caches, carried = train_forward(params, x)
        rows, rebuild = each_example(caches, x.shape[0], layers)

        def one(z, t, rows):
            return loss.value(z, t), backward(without_state(params), rebuild(rows), loss.backward(z, t))

        losses, grads = jax.vmap(one)(z, t.astype(z.dtype), rows)
        return losses, grads, carried

    return Model(init, apply, predict, mean_loss, value_and_grad, per_example_grads, per_example_value_and_grad,
                 targets, d_in, d_out, loss_name, rule, layers, input_shape, train_loss, train_value_and_grad, modal,
                 shapes=tuple(shapes), train_per_example_value_and_grad=train_per_example_value_and_grad,
                 train_forward=train_forward)


def _with_state(init: Callable, layers, inputs) -> Callable:
    """``init`` wrapped into ``Stateful(params, each layer's initial state, the carried key)``."""

    def init_with_state(key):
        state = [layer.init_state(d) if layer.init_state is not None else None for layer, d in zip(layers, inputs)]
        return Stateful(init(key), state, initial_key(key))

    return init_with_state


def mlp(sizes: Sequence[int], activation: str | Sequence[str] = "relu", loss: str = "softmax_cross_entropy",
        rule: str = "backprop", dropout: float = 0.0, batch_norm: bool = False, init: str | None = None,
        bias_init: float | str = 0.0) -> Model:
    """A multi-layer perceptron ``sizes = [d, h1, ..., k]``; ``activation`` is one name or one per hidden layer;
    ``rule`` is the backward rule (backprop, feedback_alignment, ...: ``jaxbp.plugins.RULES``). After each
    hidden layer's activation: ``batch_norm=True`` adds ``jaxbp.batch_norm()``, ``dropout=p > 0`` adds
    ``jaxbp.dropout(p)`` (the defaults add neither: the same network, the same program). ``init`` and
    ``bias_init`` set how every dense layer draws its weights and biases (``jaxbp.plugins.initializers``)."""
    sizes = widths(sizes)
    hidden = len(sizes) - 2
    if activation is None or not isinstance(activation, (str, Sequence)):
        raise ConfigError(f"activation must be a name such as 'relu' or a list of names, one per hidden layer; "
                          f"got {activation!r}")
    activations = [activation] * hidden if isinstance(activation, str) else list(activation)
    if len(activations) != hidden:
        raise ConfigError(
            f"activation lists one name per hidden layer: sizes {sizes} has {hidden} hidden layer(s), "
            f"got {len(activations)} name(s)"
        )
    if not isinstance(batch_norm, bool):
        raise ConfigError(f"batch_norm must be true or false, got {batch_norm!r}")
    extra = ([modal.batch_norm()] if batch_norm else []) + ([modal.dropout(dropout)] if dropout != 0 else [])
    draws = {"init": init, "bias_init": bias_init}
    layers = [layer for s, a in zip(sizes[1:-1], activations) for layer in [dense(s, a, **draws), *extra]]
    return network(sizes[0], layers + [dense(sizes[-1], **draws)], loss, rule)


def describe(params) -> str:
    """A short description of a params pytree for reprs: leaves, numbers and dtypes, never the values."""
    leaves = jax.tree.leaves(params)
    dtypes = sorted({str(jnp.result_type(leaf)) for leaf in leaves})
    count = sum(int(jnp.size(leaf)) for leaf in leaves)
    return f"<{len(leaves)} arrays, {count:,} numbers, {'/'.join(dtypes) or 'empty'}>"


def from_tables(input_shape, tables, k: int, loss: str = "softmax_cross_entropy", rule: str = "backprop") -> Model:
    """The network of layer tables (``{"kind": "conv2d", "features": 6, ...}``, a config's ``[[model.layers]]``)
    on examples of ``input_shape``, with a dense output layer of ``k`` units added."""
    return network(input_shape, [from_spec(table) for table in tables] + [dense(k)], loss, rule)
