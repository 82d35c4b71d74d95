"""Plots of a run: loss and accuracy curves, the decision boundary for 2-D inputs, a confusion matrix.

Class j is drawn in ``COLORS[j]`` in every plot and legend; with several replicas each replica's
curves get their own colour and a legend entry naming its learning rate and/or seed.

Drawn on matplotlib's Agg canvas through ``matplotlib.figure.Figure`` (no pyplot, so no global
backend is changed). Without matplotlib the plots are skipped with a one-line note.
"""

from __future__ import annotations

import io
import os
from typing import Callable

import jax.numpy as jnp
import numpy as np

from ..boundary.files import write_atomic
from .steps import predicted_class

EXTRA = "pip install 'jaxbp[plots]'"
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def save_plots(run_dir: str, rows: list[dict], model, params, data, note: Callable[[str], None],
               replica_labels=None) -> list[str]:
    """Write loss.png, accuracy.png and (2-D inputs) decision_boundary.png of replica 0; returns the file names."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        note(f"plots skipped: matplotlib is not installed ({EXTRA})")
        return []
    written = []
    replicas = len(np.atleast_1d(rows[0]["train_loss"])) if rows else 1
    for metric in ("loss", "r2" if rows and "test_r2" in rows[0] else "accuracy"):
        figure = curves_figure(Figure, replicas)
        _curves(figure.add_subplot(), rows, metric, replica_labels)
        written.append(_save(figure, run_dir, f"{metric}.png"))
    if model.d_in == 2 and not (rows and "test_r2" in rows[0]):  # a boundary between classes: classifiers only
        figure = Figure(figsize=(5.5, 5), layout="constrained")
        shown = replica_labels[0] if replica_labels and len(replica_labels) > 1 else None
        _boundary(figure.add_subplot(), model, params, data, shown)
        written.append(_save(figure, run_dir, "decision_boundary.png"))
    return written


def curves_figure(Figure, replicas: int):
    """A 6 x 4 in figure, wider by a legend column per 20 replicas (the legend sits beside the axes)."""
    return Figure(figsize=(6 + (2.2 if replicas > 1 else 0) * -(-replicas // 20), 4), layout="constrained")


def _curves(axes, rows: list[dict], metric: str, replica_labels=None) -> None:
    """Train-set (solid) and test (dashed) per epoch; with several replicas one colour and legend entry each."""
    epochs = [row["epoch"] for row in rows]
    for color, split, style in (("C0", "train", "-"), ("C1", "test", "--")):
        values = np.array([np.atleast_1d(row[f"{split}_{metric}"]) for row in rows])  # (epochs, replicas)
        several = values.shape[1] > 1
        labels = replica_labels or [f"replica {r}" for r in range(values.shape[1])]
        colors = replica_colors(values.shape[1])
        for r in range(values.shape[1]):
            axes.plot(epochs, values[:, r], style, color=colors[r] if several else color,
                      label=split if not several else labels[r] if split == "train" else None)
        if several:
            axes.plot([], [], style, color="gray", label=f"{split} set ({'solid' if style == '-' else 'dashed'})")
    if metric == "loss" and all(np.all(np.asarray(row["train_loss"]) > 0) for row in rows):
        axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} per epoch" + (f" ({values.shape[1]} replicas)" if values.shape[1] > 1 else ""))
    axes.grid(alpha=0.3)
    if values.shape[1] > 1:  # beside the axes, never over the curves; a column per 20 entries
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", borderaxespad=0,
                    ncols=-(-(values.shape[1] + 2) // 22))
    else:
        axes.legend()


def replica_colors(n: int) -> list:
    """One distinct colour per replica: tab10 up to 10, tab20 up to 20, then n evenly spaced along turbo."""
    from matplotlib import colormaps

    if n <= 10:
        return [f"C{r}" for r in range(n)]
    if n <= 20:
        return [colormaps["tab20"](r) for r in range(n)]
    return [colormaps["turbo"](r / (n - 1)) for r in range(n)]


def plot_boundary(axes, predict: Callable, x, y, num_classes: int, *, title: str = "", test=None,
                  resolution: int = 200) -> None:
    """Shade the class ``predict(grid) -> (m,) ints`` gives over a grid covering the points, then scatter them.

    ``x`` (n, 2) and ``y`` (n,) are drawn as dots, the optional ``test = (x_test, y_test)`` as crosses.
    The run's decision_boundary.png and the experiments' figures are drawn with it.
    """
    from matplotlib.colors import ListedColormap

    points = [(np.asarray(x), np.asarray(y), "o", "train")]
    if test is not None:
        points.append((np.asarray(test[0]), np.asarray(test[1]), "x", "test"))
    every = np.concatenate([p[0] for p in points])
    low, high = every.min(axis=0) - 0.5, every.max(axis=0) + 0.5
    g0, g1 = np.meshgrid(np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution))
    grid = jnp.asarray(np.stack([g0.ravel(), g1.ravel()], axis=1), dtype=points[0][0].dtype)
    regions = np.asarray(predict(grid)).reshape(g0.shape)
    k = max(num_classes, 2)
    cmap = ListedColormap(COLORS[:k])
    axes.contourf(g0, g1, regions, levels=np.arange(k + 1) - 0.5, cmap=cmap, alpha=0.25)
    for xs, ys, marker, label in points:
        axes.scatter(xs[:, 0], xs[:, 1], c=ys, cmap=cmap, vmin=-0.5, vmax=k - 0.5, s=8 if marker == "x" else 6,
                     marker=marker, edgecolors="k" if marker == "o" else None, linewidths=0.15 if marker == "o" else 1,
                     label=label if test is not None else None)
    axes.set_title(title, fontsize=9)
    axes.set_xticks([])
    axes.set_yticks([])


def _boundary(axes, model, params, data, replica: str | None = None, resolution: int = 200) -> None:
    """The run's decision boundary: ``plot_boundary`` plus a legend entry per class (its own label, its colour),
    the replica shown and the axes named by the table's feature columns."""
    plot_boundary(axes, lambda grid: predicted_class(model.apply(params, grid)), data.x_train, data.y_train,
                  data.num_classes, title=f"decision boundary: {os.path.basename(data.name)}"
                  + (f"\nreplica 0 ({replica}) of the run" if replica else ""), test=(data.x_test, data.y_test),
                  resolution=resolution)
    from matplotlib.lines import Line2D

    names, scaled = data.features or ("x0", "x1"), data.standardize is not None
    axes.set_xlabel(names[0] + (" (standardized)" if scaled else ""))
    axes.set_ylabel(names[1] + (" (standardized)" if scaled else ""))
    marks = [Line2D([], [], marker=m, color="gray", linestyle="", label=split) for split, m in (("train", "o"),
                                                                                                ("test", "x"))]
    marks += [Line2D([], [], marker="s", color=class_color(j), linestyle="", label=f"class {label}")
              for j, label in enumerate(data.classes or range(max(data.num_classes, 2)))]
    axes.legend(handles=marks, loc="upper right", fontsize="small")  # markers grey: colour means class only


