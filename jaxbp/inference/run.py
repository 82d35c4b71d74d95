"""``jaxbp.load_run(path)``: a trained run as a model, its params and the data step it was trained with.

>>> run = jaxbp.load_run("runs/iris")
>>> run.predict(x_raw)   # (n, k) class probabilities; the run's standardization is applied first
>>> run.classify(x_raw)  # the user's own labels, e.g. array(['setosa', 'virginica', ...])
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..config import RunConfig, load_saved
from ..datasets.preprocess import check_finite, check_range, labels_to_classes
from ..errors import CheckpointError, ConfigError, DataError, ShapeError
from ..networks import Model, describe, from_tables, mlp, modal_names
from ..regularize import regularized
from ..plugins.user import load_plugins
from ..scale.precision import mixed_precision
from ..training.checkpoint import load_trees
from ..training.finish import check_params
from ..training.guard import all_finite
from ..training.record import read_record, standardizer
from ..training.runlog import CONFIG, PARAMS
from ..training.selection import BEST
from ..training.steps import evaluate, predicted_class


class Evaluation(NamedTuple):
    loss: float
    accuracy: float
    confusion: np.ndarray  # (k, k) counts: row = true class, column = predicted class
    classes: tuple  # the user's label of each row / column
    n: int


class LoadedRun(NamedTuple):
    """A trained run: ``predict`` and ``classify`` take RAW inputs (as in the training file)."""

    path: str
    config: RunConfig
    model: Model
    params: Any  # one replica's params
    record: dict  # model.json: model spec, standardization, classes, features, plugins
    replica: int

    def __repr__(self) -> str:  # the arrays described, not printed
        return (f"LoadedRun(path={self.path!r}, model={self.model.loss_name} {self.record['model'].get('sizes')}, "
                f"replica={self.replica}, params={describe(self.params)}, classes={_short_tuple(self.classes)})")

    @property
    def classes(self) -> tuple:
        return tuple(self.record["classes"])

    def preprocess(self, x, *, standardized: bool = False) -> jax.Array:
        """The run's data step on raw inputs (n, d): train-split standardization, then the params' dtype.

        Inputs that look standardized already (e.g. ``jaxbp.datasets.load(...)``'s arrays) are refused rather than
        standardized twice; pass ``standardized=True`` for inputs that are, to skip the step."""
        x = np.asarray(x)
        if x.ndim > 2 and x.shape[1:] == self.model.input_shape:  # images: standardized as the flat rows they were
            x = x.reshape(x.shape[0], -1)
        if x.ndim != 2 or x.shape[1] != self.model.d_in:
            raise ShapeError(f"inputs must have shape (n, {self.model.d_in}) (the run's features); got {x.shape}")
        if x.dtype.kind not in "iufb":
            raise ShapeError(f"inputs must be numbers; got dtype {x.dtype}")
        check_finite("inputs", np.asarray(x, np.float64))
        stats = None if standardized else standardizer(self.record)
        if stats is not None and stats.looks_applied(x):
            raise DataError(
                "these inputs look standardized already (columns near mean 0, std 1; the run's raw training "
                f"features have means {_short(stats.mean)} and stds {_short(stats.std)}), and would be standardized "
                "twice. Pass raw inputs (jaxbp.datasets.load(..., standardize=False) gives raw arrays), or "
                "standardized=True if they are standardized with this run's statistics")
        x = np.asarray(x, np.float64) if stats is None else stats.apply(x)
        dtype = jax.tree.leaves(self.params)[0].dtype
        check_range("inputs", x, dtype, tuple(self.record.get("features") or ()), stats)
        return jnp.asarray(x, dtype=dtype).reshape(x.shape[0], *self.model.input_shape)  # (n, d), or images

    @property
    def regression(self) -> bool:
        """Trained on float targets (mse or huber on a file's continuous column): predict gives values."""
        return bool(self.record.get("regression"))

    def _classifier(self, what: str) -> None:
        if self.regression:
            raise ConfigError(f"{self.path} is a regression (float targets), which has no classes to {what}: use "
                              f".predict(x) for values and .evaluate_values(x, y) for R2, mse and mae")

    def predict(self, x, *, standardized: bool = False) -> jax.Array:
        """Class probabilities (n, k) -- or (n, 1) for a sigmoid output -- of raw inputs; a regression's values
        (n, k) in the targets' own units (its target standardization undone: y = z * std + mean)."""
        out = self.model.predict(self.params, self.preprocess(x, standardized=standardized))
        stats = standardizer(self.record, "target_standardize")
        return out if stats is None else jnp.asarray(np.asarray(out, np.float64) * stats.std + stats.mean)

    def evaluate_values(self, x, targets, *, standardized: bool = False) -> dict:
        """A regression's {"mse", "mae", "r2", "n"} on raw inputs and targets (n,) or (n, k), in the targets' units
        (the formulas of training's metrics), with the predictions as "predicted"."""
        try:
            t = np.asarray(targets, np.float64)
        except (TypeError, ValueError):
            raise DataError("a regression's targets must be numbers; got non-numeric values") from None
        t = t.reshape(len(t), -1)
        z = np.asarray(self.predict(x, standardized=standardized), np.float64)
        if z.shape != t.shape:
            raise ShapeError(f"{z.shape[0]} inputs and {z.shape[1]} output(s) but targets of shape {t.shape}")
        check_finite("targets", t)
        total = np.sum((t - t.mean(axis=0)) ** 2)
        return {"mse": float(np.mean(np.sum((z - t) ** 2, axis=1))), "mae": float(np.mean(np.abs(z - t))),
                "r2": float(1 - np.sum((z - t) ** 2) / max(total, 1e-30)), "n": len(t), "predicted": z, "true": t}

    def class_index(self, x, *, standardized: bool = False) -> np.ndarray:
        """The predicted class 0..k-1 of each raw input: argmax over k outputs, or z > 0 for one output."""
        self._classifier("classify")
        z = self.model.apply(self.params, self.preprocess(x, standardized=standardized))
        return np.asarray(predicted_class(z), np.int32)

    def classify(self, x, *, standardized: bool = False) -> np.ndarray:
        """The predicted label of each raw input, in the user's own labels (ints or strings)."""
        return np.asarray(self.classes)[self.class_index(x, standardized=standardized)]

    def evaluate(self, x, labels, *, where: str = "evaluation data", lines=None, standardized: bool = False) -> Evaluation:
        """Mean loss, accuracy (as in training's test accuracy) and confusion matrix on raw inputs and user labels.
        ``where`` (a file name) and ``lines`` (each row's line in it) place a bad label in errors."""
        self._classifier("evaluate")
        y = labels_to_classes(labels, self.classes, where, lines)
        if len(y) != np.shape(x)[0]:
            raise ShapeError(f"{np.shape(x)[0]} inputs but {len(y)} labels; give one label per row")
        loss, accuracy = evaluate(self.model, self.params, self.preprocess(x, standardized=standardized), jnp.asarray(y))
        k = len(self.classes)
        confusion = np.zeros((k, k), np.int64)
        np.add.at(confusion, (y, self.class_index(x, standardized=standardized)), 1)
        return Evaluation(float(loss), float(accuracy), confusion, self.classes, len(y))


def _short_tuple(values: tuple) -> str:
    return repr(tuple(values[:6]))[:-1] + (", ...)" if len(values) > 6 else ")")


def _short(values: np.ndarray) -> str:
    shown = ", ".join(f"{v:.3g}" for v in values[:3])
    return f"[{shown}{', ...' if len(values) > 3 else ''}]"


def eval_mode(model) -> str:
    """How predictions and evaluations run: always in eval mode; with modal layers, what that means for them."""
    said = {"batch_norm": "batch_norm from its running averages", "dropout": "dropout off"}
    names = [said.get(name, f"{name} in eval mode") for name in modal_names(model)]
    return "eval mode" + (f": {', '.join(names)}" if names else "")


def load_run(path, replica: int | None = None, *, plugins=(), which: str = "last") -> LoadedRun:
    """Load the run folder ``path``; ``replica`` picks one of several. Its recorded plugins are imported
    again (then ``plugins``), so a run with a custom activation loads in a new process. ``which``: "last"
    (params.npz, the end of training) or "best" (best.npz, the best epoch on the validation split)."""
    path = os.fspath(path)
    if which not in ("last", "best"):
        raise ConfigError(f"which must be 'last' (params.npz) or 'best' (best.npz); got {which!r}")
    if not os.path.isfile(os.path.join(path, CONFIG)):
        what = "no such folder" if not os.path.isdir(path) else f"it has no {CONFIG}"
        raise CheckpointError(f"cannot load run {path}: {what}. Point at a folder made by `jaxbp train --out DIR`")
    config = load_saved(os.path.join(path, CONFIG))
    record = read_record(path)
    load_plugins(plugins or record["plugins"])  # given plugins replace the recorded ones (a file that moved)
    spec = dict(record["model"])
    penalty = (spec.pop("l2", 0.0), spec.pop("l1", 0.0), spec.pop("regularize_biases", False))
    if "layers" in spec:
        model = from_tables(tuple(spec["input_shape"]), spec["layers"], spec["k"], spec["loss"], spec["rule"])
    else:
        model = mlp(spec.pop("sizes"), spec.pop("activation"), spec.pop("loss"), **spec)
    model = regularized(model, *penalty) if penalty[0] or penalty[1] else model  # its loss as training reported it
    if config.train.precision == "bfloat16":  # predict and evaluate compute as the run did
        model = mixed_precision(model, "bfloat16")
    replicas = int(record["replicas"])
    replica = _pick(path, replica, replicas, record.get("replica_labels"))
    template = jax.eval_shape(model.init, jax.random.key(0))
    if replicas > 1:
        template = jax.tree.map(lambda t: jax.ShapeDtypeStruct((replicas, *t.shape), t.dtype), template)
    params_path = os.path.join(path, PARAMS if which == "last" else BEST)
    if which == "best" and not os.path.isfile(params_path):
        raise CheckpointError(f"run {path} has no {BEST}: a run keeps its best epoch when it holds out a validation "
                              f"split (data.validation_fraction, 0.1 by default; this run's is 0)")
    if which == "best":  # best.npz belongs to the run (its id) but is not the params.npz whose digest model.json holds
        record = {key: value for key, value in record.items() if key != "params_sha256"}
    if not os.path.isfile(params_path):
        raise CheckpointError(f"run {path} has no {PARAMS} (its training did not finish, or stopped while saving): "
                              f"jaxbp train --resume {path} finishes it, or rebuilds the final files of a finished run")
    template = _stored_float_dtype(params_path, template)
    trees, meta = load_trees(params_path, {"params": template})
    check_params(meta, record, meta.get("sha256", {}), params_path, CheckpointError)
    params = trees["params"]
    if not bool(all_finite(params)):
        raise CheckpointError(f"{params_path} holds NaN/Inf params (the run diverged), so every prediction would "
                              f"be NaN; retrain with a lower optimizer.learning_rate, or keep the last finite "
                              f"state (train.final_params = \"last_finite\")")
    params = jax.tree.map(lambda leaf: jnp.asarray(leaf[replica] if replicas > 1 else leaf), params)
    return LoadedRun(path, config, model, params, record, replica)


def _stored_float_dtype(path: str, template):
    """The template with the file's float dtype: a run trained in float64 loads where x64 is off (its params are
    then rounded to float32), and a float32 run loads in an x64 session (and predicts exactly as it trained)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            dtypes = {dtype for dtype in (archive[name].dtype for name in archive.files) if dtype.kind == "f"}
    except Exception:  # a torn or foreign file (BadZipFile, NotImplementedError...): load_trees reports it
        return template
    if len(dtypes) != 1:
        return template
    dtype = dtypes.pop()
    return jax.tree.map(lambda t: jax.ShapeDtypeStruct(t.shape, dtype if t.dtype.kind == "f" else t.dtype), template)


def _pick(path: str, replica, replicas: int, labels) -> int:
    if replica is None and replicas > 1:
        shown = "; ".join(f"{r}: {label}" for r, label in enumerate(labels or range(replicas)))
        raise ConfigError(f"run {path} trained {replicas} replicas ({shown}); pick one with replica=R "
                          f"(--replica R on the command line)")
    replica = 0 if replica is None else replica
    if not isinstance(replica, int) or isinstance(replica, bool) or not 0 <= replica < replicas:
        raise ConfigError(f"replica must be an integer 0..{replicas - 1} for run {path}; got {replica!r}")
    return replica
