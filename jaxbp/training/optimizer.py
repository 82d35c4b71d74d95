"""The optax optimizer an [optimizer] section names, its learning rate injected so replicas can differ."""

from __future__ import annotations

import optax

from ..config import OPTIMIZERS, OptimizerConfig


def make_optimizer(section: OptimizerConfig, wrap=None) -> optax.GradientTransformation:
    """The optax optimizer the [optimizer] section names, its learning rate injected as a hyperparameter.

    ``opt_state.hyperparams["learning_rate"]`` holds the peak rate, so replicas stacked with
    ``jax.vmap`` can each carry their own; the schedule multiplies it: lr(t) = rate * shape(t).
    """
    factory = OPTIMIZERS[section.name][0]
    args = section.arguments
    if "momentum" in args and args["momentum"] == 0.0:
        args["momentum"] = None  # optax's plain (momentum-free) form
    shape = _schedule_shape(section)

    def build(learning_rate):
        def rate(count):  # the schedule sees a float step, so it is as precise as the params
            return learning_rate * shape(count.astype(learning_rate.dtype))

        optimizer = factory(learning_rate if shape is None else rate, **args)
        return optimizer if wrap is None else wrap(optimizer)  # e.g. jaxbp.private_optimizer: DP noise first

    return optax.inject_hyperparams(build)(learning_rate=section.rates[0])


def _schedule_shape(section: OptimizerConfig):
    """The schedule with peak 1, or None for a constant rate."""
    name, steps = section.schedule, section.decay_steps
    if name == "constant":
        return None
    if name == "linear":
        return optax.linear_schedule(1.0, section.end_factor, steps)
    if name == "cosine":
        return optax.cosine_decay_schedule(1.0, steps, alpha=section.end_factor)
    if name == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, 1.0, section.warmup_steps, steps, section.end_factor)
    return optax.exponential_decay(1.0, steps, section.decay_rate)  # rate ** (t / decay_steps)
