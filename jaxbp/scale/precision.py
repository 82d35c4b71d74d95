"""Mixed precision in the style of ``jmp``: a ``Policy`` of three dtypes and a ``Model`` that follows it.

``param_dtype`` is what params and optimizer state are kept in, ``compute_dtype`` what the forward
and the hand-written backward run in, ``output_dtype`` what the loss value comes back in. The
``bfloat16`` policy keeps params, optimizer state and the loss value in float32 and computes in
bfloat16; the gradients are cast back to float32 before the optimizer sees them. ``jnp.mean`` of a
bfloat16 array sums in float32, so the loss's reduction over the batch is float32 as well.
``float64`` needs x64: ``jaxbp train`` turns it on, ``train()`` turns it on for the run.
"""

from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..errors import ConfigError
from ..networks import Model


class Policy(NamedTuple):
    param_dtype: Any
    compute_dtype: Any
    output_dtype: Any

    def cast_to_param(self, tree):
        return _cast(tree, self.param_dtype)

    def cast_to_compute(self, tree):
        return _cast(tree, self.compute_dtype)

    def cast_to_output(self, tree):
        return _cast(tree, self.output_dtype)


PRECISIONS = {
    "float32": Policy(jnp.float32, jnp.float32, jnp.float32),
    "bfloat16": Policy(jnp.float32, jnp.bfloat16, jnp.float32),
    "float64": Policy(jnp.float64, jnp.float64, jnp.float64),
}


def _cast(tree, dtype):
    """Cast the floating leaves of ``tree`` (labels and keys keep their dtype)."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a, tree)


def get_policy(name: str) -> Policy:
    """The policy of ``train.precision``: float32, bfloat16 or float64."""
    if name not in PRECISIONS:
        raise ConfigError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    if name == "float64" and not jax.config.jax_enable_x64:
        raise ConfigError("precision float64 needs x64: call jax.config.update('jax_enable_x64', True) first "
                          "(jaxbp train and jaxbp.train do it for you)")
    return PRECISIONS[name]


def with_inputs_in(data, name: str):
    """A dataset with its inputs in the ``name`` policy's param dtype (the model casts them on to compute)."""
    dtype = get_policy(name).param_dtype
    data = data._replace(x_train=data.x_train.astype(dtype), x_test=data.x_test.astype(dtype))
    if jnp.issubdtype(data.y_train.dtype, jnp.floating):  # a regression's targets: the same dtype as the outputs
        data = data._replace(y_train=data.y_train.astype(dtype), y_test=data.y_test.astype(dtype))
    return data


@contextlib.contextmanager
def x64_for(name: str):
    """x64 on while a ``float64`` run lasts (and as it was before, afterwards); other precisions change nothing."""
    if name != "float64" or jax.config.jax_enable_x64:
        yield
        return
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", False)


def mixed_precision(model: Model, policy: Policy | str) -> Model:
    """``model`` computing in ``policy.compute_dtype``: params and inputs are cast on the way in, gradients
    to ``param_dtype`` and loss values to ``output_dtype`` on the way out; same names, same signatures."""
    policy = get_policy(policy) if isinstance(policy, str) else policy
    down = policy.cast_to_compute

    def value_and_grad(params, x, y):
        value, grads = model.value_and_grad(down(params), down(x), y)
        return policy.cast_to_output(value), policy.cast_to_param(grads)

    def per_example_value_and_grad(params, x, y):
        values, grads = model.per_example_value_and_grad(down(params), down(x), y)
        return policy.cast_to_output(values), policy.cast_to_param(grads)

    def train_value_and_grad(params, x, y):
        value, grads, new = model.train_value_and_grad(down(params), down(x), y)
        if model.modal:  # the new state back in the param dtype; the trained params as they came, not rounded
            params = params._replace(state=policy.cast_to_param(new.state), key=new.key)
        return policy.cast_to_output(value), policy.cast_to_param(grads), params

    def train_per_example_value_and_grad(params, x, y):
        values, grads, new = model.train_per_example_value_and_grad(down(params), down(x), y)
        if model.modal:  # as train_value_and_grad: the new state in the param dtype, the trained params as they came
            params = params._replace(state=policy.cast_to_param(new.state), key=new.key)
        return policy.cast_to_output(values), policy.cast_to_param(grads), params

    return model._replace(
        train_per_example_value_and_grad=model.train_per_example_value_and_grad and train_per_example_value_and_grad,
        train_loss=lambda params, x, y: policy.cast_to_output(model.train_loss(down(params), down(x), y)),
        train_value_and_grad=train_value_and_grad,
        apply=lambda params, x: policy.cast_to_output(model.apply(down(params), down(x))),
        predict=lambda params, x: policy.cast_to_output(model.predict(down(params), down(x))),
        loss=lambda params, x, y: policy.cast_to_output(model.loss(down(params), down(x), y)),
        value_and_grad=value_and_grad,
        per_example_value_and_grad=per_example_value_and_grad,
        per_example_grads=lambda params, x, y: per_example_value_and_grad(params, x, y)[1])
