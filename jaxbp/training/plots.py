"""Plots of a run: loss and accuracy curves, and the decision boundary for 2-D inputs.

Drawn on matplotlib's Agg canvas through ``matplotlib.figure.Figure`` (no pyplot, so no global
backend is changed). Without matplotlib the plots are skipped with a one-line note.
"""

from __future__ import annotations

import io
import os
from typing import Callable

import jax.numpy as jnp
import numpy as np

from .checkpoint import write_atomic

EXTRA = "pip install 'jaxbp[plots]'"


def save_plots(run_dir: str, rows: list[dict], model, params, data, note: Callable[[str], None]) -> list[str]:
    """Write loss.png, accuracy.png and (2-D inputs) decision_boundary.png; returns the file names."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        note(f"plots skipped: matplotlib is not installed ({EXTRA})")
        return []
    written = []
    for metric in ("loss", "accuracy"):
        figure = Figure(figsize=(6, 4), layout="constrained")
        _curves(figure.add_subplot(), rows, metric)
        written.append(_save(figure, run_dir, f"{metric}.png"))
    if model.d_in == 2:
        figure = Figure(figsize=(5.5, 5), layout="constrained")
        _boundary(figure.add_subplot(), model, params, data)
        written.append(_save(figure, run_dir, "decision_boundary.png"))
    return written


def _curves(axes, rows: list[dict], metric: str) -> None:
    """Train (solid) and test (dashed) per epoch; one faint line per replica when there are several."""
    epochs = [row["epoch"] for row in rows]
    for color, split, style in (("C0", "train", "-"), ("C1", "test", "--")):
        values = np.array([np.atleast_1d(row[f"{split}_{metric}"]) for row in rows])  # (epochs, replicas)
        alpha = 1.0 if values.shape[1] == 1 else 0.4
        for r in range(values.shape[1]):
            axes.plot(epochs, values[:, r], style, color=color, alpha=alpha, label=split if r == 0 else None)
    if metric == "loss" and all(np.all(np.asarray(row["train_loss"]) > 0) for row in rows):
        axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} per epoch" + (f" ({values.shape[1]} replicas)" if values.shape[1] > 1 else ""))
    axes.grid(alpha=0.3)
    axes.legend()


def _boundary(axes, model, params, data, resolution: int = 200) -> None:
    """The predicted class over a grid covering the data; train dots, test crosses."""
    x = np.concatenate([np.asarray(data.x_train), np.asarray(data.x_test)])
    low, high = x.min(axis=0) - 0.5, x.max(axis=0) + 0.5
    g0, g1 = np.meshgrid(np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution))
    grid = jnp.asarray(np.stack([g0.ravel(), g1.ravel()], axis=1), dtype=data.x_train.dtype)
    z = np.asarray(model.apply(params, grid))
    classes = (z[:, 0] > 0).astype(int) if z.shape[1] == 1 else z.argmax(axis=1)
    k = max(data.num_classes, 2)
    axes.contourf(g0, g1, classes.reshape(g0.shape), levels=np.arange(k + 1) - 0.5, cmap="tab10", vmin=0, vmax=9,
                  alpha=0.3)
    for split, marker in (("train", "o"), ("test", "x")):
        xs, ys = np.asarray(getattr(data, f"x_{split}")), np.asarray(getattr(data, f"y_{split}"))
        axes.scatter(xs[:, 0], xs[:, 1], c=ys, cmap="tab10", vmin=0, vmax=9, s=8, marker=marker, label=split)
    axes.set_title(f"decision boundary: {data.name}")
    axes.set_xlabel("x0")
    axes.set_ylabel("x1")
    axes.legend(loc="upper right")


def _save(figure, run_dir: str, name: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    write_atomic(os.path.join(run_dir, name), buffer.getvalue())
    return name
