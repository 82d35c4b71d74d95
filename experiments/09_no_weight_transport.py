"""Learning without weight transport: backprop, feedback alignment, DFA, sign symmetry and Kolen-Pollack.

Question: backprop sends the error back through W^T ("weight transport"). If each layer instead sends
it back through a fixed random matrix (feedback alignment, FA), sends the output error straight down
through one (direct feedback alignment, DFA), uses only the signs of W (sign symmetry, SS), or learns
its feedback matrix with W's own updates (Kolen-Pollack, KP), does the same MLP still learn MNIST-5k
and digits, and does the angle between each rule's hidden-layer update and the true gradient fall
below 90 degrees as the forward weights come to align with the feedback?

Answer: yes. On MNIST-5k (784-256-256-10 tanh, SGD 0.01 with momentum 0.9, 20 epochs, 3 seeds)
every rule reaches 94-96% test accuracy: BP 94.4%, FA 94.1%, DFA 94.4%, SS 95.6%, KP 95.1%; on digits
95-98%. Under FA the hidden-layer angle starts at 90 degrees (random B), is 71 and 77 degrees after
the first epoch and falls to ~53 degrees; DFA follows FA, Kolen-Pollack falls fastest (to 27-37
degrees: B learns W's updates), sign symmetry starts at 36-50 degrees and stays near 20-35.
SS beats BP here for a reason that is not its direction: sign(W) has entries of size 1 where W's
are ~0.05, so its hidden layers get ~20x larger updates at the same learning rate, and BP at
0.01 is still improving after 20 epochs. The anchors (biotorch's LeNet, Nokland's 7x240 net)
trained on all 60k MNIST images, and ours on 4000, so our errors (4.4-5.9%) are 3-4x theirs.
"""

from __future__ import annotations

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
from jaxbp.training import epoch_batches
from _common import check, default_out, load, log, run_cli, save_figure, write_results

NAME = Path(__file__).stem
RULES = {"BP": "backprop", "FA": "feedback_alignment", "DFA": "direct_feedback_alignment", "SS": "sign_symmetry",
         "KP": "kolen_pollack"}
HIDDEN, ACTIVATION = [256, 256], "tanh"  # Lillicrap's and Nokland's MNIST nets had several tanh hidden layers
SEEDS = (0, 1, 2)  # one vmapped replica run per rule; seed s inits W (and B) from jax.random.key(s)
SPLIT_SEED, SHUFFLE_SEED = 0, 1  # every rule and seed sees the same batches
LEARNING_RATE, MOMENTUM = 0.01, 0.9  # SGD with momentum, the same for every rule
RUNS = {"mnist5k": (20, 32), "digits": (20, 32)}  # dataset -> (epochs, batch)
PROBE = 1000  # the angles and the train loss are measured on the first 1000 training examples
MIN_MNIST_ACCURACY = 0.90
ANCHORS = [  # published top-1 test error on MNIST (theirs) beside ours
    ("biotorch, LeNet (conv), 60k train", {"BP": 0.84, "FA": 1.91, "DFA": 1.71, "uSF (sign symmetry)": 0.83}),
    ("Nokland 2016, DFA, 7x240 tanh + dropout, 60k train, permutation-invariant", {"DFA": 1.45}),
]


def measure_fn(model, backprop, data):
    """One jitted call per replica stack: hidden-layer angles and train loss on the probe, test accuracy.

    The angle is between each hidden layer's weight update under the rule and backprop's true gradient
    (jaxbp's hand-written backprop on the same params), in degrees, per replica.
    """
    x_probe, y_probe = data.x_train[:PROBE], data.y_train[:PROBE]

    def one(params):
        probe_loss, rule = model.value_and_grad(params, x_probe, y_probe)
        truth = backprop.value_and_grad(layer_params(params), x_probe, y_probe)[1]
        cosines = [jnp.vdot(g["w"], t["w"]) / (jnp.linalg.norm(g["w"]) * jnp.linalg.norm(t["w"]))
                   for g, t in zip(layer_params(rule)[:-1], truth[:-1])]
        return {"angle": jnp.degrees(jnp.arccos(jnp.clip(jnp.stack(cosines), -1.0, 1.0))), "train_loss": probe_loss,
                "test_acc": jaxbp.evaluate(model, params, data.x_test, data.y_test)[1]}

    return jax.jit(jax.vmap(one))


