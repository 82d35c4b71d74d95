"""The loop that trains, saves and resumes: one jitted epoch at a time, checkpoints, the run folder's files.

One epoch is one jitted call: shuffle with ``fold_in(shuffle_key, epoch)``, cut ``n // B`` full
batches (the ``n % B`` left over are DROPPED, so every step has one shape and nothing
recompiles), run them through the fused ``lax.scan`` step, then evaluate on train and test.
After each epoch the metrics come back in one host sync; a NaN/Inf stops the run (or not, as
train.on_nonfinite says); every train.checkpoint_every epochs, on Ctrl-C/SIGTERM and at the end
the last finite state is checkpointed, carrying the config's fingerprint.
"""

from __future__ import annotations

import os
import time
from typing import Any, NamedTuple

import jax

from . import guard as _guard
from . import runlog as _runlog
from ..config import RunConfig, to_toml
from ..networks import describe, modal_names
from ..plugins.probe import blame_backward
from ..privacy import training as _privacy
from ..scale import cluster as _cluster
from .build import Run
from ..boundary.files import write_atomic
from . import finish as _finish
from .checkpoint import Checkpoint, save_checkpoint
from .record import make_record, write_record
from . import selection as _selection


class TrainResult(NamedTuple):
    params: Any  # a leading replica axis only when there are several replicas
    opt_state: Any
    summary: dict
    config: RunConfig  # fully resolved
    run_dir: str | None

    def __repr__(self) -> str:  # the arrays described, not printed (a repr of thousands of weights helps no one)
        shown = {k: self.summary[k] for k in ("epochs", "train_loss", "test_loss", "test_accuracy", "test_r2")
                 if k in (self.summary or {})}
        return (f"TrainResult(run_dir={self.run_dir!r}, summary={shown}, params={describe(self.params)}, "
                f"opt_state={describe(self.opt_state)}, config=<resolved; .config>)")


def fit(run: Run, state: Checkpoint, run_dir, rows: list[dict], progress: bool, plugins=(), notes=(),
        run_id: str | None = None) -> TrainResult:
    """Train ``run`` from ``state`` to train.epochs, writing the run folder ``run_dir`` (None: nothing written)."""
    writer = _cluster.is_writer()  # of several processes, only process 0 writes the run folder and prints
    meta = _guard.config_meta(run.config)  # in every checkpoint and final file: config and run identity
    meta.update(run_id=run_id or _finish.run_id(meta["config_sha256"]), plugins=list(plugins))
    if run_dir is not None and writer:
        write_atomic(os.path.join(run_dir, _runlog.CONFIG), to_toml(run.config).encode())
        write_record(run_dir, {**make_record(run.config, run.data, run.model, run.replicas, plugins),
                               "run_id": meta["run_id"], "config_sha256": meta["config_sha256"]})
    log = _runlog.RunLog(run_dir if writer else None, run.config.train.epochs, progress and writer, rows)
    try:
        for note in notes:
            log.message(note)
        with _guard.interrupts(jax.process_count() > 1) as pending:  # SIGTERM saves the finished epochs, like Ctrl-C
            return _loop(run, state, run_dir, log, pending, meta, plugins)
    finally:
        log.close()


def _announce(run: Run, log, first: int, run_dir) -> None:
    config, data = run.config, run.data
    sizes = "-".join(map(str, [run.model.d_in, *config.model.hidden, run.model.d_out]))
    activation = " " + (config.model.activation if isinstance(config.model.activation, str)
                        else str(list(config.model.activation)))
    if config.model.tables:  # each table's own activation, e.g. conv2d(relu); model.activation plays no part
        activation, sizes = "", "x".join(map(str, run.model.input_shape)) + " " + ",".join(
            t["kind"] + (f"({t['activation']})" if t.get("activation") else "") for t in config.model.tables)
    where = _cluster.describe(run.mesh, config.train.precision)
    modal = modal_names(run.model)
    modes = f" with {', '.join(modal)} (train mode in the steps, eval mode in the metrics)" if modal else ""
    log.message(f"training {sizes}{activation}{modes} x {run.replicas} replica(s) on "
                f"{os.path.basename(data.name)} ({data.x_train.shape[0]} train, {data.x_test.shape[0]} test, "
                f"{run.steps_per_epoch} steps/epoch) with {config.optimizer.name}, epochs {first + 1}..{config.train.epochs}"
                + f" on {_cluster.where_text(where)}" + (f" -> {run_dir}" if run_dir else ""))


