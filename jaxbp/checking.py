"""The proof: every hand-written backward against ``jax.grad`` and float64 central differences.

This is the only module of the library that calls ``jax.grad``: here it is the reference.
Relative errors are per leaf: ``max|a - r| / max(max|a|, max|r|)`` against ``jax.grad``, and
the CS231n per-coordinate ``|a - f| / max(|a|, |f|, FD_FLOOR * max|a_leaf|)`` against finite
differences ``f`` at up to FD_SAMPLES sampled coordinates of every leaf, biases included.
"""

from __future__ import annotations

import inspect
import itertools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .plugins.activations import ACTIVATIONS
from .errors import JaxbpError
from .plugins.layers import LAYERS
from .plugins.losses import LOSSES
from .networks import Model, mlp
from .variants import VARIANTS, guarded, run_variant, to_float64

GRAD_TOL = 1e-10  # vs jax.grad, float64
FD_BAND_SMOOTH = 1e-7  # CS231n: relative error <= 1e-7 where the function is smooth
FD_BAND_KINK = 1e-4  # ... and <= 1e-4 near a kink (relu)
PER_EXAMPLE_TOL = 1e-12  # mean of per-example grads vs the batched matrix form
FD_STEP_SMOOTH = 1e-3  # 5-point central stencil, truncation error O(h^4)
FD_STEP_KINK = 1e-6  # small enough that a step rarely straddles a relu kink
FD_SAMPLES = 6  # coordinates sampled per leaf
FD_FLOOR = 1e-5  # below this times the leaf's max |gradient|, the FD ratio is taken against the floor
# (the stencil's rounding error, ~1e-13, would otherwise make an exact zero look like a 100% error)
KINDS = ("activation", "loss", "layer")


class CheckRow(NamedTuple):
    subject: str  # e.g. "activation:tanh"
    leaf: str  # e.g. "[0]['w']"
    vs_grad: float  # relative error against jax.grad
    vs_fd: float  # worst relative error over the sampled finite-difference coordinates
    fd_band: float
    vs_per_example: float = math.nan  # networks: mean(per-example) vs batched; plugins [vmap]: vmap vs a loop

    @property
    def ok(self) -> bool:
        return self.passes()

    def passes(self, grad_tol: float = GRAD_TOL, fd_band: float | None = None,
               per_example_tol: float = PER_EXAMPLE_TOL) -> bool:
        """Within the bands; ``fd_band=None`` keeps the row's own (smooth or kink) band."""
        per_example_ok = math.isnan(self.vs_per_example) or self.vs_per_example <= per_example_tol
        band = self.fd_band if fd_band is None else fd_band
        return self.vs_grad <= grad_tol and self.vs_fd <= band and per_example_ok


class CheckReport(NamedTuple):
    rows: tuple[CheckRow, ...]

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    @property
    def failures(self) -> tuple[CheckRow, ...]:
        return tuple(row for row in self.rows if not row.ok)

    def __str__(self) -> str:
        width = max([len(r.subject) for r in self.rows] + [7])
        lines = [f"{'subject':<{width}}  {'leaf':<16} {'vs jax.grad':>11} {'vs fin.diff':>11} {'band':>7} {'per-ex':>8}  ok"]
        for r in self.rows:
            per_example = "" if math.isnan(r.vs_per_example) else f"{r.vs_per_example:.1e}"
            lines.append(
                f"{r.subject:<{width}}  {r.leaf:<16} {r.vs_grad:>11.1e} {r.vs_fd:>11.1e} {r.fd_band:>7.0e} "
                f"{per_example:>8}  {'ok' if r.ok else 'FAIL'}"
            )
        lines.append(f"{len(self.rows)} leaves checked, {len(self.failures)} failed")
        return "\n".join(lines)


def merge(reports) -> CheckReport:
    return CheckReport(tuple(itertools.chain.from_iterable(r.rows for r in reports)))


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
    fd = (f_flat(flat - 2 * h) - 8 * f_flat(flat - h) + 8 * f_flat(flat + h) - f_flat(flat + 2 * h)) / (12 * step)
    return picks, np.asarray(fd, np.float64)


