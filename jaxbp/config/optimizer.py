"""The [optimizer] section: an optax optimizer by name, its arguments with their ranges, a learning-rate schedule."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import optax

from ..errors import ConfigError
from .fields import at_least, in_range, one_of, setting

MAX_LEARNING_RATE = 1e6  # beyond this no network trains; 1e308 overflows the update itself
# an unset optimizer.learning_rate: the run writes the rate that trains its kind of run (default_rate)
RATE, REGRESSION_RATE, PRIVATE_RATE_PER_EXAMPLE = 0.2, 0.02, 0.3 / 256
ADAPTIVE_RATE = 1e-3  # adam, adamw, rmsprop: optax's and Keras's rate; their steps are about the rate in size
ADAPTIVE = ("adam", "adamw", "rmsprop")

# optimizer name -> (optax factory, its arguments with defaults); momentum 0 means none
OPTIMIZERS = {
    "sgd": (optax.sgd, {"momentum": 0.0, "nesterov": False}),
    "adam": (optax.adam, {"b1": 0.9, "b2": 0.999, "eps": 1e-8}),
    "adamw": (optax.adamw, {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-4}),
    "rmsprop": (optax.rmsprop, {"decay": 0.9, "eps": 1e-8, "momentum": 0.0, "nesterov": False}),
}
# schedule name -> its arguments; lr(t) = learning_rate * shape(t), decay_steps = 0 means the whole run
SCHEDULES = {
    "constant": {},
    "linear": {"end_factor": 0.0, "decay_steps": 0},
    "cosine": {"end_factor": 0.0, "decay_steps": 0},
    "warmup_cosine": {"warmup_steps": 100, "end_factor": 0.0, "decay_steps": 0},
    "exponential": {"decay_rate": 0.1, "decay_steps": 0},
}


def _rates_given(where, value):
    if value == ():
        raise ConfigError(f"{where} must be a number > 0 or a non-empty list of them; got []")


@dataclass(frozen=True)
class OptimizerConfig:
    """[optimizer]: an optax optimizer by name, its arguments and a learning-rate schedule.

    The arguments that apply are the chosen optimizer's and schedule's (OPTIMIZERS, SCHEDULES); the
    others are None and absent from the table. A value outside its range does not fail loudly in optax
    (``eps = 0`` divides by zero, ``b1 = -5`` diverges), so each has its range here.
    """

    name: str = setting("sgd", one_of(*OPTIMIZERS))
    learning_rate: float | tuple[float, ...] | None = setting(
        None, _rates_given, in_range(0.0, MAX_LEARNING_RATE, False, True, "the step size"),
        help=f"the run writes {RATE:g} for sgd (a private run 0.3 x train.batch_size / 256; a regression (mse, "
             f"huber) at most {REGRESSION_RATE:g}), {ADAPTIVE_RATE:g} for {', '.join(ADAPTIVE)}")
    schedule: str = setting("constant", one_of(*SCHEDULES))
    momentum: float | None = setting(None, in_range(0.0, 1.0, True, False, "0 is none; 1 or more never forgets and diverges"))
    nesterov: bool | None = setting(None)
    b1: float | None = setting(None, in_range(0.0, 1.0, True, False, "the first-moment decay"))
    b2: float | None = setting(None, in_range(0.0, 1.0, True, False, "the second-moment decay"))
    decay: float | None = setting(None, in_range(0.0, 1.0, True, False, "the squared-gradient decay"))
    eps: float | None = setting(None, in_range(0.0, 1.0, False, True, "added to a denominator: 0 divides by zero"))
    weight_decay: float | None = setting(None, in_range(
        0.0, 1.0, True, True, "the fraction of the weights removed per unit of learning rate"))
    end_factor: float | None = setting(None, in_range(0.0, 1.0, True, True, "the final learning rate as a fraction of the peak"))
    decay_rate: float | None = setting(None, in_range(0.0, 1.0, False, True, "the factor the rate falls by over decay_steps"))
    warmup_steps: int | None = setting(None, at_least(0))
    decay_steps: int | None = setting(None, at_least(0))  # 0: the run's length, filled in by the run

    @classmethod
    def known_keys(cls, table: dict) -> list[str]:
        """name, learning_rate, schedule, then the chosen optimizer's and schedule's arguments."""
        name, schedule = table.get("name") or "sgd", table.get("schedule") or "constant"
        for key, value, choices in (("name", name, OPTIMIZERS), ("schedule", schedule, SCHEDULES)):
            if not isinstance(value, str):
                raise ConfigError(f"optimizer.{key} must be a string, e.g. \"relu\"; got {value!r} ({type(value).__name__})")
            one_of(*choices)(f"optimizer.{key}", value)
        return ["name", "learning_rate", "schedule", *OPTIMIZERS[name][1], *SCHEDULES[schedule]]

    @property
    def arguments(self) -> dict:
        """The optimizer's own arguments (momentum, b1, ...), as optax takes them."""
        return {key: getattr(self, key) for key in OPTIMIZERS[self.name][1]}

    @property
    def rates(self) -> tuple[float, ...]:
        """The peak learning rate of each replica (one entry unless ``learning_rate`` is a list)."""
        return self.learning_rate if isinstance(self.learning_rate, tuple) else (self.learning_rate,)

    def finish(self) -> OptimizerConfig:
        applicable = {**OPTIMIZERS[self.name][1], **SCHEDULES[self.schedule]}
        return dataclasses.replace(self, **{k: v for k, v in applicable.items() if getattr(self, k) is None})

    def resolved(self, total_steps: int, rate: float = RATE) -> OptimizerConfig:
        """``decay_steps = 0`` replaced by the run length, an unset learning rate by ``rate`` (``default_rate``);
        the warmup must fit inside the run."""
        section = self if self.learning_rate is not None else dataclasses.replace(self, learning_rate=rate)
        if section.decay_steps == 0:
            section = dataclasses.replace(section, decay_steps=max(int(total_steps), 1))
        if (section.warmup_steps or 0) >= (section.decay_steps or 1):
            raise ConfigError(f"optimizer.warmup_steps ({section.warmup_steps}) must be below optimizer.decay_steps "
                              f"({section.decay_steps}, which counts the warmup too); lower warmup_steps")
        return section


