"""Weight penalties in the objective: J = mean loss + l2/2 sum ||W||^2 + l1 sum |W|, with hand-written gradients.

The penalty is part of the loss value every function reports (``loss``, ``value_and_grad``, the steps' loss),
so a logged loss is the regularized objective, as in the references that add the term by hand. Its gradient
``l2 W + l1 sign(W)`` is added to every gradient the model gives: the batched one, each example's (so their mean
is the batched gradient), and a private step's clipped sum, after clipping (the penalty depends on the params
only, not on any example, so it costs no privacy; ``jaxbp.privacy`` adds ``B (l2 W + l1 sign W)`` to the clipped
sum, which after the division by B is the penalty's gradient).

Which leaves: weights, i.e. leaves of 2 or more dimensions (a dense ``w``, a convolution kernel); with
``biases=True`` every trained leaf (biases, a layer norm's scale and offset). A rule's feedback matrices and
modal layers' state are never penalized.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .errors import ConfigError
from .networks import Model
from .plugins.rules import LearnedFeedback, layer_params


def _penalized(leaf, biases: bool) -> bool:
    return biases or jnp.ndim(leaf) >= 2


def penalty_value(params, l2: float, l1: float = 0.0, biases: bool = False) -> jax.Array:
    """l2/2 sum W^2 + l1 sum |W| over the penalized leaves of the layers' params."""
    leaves = [leaf for leaf in jax.tree.leaves(layer_params(params)) if _penalized(leaf, biases)]
    total = sum((0.5 * l2 * jnp.sum(leaf * leaf) + l1 * jnp.sum(jnp.abs(leaf)) for leaf in leaves), jnp.zeros(()))
    return total.astype(jnp.promote_types(total.dtype, jnp.float32))


def penalty_grad(params, l2: float, l1: float = 0.0, biases: bool = False):
    """d/dW of the penalty, shaped like the layers' gradients: l2 W + l1 sign(W) (a subgradient, 0 at W = 0)."""
    # d(l2/2 W^2)/dW = l2 W;  d(l1 |W|)/dW = l1 sign(W)
    return jax.tree.map(lambda w: (l2 * w + l1 * jnp.sign(w)) if _penalized(w, biases) else jnp.zeros_like(w),
                        layer_params(params))


def add_to(grads, params, penalty):
    """``grads`` (as a model's backward gives them: the layers' list, or LearnedFeedback) plus ``penalty(params)``."""
    extra = penalty(params)
    if isinstance(grads, LearnedFeedback):  # Kolen-Pollack: the feedback's updates are left as the rule made them
        return grads._replace(layers=jax.tree.map(jnp.add, grads.layers, extra))
    return jax.tree.map(lambda g, e: g + e.astype(g.dtype), grads, extra)


def regularized(model: Model, l2: float = 0.0, l1: float = 0.0, biases: bool = False) -> Model:
    """``model`` with ``l2/2 sum ||W||^2 + l1 sum |W|`` in its loss and ``l2 W + l1 sign(W)`` in every gradient."""
    for name, value in (("l2", l2), ("l1", l1)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ConfigError(f"model.{name} must be a number >= 0 (the penalty's weight), got {value!r}")
    value_of = lambda params: penalty_value(params, l2, l1, biases)  # noqa: E731
    grad_of = lambda params: penalty_grad(params, l2, l1, biases)  # noqa: E731

    def loss(params, x, y):
        return model.loss(params, x, y) + value_of(params)

    def value_and_grad(params, x, y):
        value, grads = model.value_and_grad(params, x, y)
        return value + value_of(params), add_to(grads, params, grad_of)

    def each_plus(params, values, grads):
        extra = add_to(jax.tree.map(lambda g: jnp.zeros_like(g[0]), grads), params, grad_of)  # one example's share
        return values + value_of(params), jax.tree.map(lambda g, e: g + e[None], grads, extra)

    def per_example_value_and_grad(params, x, y):
        return each_plus(params, *model.per_example_value_and_grad(params, x, y))

    def train_per_example_value_and_grad(params, x, y):
        values, grads, new = model.train_per_example_value_and_grad(params, x, y)
        return (*each_plus(params, values, grads), new)

    def train_loss(params, x, y):
        return (model.train_loss or model.loss)(params, x, y) + value_of(params)

    def train_value_and_grad(params, x, y):
        if model.train_value_and_grad is None:
            return (*value_and_grad(params, x, y), params)
        value, grads, new = model.train_value_and_grad(params, x, y)
        return value + value_of(params), add_to(grads, params, grad_of), new

    return model._replace(loss=loss, value_and_grad=value_and_grad,
                          per_example_value_and_grad=per_example_value_and_grad,
                          per_example_grads=lambda params, x, y: per_example_value_and_grad(params, x, y)[1],
                          train_loss=train_loss, train_value_and_grad=train_value_and_grad,
                          train_per_example_value_and_grad=model.train_per_example_value_and_grad and
                          train_per_example_value_and_grad,
                          penalty=(value_of, grad_of))