def _loop(run: Run, state: Checkpoint, run_dir, log: _runlog.RunLog, pending, meta: dict, plugins) -> TrainResult:
    config, data, train_cfg = run.config, run.data, run.config.train
    epochs, every, first, rows = train_cfg.epochs, train_cfg.checkpoint_every, state.epoch, log.rows
    checkpoint = None if run_dir is None else os.path.join(run_dir, _runlog.CHECKPOINT)
    _announce(run, log, first, run_dir)
    _, shuffle_key = jax.random.split(state.key)
    arrays = (data.x_train, data.y_train, data.x_test, data.y_test)
    offset = rows[-1]["time_s"] if rows else 0.0
    start, first_epoch_s = time.perf_counter(), 0.0
    finite, saved = state, first  # the last state with finite params (the only kind a checkpoint holds); saved epoch
    validate, best, stopped = _selection.validation_fn(run), _selection.Best(train_cfg.early_stopping, rows), None
    rising, warnings = _guard.Rising(rows), []  # a train loss climbing back up: one line of advice, not a stop
    try:
        for index in range(first, epochs):
            params, opt_state, metrics = run.epoch(state.params, state.opt_state, shuffle_key, index, *arrays)
            metrics = {**metrics, **validate(params)} if validate else metrics  # dispatched before the one sync
            metrics = jax.device_get(metrics)  # the one host sync per epoch
            first_epoch_s = first_epoch_s or time.perf_counter() - start  # includes compiling the epoch
            step = state.step + run.steps_per_epoch
            row = _runlog.metrics_row(index + 1, step, offset + time.perf_counter() - start, metrics, run.replicas)
            row.update(_privacy.epoch_row(run.privacy, step, metrics) if run.privacy else {})
            row.update({name: _runlog.metric_value(metrics[name], run.replicas) for name in metrics
                        if name.startswith("val_")})
            bad = _guard.nonfinite_names(row, metrics["params_finite"])
            log.epoch({**row, _guard.FLAG: bad} if bad else row)  # a signal from here on: resume drops the row
            state = Checkpoint(params, opt_state, step, index + 1, state.key)  # the epoch is done only now
            if bad and train_cfg.on_nonfinite == "stop":  # the checkpoint on disk stays as it is
                raise _guard.diverged(state.epoch, bad, saved, checkpoint, config, _blame(run, finite))
            finite = finite if bad else state
            warning = None if bad else rising.check(row, config)
            if warning:
                log.message(warning)
                warnings.append(warning)
            if checkpoint and every and state.epoch % every == 0 and state.epoch < epochs:
                saved = _save(log, checkpoint, meta, state, finite, saved)
            _cluster.stop_together(pending())  # a signal to any of several processes stops them all here
            if validate and not bad:
                best.update(row, params)
                if best.should_stop(state.epoch):
                    stopped = state.epoch
                    log.message(f"early stopping after epoch {stopped}: {best.metric} has not improved for "
                                f"{best.patience} epochs; the best epoch, {best.epoch}, is kept in {_selection.BEST}")
                    break
    except KeyboardInterrupt:
        if checkpoint and finite.epoch > first:
            saved = _save(log, checkpoint, meta, finite, finite, saved)
            log.message(f"interrupted after epoch {state.epoch} (the checkpoint holds epoch {saved}); continue with: "
                        f"jaxbp train --resume {run_dir} --set train.epochs={epochs}")
        raise
    if run.mesh is not None:  # sharded over devices (and processes): gathered to the host once, at the end
        state, finite = (host := _cluster.host_state(state)), (host if finite is state else finite)
    summary = summary_of(run, log.rows, state, first, time.perf_counter() - start, first_epoch_s)
    summary.update({"n_validation": int(run.validation[1].shape[0]), **best.summary(stopped)} if validate else {})
    summary.update({"warnings": warnings} if warnings else {})
    saved = _save(log, checkpoint, meta, state, finite, saved) if run_dir is not None else saved  # every process
    chosen, which = _finish.which_params(state, finite, train_cfg.final_params)
    params = params_of(run, chosen)
    if run_dir is not None and _cluster.is_writer():  # summary.json, the "done", is written last
        if validate:  # before the final writes: summary.json, written last, names the best epoch
            _selection.write_best(run_dir, run, best, {"run_id": meta["run_id"], "config_sha256": meta["config_sha256"]})
        _finish.write_final(run_dir, run, log.rows, params, which, summary, meta, plugins, log.message)
    return TrainResult(params, state.opt_state, {**summary, "params": which}, config, run_dir)