def class_color(j: int) -> str:
    """Class j's colour in every plot: the colour ``plot_boundary`` shades its region and dots with."""
    return COLORS[j % len(COLORS)]


def save_confusion(path: str, confusion: np.ndarray, classes, title: str, note: Callable[[str], None]) -> str | None:
    """A confusion-matrix heat map (rows true, columns predicted), class tick labels in their class colours."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        note(f"confusion plot skipped: matplotlib is not installed ({EXTRA})")
        return None
    k = len(classes)
    figure = Figure(figsize=(1.5 + 0.6 * k, 1.2 + 0.6 * k), layout="constrained")
    axes = figure.add_subplot()
    axes.imshow(confusion, cmap="Blues")
    for (i, j), count in np.ndenumerate(confusion):
        axes.text(j, i, str(count), ha="center", va="center",
                  color="white" if count > confusion.max() / 2 else "black")
    axes.set_xticks(range(k), [str(c) for c in classes], rotation=45 if k > 5 else 0)
    axes.set_yticks(range(k), [str(c) for c in classes])
    for j, (xtick, ytick) in enumerate(zip(axes.get_xticklabels(), axes.get_yticklabels())):
        xtick.set_color(class_color(j))
        ytick.set_color(class_color(j))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    return _save(figure, os.path.dirname(path) or ".", os.path.basename(path))


def _save(figure, run_dir: str, name: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    write_atomic(os.path.join(run_dir, name), buffer.getvalue())
    return name
