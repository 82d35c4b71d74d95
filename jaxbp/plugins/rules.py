"""Backward rules: what a dense or conv layer sends back to the layer below in place of backprop's ``W^T dz``.

A rule is ``send(back, w, b, e) -> g``: ``back(m)`` is the layer's error sent back through a matrix m
(``back(w)`` is backprop's ``W^T dz``), ``w`` the layer's weight, ``b`` its feedback matrix (or None),
``e = dJ/dz_out`` the network's output error. ``init(key, w, k) -> B`` makes the feedback matrix a rule
needs, from the init key; ``learn(dw, w, b) -> (dw, db)`` trains it (Kolen-Pollack), else it stays fixed.

Only the signal sent backwards changes: every layer still updates with its own rule, ``dW = dz^T x``,
with the dz it computes from the signal it received. Feedback matrices ride beside the layers' params:
``FixedFeedback(layers, feedback)`` when fixed (the optimizer sees only ``layers``: ``trainable``),
``LearnedFeedback(layers, feedback)`` when the rule trains them (the optimizer sees both).

A conv layer is treated like a dense one: its feedback tensor B is shaped like its kernel
(d_out, kh, kw, c_in), and ``back(B)`` is the transposed convolution with B in the kernel's place.
DFA sends ``e @ B`` with B of shape (k, H * W * C) straight into a conv layer's input, read as the
(H, W, C) image the layer takes. Layers without a weight (pooling, flatten, a residual block) send
back their exact dJ/dx of the signal they received.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from ..errors import ShapeError
from .modes import Stateful
from .registry import Registry

FEEDBACK_STREAM = 0xFEED  # feedback matrices come from fold_in(init_key, FEEDBACK_STREAM): the layers' own draws stay


class Rule(NamedTuple):
    """A backward rule; ``init=None``: no state (params as under backprop), ``learn=None``: B is never trained."""

    send: Callable[[Callable, jax.Array, Any, jax.Array], jax.Array]
    init: Callable[[jax.Array, jax.Array, int], jax.Array] | None = None
    learn: Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]] | None = None


class FixedFeedback(NamedTuple):
    """Params of a network whose rule keeps fixed feedback matrices: the optimizer sees only ``layers``."""

    layers: list  # one pytree per layer, exactly as under backprop
    feedback: list  # per layer: its B, or None (the first layer sends nothing back; non-dense layers are exact)


class LearnedFeedback(NamedTuple):
    """Params of a network whose rule trains its feedback matrices: the optimizer sees both parts."""

    layers: list
    feedback: list


RULES: Registry[Rule] = Registry("rule", "jaxbp.register_rule(name, send=..., init=...)")


def register_rule(name: str, *, send, init=None, learn=None, replace: bool = False) -> Rule:
    """Register ``send(back, w, b, e) -> g`` (what a dense layer sends back), with ``init``/``learn`` if it needs B."""
    if learn is not None and init is None:
        raise ValueError("a rule that learns its feedback matrices needs init(key, w, k) to make them")
    return RULES.register(name, Rule(send, init, learn), replace=replace)


def get_rule(name: str) -> Rule:
    return RULES.get(name)


def trainable(params):
    """What the optimizer trains: ``params`` without a rule's fixed feedback matrices, nor the layers' state
    and key (for any model)."""
    return split(params)[0]


def split(params) -> tuple[Any, Any]:
    """(trained, fixed): fixed feedback matrices, layer state and the key are carried beside the optimizer."""
    if isinstance(params, Stateful):
        trained, fixed = split(params.params)
        return trained, params._replace(params=fixed)
    if isinstance(params, FixedFeedback):
        return params.layers, params.feedback
    return params, None


def join(trained, fixed):
    if isinstance(fixed, Stateful):
        return fixed._replace(params=join(trained, fixed.params))
    return trained if fixed is None else FixedFeedback(trained, fixed)


def without_state(params):
    """The params as a network without modal layers has them (a Stateful's ``params``)."""
    return params.params if isinstance(params, Stateful) else params


def layer_params(params) -> list:
    """The layers' own params, whatever the rule."""
    params = without_state(params)
    return params.layers if isinstance(params, (FixedFeedback, LearnedFeedback)) else params


def _has_weight(p) -> bool:
    """A dense weight (d_out, d_in) or a conv kernel (d_out, kh, kw, c_in): the rules replace what it sends back."""
    return isinstance(p, dict) and "w" in p and jnp.ndim(p["w"]) >= 2


def _init_feedback(rule: Rule, key, w, k: int, input_shape):
    """``rule.init(key, w, k)``, or ``rule.init(key, w, k, input_shape)`` for a rule that sends straight down (DFA)
    and so needs the shape of the input it sends into."""
    if len(inspect.signature(rule.init).parameters) >= 4:
        return rule.init(key, w, k, input_shape)
    return rule.init(key, w, k)


def attach(rule: Rule, layers, init: Callable, d_out: int, input_shapes=None) -> tuple[Callable, Callable]:
    """A network's (init, backward) under ``rule``, from its layers, its backprop init and each layer's
    per-example input shape."""
    layers = tuple(layers)
    shapes = list(input_shapes or [None] * len(layers))

    def init_with_feedback(key):
        params = init(key)  # the same layer params as under backprop for the same key
        if rule.init is None:
            return params
        keys = jax.random.split(jax.random.fold_in(key, FEEDBACK_STREAM), len(layers))
        feedback = [_init_feedback(rule, k, p["w"], d_out, shapes[i]) if i > 0 and _has_weight(p) else None
                    for i, (k, p) in enumerate(zip(keys, params))]
        return (FixedFeedback if rule.learn is None else LearnedFeedback)(params, feedback)

    def unpack(params):
        if rule.init is None:
            return params, [None] * len(layers)
        kind = FixedFeedback if rule.learn is None else LearnedFeedback
        if not isinstance(params, kind):
            raise ShapeError(f"params are a {type(params).__name__}, but this rule keeps feedback matrices in a "
                             f"{kind.__name__}(layers, feedback); make the params with model.init")
        return params.layers, params.feedback

    def backward(params, caches, e):
        weights, feedback = unpack(params)
        grads, learned, g = [], [], e  # e = dJ/dz_out, the output error
        for i in reversed(range(len(layers))):
            layer, p, cache, b = layers[i], weights[i], caches[i], feedback[i]
            grad, exact = layer.backward(p, cache, g)  # dW = dz^T x, db = sum dz: the layer's own rule, this rule's dz
            db = None
            if rule.learn is not None and b is not None:
                dw, db = rule.learn(grad["w"], p["w"], b)  # Kolen-Pollack: dz^T x for both W and B, + decay
                grad = {**grad, "w": dw}
            if i > 0 and _has_weight(p):
                g = rule.send(_through(layer, p, cache, g), p["w"], b, e).reshape(exact.shape)  # in place of W^T dz
            else:
                g = exact  # a layer without a weight matrix sends back its exact dJ/dx
            grads.append(grad)
            learned.append(db)
        grads = grads[::-1]
        return LearnedFeedback(grads, learned[::-1]) if rule.learn is not None else grads

    return init_with_feedback, backward


def _through(layer, p, cache, g) -> Callable[[jax.Array], jax.Array]:
    """``back(m) = m^T dz``: the layer's backward with m in w's place (dense's dW and db never read w)."""
    return lambda m: layer.backward({**p, "w": m}, cache, g)[1]


def _normal(key, shape, dtype) -> jax.Array:
    """Glorot-normal, as a tanh dense layer's own weights: std sqrt(2 / (fan_in + fan_out)), with a kernel's
    (d_out, kh, kw, c_in) read as the (d_out, kh * kw * c_in) matrix it applies to each patch."""
    return math.sqrt(2.0 / (shape[0] + math.prod(shape[1:]))) * jax.random.normal(key, shape, dtype)


def _like_w(key, w, k):
    return _normal(key, w.shape, w.dtype)  # B_l ~ W_l's init distribution, drawn independently: a kernel for a conv


def _to_output(key, w, k, input_shape=None):
    """B_l maps the k output errors to all of layer l's inputs: (k, d_in), or (k, H * W * C) for a conv layer,
    whose e @ B_l is then read as the (H, W, C) image it takes."""
    return _normal(key, (k, math.prod(input_shape) if input_shape else w.shape[1]), w.dtype)


def kolen_pollack(decay: float = 1e-3) -> dict:
    """Kolen-Pollack (Akrout et al. 2019): B gets W's update; weight decay on both makes W - B shrink."""

    def learn(dw, w, b):
        return dw + decay * w, dw + decay * b  # dJ/dW + lambda W, and the same dz^T x for B: + lambda B

    return {"send": lambda back, w, b, e: back(b), "init": _like_w, "learn": learn}  # B^T dz


register_rule("backprop", send=lambda back, w, b, e: back(w))  # W^T dz: weight transport (the network's own backward)
register_rule("feedback_alignment", send=lambda back, w, b, e: back(b), init=_like_w)  # B^T dz, B fixed random
register_rule("direct_feedback_alignment", send=lambda back, w, b, e: e @ b, init=_to_output)  # B^T e, straight down
register_rule("sign_symmetry", send=lambda back, w, b, e: back(jnp.sign(w)))  # sign(W)^T dz
register_rule("kolen_pollack", **kolen_pollack())
