"""Model selection on a validation split, never the test set: val_loss / val_accuracy each epoch, the best
epoch's params kept (best.npz), early stopping (``[train.early_stopping]``) and the best replica of a sweep.

The validation split is the training split's last ``data.validation_fraction`` of rows (0.1 by default; the
split is shuffled), left out of the standardization statistics too; the test set is only reported. With
several replicas the run's validation metric is their mean, and ``best_replica`` is the replica with the best
validation metric at the best epoch. On a mesh the params stay sharded and the split is replicated.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ..scale.cluster import to_host
from ..scale.sharded import place
from .checkpoint import save_trees
from .runlog import BEST
from .steps import scores

VAL_NAMES = ("val_loss", "val_accuracy")


def validation_fn(run):
    """``params (K replicas) -> {"val_loss": (K,), "val_accuracy": (K,)}`` (a regression: val_loss, val_mse,
    val_mae, val_r2), jitted; None without a validation split. On a mesh the params stay sharded over
    ``replica`` and the validation split is replicated (moved there once), as the epoch's test set is."""
    if run.validation is None:
        return None

    axis = None if run.mesh is None else "replica"

    def validate(params, x_val, y_val):
        values = jax.vmap(lambda p: scores(run.model, p, x_val, y_val), spmd_axis_name=axis)(params)
        return {f"val_{name}": value for name, value in values.items()}

    if run.mesh is None:
        return functools.partial(jax.jit(validate), x_val=run.validation[0], y_val=run.validation[1])
    stacked, full = NamedSharding(run.mesh, P("replica")), NamedSharding(run.mesh, P())
    x_val, y_val = place(run.validation, full)
    sharded = jax.jit(validate, in_shardings=(stacked, full, full), out_shardings=full)
    return lambda params: sharded(params, x_val, y_val)


class Best:
    """The best epoch so far by the validation metric (mean over replicas), its params, and when to stop."""

    def __init__(self, early_stopping, rows: list[dict]):
        self.metric, self.patience, self.min_delta = early_stopping.metric, early_stopping.patience, early_stopping.min_delta
        mode = early_stopping.mode
        self.sign = (1.0 if self.metric.endswith(("loss", "mse", "mae")) else -1.0) if mode == "auto" else (1.0 if mode == "min" else -1.0)
        self.epoch, self.value, self.params, self.per_replica = 0, np.inf, None, None
        for row in rows:  # a resumed run: the best so far from its recorded rows (its params are in best.npz)
            if self.metric in row:
                self._consider(row, None)

    def _consider(self, row: dict, params) -> bool:
        values = np.atleast_1d(np.asarray(row[self.metric], np.float64))
        value = self.sign * float(np.mean(values))
        if not np.isfinite(value) or value >= self.value - self.min_delta:
            return False
        self.epoch, self.value, self.params, self.per_replica = row["epoch"], value, params, self.sign * values
        return True

    def update(self, row: dict, params) -> bool:
        """Consider this epoch's row; keep ``params`` (fetched to the host) when it is the best so far."""
        if not self._consider(row, True):
            return False
        self.params = to_host(params)  # gathered from every process on a mesh
        return True

    def should_stop(self, epoch: int) -> bool:
        return bool(self.patience) and self.epoch > 0 and epoch - self.epoch >= self.patience

    def summary(self, stopped_at: int | None) -> dict:
        if self.epoch == 0:
            return {}
        out = {"best_epoch": self.epoch, f"best_{self.metric}": self.sign * self.value,
               "selected_by": f"{self.metric} on the validation split (mean over replicas)"}
        if self.per_replica is not None and len(self.per_replica) > 1:
            out["best_replica"] = int(np.argmin(self.sign * self.per_replica))
        if stopped_at is not None:
            out["stopped_early_at_epoch"] = stopped_at
        return out


def write_best(run_dir: str, run, best: Best, identity: dict) -> None:
    """best.npz: the best epoch's params (one replica's, or all with a leading replica axis), with checksums."""
    if best.params is None:  # not improved in this invocation: a resumed run's best.npz stays as it is
        return
    params = best.params if run.replicas > 1 else jax.tree.map(lambda leaf: leaf[0], best.params)
    save_trees(os.path.join(run_dir, BEST), {"params": params},
               {"replicas": run.replicas, **identity, "epoch": best.epoch, "metric": best.metric,
                "value": best.sign * best.value})
