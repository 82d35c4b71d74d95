"""Convnets: a LeNet-style network on MNIST-5k with every backward pass written by hand.

Question: does the convolution layer's hand-written backward (dJ/dW = dZ^T P on the image's patches,
dJ/dx the transposed convolution) train a LeNet-style convnet exactly as ``jax.grad`` would; does that
convnet beat the MLP's 95.5% on MNIST-5k; do the rules without weight transport (FA, DFA, sign
symmetry, Kolen-Pollack) train it too; and what does DP-SGD at epsilon = 8 reach on it, against the
MLP's 91.2% (experiment 10)?

Answer: see the table in experiments/README.md (the committed JSON holds the numbers).
The network: conv 6@5x5 SAME relu, max pool 2, conv 16@5x5 VALID relu, max pool 2, flatten,
dense 120 relu, 84 relu, 10 -- LeNet-5's shape with ReLU and max pooling, 61,706 parameters.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import jaxbp
from jaxbp.plugins import layer_params
from jaxbp.privacy import DPConfig, calibrate_sigma, capacity, epsilon, poisson_batches, private_optimizer
from jaxbp.training import epoch_batches
from _common import check, default_out, load, log, run_cli, save_figure, write_results

NAME = Path(__file__).stem
RULES = {"BP": "backprop", "FA": "feedback_alignment", "DFA": "direct_feedback_alignment", "SS": "sign_symmetry",
         "KP": "kolen_pollack"}
SEEDS = (0, 1, 2)
SPLIT_SEED, SHUFFLE_SEED = 0, 1
BATCH = 32
ACCURACY_RUN = {"epochs": 6, "optimizer": "adam(1e-3)"}  # backprop alone, for the accuracy target
RULES_RUN = {"epochs": 3, "optimizer": "sgd(0.01, momentum=0.9)"}  # every rule alike, experiment 09's optimizer
OPTIMIZERS = {"adam(1e-3)": lambda: optax.adam(1e-3), "sgd(0.01, momentum=0.9)": lambda: optax.sgd(0.01, momentum=0.9)}
DP = {"epsilon": 8.0, "delta": 1e-5, "batch": 256, "epochs": 5, "learning_rate": 2.0, "clip_norm": 1.0}  # exp. 10's
# batch, rate and clip; 5 epochs (78 steps) instead of its 15, for CPU time: sigma is calibrated for the 78 steps
TRAJECTORY_STEPS = 5
MLP = {"backprop": 0.955, "dp_eps8": 0.912}  # experiment 05 and experiment 10, MNIST-5k


def lenet(rule: str = "backprop", shape=(28, 28, 1)) -> jaxbp.Model:
    small = shape[0] < 28  # the smoke run's 8x8 digits: 3x3 kernels, one pool
    return jaxbp.network(shape, [
        jaxbp.conv2d(6, 3 if small else 5, activation="relu"), jaxbp.max_pool2d(2),
        jaxbp.conv2d(16, 3 if small else 5, padding="VALID", activation="relu"),
        *([] if small else [jaxbp.max_pool2d(2)]), jaxbp.flatten(),
        jaxbp.dense(120, "relu"), jaxbp.dense(84, "relu"), jaxbp.dense(10)], "softmax_cross_entropy", rule=rule)


def images(data, shape):
    return (data.x_train.reshape(-1, *shape), data.y_train), (data.x_test.reshape(-1, *shape), data.y_test)


def trajectories(model, x, y, steps: int) -> dict:
    """float64 SGD from the same init: the hand-written step against one whose gradient is jax.grad's."""
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: a.astype(jnp.float64), model.init(jax.random.key(0)))
        x = jnp.asarray(x, jnp.float64)
        hand = jax.jit(lambda p: jax.tree.map(lambda w, g: w - 0.1 * g, p, model.value_and_grad(p, x, y)[1]))
        auto = jax.jit(lambda p: jax.tree.map(lambda w, g: w - 0.1 * g, p, jax.grad(model.loss)(p, x, y)))
        a, b, worst = params, params, []
        for _ in range(steps):
            a, b = hand(a), auto(b)
            worst.append(max(float(jnp.max(jnp.abs(u - v)) / jnp.max(jnp.abs(v)))
                             for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))))
        return {"max_relative_difference_per_step": worst}


