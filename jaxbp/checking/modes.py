"""The proof for layers and networks with modes: train mode (its key fixed) and eval mode, each on its own.

In train mode dropout's mask is a function of the key, and batch norm's output of the whole batch: with
the key fixed, the train-mode forward is an ordinary function of params and inputs, and its hand-written
backward must equal ``jax.grad`` of it (1e-10 in float64) and agree with finite differences. Eval mode
(dropout the identity, batch norm an affine map of the running averages) is another function, proven
separately. Under the "vmap" variant each mapped item is a whole batch (as replicas train), since a
batch statistic of one example means nothing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..networks import Model, network
from ..plugins.layers import dense
from ..plugins.modal import batch_norm, dropout
from ..plugins.modes import Context
from ..plugins.rules import join, split
from .compare import compare, relative_error
from .report import CheckReport, CheckRow
from .transforms import example_labels, run_variant, to_float64

MODES = ("train", "eval")


def _state(layer, d, rng):
    """The layer's initial state moved off its defaults (variances stay positive), so eval mode is not trivial."""
    state = layer.init_state(d) if layer.init_state is not None else None
    return jax.tree.map(lambda s: s + 0.3 * np.abs(rng.standard_normal(s.shape)), state)


def check_modal_layer(name: str, plugin, layer, seed: int, variant: str = "jit") -> list:
    """A modal layer's backward in each mode: train mode with a fixed key, then eval mode with a fixed state;
    ``[(report, mapped, looped)]``, one per mode (the last two as ``run_variant`` gives them)."""
    rng = np.random.default_rng(seed)
    shape, batched = plugin.input_shape, variant == "vmap"
    takes = shape if layer.shaped else shape[0]  # a flat layer's init takes its width
    params = jax.tree.map(lambda p: p + 0.3 * rng.standard_normal(p.shape), layer.init(jax.random.key(seed), takes)[1])
    state, key = _state(layer, takes, rng), jax.random.key(seed + 1)
    x = jnp.asarray(rng.standard_normal(((3, 5) if batched else (5,)) + shape))  # under vmap: 3 batches of 5
    reports = []
    for mode in MODES:
        ctx = Context(mode == "train", key if mode == "train" else None, state)
        one = lambda p, x, ctx=ctx: layer.forward(p, x, ctx)[0]  # noqa: E731
        forward = jax.vmap(one, in_axes=(None, 0)) if batched else one
        g = jnp.asarray(rng.standard_normal(forward(params, x).shape))
        out, looped = run_variant(lambda p, x, g, ctx=ctx: layer.backward(p, layer.forward(p, x, ctx)[1], g),
                                  (params, x, g), variant, in_axes=(None, 0, 0))
        analytic = out if looped is None else (jax.tree.map(lambda a: jnp.sum(a, axis=0), out[0]), out[1])
        f = lambda primal, forward=forward, g=g: jnp.sum(g * forward(primal[0], primal[1]))  # noqa: E731
        report = compare(f"layer:{name} ({mode})", f, (params, x), analytic, smooth=plugin.smooth, seed=seed,
                         memo=(plugin, mode, batched))
        reports.append((report, out, looped))
    return reports


def check_modal_model(model: Model, *, smooth: bool, n: int, seed: int, name: str, params, x, y):
    """``train_value_and_grad`` vs ``jax.grad(train_loss)`` (the key in the params fixes the masks), then
    ``value_and_grad`` vs ``jax.grad(loss)`` in eval mode, each with the mean of its per-example gradients: in train
    mode ``train_per_example_value_and_grad``'s (example i's mask is row i of the batch's), unless a layer mixes
    the examples (batch norm: no example has a gradient of its own); in eval mode ``per_example_grads``."""
    with jax.enable_x64(True):
        kp, ky = jax.random.split(jax.random.key(seed))
        rng = np.random.default_rng(seed)
        drawn = params is None
        if drawn:
            trained, fixed = split(model.init(kp))
            params = join(jax.tree.map(lambda p: p + 0.1 * rng.standard_normal(p.shape), trained), fixed)
        params = to_float64(params)
        x = jnp.asarray(rng.standard_normal((n, model.d_in))) if x is None else to_float64(x)
        y = example_labels(model, ky, x.shape[0]) if y is None else to_float64(y)
        if drawn:  # one train-mode pass writes batch statistics into the running averages: eval mode is not trivial
            params = jax.jit(model.train_value_and_grad)(params, x, y)[2]
        trained, fixed = split(params)
        train_loss = lambda t: model.train_loss(join(t, fixed), x, y)  # noqa: E731
        eval_loss = lambda t: model.loss(join(t, fixed), x, y)  # noqa: E731

        each = model.train_per_example_value_and_grad
        each = None if any(layer.mixes_examples for layer in model.layers) else each

        @jax.jit
        def evaluate(trained):
            p = join(trained, fixed)
            value, grads, _ = model.train_value_and_grad(p, x, y)
            eval_value, eval_grads = model.value_and_grad(p, x, y)
            return (value, grads, train_loss(trained), jax.grad(train_loss)(trained), each and each(p, x, y)[1],
                    eval_value, eval_grads, eval_loss(trained), jax.grad(eval_loss)(trained),
                    model.per_example_grads(p, x, y))

        value, grads, ref_value, ref, train_each, e_value, e_grads, e_ref_value, e_ref, per_example = evaluate(trained)
        rows = []
        for mode, f, v, g, rv, r, pe in (("train", train_loss, value, grads, ref_value, ref, train_each),
                                         ("eval", eval_loss, e_value, e_grads, e_ref_value, e_ref, per_example)):
            subject = f"{name} ({mode})"
            report = compare(subject, f, trained, g, smooth=smooth, seed=seed, per_example=pe, reference=r)
            rows += [*report.rows, CheckRow(subject, "J (loss value)", relative_error(v, rv), 0.0, 0.0)]
        return CheckReport(tuple(rows))


def modal_suite() -> list[tuple[str, Model, bool]]:
    """Networks with batch norm and dropout, for the network suite."""
    return [
        ("net[3,5,bn,4,drop,3] tanh softmax_cross_entropy",
         network(3, [dense(5, "tanh"), batch_norm(), dense(4, "tanh"), dropout(0.5), dense(3)],
                 "softmax_cross_entropy"), True),
        ("net[3,4,drop,bn,2] relu mse",
         network(3, [dense(4, "relu"), dropout(0.25), batch_norm(momentum=0.5), dense(2)], "mse"), False),
        ("net[3,5,drop,3] tanh softmax_cross_entropy (per-example in train mode)",
         network(3, [dense(5, "tanh"), dropout(0.5), dense(3)], "softmax_cross_entropy"), True),
    ]
