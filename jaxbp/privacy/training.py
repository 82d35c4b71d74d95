"""The ``[privacy]`` section of a run: checks, the noise it needs, Poisson batches, epsilon per epoch.

With ``privacy.enabled`` the run is DP-SGD: batches are Poisson samples at rate q = batch_size / n
(unless ``sampling = "shuffle"``), each example's gradient is clipped to ``clip_norm``, and the noise
multiplier is ``noise_multiplier`` or, given ``target_epsilon``, the accountant's calibration for the
whole run. Every epoch records the epsilon spent so far; the summary records the guarantee.
"""

from __future__ import annotations

import functools

from ..errors import ConfigError
from .accounting import calibrate_sigma, epsilon
from .noise import DPConfig
from .sampling import capacity, poisson_batches

SAMPLINGS = ("poisson", "shuffle")


def plan(section, n_train: int, batch: int, steps: int, split: int = 1) -> dict | None:
    """The resolved settings of a private run (None when ``privacy.enabled`` is false); checks that it can be private
    with this data (the [privacy] section's own checks are the config's).

    ``split``: the devices a batch is split over; a Poisson batch's capacity is rounded up to a multiple of it
    (more padding rows, masked out: the same sample, the same sum).
    """
    if not section.enabled:
        return None
    accountant, sampling, delta = section.accountant, section.sampling, section.delta  # names checked at the door
    if not 0 < delta < 1 / n_train:
        raise ConfigError(f"privacy.delta = {delta} must be in (0, 1/n) = (0, {1 / n_train:.3g}) for the "
                          f"{n_train} training examples (delta >= 1/n allows leaking one whole example); "
                          f"use e.g. {_suggest_delta(n_train):g}")
    sigma, target = section.noise_multiplier, section.target_epsilon
    if sigma is None and target is None:
        raise ConfigError("a private run needs privacy.noise_multiplier (the noise; epsilon follows) or "
                          "privacy.target_epsilon (the budget; the noise follows), e.g. --set privacy.target_epsilon=3")
    q = batch / n_train
    if sigma is None:
        sigma = _calibrate(target, q, steps, delta, accountant)  # the run writes it into its config
    elif target is not None and epsilon(q, sigma, steps, delta, accountant) > target * 1.001:
        raise ConfigError(f"privacy.noise_multiplier = {sigma:g} over {steps} steps spends epsilon "
                          f"{epsilon(q, sigma, steps, delta, accountant):.3g} > privacy.target_epsilon = {target:g}; "
                          f"train fewer epochs, or start a new run with a new budget")
    rows = -(-capacity(n_train, q) // split) * split if sampling == "poisson" else batch
    return {"clip_norm": section.clip_norm, "noise_multiplier": sigma, "delta": delta, "q": q,
            "expected_batch_size": q * n_train, "capacity": rows, "sampling": sampling, "accountant": accountant,
            "target_epsilon": target}


@functools.lru_cache(maxsize=32)
def _calibrate(target: float, q: float, steps: int, delta: float, accountant: str) -> float:
    return calibrate_sigma(target, q, steps, delta, accountant)


def _suggest_delta(n: int) -> float:
    return 10.0 ** -(len(str(n)) + 1)  # a power of ten below 1/(10 n)


def dp_config(settings: dict, seed: int) -> DPConfig:
    return DPConfig(settings["clip_norm"], settings["noise_multiplier"], settings["expected_batch_size"], seed)


def sampler(settings: dict, steps: int):
    """``(key, n) -> (indices, masks, dropped)`` for one epoch of Poisson batches; None for shuffled batches."""
    if settings["sampling"] != "poisson":
        return None
    return lambda key, n: poisson_batches(key, n, settings["q"], steps, settings["capacity"])


def epoch_row(settings: dict, step: int, metrics: dict) -> dict:
    """The privacy columns of one metrics row: epsilon spent after ``step`` steps, examples dropped this epoch."""
    eps = epsilon(settings["q"], settings["noise_multiplier"], step, settings["delta"], settings["accountant"])
    return {"epsilon": eps, "dropped": int(metrics.get("dropped", 0))}


def summary(settings: dict, rows: list[dict]) -> dict:
    """The guarantee of the run: epsilon (the accountant's, at the last step), delta, sigma, C, q, steps."""
    last = rows[-1]
    return {"epsilon": last["epsilon"], "delta": settings["delta"], "noise_multiplier": settings["noise_multiplier"],
            "clip_norm": settings["clip_norm"], "q": settings["q"], "steps": last["step"],
            "accountant": settings["accountant"], "sampling": settings["sampling"],
            "expected_batch_size": settings["expected_batch_size"], "capacity": settings["capacity"],
            "target_epsilon": settings["target_epsilon"],
            "dropped_examples": sum(row.get("dropped", 0) for row in rows),
            "note": None if settings["sampling"] == "poisson" else
            "shuffled fixed-size batches: the Poisson accounting above does not strictly hold for them"}