def _finite_differences(picks, fd, analytic) -> list[float]:
    """Worst CS231n relative error per leaf over the sampled central differences."""
    errors = []
    for p, fd_leaf, an_leaf in zip(picks, np.split(fd, np.cumsum([len(p) for p in picks])[:-1]), jax.tree.leaves(analytic)):
        an_leaf = np.asarray(an_leaf, np.float64).reshape(-1)
        an = an_leaf[p]
        floor = FD_FLOOR * np.max(np.abs(an_leaf), initial=0.0)
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
    fd_errors = _finite_differences(*estimates, analytic) if shapes_match else [math.inf] * len(paths)
    per_ex = jax.tree.leaves(per_example) if per_example is not None else [None] * len(paths)
    rows = tuple(
        CheckRow(subject, path or "(input)", relative_error(a, r), fd, band,
                 math.nan if pe is None else relative_error(np.mean(np.asarray(pe), axis=0), a))
        for path, a, r, fd, pe in zip(paths, an_leaves, ref_leaves, fd_errors, per_ex)
    )
    return CheckReport(rows)


def _random(key, shape, scale=1.0):
    return scale * jax.random.normal(key, shape)


def _with_vmap_errors(report: CheckReport, mapped, looped) -> CheckReport:
    """Under "vmap", each row's per-ex column is jax.vmap's result against the loop over examples."""
    if looped is None:
        return report
    errors = [relative_error(m, l) for m, l in zip(jax.tree.leaves(mapped), jax.tree.leaves(looped))]
    if jax.tree.structure(mapped) != jax.tree.structure(looped):
        errors = [math.inf] * len(report.rows)
    return CheckReport(tuple(row._replace(vs_per_example=e) for row, e in zip(report.rows, itertools.cycle(errors))))


def _check_activation(name: str, seed: int, variant: str = "jit") -> CheckReport:
    act = ACTIVATIONS.get(name)
    kz, kg = jax.random.split(jax.random.key(seed))
    z, g = _random(kz, (4, 5), 2.0), _random(kg, (4, 5))
    analytic, looped = run_variant(lambda z, g: act.backward(z, act.forward(z), g), (z, g), variant, in_axes=(0, 0))
    report = compare(f"activation:{name}", lambda z: jnp.sum(g * act.forward(z)), z, analytic, smooth=act.smooth,
                     seed=seed, memo=(act,))
    return _with_vmap_errors(report, analytic, looped)


def _check_loss(name: str, seed: int, variant: str = "jit") -> CheckReport:
    loss = LOSSES.get(name)
    kz, ky = jax.random.split(jax.random.key(seed))
    z = _random(kz, (3,), 3.0)
    soft = jax.nn.softmax(_random(ky, (3,)))
    cases = (("soft", soft), ("one-hot", jax.nn.one_hot(1, 3, dtype=z.dtype)), ("half-weight", 0.5 * soft))
    ys = jnp.stack([y for _, y in cases])
    analytic, looped = run_variant(loss.backward, (jnp.broadcast_to(z, ys.shape), ys), variant, in_axes=(0, 0),
                                   one_example=True)
    reports = [
        compare(f"loss:{name} ({kind} y)", lambda z, y=y: loss.value(z, y), z, analytic[i], smooth=loss.smooth,
                seed=seed, memo=(loss,))
        for i, (kind, y) in enumerate(cases)
    ]
    return _with_vmap_errors(merge(reports), analytic, looped)


def _check_layer(name: str, seed: int, variant: str = "jit") -> CheckReport:
    plugin = LAYERS.get(name)
    layer = plugin.make(**plugin.example)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda p: p + 0.3 * rng.standard_normal(p.shape), layer.init(jax.random.key(seed), 4)[1])
    x = jnp.asarray(rng.standard_normal((5, 4)))
    y, _ = layer.forward(params, x)
    g = jnp.asarray(rng.standard_normal(y.shape))
    out, looped = run_variant(lambda p, x, g: layer.backward(p, layer.forward(p, x)[1], g), (params, x, g), variant,
                              in_axes=(None, 0, 0))
    analytic = out if looped is None else (jax.tree.map(lambda d: jnp.sum(d, axis=0), out[0]), out[1])  # sum dparams
    f = lambda primal: jnp.sum(g * layer.forward(primal[0], primal[1])[0])
    report = compare(f"layer:{name}", f, (params, x), analytic, smooth=plugin.smooth, seed=seed, memo=(plugin,))
    return _with_vmap_errors(report, out, looped)


def example_labels(model: Model, key, n: int):
    """Int class labels when the model's loss takes them, float (n, k) targets otherwise."""
    labels = jax.random.randint(key, (n,), 0, max(model.d_out, 2))
    try:
        model.targets(labels)
        return labels
    except JaxbpError:
        return jax.random.uniform(key, (n, model.d_out))