def train_rule(rule: str, data, sizes, epochs: int, batch: int, seeds) -> dict:
    model, backprop = jaxbp.mlp(sizes, ACTIVATION, rule=rule), jaxbp.mlp(sizes, ACTIVATION)
    optimizer = optax.sgd(LEARNING_RATE, momentum=MOMENTUM)
    params, opt_state = jaxbp.init_replicas(model, optimizer, jax.vmap(jax.random.key)(jnp.asarray(seeds)))
    step, measure = jaxbp.make_replica_step(model, optimizer, scan=True), measure_fn(model, backprop, data)
    history = [measure(params)]  # epoch 0: the init
    for epoch in range(1, epochs + 1):
        order = epoch_batches(jax.random.fold_in(jax.random.key(SHUFFLE_SEED), epoch), data.x_train.shape[0], batch)
        params, opt_state, _ = step(params, opt_state, data.x_train[order], data.y_train[order])
        history.append(measure(params))
        if epoch in (1, epochs) or epoch % 10 == 0:
            log(f"  {rule:<26} epoch {epoch:3d}  test acc {np.mean(history[-1]['test_acc']):.4f}  hidden-layer "
                f"angles {np.round(np.mean(history[-1]['angle'], axis=0), 1).tolist()} deg (mean over seeds)")
    return {key: np.stack([np.asarray(h[key]) for h in history]) for key in history[0]}  # (epochs + 1, seeds[, layers])


def summarize(history: dict) -> dict:
    final = history["test_acc"][-1]
    angle = history["angle"].mean(axis=1)  # (epochs + 1, layers), mean over seeds
    return {"test_acc_mean": float(final.mean()), "test_acc_spread": float(final.max() - final.min()),
            "test_acc_per_seed": final, "angle_init": angle[0], "angle_epoch_1": angle[1], "angle_final": angle[-1],
            "curves": {"epoch": np.arange(len(angle)), "angle_mean": angle, "test_acc_mean": history["test_acc"].mean(1),
                       "train_loss_mean": history["train_loss"].mean(1)}}


def main(smoke: bool = False, out_dir: Path = default_out(__file__)) -> dict:
    started, cpu_started = time.perf_counter(), time.process_time()
    runs = {"digits": (1, 32)} if smoke else RUNS
    seeds = SEEDS[:2] if smoke else SEEDS
    rules = {label: RULES[label] for label in ("FA", "KP")} if smoke else RULES  # smoke: one fixed, one learned B
    results, targets = {}, {}
    for name, (epochs, batch) in runs.items():
        data = load(name, seed=SPLIT_SEED, standardize=False, **({"n": 300} if smoke else {}))
        sizes = [int(data.x_train.shape[1]), *([32, 32] if smoke else HIDDEN), data.num_classes]
        log(f"{name}: {sizes} {ACTIVATION}, sgd({LEARNING_RATE}, momentum {MOMENTUM}), batch {batch}, "
            f"{epochs} epochs, seeds {list(seeds)}")
        results[name] = {label: summarize(train_rule(rule, data, sizes, epochs, batch, seeds))
                         for label, rule in rules.items()}
        for label, r in results[name].items():
            log(f"{name} {label:<3}: test accuracy {r['test_acc_mean']:.4f} +- {r['test_acc_spread'] / 2:.4f}, "
                f"hidden-layer angles {np.round(r['angle_init'], 1).tolist()} -> {np.round(r['angle_final'], 1).tolist()}")
    target_set = "mnist5k" if not smoke else "digits"
    for label, r in results[target_set].items():
        targets[f"{target_set} {label} test accuracy, mean of {len(seeds)} seeds"] = check(
            r["test_acc_mean"], ">=", MIN_MNIST_ACCURACY)
    fa = results[target_set]["FA"]
    for layer in range(len(fa["angle_final"])):
        targets[f"{target_set} FA hidden layer {layer + 1}: angle after epoch 1 (deg)"] = check(
            fa["angle_epoch_1"][layer], "<=", 90.0)
        targets[f"{target_set} FA hidden layer {layer + 1}: final minus epoch-1 angle (deg)"] = check(
            fa["angle_final"][layer] - fa["angle_epoch_1"][layer], "<=", 0.0)

    figure(results, out_dir)
    log("\n" + anchors_table(results.get("mnist5k", results[target_set])))
    return write_results(
        out_dir, NAME, smoke=smoke, started=started,
        config={"rules": RULES, "hidden": HIDDEN, "activation": ACTIVATION, "seeds": list(seeds),
                "optimizer": f"sgd({LEARNING_RATE}, momentum={MOMENTUM})", "runs": runs, "probe": PROBE,
                "split": "jaxbp.datasets shuffle with key 0, last 20% test; pixels / max, not standardized",
                "device": str(jax.devices()[0])},
        results={**results, "anchors": ANCHORS}, targets=targets,
        timing={"cpu_s": time.process_time() - cpu_started, "cpu_count": os.cpu_count(),
                "load_average_at_end": os.getloadavg()})


