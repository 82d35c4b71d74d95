"""The valid range of every optimizer and schedule argument, checked before anything is built.

A value outside it does not fail loudly in optax: ``eps = 0`` divides by zero at the first zero
gradient, ``b1 = -5`` or ``momentum = -3`` make the iterates grow without bound, a learning rate
of 1e308 overflows. Each error states the range.
"""

from __future__ import annotations

import math

from ..errors import ConfigError

MAX_LEARNING_RATE = 1e6  # beyond this no network trains; 1e308 overflows the update itself

# key -> (low, high, low included, high included, why)
RANGES = {
    "learning_rate": (0.0, MAX_LEARNING_RATE, False, True, "the step size"),
    "momentum": (0.0, 1.0, True, False, "0 is none; 1 or more never forgets and diverges"),
    "b1": (0.0, 1.0, True, False, "the first-moment decay"),
    "b2": (0.0, 1.0, True, False, "the second-moment decay"),
    "decay": (0.0, 1.0, True, False, "the squared-gradient decay"),
    "eps": (0.0, 1.0, False, True, "added to a denominator: 0 divides by zero"),
    "weight_decay": (0.0, 1.0, True, True, "the fraction of the weights removed per unit of learning rate"),
    "end_factor": (0.0, 1.0, True, True, "the final learning rate as a fraction of the peak"),
    "decay_rate": (0.0, 1.0, False, True, "the factor the rate falls by over decay_steps"),
}


def describe(low: float, high: float, low_in: bool, high_in: bool) -> str:
    return f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"


def check_ranges(section: dict) -> None:
    """Every argument of the [optimizer] section that has a range must lie in it (a list: each entry)."""
    for key, (low, high, low_in, high_in, why) in RANGES.items():
        if key not in section:
            continue
        values = section[key] if isinstance(section[key], list) else [section[key]]
        for value in values:
            inside = math.isfinite(value) and (low <= value if low_in else low < value) and (
                value <= high if high_in else value < high)
            if not inside:
                raise ConfigError(f"optimizer.{key} must be a number in {describe(low, high, low_in, high_in)} "
                                  f"({why}); got {value!r}")