def train_rule(rule: str, train, test, shape, epochs: int, seeds, optimizer: str) -> dict:
    """One run per seed (seed s inits W, and B, from key s); per epoch the test accuracy and each hidden weight's
    angle to backprop's gradient on a 500-image probe. Seeds run one after another: on a CPU that is faster
    than vmapping them (a vmapped convolution over replicas' kernels becomes a grouped convolution)."""
    model, backprop = lenet(rule, shape), lenet("backprop", shape)
    optimizer = OPTIMIZERS[optimizer]()
    step = jaxbp.make_scan_step(model, optimizer)
    probe = train[0][:500], train[1][:500]

    @jax.jit
    def measure(params):
        rule_grads = layer_params(model.value_and_grad(params, *probe)[1])
        truth = backprop.value_and_grad(layer_params(params), *probe)[1]
        cosines = [jnp.vdot(g["w"], t["w"]) / (jnp.linalg.norm(g["w"]) * jnp.linalg.norm(t["w"]))
                   for g, t in zip(rule_grads[:-1], truth[:-1]) if "w" in g]
        return {"angle": jnp.degrees(jnp.arccos(jnp.clip(jnp.stack(cosines), -1.0, 1.0))),
                "test_acc": jaxbp.evaluate(model, params, *test)[1]}

    runs = []
    for seed in seeds:
        params = model.init(jax.random.key(seed))
        opt_state = optimizer.init(jaxbp.trainable(params))  # a rule's fixed feedback is not the optimizer's
        history = [measure(params)]
        for epoch in range(1, epochs + 1):
            order = epoch_batches(jax.random.fold_in(jax.random.key(SHUFFLE_SEED), epoch), train[0].shape[0], BATCH)
            params, opt_state, _ = step(params, opt_state, train[0][order], train[1][order])
            history.append(measure(params))
            log(f"    {rule} seed {seed} epoch {epoch}: test acc {float(history[-1]['test_acc']):.4f}")
        runs.append(history)
    accuracy = np.asarray([[float(h["test_acc"]) for h in run] for run in runs]).T  # (epochs + 1, seeds)
    angles = np.mean([[np.asarray(h["angle"]) for h in run] for run in runs], axis=0)  # (epochs + 1, weights)
    log(f"  {rule:<26} test acc {accuracy[-1].mean():.4f} (seeds {np.round(accuracy[-1], 4).tolist()}), angles "
        f"{np.round(angles[1], 1).tolist()} -> {np.round(angles[-1], 1).tolist()} deg")
    return {"test_acc_mean": float(accuracy[-1].mean()), "test_acc_spread": float(np.ptp(accuracy[-1])),
            "test_acc_per_seed": accuracy[-1], "angle_epoch_1": angles[1], "angle_final": angles[-1],
            "test_acc_curve": accuracy.mean(axis=1)}


def cached(path: Path, smoke: bool, compute) -> dict:
    """A rule's results from an interrupted run of this script (removed when the script finishes), else computed."""
    if path.is_file() and not smoke:
        return json.loads(path.read_text())
    result = compute()
    if not smoke:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, default=lambda a: np.asarray(a).tolist()))
    return result


def private_run(train, test, shape, settings: dict) -> dict:
    """DP-SGD with Poisson sampling, sigma calibrated by the RDP accountant for the whole run (experiment 10's)."""
    model, n = lenet("backprop", shape), train[0].shape[0]
    q, steps = settings["batch"] / n, settings["epochs"] * n // settings["batch"]
    sigma = calibrate_sigma(settings["epsilon"], q, steps, settings["delta"], "rdp")
    dp = DPConfig(settings["clip_norm"], sigma, settings["batch"], seed=0)
    optimizer = private_optimizer(optax.sgd(settings["learning_rate"]), dp)
    step = jaxbp.make_scan_step(model, optimizer, privacy=dp)
    params = model.init(jax.random.key(0))
    opt_state = optimizer.init(params)
    index, mask, dropped = poisson_batches(jax.random.key(SHUFFLE_SEED), n, q, steps, capacity(n, q))
    for chunk in np.array_split(np.arange(steps), settings["epochs"]):  # about an epoch of steps per call
        params, opt_state, _ = step(params, opt_state, train[0][index[chunk]], train[1][index[chunk]], mask[chunk])
    accuracy = float(jaxbp.evaluate(model, params, *test)[1])
    spent = epsilon(q, sigma, steps, settings["delta"], "rdp")
    log(f"  DP-SGD: test acc {accuracy:.4f} at epsilon {spent:.3f} (sigma {sigma:.3f}, q {q:.4f}, {steps} steps)")
    return {"test_accuracy": accuracy, "epsilon": spent, "noise_multiplier": sigma, "q": q, "steps": steps,
            "dropped": int(dropped)}


