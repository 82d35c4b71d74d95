"""Why the derivative matters: vanishing gradients through depth, sigmoid vs tanh vs relu.

Question: backprop multiplies dJ/dz by the activation's derivative once per layer,
dJ/dz^(l-1) = f'(z^(l-1)) * (W_l^T dJ/dz^l). The notes derive sigma' = a(1 - a), which is at most
1/4 (at a = 1/2). What does that do to the gradient of each layer of a 10-layer network?

Answer: with sigmoid the gradient shrinks ~4x per layer, so the first layer's dJ/dW is ~4e-7 of
the last layer's, and the deep sigmoid net is stuck near 50% training accuracy where tanh and relu
reach >99% with the same optimizer; tanh (f' <= 1, and = 1 at z = 0) and
relu (f' in {0, 1}, He init) keep every layer's gradient within the same order of magnitude.
The notes' bound is checked directly, per example and per layer:
||dJ/dz^(l-1)|| <= max f' * ||W_l||_2 * ||dJ/dz^l||, with max f' = 1/4 for sigmoid; measured, the
sigmoid factor never exceeds 1/4 (median ~0.12, worst 0.23), and a(1 - a) never exceeds 1/4.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import jaxbp
from _common import check, default_out, load, log, run_cli, save_figure, train_epochs, write_results

NAME = Path(__file__).stem
SEED = 0
DEPTH, WIDTH = 10, 32  # hidden layers of 32 units; Glorot init for sigmoid/tanh, He for relu (jaxbp's defaults)
ACTIVATIONS = ("sigmoid", "tanh", "relu")
MAX_DERIVATIVE = {"sigmoid": 0.25, "tanh": 1.0, "relu": 1.0}  # max over z of f'(z)
BATCH = 256  # spiral points the gradients are measured on
SEEDS = 8  # initializations, medians are plotted
EPOCHS, LEARNING_RATE = 40, 1e-3  # the consequence: training the same 10-layer nets with Adam
VANISHED, KEPT = 1e-3, 0.1  # first-layer / output-layer ratio of the per-example ||dJ/dz||


def spectral_norms(params, layer: int) -> np.ndarray:
    return np.linalg.norm(np.asarray(params[layer]["w"]), ord=2, axis=(1, 2))  # (seeds,)


def hidden_activations(activation: str, params, x, width: int) -> jax.Array:
    """a^1 .. a^depth, chaining jaxbp's own dense-layer forward: (depth, n, width)."""
    layer, out = jaxbp.dense(width, activation), []
    for p in params[:-1]:
        x, _ = layer.forward(p, x)
        out.append(x)
    return jnp.stack(out)


def measure(activation: str, x, y, seeds: int, depth: int, width: int) -> dict:
    """Per-layer gradient norms at init over ``seeds`` initializations (hand-written backward only)."""
    model = jaxbp.mlp([2] + [width] * depth + [3], activation)
    # not jitted: the 3 activations share shapes, so op-by-op kernels compile once for all of them
    params = jax.vmap(model.init)(jax.random.split(jax.random.key(SEED), seeds))
    _, grads = jax.vmap(model.value_and_grad, in_axes=(0, None, None))(params, x, y)
    per_example = jax.vmap(model.per_example_grads, in_axes=(0, None, None))(params, x, y)
    hidden = jax.vmap(lambda p: hidden_activations(activation, p, x, width))(params)
    # dJ_i/db_l is dJ_i/dz^l, the quantity backprop carries from layer to layer: (seeds, n, width)
    delta = [np.linalg.norm(np.asarray(g["b"]), axis=-1) for g in per_example]
    w_norm = np.stack([np.linalg.norm(np.asarray(g["w"]).reshape(seeds, -1), axis=1) for g in grads], axis=1)
    factor = np.stack([delta[l - 1] / delta[l] / spectral_norms(params, l)[:, None] for l in range(1, depth + 1)],
                      axis=1)  # (seeds, depth, n): ||dz^(l-1)|| / (||W_l||_2 ||dz^l||) <= max f'
    return {
        "dW_norm": w_norm,  # (seeds, depth + 1)
        "delta_norm": np.stack([d.mean(axis=1) for d in delta], axis=1),  # (seeds, depth + 1)
        "factor": factor,
        "hidden": np.asarray(hidden),  # a of every hidden unit, (seeds, depth, n, width), to histogram a(1 - a)
    }


