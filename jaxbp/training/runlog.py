"""A run folder's files, its per-epoch metrics, the progress display and the summary.

Metrics per epoch are scalars for one replica and lists (one entry per replica) for several.
Progress is a tqdm bar (epochs done, rate, ETA, the latest metrics) on a terminal, and plain lines
otherwise (every tenth of the run); train.log gets a plain line for every epoch either way.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys

import numpy as np
from tqdm import tqdm

from . import guard as _guard
from ..boundary.files import open_append, write_atomic
from .lock import LOCK
from ..errors import CheckpointError, ConfigError

CONFIG, METRICS, SUMMARY, PARAMS, CHECKPOINT, LOG = (
    "config.toml", "metrics.jsonl", "summary.json", "params.npz", "checkpoint.npz", "train.log")
PLOTS = ("loss.png", "accuracy.png", "decision_boundary.png")
REGRESSION_PLOT = "r2.png"  # a regression's in accuracy.png's place
RECORD = "model.json"  # what predicting needs (jaxbp.training.record)
BEST = "best.npz"  # the best epoch on the validation split (jaxbp.training.selection)
RUN_FILES = (CONFIG, METRICS, SUMMARY, PARAMS, BEST, CHECKPOINT, LOG, *PLOTS, REGRESSION_PLOT, RECORD)
EVALUATED = re.compile(r"confusion(-replica\d+)?\.png|predicted_vs_true\.png")  # written by ``jaxbp evaluate``


def confusion_file(replicas: int, replica: int) -> str:
    """The name ``jaxbp evaluate`` gives its confusion plot in the run folder."""
    return "confusion.png" if replicas == 1 else f"confusion-replica{replica}.png"
METRIC_NAMES = ("batch_loss", "train_loss", "train_accuracy", "test_loss", "test_accuracy")
REGRESSION_NAMES = ("batch_loss", *(f"{split}_{m}" for split in ("train", "test") for m in ("loss", "mse", "mae", "r2")))


def metric_names(row) -> tuple:
    """The epoch metrics of a row: accuracy for a classifier, mse / mae / r2 for a regression."""
    return REGRESSION_NAMES if "test_r2" in row else METRIC_NAMES


def prepare_run_dir(path, overwrite: bool) -> str:
    """Create ``path``; refuse a non-empty folder unless ``overwrite`` (then only jaxbp's run files and the
    confusion plots of ``jaxbp evaluate`` are removed)."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"--out {path} is a file, not a folder; pick a folder path for the run")
    if os.path.isdir(path) and set(os.listdir(path)) - {LOCK}:  # the run's own lock is not a file of a run
        if not overwrite:
            raise ConfigError(f"run folder {path} already exists and is not empty; pick another --out, continue it "
                              f"with --resume {path}, or pass --overwrite to replace its run files")
        for name in os.listdir(path):  # the old run's files go, its evaluations with them; nothing else
            if (name in RUN_FILES or EVALUATED.fullmatch(name)) and os.path.isfile(os.path.join(path, name)):
                os.remove(os.path.join(path, name))
    os.makedirs(path, exist_ok=True)
    return path


def check_run_dir(path) -> str:
    path = os.fspath(path)
    for name in (CONFIG, CHECKPOINT):
        if not os.path.isfile(os.path.join(path, name)):
            what = "no such folder" if not os.path.isdir(path) else f"it has no {name}"
            raise CheckpointError(f"cannot resume {path}: {what}. Point --resume at a folder made by "
                                  f"`jaxbp train --out DIR` (it holds {CONFIG} and {CHECKPOINT})")
    return path


def read_metrics(path: str, upto_epoch: int, notes: list | None = None, tolerant: bool = False) -> list[dict]:
    """The rows of metrics.jsonl up to ``upto_epoch`` (rows after a checkpoint are dropped on resume; so is a
    last line torn by a kill, once the rows up to the checkpoint are complete, with a note). ``tolerant`` (to
    rebuild a finished run's files): a damaged line anywhere is skipped, with a note."""
    rows = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8", errors="replace") as file:
            lines = file.readlines()
        for number, line in enumerate(lines, 1):
            try:
                row = _guard.from_json(json.loads(line))
                epoch = int(row["epoch"])
            except (ValueError, KeyError, TypeError, AttributeError):
                complete = len(rows) == upto_epoch or (rows and rows[-1]["epoch"] >= upto_epoch)
                if tolerant:
                    (notes if notes is not None else []).append(f"skipped the damaged line {number} of {path}")
                    continue
                if number == len(lines) and complete:
                    (notes if notes is not None else []).append(
                        f"dropped the torn last line of {path} (line {number}, past the checkpoint's epoch {upto_epoch})")
                    break
                raise CheckpointError(f"{path} line {number} is not a metrics row; delete the broken line(s) and "
                                      f"resume again") from None
            if epoch <= upto_epoch and not (tolerant and rows and epoch <= rows[-1]["epoch"]):
                rows.append(row)
    if tolerant and not rows:
        raise CheckpointError(f"{path} holds no readable metrics row, so the run's summary cannot be rebuilt; "
                              f"restore it from a backup, or retrain the run")
    return rows


