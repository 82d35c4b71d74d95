"""Privacy accounting with Google's ``dp-accounting`` (the optional extra ``jaxbp[privacy]``).

DP-SGD with Poisson sampling rate q and noise multiplier sigma is ``steps`` compositions of
``PoissonSampledDpEvent(q, GaussianDpEvent(sigma))``; the RDP or the PLD accountant turns that
into the epsilon of an (epsilon, delta) guarantee, and ``calibrate_dp_mechanism`` finds the sigma
that reaches a target epsilon.
"""

from __future__ import annotations

import contextlib
import logging
import math

from ..errors import ConfigError, MissingExtraError

ACCOUNTANTS = ("rdp", "pld")
PLD_INTERVAL = 1e-3  # coarser than dp-accounting's 1e-4: ~10x faster, epsilon a slightly looser upper bound


def _dp_accounting():
    try:
        import dp_accounting
    except ImportError:
        raise MissingExtraError("privacy accounting needs Google's dp-accounting package: "
                                "pip install 'jaxbp[privacy]' (or pip install dp-accounting)") from None
    return dp_accounting


@contextlib.contextmanager
def _quiet():
    """RDP logs (absl) each Renyi order it leaves out as not converging; the bound stays valid, so hush it."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def make_accountant(name: str):
    """A fresh ``dp_accounting`` accountant: "rdp" (Renyi DP) or "pld" (privacy loss distributions)."""
    dp = _dp_accounting()
    if name == "rdp":
        return dp.rdp.RdpAccountant()
    if name == "pld":
        return dp.pld.PLDAccountant(value_discretization_interval=PLD_INTERVAL)
    raise ConfigError(f"unknown privacy accountant {name!r}; known: {', '.join(ACCOUNTANTS)}")


def dp_sgd_event(q: float, sigma: float, steps: int):
    """``steps`` self-compositions of one Poisson-sampled Gaussian step."""
    dp = _dp_accounting()
    return dp.SelfComposedDpEvent(dp.PoissonSampledDpEvent(q, dp.GaussianDpEvent(sigma)), int(steps))


def epsilon(q: float, sigma: float, steps: int, delta: float, accountant: str = "rdp") -> float:
    """The epsilon of DP-SGD after ``steps`` steps at sampling rate ``q``, noise ``sigma`` and ``delta``."""
    if steps == 0:
        return 0.0
    if sigma == 0:
        return math.inf
    counter = make_accountant(accountant)
    counter.compose(dp_sgd_event(q, sigma, steps))
    with _quiet():
        return float(counter.get_epsilon(delta))


def calibrate_sigma(target_epsilon: float, q: float, steps: int, delta: float, accountant: str = "rdp") -> float:
    """The smallest noise multiplier whose epsilon after ``steps`` steps is at most ``target_epsilon``."""
    dp = _dp_accounting()
    if not target_epsilon > 0:
        raise ConfigError(f"privacy.target_epsilon must be > 0, got {target_epsilon}")
    with _quiet():
        sigma = dp.calibrate_dp_mechanism(lambda: make_accountant(accountant), lambda s: dp_sgd_event(q, s, steps),
                                          target_epsilon, delta, dp.LowerEndpointAndGuess(0.05, 1.0), tol=1e-4)
    sigma = float(sigma)
    while epsilon(q, sigma, steps, delta, accountant) > target_epsilon:  # tol may land just below the boundary
        sigma += 1e-4
    return sigma