def main(smoke: bool = False, out_dir: Path = default_out(__file__)) -> dict:
    started, cpu_started = time.perf_counter(), time.process_time()
    name, shape = ("digits", (8, 8, 1)) if smoke else ("mnist5k", (28, 28, 1))
    data = load(name, seed=SPLIT_SEED, standardize=False, **({"n": 300} if smoke else {}))
    train, test = images(data, shape)
    seeds = SEEDS[:1] if smoke else SEEDS
    runs = ({**ACCURACY_RUN, "epochs": 1}, {**RULES_RUN, "epochs": 1}) if smoke else (ACCURACY_RUN, RULES_RUN)
    log(f"{name} as {shape} images, batch {BATCH}; backprop {runs[0]}; every rule {runs[1]}")
    results = {"trajectories": trajectories(lenet("backprop", shape), *(a[:32] for a in train), TRAJECTORY_STEPS)}
    log(f"  float64 trajectories, hand-written vs jax.grad: {results['trajectories']}")
    rules = {"BP": RULES["BP"]} if smoke else RULES  # the smoke run: the code path, one rule, one compile each
    compared = {label: cached(out_dir / f".partial-{label}-sgd.json", smoke, lambda: train_rule(
        rule, train, test, shape, runs[1]["epochs"], seeds, runs[1]["optimizer"])) for label, rule in rules.items()}
    results["accuracy_run"] = compared["BP"] if smoke else cached(out_dir / ".partial-BP-adam.json", smoke,
        lambda: train_rule("backprop", train, test, shape, runs[0]["epochs"], seeds, runs[0]["optimizer"]))
    results["rules"] = compared
    dp = {**DP, "epochs": 1, "batch": 120} if smoke else DP
    results["private"] = private_run(train, test, shape, dp)

    figure(results, out_dir)
    for partial in out_dir.glob(".partial-*.json"):
        partial.unlink()
    worst = max(results["trajectories"]["max_relative_difference_per_step"])
    targets = {"float64 trajectory, hand-written vs jax.grad (max relative difference)": check(worst, "<=", 1e-10),
               f"{name} BP test accuracy, mean of {len(seeds)} seeds": check(
                   results["accuracy_run"]["test_acc_mean"], ">=", 0.05 if smoke else 0.97)}
    for label, r in results["rules"].items():
        if label != "BP":  # BP's row is the reference
            targets[f"{name} {label} trains (test accuracy, mean of seeds)"] = check(r["test_acc_mean"], ">=",
                                                                                     0.05 if smoke else 0.9)
    targets[f"{name} DP-SGD at eps=8 beats the MLP's {MLP['dp_eps8']:.1%}"] = check(
        results["private"]["test_accuracy"], ">=", 0.0 if smoke else MLP["dp_eps8"])
    return write_results(
        out_dir, NAME, smoke=smoke, started=started,
        config={"network": "conv6@5 SAME relu, maxpool2, conv16@5 VALID relu, maxpool2, flatten, 120, 84, 10",
                "rules": RULES, "seeds": list(seeds), "accuracy_run": runs[0], "rules_run": runs[1], "batch": BATCH,
                "private": dp, "mlp": MLP,
                "split": "jaxbp.datasets shuffle with key 0, last 20% test; pixels / max, not standardized"},
        results=results, targets=targets,
        timing={"cpu_s": time.process_time() - cpu_started, "cpu_count": os.cpu_count(),
                "load_average_at_end": os.getloadavg()})


def figure(results: dict, out_dir: Path) -> None:
    """Test accuracy per epoch for each rule (mean of seeds), and each weight's final angle to backprop's gradient."""
    fig, (curves, angles) = plt.subplots(1, 2, figsize=(11, 4))
    for label, r in results["rules"].items():
        curves.plot(r["test_acc_curve"], label=label)
        if label != "BP":
            angles.plot(r["angle_final"], "o-", label=label)
    curves.axhline(results["private"]["test_accuracy"], color="gray", ls=":", label="DP-SGD eps=8 (final)")
    curves.set(xlabel="epoch", ylabel="test accuracy", title="LeNet-style convnet: test accuracy")
    angles.set(xlabel="weight (conv1, conv2, dense1, dense2)", ylabel="degrees", title="final angle to the gradient")
    curves.legend(fontsize=8)
    if len(results["rules"]) > 1:  # the smoke run has backprop alone
        angles.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out_dir, "convnets.png")


if __name__ == "__main__":
    run_cli(main, __file__, __doc__)
