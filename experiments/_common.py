"""Shared helpers for the experiment scripts: command line, log, results JSON, training loops, figures.

Each experiment reads top to bottom with these as its vocabulary. Gradients always come from
jaxbp's hand-written backward (``jaxbp.train_step_fn`` / ``make_scan_step``), never ``jax.grad``;
batches, evaluation and decision boundaries are the library's own (``jaxbp.training.epoch_batches``,
``jaxbp.evaluate``, ``jaxbp.training.plot_boundary``).

``python experiments/_common.py`` prints the README results table from the committed JSON files.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from typing import Callable

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import jaxbp  # noqa: E402
from jaxbp.training import epoch_batches, predicted_class  # noqa: E402


RESULTS = Path(__file__).resolve().parent / "results"
TIMING = "timing.json"  # beside <name>.json: what a rerun on the same machine may change
DPI = 100


# --- command line, log, results -----------------------------------------------------------


def default_out(script: str) -> Path:
    """experiments/results/<script name>/"""
    return RESULTS / Path(script).stem


def run_cli(main: Callable, script: str, doc: str) -> None:
    """``python experiments/NN_name.py [--smoke] [--out DIR]``."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes that finish in seconds (the test suite)")
    parser.add_argument("--out", type=Path, default=default_out(script), help="where the JSON and figures go")
    args = parser.parse_args()
    main(smoke=args.smoke, out_dir=args.out)


def log(message: str) -> None:
    print(message, flush=True)


def check(value, op: str, bound: float) -> dict:
    """One target: ``{"value", "target", "passed"}`` with op ">=" or "<="."""
    value = float(value)
    passed = value >= bound if op == ">=" else value <= bound
    return {"value": value, "target": f"{op} {bound:g}", "passed": bool(passed)}


def _plain(obj):
    if isinstance(obj, (np.ndarray, jax.Array)):
        return np.asarray(obj).tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_results(out_dir: Path, name: str, *, smoke: bool, started: float, config: dict, results: dict,
                  targets: dict, timing: dict | None = None, timing_targets: dict | None = None) -> dict:
    """Write ``<out>/<name>.json`` (config, numbers, each target with its ``passed`` boolean) and, apart,
    ``<out>/timing.json`` (run time, the ``timing`` figures and the targets on them), so that a rerun on
    the same machine rewrites ``<name>.json`` byte for byte. Returns the first record."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"experiment": name, "smoke": smoke, "passed": all(t["passed"] for t in targets.values()),
              "targets": targets, "results": results, "config": config}
    timing_targets = timing_targets or {}
    timed = {"experiment": name, "smoke": smoke, "passed": all(t["passed"] for t in timing_targets.values()),
             "targets": timing_targets, "runtime_s": round(time.perf_counter() - started, 2), **(timing or {})}
    path = out_dir / f"{name}.json"
    for file, content in ((path, record), (out_dir / TIMING, timed)):
        file.write_text(json.dumps(content, indent=2, default=_plain) + "\n")
    for key, t in {**targets, **timing_targets}.items():
        log(f"target {key}: {t['value']:.6g} (want {t['target']}) {'met' if t['passed'] else 'MISSED'}")
    log(f"wrote {path} and {TIMING} in {timed['runtime_s']:.1f} s")
    return record


def save_figure(fig, out_dir: Path, filename: str) -> Path:
    path = Path(out_dir) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    log(f"wrote {path}")
    return path


# --- data and training ----------------------------------------------------------------------


def load(name: str, *, seed: int, **kwargs) -> jaxbp.datasets.Dataset:
    data = jaxbp.datasets.load(name, key=jax.random.key(seed), **kwargs)
    log(f"data {name}: {data.x_train.shape[0]} train / {data.x_test.shape[0]} test, "
        f"{data.x_train.shape[1]} features, {data.num_classes} classes")
    return data


evaluate = jax.jit(jaxbp.evaluate, static_argnums=0)  # the library's, compiled once per model and shape


def accuracy(model: jaxbp.Model, params, x, y) -> float:
    return float(evaluate(model, params, x, y)[1])


def full_batch_run(model: jaxbp.Model, optimizer, steps: int, *, per_example: bool = False) -> Callable:
    """Jitted ``(params, opt_state, x, y) -> (params, opt_state, losses (steps,))``: ``steps`` full-batch
    steps of ``jaxbp.train_step_fn`` in one ``lax.scan``, the batch closed over instead of stacked."""
    step = jaxbp.train_step_fn(model, optimizer, per_example=per_example)

    @jax.jit
    def run(params, opt_state, x, y):
        def body(carry, _):
            params, opt_state, loss = step(*carry, x, y)
            return (params, opt_state), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), None, length=steps)
        return params, opt_state, losses

    return run


@functools.lru_cache(maxsize=None)
def mlp(sizes: tuple[int, ...], activation: str = "relu", loss: str = "softmax_cross_entropy") -> jaxbp.Model:
    """``jaxbp.mlp``, one instance per architecture, so its compiled steps are shared across datasets."""
    return jaxbp.mlp(list(sizes), activation, loss)


_scan_step = functools.lru_cache(maxsize=None)(jaxbp.make_scan_step)  # per (model, optimizer)


def train_epochs(model: jaxbp.Model, optimizer, data, *, seed: int, epochs: int, batch_size: int,
                 label: str = "", log_every: int = 1) -> tuple:
    """Minibatch training, one fused ``make_scan_step`` call per epoch; returns params and a per-epoch history."""
    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    params = model.init(init_key)
    opt_state = optimizer.init(params)
    scan_step = _scan_step(model, optimizer)
    history = {k: [] for k in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")}
    for epoch in range(1, epochs + 1):
        order = epoch_batches(jax.random.fold_in(shuffle_key, epoch), data.x_train.shape[0], batch_size)
        params, opt_state, _ = scan_step(params, opt_state, data.x_train[order], data.y_train[order])
        train_loss, train_acc = evaluate(model, params, data.x_train, data.y_train)
        test_loss, test_acc = evaluate(model, params, data.x_test, data.y_test)
        for k, v in zip(history, (epoch, train_loss, train_acc, test_loss, test_acc)):
            history[k].append(float(v))
        if epoch % log_every == 0 or epoch == epochs:
            log(f"{label}epoch {epoch:3d}  train loss {train_loss:.4f} acc {train_acc:.4f}  "
                f"test loss {test_loss:.4f} acc {test_acc:.4f}")
    return params, history


# --- figures ----------------------------------------------------------------------------------


def classes(model: jaxbp.Model, params) -> Callable:
    """``x -> predicted class``, for ``plot_boundary``."""
    return lambda x: predicted_class(model.apply(params, x))


# --- the README table -------------------------------------------------------------------------


def results_table(root: Path = RESULTS) -> str:
    """Markdown rows: experiment, target key, value, target, met, command (<name>.json, then timing.json)."""
    rows = ["| # | quantity | result | target (tolerance) | met | regenerate |", "|---|---|---|---|---|---|"]
    for path in sorted(root.glob("*/*.json")):
        record = json.loads(path.read_text())
        name = record["experiment"]
        for key, t in record["targets"].items():
            rows.append(f"| {name[:2]} | {key} | {t['value']:.6g} | {t['target']} | "
                        f"{'yes' if t['passed'] else '**no**'} | `python experiments/{name}.py` |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(results_table())
