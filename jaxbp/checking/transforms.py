"""How a check runs a hand-written backward: under ``jax.jit``, eagerly, or ``jax.vmap`` beside a loop over examples."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ..errors import JaxbpError
from .report import CheckReport, CheckRow

VARIANTS = ("jit", "nojit", "vmap")  # chex-style: a backward that breaks only under one of them is caught there


def run_variant(fn, args: tuple, variant: str, *, in_axes: tuple, one_example: bool = False):
    """``fn(*args)`` run as ``variant`` says: ``(result, looped)``; ``looped`` is None but under "vmap".

    ``in_axes`` marks the arguments with a leading example axis (0) and the shared ones (None).
    "jit" runs ``jax.jit(fn)``, "nojit" runs ``fn`` eagerly, "vmap" runs ``jax.vmap(fn)`` over the examples
    (per-example results, stacked) and returns as ``looped`` the same from a Python loop over the examples.
    ``one_example``: ``fn`` takes a single example, so "jit" and "nojit" loop over the examples too.
    """
    n = next(jax.tree.leaves(a)[0].shape[0] for a, axis in zip(args, in_axes) if axis == 0)
    example = lambda i: [a if axis is None else jax.tree.map(lambda leaf: leaf[i], a) for a, axis in zip(args, in_axes)]
    loop = lambda f: jax.tree.map(lambda *xs: jnp.stack(xs), *[f(*example(i)) for i in range(n)])
    if variant == "vmap":
        return jax.vmap(fn, in_axes=in_axes)(*args), loop(fn)
    run = jax.jit(fn) if variant == "jit" else fn
    return (loop(run) if one_example else run(*args)), None


def to_float64(tree):
    """Floating leaves cast to float64 (call inside ``jax.enable_x64(True)``); ints, e.g. labels, kept."""
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64) if jnp.issubdtype(jnp.result_type(a), jnp.floating)
                        else jnp.asarray(a), tree)


def example_labels(model, key, n: int):
    """Int class labels when the model's loss takes them, float (n, k) targets otherwise."""
    labels = jax.random.randint(key, (n,), 0, max(model.d_out, 2))
    try:
        model.targets(labels)
        return labels
    except JaxbpError:
        return jax.random.uniform(key, (n, model.d_out))


def guarded(subject: str, check, *args, **kwargs):
    """``check(*args)``; a plugin that raises (a bug, a wrong signature) is one failed row naming the exception."""
    try:
        return check(*args, **kwargs)
    except Exception as error:  # any exception of user code is the finding, not a crash
        text = f"raised {type(error).__name__}: {error}".splitlines()[0][:500]
        return CheckReport((CheckRow(subject, text, math.inf, math.inf, 0.0),))  # inf: never ok