def metric_value(value, replicas: int):
    """A metric as JSON: a float, or a list of K floats for K > 1 replicas."""
    values = [float(v) for v in np.ravel(value)]
    return values if replicas > 1 else values[0]


def metrics_row(epoch: int, step: int, seconds: float, metrics: dict, replicas: int) -> dict:
    """One JSON-ready row: each metric a float, or a list of K floats for K > 1 replicas."""
    row = {"epoch": epoch, "step": step, "time_s": round(seconds, 4)}
    for name in metric_names(metrics):
        row[name] = metric_value(metrics[name], replicas)
    return row


class RunLog:
    """Writes metrics.jsonl and train.log (when there is a run folder) and shows progress."""

    def __init__(self, run_dir: str | None, epochs: int, show: bool, rows: list[dict]):
        self.epochs, self.rows, self.run_dir = epochs, list(rows), run_dir
        self.stream = sys.stdout if show else None
        self.tty = bool(show) and sys.stdout.isatty()
        self.every = max(1, math.ceil(epochs / 10))
        self.bar = tqdm(total=epochs, initial=len(rows), unit="epoch", file=sys.stdout) if self.tty else None
        self.log = self.metrics = None
        if run_dir is not None:
            write_atomic(os.path.join(run_dir, METRICS), "".join(_guard.dumps(r) + "\n" for r in rows).encode())
            self.metrics = open_append(os.path.join(run_dir, METRICS))
            self.log = open_append(os.path.join(run_dir, LOG))

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        elif self.stream is not None:
            self.stream.write(text + "\n")
            self.stream.flush()
        if self.log is not None:
            self.log.write(text + "\n")
            self.log.flush()

    def epoch(self, row: dict) -> None:
        line = describe(row, self.epochs)
        if self.metrics is not None:
            self.metrics.write(_guard.dumps(row) + "\n")  # NaN/Inf as null, flagged: always valid JSON
            self.metrics.flush()
            self.log.write(line + "\n")
            self.log.flush()
        self.rows.append(row)
        if self.bar is not None:
            self.bar.set_postfix_str(_metrics(row), refresh=False)
            self.bar.update(row["epoch"] - self.bar.n)
            if row["epoch"] >= self.epochs:
                self.bar.close()  # the time on the bar is training time; saving and plots come after
        elif self.stream is not None and (row["epoch"] % self.every == 0 or row["epoch"] == self.epochs):
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        for file in (self.metrics, self.log):
            if file is not None:
                file.close()


def describe(row: dict, epochs: int) -> str:
    """``epoch 12/60 step 444 batch loss 0.0213 train acc 99.1% test loss 0.0398 test acc 98.7% 1.2s`` (replica
    means). "batch loss" is the mean of the epoch's mini-batch losses, each taken before its step; the final
    summary's "train-set loss" is the loss of the whole training split after the last step."""
    return f"epoch {row['epoch']}/{epochs} step {row['step']} {_metrics(row)} {row['time_s']:.1f}s"


def _metrics(row: dict) -> str:
    mean = {name: float(np.mean(row[name])) for name in metric_names(row)}
    if "test_r2" in row:
        return (f"batch loss {mean['batch_loss']:.4f} train mse {mean['train_mse']:.4g} R2 {mean['train_r2']:.4f} "
                f"test mse {mean['test_mse']:.4g} mae {mean['test_mae']:.4g} R2 {mean['test_r2']:.4f}"
                + (f" val loss {float(np.mean(row['val_loss'])):.4f}" if "val_loss" in row else ""))
    return (f"batch loss {mean['batch_loss']:.4f} train acc {mean['train_accuracy']:.1%} "
            f"test loss {mean['test_loss']:.4f} test acc {mean['test_accuracy']:.1%}"
            + (f" val loss {float(np.mean(row['val_loss'])):.4f} val acc {float(np.mean(row['val_accuracy'])):.1%}"
               if "val_loss" in row else "")
            + (f" eps {row['epsilon']:.2f}" if "epsilon" in row else ""))  # a private run: epsilon spent so far


def summarize(rows: list[dict], replicas: int, extra: dict) -> dict:
    """Final metrics (replica means when K > 1, plus each replica and the spread across them)."""
    last = rows[-1]
    values = {name: np.atleast_1d(np.asarray(last[name], dtype=float)) for name in metric_names(last)[1:]}
    summary = {**extra, "epochs": last["epoch"], "steps": last["step"], "replicas": replicas}
    summary.update({name: float(np.mean(v)) for name, v in values.items()})
    if replicas > 1:
        summary["spread"] = {name: {"mean": float(np.mean(v)), "std": float(np.std(v)), "min": float(np.min(v)),
                                    "max": float(np.max(v))} for name, v in values.items()}
    return summary


def write_json(path: str, data) -> None:
    write_atomic(path, (_guard.dumps(data, indent=2) + "\n").encode())