def main(smoke: bool = False, out_dir: Path = default_out(__file__)) -> dict:
    started = time.perf_counter()
    seeds, epochs, depth, width = (2, 2, 3, 8) if smoke else (SEEDS, EPOCHS, DEPTH, WIDTH)
    data = load("spiral", seed=SEED, noise=0.2, **({"n": 300} if smoke else {}))
    x, y = data.x_train[:BATCH], data.y_train[:BATCH]
    results, targets, stats = {}, {}, {}
    for activation in ACTIVATIONS:
        m = stats[activation] = measure(activation, x, y, seeds, depth, width)
        dw, delta = np.median(m["dW_norm"], axis=0), np.median(m["delta_norm"], axis=0)
        ratio = float(np.median(m["delta_norm"][:, 0] / m["delta_norm"][:, -1]))
        worst = float(m["factor"].max())
        per_layer = float(np.exp(np.mean(np.log(m["delta_norm"][:, 1:] / m["delta_norm"][:, :-1]))))
        log(f"{activation:7s} ||dJ/dW_l||, layer 1 -> {depth + 1}: " + " ".join(f"{v:.1e}" for v in dw))
        log(f"{activation:7s} ||dJ/dz|| first hidden / output = {ratio:.1e}; per layer x{per_layer:.2f}; "
            f"worst ||dz^(l-1)|| / (||W_l||_2 ||dz^l||) = {worst:.3f} (bound {MAX_DERIVATIVE[activation]:g})")
        results[activation] = {"dW_norm_median": dw, "delta_norm_median": delta, "first_over_output": ratio,
                               "growth_per_layer": per_layer, "worst_factor": worst}
        targets[f"{activation}: worst per-layer factor (<= max f')"] = check(worst, "<=", MAX_DERIVATIVE[activation])
        if activation == "sigmoid":
            targets["sigmoid: first-layer / output ||dJ/dz||"] = check(ratio, "<=", VANISHED)
        else:
            targets[f"{activation}: first-layer / output ||dJ/dz||"] = check(ratio, ">=", KEPT)
    a = stats["sigmoid"]["hidden"]
    max_slope = float(np.max(a * (1 - a)))
    log(f"sigmoid: max a(1 - a) over {a.size} hidden units = {max_slope:.4f} (<= 1/4)")
    targets["sigmoid: max a(1 - a)"] = check(max_slope, "<=", 0.25)

    log(f"training the {depth}-layer nets for {epochs} epochs (Adam {LEARNING_RATE})")
    histories = {act: train_epochs(jaxbp.mlp([2] + [width] * depth + [3], act), optax.adam(LEARNING_RATE), data,
                                   seed=SEED, epochs=epochs, batch_size=32, label=f"{act:7s} ",
                                   log_every=max(epochs // 4, 1))[1] for act in ACTIVATIONS}
    for act, h in histories.items():
        results[act]["train_acc_after_training"] = h["train_acc"][-1]

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    axes = axes.ravel()
    layers = np.arange(1, depth + 2)
    for i, act in enumerate(ACTIVATIONS):
        m = stats[act]
        axes[0].semilogy(layers, np.median(m["dW_norm"], axis=0), "o-", color=f"C{i}", label=act)
        axes[0].fill_between(layers, m["dW_norm"].min(0), m["dW_norm"].max(0), color=f"C{i}", alpha=0.2)
        f = m["factor"].reshape(seeds, depth, -1)
        axes[1].plot(np.arange(1, depth + 1), np.median(f, axis=(0, 2)), "o-", color=f"C{i}", label=f"{act}: median")
        axes[1].plot(np.arange(1, depth + 1), f.max(axis=(0, 2)), "^:", color=f"C{i}", label=f"{act}: max")
        axes[3].plot(histories[act]["epoch"], histories[act]["train_loss"], color=f"C{i}", label=act)
    axes[0].set(xlabel="layer (1 = input side)", ylabel="||dJ/dW_l||", title=f"gradient norm per layer at init\n"
                f"{depth} hidden layers of {width}, median and range of {seeds} seeds")
    axes[1].axhline(0.25, color="C0", ls="--", lw=1, label="sigma' <= 1/4")
    axes[1].set(xlabel="layer l (1 = input side)", ylabel="||dJ/dz^(l)|| / (||W||_2 ||dJ/dz^(l+1)||)",
                title="per-layer factor, bounded by max f'")
    axes[1].legend(fontsize=7, ncol=2)
    axes[2].hist((a * (1 - a)).ravel(), bins=50, color="C0")
    axes[2].axvline(0.25, color="k", ls="--", lw=1, label="1/4")
    axes[2].set(xlabel="sigma'(z) = a(1 - a)", ylabel="hidden units x examples",
                title="sigmoid's derivative at every hidden unit")
    axes[2].legend(fontsize=8)
    axes[3].set(xlabel="epoch", ylabel="train cross-entropy", title=f"training the {depth}-layer nets on spiral")
    for ax in (axes[0], axes[3]):
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out_dir, "vanishing_gradients.png")

    return write_results(
        out_dir, NAME, smoke=smoke, started=started,
        config={"dataset": "spiral", "noise": 0.2, "batch": BATCH, "depth": depth, "width": width, "seeds": seeds,
                "init": "jaxbp defaults: Glorot (sigmoid, tanh), He (relu)", "epochs": epochs,
                "optimizer": f"adam({LEARNING_RATE})"},
        results={**results, "sigmoid_max_slope": max_slope}, targets=targets,
    )


if __name__ == "__main__":
    run_cli(main, __file__, __doc__)
