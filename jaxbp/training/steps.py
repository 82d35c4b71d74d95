"""Training steps: hand-written gradients into any optax ``GradientTransformation``.

``make_train_step`` is one jitted step; ``make_scan_step`` fuses K steps into one ``lax.scan``
(small models are bound by dispatch, not arithmetic); ``make_replica_step`` trains K models
(stacked params and optimizer states: other seeds, other learning rates) in one vmapped step.
Ragged last batches are dropped by the data loader, so shapes -- and the compiled step -- never change.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from . import checked as _checked
from ..errors import ConfigError
from ..scale.fold import fold_batch_sums
from ..networks import Model, modal_names
from ..plugins.modes import refuse_mixing
from ..plugins.rules import join, split, trainable
from ..privacy import DPConfig, fold_noise, private_step_fn


def per_example_value_and_grad(model: Model) -> Callable:
    """The notes' sum form: mean over i of the single-point gradients (a_i - y_i) x_i^T, in train mode
    ``(params, x, y) -> (value, grads, params with the new state and key)``.

    The single-example rule is vmapped as written; only the sum over i is fused into a matmul.
    """
    each = model.train_per_example_value_and_grad
    if each is None and model.modal:
        raise ConfigError(f"per_example=True needs the model's train-mode per-example gradients "
                          f"(train_per_example_value_and_grad) for its modal layers ({', '.join(modal_names(model))})")
    if each is None:  # a Model built by hand: its per-example rule, the params passed through
        each = lambda params, x, y: (*model.per_example_value_and_grad(params, x, y), params)  # noqa: E731

    def value_and_grad(params, x, y):
        losses, grads, params = each(params, x, y)
        return jnp.mean(losses), jax.tree.map(lambda g: jnp.mean(g, axis=0), grads), params

    return fold_batch_sums(value_and_grad)


def train_step_fn(model: Model, optimizer: optax.GradientTransformation, *, per_example: bool = False,
                  privacy: DPConfig | None = None) -> Callable:
    """The pure, un-jitted step ``(params, opt_state, x, y) -> (params, opt_state, loss)``.

    With ``privacy`` it is DP-SGD (``jaxbp.privacy``): ``optimizer`` must be ``jaxbp.private_optimizer(opt,
    privacy)``, and the step takes an optional ``mask`` of the real rows of a Poisson batch.
    """
    if per_example or privacy is not None:  # batch norm has no per-example gradient; dropout has, its mask's row
        refuse_mixing(model.layers, "per_example=True" if per_example else "private training")
    if privacy is not None:
        if model.rule != "backprop" or per_example:
            raise ConfigError(f"private training clips the exact per-example gradients of the backprop rule, from "
                              f"the batched backward; drop per_example=True and use rule 'backprop' (got rule "
                              f"{model.rule!r}, per_example={per_example})")
        return private_step_fn(model, optimizer, privacy)
    value_and_grad = train_value_and_grad(model)
    if per_example:  # train mode: example i's dropout mask is row i of the batched step's
        value_and_grad = per_example_value_and_grad(model)

    def step(params, opt_state, x, y):
        loss, grads, params = value_and_grad(params, x, y)  # hand-written, never jax.grad; train mode: new state
        params, fixed = split(params)  # fixed feedback matrices, the layers' state and key pass beside the optimizer
        if fixed is not None:
            _check_opt_state(model, optimizer, opt_state, params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return join(optax.apply_updates(params, updates), fixed), opt_state, loss  # loss at the incoming params

    return step


def train_value_and_grad(model: Model) -> Callable:
    """``(params, x, y) -> (value, grads, params with the new state)`` in train mode, for any Model."""
    if model.train_value_and_grad is not None:
        return model.train_value_and_grad
    return lambda params, x, y: (*model.value_and_grad(params, x, y), params)


def _check_opt_state(model: Model, optimizer, opt_state, trained) -> None:
    """At trace time: the optimizer state must be built from the trainable params alone."""
    if jax.tree.structure(opt_state) != jax.tree.structure(jax.eval_shape(optimizer.init, trained)):
        raise ConfigError(f"opt_state does not match the trainable params: under rule {model.rule!r} the fixed "
                          f"feedback matrices, and the layers' state and key, are not the optimizer's; build the "
                          f"state with optimizer.init(jaxbp.trainable(params))")


def make_train_step(model: Model, optimizer: optax.GradientTransformation, *, per_example: bool = False,
                    checks: bool = False, privacy: DPConfig | None = None) -> Callable:
    """A jitted step ``(params, opt_state, x, y) -> (params, opt_state, loss)``; ``checks=True`` checks the
    values inside jit too (NaN/Inf, label and target ranges: the same DataError as outside jit, at a cost)."""
    return _checked.jit(train_step_fn(model, optimizer, per_example=per_example, privacy=privacy), checks)


def scan_steps(step: Callable) -> Callable:
    """Fuse a step over K batches: ``(params, opt_state, xs (K, B, d), ys (K, B, ...)) -> (..., losses (K,))``;
    a private step also takes masks (K, B)."""

    def run(params, opt_state, xs, ys, *masks):
        def body(carry, batch):
            params, opt_state, loss = step(*carry, *batch)
            return (params, opt_state), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), (xs, ys, *masks))
        return params, opt_state, losses

    return run


def make_scan_step(model: Model, optimizer: optax.GradientTransformation, *, per_example: bool = False,
                   checks: bool = False, privacy: DPConfig | None = None) -> Callable:
    """K steps inside one jitted ``lax.scan``; same result as K calls of ``make_train_step``."""
    return _checked.jit(scan_steps(train_step_fn(model, optimizer, per_example=per_example, privacy=privacy)),
                        checks)


def make_replica_step(model: Model, optimizer: optax.GradientTransformation, *, per_example: bool = False,
                      scan: bool = False, checks: bool = False, privacy: DPConfig | None = None) -> Callable:
    """Train K replicas at once: params and opt_state carry a leading K axis; the batches (and masks) are shared."""
    step = train_step_fn(model, optimizer, per_example=per_example, privacy=privacy)
    step = scan_steps(step) if scan else step
    return _checked.jit(lambda params, opt_state, *batch: jax.vmap(step, in_axes=(0, 0) + (None,) * len(batch))(
        params, opt_state, *batch), checks)


def init_replicas(model: Model, optimizer: optax.GradientTransformation, keys: jax.Array):
    """Stacked params and optimizer states, one replica per key (jitted: op by op, vmapped init is slow).

    A private optimizer's noise key is folded with the replica's index, so replicas draw their own noise.
    """

    @jax.jit
    def init(keys):
        params = jax.vmap(model.init)(keys)
        states = jax.vmap(optimizer.init)(trainable(params))
        return params, jax.vmap(fold_noise)(states, jnp.arange(keys.shape[0]))

    return init(keys)


def predicted_class(z: jax.Array) -> jax.Array:
    """The class of each row of outputs ``z`` (n, k): argmax over k outputs, or z > 0 for a single output."""
    return (z[:, 0] > 0).astype(jnp.int32) if z.shape[-1] == 1 else jnp.argmax(z, axis=-1)


def evaluate(model: Model, params, x, y) -> tuple[jax.Array, jax.Array]:
    """Mean loss and accuracy of ``predicted_class`` against the targets' class."""
    z, t = model.apply(params, x), model.targets(y)
    target = (t[:, 0] > 0.5).astype(jnp.int32) if t.shape[-1] == 1 else jnp.argmax(t, axis=-1)
    return model.loss(params, x, y), jnp.mean(predicted_class(z) == target)


def is_regression(y) -> bool:
    """Float targets (a regression: mse or huber on a file's continuous column) rather than int class labels."""
    return jnp.issubdtype(jnp.asarray(y).dtype, jnp.floating)


def regression_scores(model: Model, params, x, y) -> dict:
    """loss, mse (mean over examples of the squared error summed over outputs), mae (mean absolute error over
    every target) and r2 = 1 - SS_res / SS_tot (summed over outputs; each output's mean is that of these targets)."""
    z, t = model.predict(params, x), model.targets(y)
    residual = z - t
    total = jnp.sum((t - jnp.mean(t, axis=0)) ** 2)
    return {"loss": model.loss(params, x, y), "mse": jnp.mean(jnp.sum(residual ** 2, axis=-1)),
            "mae": jnp.mean(jnp.abs(residual)), "r2": 1.0 - jnp.sum(residual ** 2) / jnp.maximum(total, 1e-30)}


def scores(model: Model, params, x, y) -> dict:
    """{"loss", "accuracy"} for class labels; {"loss", "mse", "mae", "r2"} for float targets."""
    if is_regression(y):
        return regression_scores(model, params, x, y)
    loss, accuracy = evaluate(model, params, x, y)
    return {"loss": loss, "accuracy": accuracy}