def default_rate(regression: bool, private_batch: int | None = None, optimizer: str = "sgd") -> float:
    """The learning rate an unset ``optimizer.learning_rate`` becomes: 1e-3 for adam, adamw and rmsprop; for sgd
    0.2, or a private run's; at most 0.02 for a regression.

    Adam's step is about the rate in size whatever the gradient's scale, so 1e-3 (optax's and Keras's) suits
    every kind of run, private and regression included; at sgd's 0.2 each weight moves by 0.2 a step.

    0.2 trains the classifiers. A regression (mse, huber) takes 0.02: with standardized inputs and targets the
    squared error's curvature at the output is 1 in every direction (softmax cross-entropy's is at most 1/2, and
    0 along the logits' common shift), so the loss's sharpest direction at the default 2-64-64-1 network's
    initialization is about 69 (2/69 = 0.029 is SGD's stability limit; it grows with the last hidden width: 19
    at 16 units, 202 at 256). A private run (DP-SGD) at batch B takes 0.3 B / 256: its noise, sigma C / B in the
    mean gradient, is a random walk in the weights at a fixed rate with small batches (digits at epsilon 3:
    batch 32 at 0.2 ended at 73% with the loss rising; batch 256 at 0.3, 94%).
    """
    if optimizer in ADAPTIVE:
        return ADAPTIVE_RATE
    rate = PRIVATE_RATE_PER_EXAMPLE * private_batch if private_batch else RATE
    return float(f"{min(rate, REGRESSION_RATE) if regression else rate:.3g}")