def anchors_table(results: dict) -> str:
    rows = ["| network, data | BP | FA | DFA | SS | KP |", "|---|---|---|---|---|---|"]
    for source, errors in ANCHORS:
        cells = [f"{errors[k]:.2f}%" if k in errors else "" for k in ("BP", "FA", "DFA")]
        sign = next((v for k, v in errors.items() if k.startswith("uSF")), None)
        rows.append(f"| {source} | {' | '.join(cells)} | {'' if sign is None else f'{sign:.2f}% (uSF)'} | |")
    ours = [f"{100 * (1 - results[k]['test_acc_mean']):.2f}%" if k in results else "" for k in RULES]
    rows.append(f"| jaxbp, {'-'.join(map(str, HIDDEN))} {ACTIVATION} MLP, MNIST-5k (4000 train) | {' | '.join(ours)} |")
    return "\n".join(rows)


def figure(results: dict, out_dir: Path) -> None:
    """Per dataset: the angle curves of each hidden layer, then train loss (probe) and test accuracy per epoch."""
    columns = len(HIDDEN) + 2
    fig, axes = plt.subplots(len(results), columns, figsize=(4.6 * columns, 3.6 * len(results)), squeeze=False)
    colors = dict(zip(RULES, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for row, (name, by_rule) in enumerate(results.items()):
        for label, r in by_rule.items():
            curves, color = r["curves"], colors[label]
            for layer in range(curves["angle_mean"].shape[1]):
                axes[row, layer].plot(curves["epoch"], curves["angle_mean"][:, layer], color=color, label=label)
            axes[row, -2].plot(curves["epoch"], curves["train_loss_mean"], color=color, label=label)
            axes[row, -1].plot(curves["epoch"][1:], curves["test_acc_mean"][1:], color=color,
                               label=f"{label} {r['test_acc_mean']:.3f}")
        for layer in range(columns - 2):
            axes[row, layer].axhline(90, color="k", ls=":", lw=1)
            axes[row, layer].set(xlabel="epoch", ylabel="degrees (mean of seeds)", ylim=(0, 100),
                                 title=f"{name}: hidden layer {layer + 1}\nangle of the update to the true gradient")
        axes[row, -2].set(xlabel="epoch", ylabel="cross-entropy (mean of seeds)", yscale="log",
                          title=f"{name}: train loss ({PROBE} training examples)")
        axes[row, -1].set(xlabel="epoch", ylabel="test accuracy (mean of seeds)", title=f"{name}: test accuracy")
        axes[row, 0].legend(fontsize=8)
        axes[row, -1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, out_dir, "no_weight_transport.png")


if __name__ == "__main__":
    run_cli(main, __file__, __doc__)
