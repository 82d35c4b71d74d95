"""Private MNIST: DP-SGD (per-example clipping from the hand-written backward) at epsilon 1, 3 and 8.

Question: what test accuracy does differentially private training reach on MNIST-5k and digits at
epsilon in {1, 3, 8} (delta = 1e-5), against the same network trained without privacy for the same
epochs -- and is the epsilon the run reports the accountant's?

Answer: see the table in experiments/README.md (the committed JSON holds the numbers). The
target is >= 85% on MNIST-5k at epsilon = 8. Published anchors, all on the full 60,000-image MNIST:
Abadi et al. 2016 90 / 95 / 97% at epsilon 0.5 / 2 / 8; TF Privacy 95.0% at 1.2 and 96.6% at 2.9;
Opacus 94.6% at 1.16 and 97.1% at 6.9. With 4,000 training images and the same batch size the
sampling rate q = B / n is 15x higher (256 / 4000 = 0.064 against 256 / 60000 = 0.0043); privacy
amplification by sampling is weaker, so the same epsilon buys far fewer noisy steps at the same
noise, or much more noise per step -- the same epsilon costs more accuracy. That is the data
size, not the method: the method's gradient is proven equal to clipping per-example gradients.
Every run: Poisson sampling (expected batch B), clip norm 1, SGD, sigma calibrated by the RDP
accountant for the whole run; the non-private baseline uses shuffled batches of B and a smaller rate.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt

import jaxbp
from _common import check, default_out, log, run_cli, save_figure, write_results
from jaxbp.privacy import epsilon
from jaxbp.training.plots import COLORS

NAME = Path(__file__).stem
EPSILONS = (1.0, 3.0, 8.0)
DELTA = 1e-5
RUNS = {  # dataset -> (hidden, batch, epochs, private learning rate, non-private learning rate)
    "mnist5k": ([256], 256, 15, 2.0, 0.2),
    "digits": ([64], 64, 30, 1.0, 0.2),
}
ANCHORS = {"Abadi et al. 2016": [(0.5, 0.90), (2.0, 0.95), (8.0, 0.97)],
           "TF Privacy": [(1.2, 0.950), (2.9, 0.966)], "Opacus": [(1.16, 0.946), (6.9, 0.971)]}


def run(dataset: str, eps: float | None, smoke: bool, folder: Path) -> dict:
    """One jaxbp.train run (eps None: not private); returns its summary and per-epoch rows."""
    hidden, batch, epochs, private_lr, plain_lr = RUNS[dataset]
    overrides = [f"data.name={dataset}", "data.standardize=false", f"model.hidden={hidden}",
                 f"train.batch_size={batch if not smoke else 32}", f"train.epochs={epochs if not smoke else 2}",
                 "train.plots=false", f"optimizer.learning_rate={plain_lr if eps is None else private_lr}",
                 "data.validation_fraction=0"]  # the whole training split, as the published runs and results
    overrides += ["data.n=300"] if smoke else []
    if eps is not None:
        overrides += ["privacy.enabled=true", f"privacy.target_epsilon={eps}", f"privacy.delta={DELTA}"]
    out = folder / f"{dataset}-{eps}"
    result = jaxbp.train(None, out, overrides=overrides, progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    summary = result.summary
    log(f"{dataset} eps {eps}: test accuracy {summary['test_accuracy']:.4f}"
        + (f", sigma {summary['privacy']['noise_multiplier']:.3f}, q {summary['privacy']['q']:.4f}, "
           f"{summary['privacy']['steps']} steps, eps {summary['privacy']['epsilon']:.3f}" if eps else ""))
    return {"summary": summary, "test_acc": [r["test_accuracy"] for r in rows],
            "epsilon": [r.get("epsilon") for r in rows], "epoch": [r["epoch"] for r in rows]}


def main(smoke: bool = False, out_dir: Path = default_out(__file__)) -> dict:
    started = time.perf_counter()
    results, targets = {}, {}
    eps_list = EPSILONS[-1:] if smoke else EPSILONS
    with tempfile.TemporaryDirectory() as folder:
        for dataset in (["digits"] if smoke else RUNS):  # the smoke run: one dataset, one epsilon, 300 examples
            runs = {"non-private": run(dataset, None, smoke, Path(folder))}
            runs.update({f"eps={e:g}": run(dataset, e, smoke, Path(folder)) for e in eps_list})
            results[dataset] = runs
    for dataset, runs in results.items():
        for name, r in runs.items():
            p = r["summary"].get("privacy")
            if p:  # the reported epsilon is dp-accounting's for the run's (q, sigma, steps, delta)
                direct = epsilon(p["q"], p["noise_multiplier"], p["steps"], p["delta"], p["accountant"])
                targets[f"{dataset} {name}: reported epsilon - accountant's"] = check(abs(p["epsilon"] - direct), "<=", 1e-9)
    headline = "digits" if smoke else "mnist5k"
    targets[f"{headline} test accuracy at eps=8"] = check(results[headline]["eps=8"]["summary"]["test_accuracy"],
                                                         ">=", 0.85)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for color, (dataset, runs) in zip(COLORS, results.items()):
        xs = [float(k[4:]) for k in runs if k != "non-private"]
        ys = [runs[f"eps={x:g}"]["summary"]["test_accuracy"] for x in xs]
        axes[0].plot(xs, ys, "o-", color=color, label=f"{dataset} (jaxbp DP-SGD)")
        axes[0].axhline(runs["non-private"]["summary"]["test_accuracy"], color=color, ls=":", label=f"{dataset} non-private")
    for marker, (name, points) in zip("s^v", ANCHORS.items()):
        axes[0].plot(*zip(*points), marker, color="gray", label=f"{name} (60k MNIST)")
    axes[0].set(xscale="log", xlabel="epsilon (delta = 1e-5)", ylabel="test accuracy", title="accuracy against epsilon")
    axes[0].legend(fontsize=7)
    for ax, (dataset, runs) in zip(axes[1:], results.items()):
        for color, (name, r) in zip(COLORS, runs.items()):
            ax.plot(r["epoch"], r["test_acc"], color=color, label=name)
        ax.set(xlabel="epoch", ylabel="test accuracy", title=f"{dataset}: learning curves")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out_dir, "private_mnist.png")

    table = {dataset: {name: {"test_accuracy": r["summary"]["test_accuracy"],
                              **({k: r["summary"]["privacy"][k] for k in ("epsilon", "noise_multiplier", "q", "steps")}
                                 if "privacy" in r["summary"] else {})}
                       for name, r in runs.items()} for dataset, runs in results.items()}
    return write_results(
        out_dir, NAME, smoke=smoke, started=started,
        config={"epsilons": list(eps_list), "delta": DELTA, "runs": RUNS, "clip_norm": 1.0, "accountant": "rdp",
                "sampling": "poisson (private), shuffled batches (non-private)", "optimizer": "sgd",
                "anchors": ANCHORS},
        results={"table": table, "curves": {d: {n: {k: r[k] for k in ("epoch", "test_acc", "epsilon")}
                                                for n, r in runs.items()} for d, runs in results.items()}},
        targets=targets,
    )


if __name__ == "__main__":
    run_cli(main, __file__, __doc__)
