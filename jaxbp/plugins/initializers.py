"""How a dense layer draws its weights and biases: ``model.init`` and ``model.bias_init``.

Weights ``w`` of shape (d_out, d_in): ``fan_in = d_in``, ``fan_out = d_out``. Variance scaling:

    he      Var = 2 / fan_in              (relu-like; He et al. 2015)
    glorot  Var = 2 / (fan_in + fan_out)  (Glorot & Bengio 2010)
    lecun   Var = 1 / fan_in              (LeCun et al. 1998; selu)

each drawn ``_normal`` (N(0, Var), not truncated) or ``_uniform`` (U(-a, a) with a = sqrt(3 Var), the same
variance); a bare family name is normal. ``normal(std)`` and ``uniform(a)`` give a fixed scale. ``"auto"``
(the default) is he_normal after a relu-like activation (``Activation.init == "he"``), glorot_normal otherwise.
Biases: a number (a constant, 0 by default), ``normal(std)`` or ``uniform(a)``.
"""

from __future__ import annotations

import math
import re
from typing import Callable

import jax
import jax.numpy as jnp

from ..errors import ConfigError

FAMILIES = {"he": lambda fan_in, fan_out: 2.0 / fan_in, "glorot": lambda fan_in, fan_out: 2.0 / (fan_in + fan_out),
            "lecun": lambda fan_in, fan_out: 1.0 / fan_in}
_FIXED = re.compile(r"^(normal|uniform)\(\s*([0-9.eE+-]+)\s*\)$")
GRAMMAR = ("'auto', he / glorot / lecun with _normal or _uniform (a bare name is normal), normal(std) or "
           "uniform(a), e.g. 'glorot_uniform' or 'normal(0.01)'")


def _fixed(spec: str, what: str) -> tuple[str, float] | None:
    match = _FIXED.match(spec.strip())
    if match is None:
        return None
    try:
        scale = float(match.group(2))
    except ValueError:
        scale = math.nan
    if not scale >= 0 or math.isinf(scale):
        raise ConfigError(f"{what} {spec!r}: the scale must be a finite number >= 0")
    return match.group(1), scale


def _draw(kind: str, key, shape, scale: float, dtype):
    if kind == "normal":
        return scale * jax.random.normal(key, shape, dtype)  # std * N(0, 1)
    return jax.random.uniform(key, shape, dtype, -scale, scale)  # U(-a, a)


def weight_init(spec: str | None, default: str) -> Callable:
    """``(key, (d_out, d_in), dtype) -> w`` for ``spec``; ``default`` ("he" or "glorot") is what "auto" means."""
    spec = "auto" if spec is None else spec
    if not isinstance(spec, str):
        raise ConfigError(f"model.init must be a string: {GRAMMAR}; got {spec!r}")
    fixed = _fixed(spec, "model.init")
    if fixed is not None:
        kind, scale = fixed
        return lambda key, shape, dtype: _draw(kind, key, shape, scale, dtype)
    family, _, kind = (default if spec == "auto" else spec).partition("_")
    kind = kind or "normal"
    if family not in FAMILIES or kind not in ("normal", "uniform"):
        raise ConfigError(f"unknown model.init {spec!r}; give {GRAMMAR}")

    def init(key, shape, dtype):
        var = FAMILIES[family](shape[1], shape[0])
        if kind == "normal":
            return math.sqrt(var) * jax.random.normal(key, shape, dtype)  # std = sqrt(Var); "auto": as jaxbp always drew
        return _draw("uniform", key, shape, math.sqrt(3.0 * var), dtype)  # Var(U(-a, a)) = a^2 / 3

    return init


def bias_init(spec: float | str) -> Callable:
    """``(key, (d_out,), dtype) -> b``: a constant, ``normal(std)`` or ``uniform(a)``."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool) and math.isfinite(spec):
        return lambda key, shape, dtype: jnp.full(shape, spec, dtype)
    fixed = _fixed(spec, "model.bias_init") if isinstance(spec, str) else None
    if fixed is None:
        raise ConfigError(f"model.bias_init must be a finite number (a constant), normal(std) or uniform(a); "
                          f"got {spec!r}")
    kind, scale = fixed
    return lambda key, shape, dtype: _draw(kind, key, shape, scale, dtype)
