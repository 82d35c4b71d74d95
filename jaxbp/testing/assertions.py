"""chex-style assertions over jaxbp's checker: they raise ``AssertionError`` with the failing rows.

Each gradient assertion runs in float64 inside ``jax.enable_x64(True)``, a context that restores the
caller's x64 setting afterwards, and uses jaxbp's own bands unless given tolerances.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import checking
from ..checking import GRAD_TOL, PER_EXAMPLE_TOL, CheckReport
from ..errors import JaxbpError
from ..networks import Model
from ..checking import to_float64

_VARIANT_WORDS = {"jit": "under jax.jit", "nojit": "eagerly, without jax.jit",
                  "vmap": "under jax.vmap over a leading batch axis"}  # the variant named in every failure


def _fail_if_bad(report: CheckReport, what: str, *, seed: int, grad_tol: float, fd_band: float | None,
                 per_example_tol: float) -> None:
    __tracebackhide__ = True  # pytest shows the message, not these frames
    failures = tuple(row for row in report.rows if not row.passes(grad_tol, fd_band, per_example_tol))
    if not report.rows:
        raise AssertionError(f"{what}: the check compared no leaf at all")
    if failures:
        band = "the band column" if fd_band is None else f"{fd_band:.0e}"
        raise AssertionError(
            f"{what}: {len(failures)} of {len(report.rows)} leaves outside the bands (seed {seed}; "
            f"vs jax.grad <= {grad_tol:.0e}, vs finite differences <= {band}, per-ex <= {per_example_tol:.0e})\n"
            f"{report.table(failures)}"
        )


def assert_plugin_correct(kind: str, name: str, *, variants: Sequence[str] | None = None, seed: int = 0,
                          grad_tol: float = GRAD_TOL, fd_band: float | None = None,
                          per_example_tol: float = PER_EXAMPLE_TOL) -> None:
    """A registered plugin's backward equals ``jax.grad`` and finite differences under every variant.

    ``variants`` defaults to all that ``kind`` supports ("jit", "nojit", "vmap"); ``fd_band=None`` keeps the
    plugin's own band (1e-7 smooth, 1e-4 kinked); "vmap" also compares ``jax.vmap`` with a loop over examples.
    """
    __tracebackhide__ = True  # pytest shows the message, not these frames
    for variant in variants or checking.variants(kind):
        what = f"{kind}:{name} [{variant}], run {_VARIANT_WORDS.get(variant, variant)}"
        try:
            report = checking.check_plugin(kind, name, seed=seed, variant=variant)
        except Exception as error:  # a backward that cannot run under this transform
            if isinstance(error, JaxbpError):
                raise
            raise AssertionError(f"{what}: the plugin raised {type(error).__name__}: {error}") from error
        _fail_if_bad(report, what, seed=seed, grad_tol=grad_tol, fd_band=fd_band, per_example_tol=per_example_tol)


def assert_model_correct(model: Model, params=None, x=None, y=None, *, seed: int = 0, n: int = 8,
                         smooth: bool = False, grad_tol: float = GRAD_TOL, fd_band: float | None = None,
                         per_example_tol: float = PER_EXAMPLE_TOL, name: str = "network") -> None:
    """``model.value_and_grad`` equals ``jax.grad`` of ``model.loss``, finite differences and per-example grads.

    Missing ``params``/``x``/``y`` are drawn from ``seed`` (``n`` examples). ``smooth=False`` checks finite
    differences in the kink band (1e-4), right for relu-like networks; pass True for smooth ones (1e-7).
    """
    __tracebackhide__ = True
    report = checking.check_model(model, smooth=smooth, n=n, seed=seed, name=name, params=params, x=x, y=y)
    _fail_if_bad(report, name, seed=seed, grad_tol=grad_tol, fd_band=fd_band, per_example_tol=per_example_tol)


def assert_backward_matches(forward: Callable, backward: Callable, primal, cotangent=None, *, smooth: bool = True,
                            jit: bool = True, seed: int = 0, grad_tol: float = GRAD_TOL,
                            fd_band: float | None = None, name: str = "backward") -> None:
    """A bare VJP pair: ``backward(*primal, cotangent)`` equals the VJP of ``forward(*primal)``.

    ``primal`` is a tuple of the forward's arguments (or one argument); ``backward`` returns one gradient per
    argument (a tuple, or the single gradient). ``cotangent`` (shaped like the output) defaults to random.
    """
    __tracebackhide__ = True
    single = not isinstance(primal, tuple)
    with jax.enable_x64(True):
        args = to_float64((primal,) if single else primal)
        out = jax.eval_shape(forward, *args)
        if cotangent is None:
            leaves, tree = jax.tree.flatten(out)
            keys = jax.random.split(jax.random.key(seed), len(leaves))
            cotangent = jax.tree.unflatten(tree, [jax.random.normal(k, o.shape) for k, o in zip(keys, leaves)])
        cotangent = to_float64(cotangent)
        analytic = (jax.jit(backward) if jit else backward)(*args, cotangent)
        analytic = (analytic,) if single else analytic
        f = lambda p: sum(jnp.vdot(c, o) for c, o in zip(jax.tree.leaves(cotangent), jax.tree.leaves(forward(*p))))
        report = checking.compare(name, f, args, analytic, smooth=smooth, seed=seed)
    _fail_if_bad(report, f"{name} [{'jit' if jit else 'nojit'}]", seed=seed, grad_tol=grad_tol, fd_band=fd_band,
                 per_example_tol=PER_EXAMPLE_TOL)


def _signature(args) -> list[tuple[str, str]]:
    def describe(leaf):
        if not hasattr(leaf, "shape"):
            return f"Python {type(leaf).__name__} {leaf!r}"
        weak = " (weak type)" if getattr(leaf, "weak_type", False) else ""
        return f"{np.dtype(leaf.dtype).name}{list(leaf.shape)}{weak}"

    flat = jax.tree_util.tree_flatten_with_path(args)[0]
    return [(jax.tree_util.keystr(path), describe(leaf)) for path, leaf in flat]


def assert_no_retrace(step: Callable, *args, n: int = 3, carry: int = 0) -> None:
    """``step(*args)`` called ``n`` times compiles at most once: the first call.

    ``step`` may be jitted already (its jit cache is watched) or a plain function (it is jitted here).
    ``carry=k`` feeds the first k outputs back as the first k arguments, as a training loop does with a
    jaxbp step ``(params, opt_state, x, y) -> (params, opt_state, loss)`` (``carry=2``). It runs in the
    caller's precision: switching x64 on would itself change the dtypes, and so the compiles.
    """
    __tracebackhide__ = True
    if n < 2:
        raise ValueError(f"n must be >= 2 calls to see a recompile, got {n}")
    jitted = step if hasattr(step, "_cache_size") else jax.jit(step)
    signatures, sizes = [], []
    for _ in range(n):
        signatures.append(_signature(args))
        out = jitted(*args)
        sizes.append(jitted._cache_size())
        if carry:
            args = tuple(out[:carry]) + tuple(args[carry:])
    jax.block_until_ready(out)
    for call in range(1, n):
        if sizes[call] > sizes[call - 1]:
            changed = [f"  {path or '(args)'}: {before} -> {after}" for (path, before), (_, after)
                       in zip(signatures[call - 1], signatures[call]) if before != after]
            why = ("its arguments changed between calls:\n" + "\n".join(changed)) if changed else (
                "no argument's shape or dtype changed: look for Python values or static arguments that vary")
            raise AssertionError(f"{getattr(step, '__name__', 'step')} compiled again on call {call + 1} of {n} "
                                 f"(jit cache {sizes[call - 1]} -> {sizes[call]} entries); {why}")
