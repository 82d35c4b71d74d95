"""Each registered plugin's backward (activation, loss, layer) proven under jit, eagerly and under vmap."""

from __future__ import annotations

import inspect
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import JaxbpError
from ..plugins.activations import ACTIVATIONS
from ..plugins.layers import LAYERS
from ..plugins.losses import LOSSES, output_size
from .compare import compare, relative_error
from .modes import check_modal_layer
from .report import CheckReport, merge
from .transforms import VARIANTS, guarded, run_variant

KINDS = ("activation", "loss", "layer")


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
    report = _with_vmap_errors(merge(reports), analytic, looped)
    if variant != "jit":  # the labels' path does not depend on the transform
        return report
    return merge([report, guarded(f"loss:{name} (int labels via encode)", _check_int_labels, name, loss, z, seed)])


def _encoded_int_labels(name: str, loss) -> jax.Array:
    """What training does first: integer class labels (n,) through ``encode``, to as many outputs as training
    gives this loss for 3 classes (one for a binary loss, else one per class)."""
    k = output_size(name, 3)
    labels = jnp.array([0, 2, 1]) % max(k, 2)
    try:
        targets = jnp.asarray(loss.encode(labels, k))
    except JaxbpError as error:
        raise JaxbpError(f"training passes integer class labels, and encode refused them; register the loss with "
                         f"encode=... that turns labels (n,) into float targets (n, k), e.g. "
                         f"encode=jaxbp.plugins.class_targets (one-hot; soft targets pass) or jaxbp.plugins.value_targets "
                         f"(one-hot; float values pass, as mse) ({type(error).__name__}: {error})") from None
    if targets.shape != (3, k) or not jnp.issubdtype(targets.dtype, jnp.floating):
        raise JaxbpError(f"loss {name!r}: encode(labels (3,), {k}) gave {targets.dtype}{list(targets.shape)}; it must "
                         f"give float targets of shape (n, k) = (3, {k})")
    return targets


def _check_int_labels(name: str, loss, z, seed: int) -> CheckReport:
    """value and backward on the targets ``encode`` makes of integer labels, as training computes them."""
    targets = _encoded_int_labels(name, loss)
    zs = jnp.broadcast_to(z[: targets.shape[1]], targets.shape)
    analytic = jax.jit(jax.vmap(loss.backward))(zs, targets)
    return compare(f"loss:{name} (int labels via encode)", lambda zs: jnp.sum(jax.vmap(loss.value)(zs, targets)),
                   zs, analytic, smooth=loss.smooth, seed=seed, memo=(loss,))


def _check_layer(name: str, seed: int, variant: str = "jit") -> CheckReport:
    plugin = LAYERS.get(name)
    layer = plugin.make(**plugin.example)
    if layer.modal:  # train mode (its key fixed) and eval mode, each its own function
        return merge([_with_vmap_errors(*checked) for checked in check_modal_layer(name, plugin, layer, seed, variant)])
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda p: p + 0.3 * rng.standard_normal(p.shape), layer.init(  # a flat layer takes its width
        jax.random.key(seed), plugin.input_shape if layer.shaped else plugin.input_shape[0])[1])
    x = jnp.asarray(rng.standard_normal((5, *plugin.input_shape)))
    y, _ = layer.forward(params, x)
    g = jnp.asarray(rng.standard_normal(y.shape))
    out, looped = run_variant(lambda p, x, g: layer.backward(p, layer.forward(p, x)[1], g), (params, x, g), variant,
                              in_axes=(None, 0, 0))
    analytic = out if looped is None else (jax.tree.map(lambda d: jnp.sum(d, axis=0), out[0]), out[1])  # sum dparams
    f = lambda primal: jnp.sum(g * layer.forward(primal[0], primal[1])[0])
    report = compare(f"layer:{name}", f, (params, x), analytic, smooth=plugin.smooth, seed=seed, memo=(plugin,))
    return _with_vmap_errors(report, out, looped)


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
