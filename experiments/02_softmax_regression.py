"""Softmax regression, 3 classes: the notes' worked gradient, then linear class boundaries.

Question: for the notes' example a = [0.7, 0.2, 0.1], y = [1, 0, 0], does jaxbp's backward give
dJ/dz = a - y = [-0.3, 0.2, 0.1], dJ/dw = (a - y) x^T (k x d = 3 x 2) and dJ/db = a - y? And what
boundaries does one softmax layer draw between three classes?

Answer: yes, to float32 round-off (and the sigmoid case a = 0.7, y = 1 gives -0.3, as in the
notes). Trained on three overlapping Gaussian blobs, one softmax layer reaches 98.3% test accuracy
(the Bayes rate is ~99%) with three straight boundaries meeting at a point: each is where two
linear scores z_i = z_j tie.
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
from jaxbp.training import plot_boundary
from _common import check, classes, default_out, load, log, run_cli, save_figure, train_epochs, write_results

NAME = Path(__file__).stem
SEED = 0
A = [0.7, 0.2, 0.1]  # the notes' softmax output
LABEL = 0  # y = [1, 0, 0]
X = [2.0, -1.0]  # one example with d = 2 features, so dJ/dw is 3 x 2
SIGMOID_A, SIGMOID_Y = 0.7, 1  # the notes' single-neuron example: a - y = -0.3
NOISE = 1.0  # blob std; centres on a circle of radius 3, 2.6 std from each boundary
N = 900
EPOCHS, BATCH, LEARNING_RATE = 30, 32, 0.05
GRAD_TOL = 1e-6  # float32 round-off of a - y
MIN_TEST_ACCURACY = 0.97  # ours: the notes ask only for the figure; Bayes accuracy here is ~99%


def worked_example() -> dict:
    """The notes' numbers through jaxbp's backward: set w = 0 and b = log a, so softmax(w x + b) = a."""
    model = jaxbp.mlp([2, 3])  # one dense layer + softmax cross-entropy
    a, x = jnp.asarray(A), jnp.asarray([X])
    params = [{"w": jnp.zeros((3, 2)), "b": jnp.log(a)}]
    losses, grads = model.per_example_value_and_grad(params, x, jnp.asarray([LABEL]))
    dw, db = grads[0]["w"][0], grads[0]["b"][0]
    y = jax.nn.one_hot(LABEL, 3)
    expected_dw = jnp.outer(a - y, x[0])  # (a - y) x^T: k x 1 times 1 x d
    log(f"worked example (softmax): a = {A}, y = {np.asarray(y).tolist()}, x = {X}")
    log(f"  J = -log a_y = {float(losses[0]):.6f} (-log 0.7 = {-np.log(0.7):.6f})")
    fmt = lambda v: "[" + ", ".join(f"{float(e):+.6f}" for e in v) + "]"  # noqa: E731
    log(f"  dJ/db = a - y = {fmt(db)}")
    log("  dJ/dw = (a - y) x^T =\n" + "\n".join(f"    {fmt(row)}" for row in dw))

    one = jaxbp.mlp([1, 1], loss="binary_cross_entropy")  # the notes' single neuron, x = 1
    logit = float(np.log(SIGMOID_A / (1 - SIGMOID_A)))
    _, g = one.per_example_value_and_grad([{"w": jnp.zeros((1, 1)), "b": jnp.asarray([logit])}],
                                          jnp.ones((1, 1)), jnp.asarray([SIGMOID_Y]))
    sigmoid_db = float(g[0]["b"][0, 0])
    log(f"worked example (sigmoid): a = {SIGMOID_A}, y = {SIGMOID_Y}: dJ/dz = a - y = {sigmoid_db:.6f}")
    return {
        "dJ_db": db, "dJ_dw": dw, "loss": losses[0], "sigmoid_dJ_dz": sigmoid_db,
        "err_db": float(jnp.abs(db - (a - y)).max()), "err_dw": float(jnp.abs(dw - expected_dw).max()),
        "err_sigmoid": abs(sigmoid_db - (SIGMOID_A - SIGMOID_Y)),
    }


def main(smoke: bool = False, out_dir: Path = default_out(__file__)) -> dict:
    started = time.perf_counter()
    worked = worked_example()

    n, epochs = (150, 2) if smoke else (N, EPOCHS)
    data = load("blobs", seed=SEED, n=n, noise=NOISE, classes=3)
    model = jaxbp.mlp([2, 3])  # softmax regression: a = softmax(w x + b), w is 3 x 2
    params, history = train_epochs(model, optax.adam(LEARNING_RATE), data, seed=SEED, epochs=epochs,
                                   batch_size=BATCH, log_every=max(epochs // 10, 1))
    test_acc = history["test_acc"][-1]

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [1, 1.2]})
    idx = np.arange(3)
    y = np.eye(3)[LABEL]
    axes[0].bar(idx - 0.25, A, 0.25, label="a = softmax(z)")
    axes[0].bar(idx, y, 0.25, label="y (one-hot)")
    axes[0].bar(idx + 0.25, np.asarray(worked["dJ_db"]), 0.25, label="dJ/dz = a - y (jaxbp)")
    for i, v in enumerate(np.asarray(worked["dJ_db"])):
        axes[0].annotate(f"{v:+.1f}", (i + 0.25, v), ha="center", va="bottom" if v > 0 else "top", fontsize=8)
    axes[0].axhline(0, color="k", lw=0.5)
    axes[0].set(xticks=idx, xticklabels=["class 1", "class 2", "class 3"], title="the notes' worked gradient")
    axes[0].legend(fontsize=8)
    plot_boundary(axes[1], classes(model, params), data.x_test, data.y_test, 3,
                  title=f"softmax regression, 3 blobs: test acc {test_acc:.3f}")
    save_figure(fig, out_dir, "softmax_regression.png")

    return write_results(
        out_dir, NAME, smoke=smoke, started=started,
        config={"a": A, "label": LABEL, "x": X, "dataset": "blobs", "classes": 3, "n": n, "noise": NOISE,
                "seed": SEED, "epochs": epochs, "batch": BATCH, "optimizer": f"adam({LEARNING_RATE})"},
        results={**worked, "train_acc": history["train_acc"][-1], "test_acc": test_acc, "history": history},
        targets={"|dJ/db - (a - y)|": check(worked["err_db"], "<=", GRAD_TOL),
                 "|dJ/dw - (a - y) x^T|": check(worked["err_dw"], "<=", GRAD_TOL),
                 "|sigmoid dJ/dz - (-0.3)|": check(worked["err_sigmoid"], "<=", GRAD_TOL),
                 "test accuracy": check(test_acc, ">=", MIN_TEST_ACCURACY)},
    )


if __name__ == "__main__":
    run_cli(main, __file__, __doc__)
