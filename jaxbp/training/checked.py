"""Opt-in value checks inside a jitted step (``checks=True``), with ``jax.experimental.checkify``.

Outside ``jit`` the model checks values (NaN/Inf in x or y, labels out of range, float targets out
of range) with numpy. Inside ``jit`` values are tracers, so those checks are skipped -- unless the
step is traced under ``validate.traced_checks()``: then each becomes a ``checkify.check`` with the
same message, and the step raises the same ``DataError`` after the call. The cost is a reduction
over the batch per check, and one host sync per call to read the error (see README, "Errors").
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
from jax.experimental import checkify

from ..errors import DataError
from ..boundary.validate import traced_checks

_SUFFIX = " (`check` failed)"


def jit(fn: Callable, checks: bool = False) -> Callable:
    """``jax.jit(fn)``, or with ``checks`` a jitted, checkified ``fn`` that raises DataError on bad values."""
    if not checks:
        return jax.jit(fn)

    def traced(*args):
        with traced_checks():
            return fn(*args)

    checked = jax.jit(checkify.checkify(traced, errors=checkify.user_checks))

    @functools.wraps(fn)
    def run(*args):
        error, out = checked(*args)
        message = error.get()
        if message:
            raise DataError(message.split(_SUFFIX)[0].strip())
        return out

    return run
