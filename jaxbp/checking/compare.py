"""Comparing a hand-written backward to ``jax.grad`` and to float64 central differences.

Relative errors are per leaf: ``max|a - r| / max(max|a|, max|r|)`` against ``jax.grad``, and
the CS231n per-coordinate ``|a - f| / max(|a|, |f|, floor)`` against finite differences ``f`` at up
to FD_SAMPLES sampled coordinates of every leaf, biases included. The floor is the larger of
FD_FLOOR * max|a_leaf| and the stencil's own rounding error over the band: a coordinate whose
gradient is exactly 0 (a hinge's inactive margin, a bias gradient that sums to 0) is judged against
what the stencil can resolve, not against its rounding noise.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .report import CheckReport, CheckRow

FD_BAND_SMOOTH = 1e-7  # CS231n: relative error <= 1e-7 where the function is smooth
FD_BAND_KINK = 1e-4  # ... and <= 1e-4 near a kink (relu)
FD_STEP_SMOOTH = 1e-3  # 5-point central stencil, truncation error O(h^4)
FD_STEP_KINK = 1e-6  # small enough that a step rarely straddles a relu kink
FD_SAMPLES = 6  # coordinates sampled per leaf
FD_FLOOR = 1e-5  # below this times the leaf's max |gradient|, the FD ratio is taken against the floor
# (the stencil's rounding error, ~1e-13, would otherwise make an exact zero look like a 100% error)
FD_ROUNDING = 16 * float(np.finfo(np.float64).eps)  # the stencil's rounding error is ~ this * max|f| / h


def relative_error(analytic, reference) -> float:
    """Normwise: max|a - r| / max(max|a|, max|r|); inf when the shapes differ."""
    a, r = np.asarray(analytic, np.float64), np.asarray(reference, np.float64)
    if a.shape != r.shape:
        return math.inf
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(r), initial=0.0))
    return 0.0 if scale == 0 else float(np.max(np.abs(a - r)) / scale)


def _fd_estimates(f, primal, seed: int, step: float):
    """Up to FD_SAMPLES sampled coordinates per leaf and their central differences.

    f'(x) ~ (f(x - 2h) - 8 f(x - h) + 8 f(x + h) - f(x + 2h)) / 12h.
    """
    flat, unravel = ravel_pytree(primal)
    sizes = [leaf.size for leaf in jax.tree.leaves(primal)]
    offsets = np.cumsum([0] + sizes[:-1])
    rng = np.random.default_rng(seed)
    picks = [rng.choice(size, size=min(size, FD_SAMPLES), replace=False) for size in sizes]
    index = np.concatenate([offset + p for offset, p in zip(offsets, picks)])
    h = jnp.zeros((len(index), flat.size), flat.dtype).at[np.arange(len(index)), index].set(step)
    f_flat = jax.jit(jax.vmap(lambda v: f(unravel(v))))
    values = [np.asarray(f_flat(flat + m * h), np.float64) for m in (-2, -1, 1, 2)]
    fd = (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * step)
    rounding = FD_ROUNDING * np.max(np.abs(values), axis=0) / step  # per coordinate: what the stencil resolves
    return picks, fd, rounding


def _finite_differences(picks, fd, rounding, analytic, band: float) -> list[float]:
    """Worst CS231n relative error per leaf over the sampled central differences."""
    errors, split = [], np.cumsum([len(p) for p in picks])[:-1]
    for p, fd_leaf, noise, an_leaf in zip(picks, np.split(fd, split), np.split(rounding, split),
                                          jax.tree.leaves(analytic)):
        an_leaf = np.asarray(an_leaf, np.float64).reshape(-1)
        an = an_leaf[p]
        floor = np.maximum(FD_FLOOR * np.max(np.abs(an_leaf), initial=0.0), noise / band)
        denominator = np.maximum(np.maximum(np.abs(an), np.abs(fd_leaf)), floor)
        ratio = np.abs(an - fd_leaf) / np.where(denominator > 0, denominator, 1.0)
        errors.append(float(np.max(ratio, initial=0.0)))
    return errors


_REFERENCES: dict = {}  # memo key -> (plugin, jax.grad reference, finite differences): shared by the variants


def compare(subject: str, f: Callable[[Any], jax.Array], primal, analytic, *, smooth: bool, seed: int = 0,
            per_example=None, reference=None, memo=None) -> CheckReport:
    """Check ``analytic`` (a pytree like ``primal``) against ``jax.grad(f)(primal)`` and finite differences.

    ``memo=(plugin, ...)``: ``f`` and ``primal`` are fixed by that plugin object and the rest of the key, so the
    reference and the finite differences (two compiles) are computed once and reused, e.g. by every variant.
    """
    band, step = (FD_BAND_SMOOTH, FD_STEP_SMOOTH) if smooth else (FD_BAND_KINK, FD_STEP_KINK)
    key = None if memo is None else (id(memo[0]), subject, seed) + tuple(memo[1:])
    if key in _REFERENCES:
        _, reference, estimates = _REFERENCES[key]
    else:
        reference = jax.jit(jax.grad(f))(primal) if reference is None else reference
        estimates = _fd_estimates(f, primal, seed, step)
        if key is not None:
            _REFERENCES[key] = (memo[0], reference, estimates)  # holding the plugin keeps its id unique
    paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(primal)[0]]
    ref_leaves, an_leaves = jax.tree.leaves(reference), jax.tree.leaves(analytic)
    if jax.tree.structure(reference) != jax.tree.structure(analytic):
        return CheckReport(tuple(CheckRow(subject, p or "(all)", math.inf, math.inf, 0.0) for p in paths))
    shapes_match = all(jnp.shape(a) == jnp.shape(r) for a, r in zip(an_leaves, ref_leaves))
    fd_errors = _finite_differences(*estimates, analytic, band) if shapes_match else [math.inf] * len(paths)
    per_ex = jax.tree.leaves(per_example) if per_example is not None else [None] * len(paths)
    rows = tuple(
        CheckRow(subject, path or "(input)", relative_error(a, r), fd, band,
                 math.nan if pe is None else relative_error(np.mean(np.asarray(pe), axis=0), a))
        for path, a, r, fd, pe in zip(paths, an_leaves, ref_leaves, fd_errors, per_ex)
    )
    return CheckReport(rows)