def check_model(model: Model, *, smooth: bool = False, n: int = 8, seed: int = 0, name: str = "network",
                params=None, x=None, y=None) -> CheckReport:
    """value_and_grad vs jax.grad(model.loss), finite differences, and mean(per_example_grads), in float64.

    ``params``, ``x`` and ``y`` not given are drawn from ``seed`` (n examples); given ones are cast to float64.
    """
    with jax.enable_x64(True):
        kp, ky = jax.random.split(jax.random.key(seed))
        rng = np.random.default_rng(seed)  # host-side draws: no per-shape compiles
        if params is None:
            params = jax.tree.map(lambda p: p + 0.1 * rng.standard_normal(p.shape), model.init(kp))  # biases off zero
        params = to_float64(params)
        x = jnp.asarray(rng.standard_normal((n, model.d_in))) if x is None else to_float64(x)
        y = example_labels(model, ky, x.shape[0]) if y is None else to_float64(y)

        @jax.jit
        def evaluate(params):
            value, grads = model.value_and_grad(params, x, y)
            reference = jax.grad(model.loss)(params, x, y)
            return value, grads, model.per_example_grads(params, x, y), model.loss(params, x, y), reference

        value, grads, per_example, reference_value, reference = evaluate(params)
        report = compare(name, lambda p: model.loss(p, x, y), params, grads, smooth=smooth, seed=seed,
                         per_example=per_example, reference=reference)
        return CheckReport(report.rows + (CheckRow(name, "J (loss value)", relative_error(value, reference_value), 0.0, 0.0),))


def network_suite() -> list[tuple[str, Model, bool]]:
    """Depths 1..6 for each loss, hidden activations mixed by cycling through the registry."""
    activations, suite = ACTIVATIONS.names(), []
    for depth, (i, loss) in itertools.product(range(1, 7), enumerate(LOSSES.names())):
        k = 1 if loss == "binary_cross_entropy" else 3
        sizes = [3, 5, 4, 6, 5, 4][:depth] + [k]
        acts = [activations[(depth + i + j) % len(activations)] for j in range(depth - 1)]
        smooth = all(ACTIVATIONS.get(a).smooth for a in acts) and LOSSES.get(loss).smooth
        suite.append((f"mlp{sizes} {','.join(acts) or '-'} {loss}", mlp(sizes, acts, loss), smooth))
    return suite


def plugin_names() -> dict[str, tuple[str, ...]]:
    return {"activation": ACTIVATIONS.names(), "loss": LOSSES.names(), "layer": LAYERS.names()}


CHECKS = {"activation": _check_activation, "loss": _check_loss, "layer": _check_layer}


def variants(kind: str) -> tuple[str, ...]:
    """The variants a kind's check runs under: all of VARIANTS when its check takes ``variant``, else just "jit"."""
    if kind not in CHECKS:
        raise JaxbpError(f"unknown plugin kind {kind!r}; known kinds: {', '.join(CHECKS)}")
    return VARIANTS if "variant" in inspect.signature(CHECKS[kind]).parameters else ("jit",)


def check_plugin(kind: str, name: str, *, seed: int = 0, variant: str = "jit") -> CheckReport:
    """Check one registered plugin by kind ("activation", "loss", "layer") and name, in float64.

    ``variant`` runs its backward under ``jax.jit`` ("jit"), eagerly ("nojit"), or ``jax.vmap`` over a leading
    example axis, also compared with a loop over the examples ("vmap").
    """
    if variant not in variants(kind):
        raise JaxbpError(f"{kind} plugins are checked under {', '.join(variants(kind))}, not {variant!r}")
    {"activation": ACTIVATIONS, "loss": LOSSES, "layer": LAYERS}[kind].get(name)  # an unknown name raises
    with jax.enable_x64(True):
        args = (name, seed, variant) if len(variants(kind)) > 1 else (name, seed)
        return guarded(f"{kind}:{name}", CHECKS[kind], *args)


def check_all(*, seed: int = 0) -> CheckReport:
    """Every registered plugin, then the network suite."""
    reports = [check_plugin(kind, name, seed=seed) for kind, names in plugin_names().items() for name in names]
    reports += [guarded(name, check_model, model, smooth=smooth, seed=seed, name=name)
                for name, model, smooth in network_suite()]
    return merge(reports)
