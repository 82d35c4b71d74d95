"""Whole networks proven: value_and_grad against ``jax.grad(model.loss)``, finite differences and per-example grads."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from ..networks import Model, mlp
from ..plugins.activations import ACTIVATIONS
from ..plugins.losses import LOSSES, output_size
from .compare import compare, relative_error
from .modes import check_modal_model, modal_suite
from .plugins import check_plugin, plugin_names
from .report import CheckReport, CheckRow, merge
from .transforms import example_labels, guarded, to_float64


def check_model(model: Model, *, smooth: bool = False, n: int = 8, seed: int = 0, name: str = "network",
                params=None, x=None, y=None) -> CheckReport:
    """value_and_grad vs jax.grad(model.loss), finite differences, and mean(per_example_grads), in float64.

    ``params``, ``x`` and ``y`` not given are drawn from ``seed`` (n examples); given ones are cast to float64.
    With modal layers (dropout, batch norm), train mode (its key fixed) and eval mode are checked one by one.
    """
    if model.modal:
        return check_modal_model(model, smooth=smooth, n=n, seed=seed, name=name, params=params, x=x, y=y)
    with jax.enable_x64(True):
        kp, ky = jax.random.split(jax.random.key(seed))
        rng = np.random.default_rng(seed)  # host-side draws: no per-shape compiles
        if params is None:
            params = jax.tree.map(lambda p: p + 0.1 * rng.standard_normal(p.shape), model.init(kp))  # biases off zero
        params = to_float64(params)
        x = jnp.asarray(rng.standard_normal((n, *model.input_shape))) if x is None else to_float64(x)
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


KINKED_DEPTHS = (1, 3)  # a kinked loss's coupling to the network; the hidden stack is proven by the smooth ones


def network_suite() -> list[tuple[str, Model, bool]]:
    """Depths 1..6 for each smooth loss (1 and 3 for a kinked one), hidden activations cycling through the registry."""
    activations, suite = ACTIVATIONS.names(), []
    for depth, (i, loss) in itertools.product(range(1, 7), enumerate(LOSSES.names())):
        if not LOSSES.get(loss).smooth and depth not in KINKED_DEPTHS:
            continue
        k = output_size(loss, 3)
        sizes = [3, 5, 4, 6, 5, 4][:depth] + [k]
        acts = [activations[(depth + i + j) % len(activations)] for j in range(depth - 1)]
        smooth = all(ACTIVATIONS.get(a).smooth for a in acts) and LOSSES.get(loss).smooth
        suite.append((f"mlp{sizes} {','.join(acts) or '-'} {loss}", mlp(sizes, acts, loss), smooth))
    return suite + modal_suite()


def check_all(*, seed: int = 0) -> CheckReport:
    """Every registered plugin, then the network suite."""
    reports = [check_plugin(kind, name, seed=seed) for kind, names in plugin_names().items() for name in names]
    reports += [guarded(name, check_model, model, smooth=smooth, seed=seed, name=name)
                for name, model, smooth in network_suite()]
    return merge(reports)