def _blame(run: Run, finite: Checkpoint) -> str | None:
    """Whose backward made NaN gradients from a finite loss, at the last finite params (None: not a backward's)."""
    model_cfg, batch = run.config.model, run.config.train.batch_size or run.data.x_train.shape[0]
    try:
        params = jax.tree.map(lambda leaf: jax.device_get(leaf)[0], finite.params)
        return blame_backward(run.model, params, run.data.x_train[:batch], run.data.y_train[:batch],
                              list(model_cfg.activations), model_cfg.loss)
    except Exception:  # a diagnosis only: the divergence error stands without it
        return None


def params_of(run: Run, state: Checkpoint):
    """What a run returns and params.npz holds: one replica's params, or all with a leading replica axis."""
    return state.params if run.replicas > 1 else jax.tree.map(lambda leaf: leaf[0], state.params)


def summary_of(run: Run, rows: list[dict], state: Checkpoint, first: int, wall: float, first_epoch_s: float) -> dict:
    """summary.json: the last epoch's metrics (their spread over replicas), the data, the speed, privacy spent."""
    data, train_cfg, epochs = run.data, run.config.train, state.epoch  # the last epoch trained (early stopping)
    per_epoch = run.steps_per_epoch * (train_cfg.batch_size or data.x_train.shape[0]) * run.replicas
    timed = (epochs - first - 1, wall - first_epoch_s) if epochs - first > 1 else (1, wall)  # after compiling
    summary = _runlog.summarize(rows, run.replicas, {
        "dataset": data.name, "n_train": data.x_train.shape[0], "n_test": data.x_test.shape[0],
        "dropped_per_epoch": data.x_train.shape[0] % (train_cfg.batch_size or data.x_train.shape[0]),
        "dtype": str(data.x_train.dtype), "resumed_from_epoch": first, "wall_time_s": round(wall, 3),
        "first_epoch_s": round(first_epoch_s, 3),
        "examples_per_second": round(per_epoch * timed[0] / max(timed[1], 1e-9), 1),
        "examples_per_second_timed": "after the first epoch (it compiles)" if epochs - first > 1 else "one epoch, "
        "compiling included", "total_time_s": rows[-1]["time_s"],  # since epoch 1, over resumes: the progress line's
        **_cluster.describe(run.mesh, train_cfg.precision)})
    if run.model.modal:  # how the modal layers ran: steps in train mode, every metric and params.npz's use in eval
        summary["modes"] = {"modal_layers": modal_names(run.model), "train_steps": "train", "metrics": "eval"}
    if run.privacy:
        summary["privacy"] = _privacy.summary(run.privacy, rows)
        summary["dropped_per_epoch"] = 0 if run.privacy["sampling"] == "poisson" else summary["dropped_per_epoch"]
    if run.replicas > 1:
        summary["per_replica"] = _per_replica(rows[-1], state.opt_state, train_cfg.replicas > 1)
    return summary


def _save(log, path: str, meta: dict, state: Checkpoint, finite: Checkpoint, saved: int) -> int:
    """Checkpoint the last finite state if it is newer than the saved epoch; returns the epoch saved."""
    if finite.epoch > saved:
        _cluster.save_everywhere(save_checkpoint, path, finite, meta)
    if state is not finite:
        log.message(f"epoch {state.epoch} is not finite (train.on_nonfinite = \"continue\"): {path} keeps "
                    f"epoch {finite.epoch}, the last finite one" if finite.epoch else "no finite epoch to checkpoint")
    return max(finite.epoch, saved)


def _per_replica(row: dict, opt_state, seeds_vary: bool) -> list[dict]:
    rates = jax.device_get(opt_state.hyperparams["learning_rate"])
    return [{"replica": r, "seed_offset": r if seeds_vary else 0, "learning_rate": float(rate),
             **{name: row[name][r] for name in _runlog.metric_names(row)[1:]}} for r, rate in enumerate(rates)]
