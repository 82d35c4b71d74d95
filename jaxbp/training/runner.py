"""The training run behind ``jaxbp train``: config -> data, model, optimizer -> epochs -> run folder.

One epoch is one jitted call: shuffle with ``fold_in(shuffle_key, epoch)``, cut ``n // B`` full
batches (the ``n % B`` left over are DROPPED, so every step has one shape and nothing
recompiles), run them through the fused ``lax.scan`` step, then evaluate on train and test.
Replicas are a leading K axis on params and optimizer state, vmapped; the batches are shared.
Replica r starts from ``fold_in(init_key, r)`` (r = 0 for all when only the learning rate varies),
so replica 0 of any run is the run with one replica. All randomness comes from the run key
``jax.random.key(train.seed)`` (data: ``key(data.seed)``), so resume and reruns are bit-identical.
"""

from __future__ import annotations

import os
import time
from typing import Any, NamedTuple

import jax

from . import guard as _guard
from . import lock as _lock
from . import runlog as _runlog
from ..errors import CheckpointError, ConfigError
from ..plugins.probe import blame_backward
from ..plugins.user import load_plugins
from ..privacy import training as _privacy
from ..scale import cluster as _cluster
from ..scale.precision import x64_for
from .build import Run, build
from ..boundary.files import write_atomic
from . import finish as _finish
from .checkpoint import Checkpoint, load_checkpoint, read_meta, save_checkpoint
from .config import load_config, parse_override, to_toml
from .record import make_record, recorded_plugins, write_record

RESUMABLE = ("train.epochs", "train.checkpoint_every", "train.plots", "train.on_nonfinite",  # --set on --resume
             "train.devices", "train.replica_devices", "train.final_params")


class TrainResult(NamedTuple):
    params: Any  # a leading replica axis only when there are several replicas
    opt_state: Any
    summary: dict
    config: dict  # fully resolved
    run_dir: str | None


def train(config=None, out_dir=None, *, overrides=(), overwrite: bool = False, progress: bool = True,
          plugins=()) -> TrainResult:
    """Train from ``config`` (None: the default spiral run; a dict; or a .toml path) with ``--set``-style
    ``overrides``; with ``out_dir`` the run folder gets config, metrics, summary, params, checkpoint, plots
    and model.json. ``plugins``: modules or .py files to import first (recorded in model.json)."""
    plugins, config = load_plugins(plugins), load_config(config, overrides)
    with x64_for(config["train"]["precision"]):
        run = build(config)
        key = jax.random.key(run.config["train"]["seed"])
        if out_dir is None or not _cluster.is_writer():  # of several processes, only process 0 writes the folder
            return _fit(run, Checkpoint(*run.init(key), 0, 0, key), out_dir and os.fspath(out_dir), [], progress, plugins)
        with _lock.holding(out_dir) as lock:  # one run per folder, for the run's whole life
            run_dir = _runlog.prepare_run_dir(out_dir, overwrite)
            return _fit(run, Checkpoint(*run.init(key), 0, 0, key), run_dir, [], progress, plugins, lock.notes)


def resume(run_dir, *, overrides=(), progress: bool = True, plugins=()) -> TrainResult:
    """Continue the run in ``run_dir`` from its checkpoint up to ``train.epochs`` (set via ``overrides``); the
    plugins recorded in its model.json (or checkpoint) are imported again, or ``plugins`` instead when given
    (a plugin file that moved: pass its new path)."""
    run_dir = _runlog.check_run_dir(run_dir)
    plugins = load_plugins(plugins or _recorded_plugins(run_dir))
    if not _cluster.is_writer():  # process 0 holds the lock for all
        return _resume(run_dir, overrides, progress, plugins, [])
    with _lock.holding(run_dir) as lock:  # no second run, nor resume, into the folder
        return _resume(run_dir, overrides, progress, plugins, lock.notes)


def _recorded_plugins(run_dir: str) -> list[str]:
    try:
        return recorded_plugins(run_dir)
    except CheckpointError:  # a damaged model.json: the checkpoint knows them too (and resume rebuilds the record)
        return read_meta(os.path.join(run_dir, _runlog.CHECKPOINT)).get("plugins", [])


def _resume(run_dir, overrides, progress: bool, plugins, notes: list[str]) -> TrainResult:
    for text in overrides:
        section, key, _ = parse_override(text)
        if f"{section}.{key}" not in RESUMABLE:
            raise ConfigError(f"--set {section}.{key} cannot change on --resume (only {', '.join(RESUMABLE)}); "
                              f"to train with other settings start a new run: --config {run_dir}/config.toml --out NEW")
    config = load_config(os.path.join(run_dir, _runlog.CONFIG), overrides)
    with x64_for(config["train"]["precision"]):
        run = build(config)
        key = jax.random.key(run.config["train"]["seed"])
        params, opt_state = jax.eval_shape(run.init, key)
        path = os.path.join(run_dir, _runlog.CHECKPOINT)
        meta = read_meta(path)
        _guard.check_same_config(meta, run.config, RESUMABLE, run_dir)  # before the leaves are matched
        state = load_checkpoint(path, params, opt_state, key)
        _guard.require_finite(state, path)
        epochs = run.config["train"]["epochs"]
        run_id = meta.get("run_id") or _finish.run_id(_guard.fingerprint(run.config, RESUMABLE))
        if state.epoch >= epochs:
            missing = _finish.incomplete(run_dir, {**meta, "run_id": run_id}, run.config["train"]["plots"])
            if not missing:
                raise ConfigError(f"{run_dir} has already trained {state.epoch} epochs and its final files are "
                                  f"complete; resume to more, e.g. --set train.epochs={state.epoch * 2}")
            return _rebuild(run, state, run_dir, missing, progress, plugins, notes, run_id)
        rows = _runlog.read_metrics(os.path.join(run_dir, _runlog.METRICS), state.epoch, notes)
        return _fit(run, state, run_dir, rows, progress, plugins, notes, run_id=run_id)


def _rebuild(run: Run, state: Checkpoint, run_dir: str, missing: list[str], progress: bool, plugins, notes,
             run_id: str) -> TrainResult:
    """A finished run whose final files are missing or damaged: made again from its checkpoint and metrics.jsonl
    (unreadable lines skipped), with no epoch trained."""
    rows = _runlog.read_metrics(os.path.join(run_dir, _runlog.METRICS), state.epoch, notes, tolerant=True)
    say = print if progress else (lambda text: None)
    for note in notes:
        say(note)
    host = _cluster.host_state(state) if run.mesh is not None else state
    summary = _summary(run, rows, host, state.epoch, rows[-1]["time_s"] if rows else 0.0,
                       rows[0]["time_s"] if rows else 0.0)
    summary.update(epochs=state.epoch, steps=state.step, rebuilt=f"from the checkpoint (epoch {state.epoch}) and "
                   f"{_runlog.METRICS} after {', '.join(missing)} went missing or damaged; no epoch was trained")
    params = _params(run, host)
    meta = {**_guard.config_meta(run.config, RESUMABLE), "run_id": run_id, "plugins": list(plugins)}
    if _cluster.is_writer():
        _finish.write_final(run_dir, run, rows, params, {"epoch": state.epoch, "which": "the last epoch (rebuilt)",
                            "finite": True}, summary, meta, plugins, say)
        say(f"{run_dir} had trained all {state.epoch} epochs; rebuilt {', '.join(missing)} from its checkpoint "
            f"and {_runlog.METRICS} without training")
    return TrainResult(params, host.opt_state, summary, run.config, run_dir)


def _fit(run: Run, state: Checkpoint, run_dir, rows: list[dict], progress: bool, plugins=(), notes=(),
         run_id: str | None = None) -> TrainResult:
    writer = _cluster.is_writer()  # of several processes, only process 0 writes the run folder and prints
    meta = _guard.config_meta(run.config, RESUMABLE)  # in every checkpoint and final file: config and run identity
    meta.update(run_id=run_id or _finish.run_id(meta["config_sha256"]), plugins=list(plugins))
    if run_dir is not None and writer:
        write_atomic(os.path.join(run_dir, _runlog.CONFIG), to_toml(run.config).encode())
        write_record(run_dir, {**make_record(run.config, run.data, run.model, run.replicas, plugins),
                               "run_id": meta["run_id"], "config_sha256": meta["config_sha256"]})
    log = _runlog.RunLog(run_dir if writer else None, run.config["train"]["epochs"], progress and writer, rows)
    try:
        for note in notes:
            log.message(note)
        with _guard.interrupts(jax.process_count() > 1) as pending:  # SIGTERM saves the finished epochs, like Ctrl-C
            return _loop(run, state, run_dir, log, pending, meta, plugins)
    finally:
        log.close()


def _loop(run: Run, state: Checkpoint, run_dir, log: _runlog.RunLog, pending, meta: dict, plugins) -> TrainResult:
    config, data, train_cfg = run.config, run.data, run.config["train"]
    epochs, every, first, rows = train_cfg["epochs"], train_cfg["checkpoint_every"], state.epoch, log.rows
    checkpoint = None if run_dir is None else os.path.join(run_dir, _runlog.CHECKPOINT)
    sizes = "-".join(map(str, [run.model.d_in, *config["model"]["hidden"], run.model.d_out]))
    where = _cluster.describe(run.mesh, config["train"]["precision"])
    log.message(f"training {sizes} {config['model']['activation']} x {run.replicas} replica(s) on "
                f"{os.path.basename(data.name)} ({data.x_train.shape[0]} train, {data.x_test.shape[0]} test, "
                f"{run.steps_per_epoch} steps/epoch) with {config['optimizer']['name']}, epochs {first + 1}..{epochs}"
                + f" on {_cluster.where_text(where)}" + (f" -> {run_dir}" if run_dir else ""))
    _, shuffle_key = jax.random.split(state.key)
    arrays = (data.x_train, data.y_train, data.x_test, data.y_test)
    offset = rows[-1]["time_s"] if rows else 0.0
    start, first_epoch_s = time.perf_counter(), 0.0
    finite, saved = state, first  # the last state with finite params (the only kind a checkpoint holds); saved epoch
    try:
        for index in range(first, epochs):
            params, opt_state, metrics = run.epoch(state.params, state.opt_state, shuffle_key, index, *arrays)
            metrics = jax.device_get(metrics)  # the one host sync per epoch
            first_epoch_s = first_epoch_s or time.perf_counter() - start  # includes compiling the epoch
            step = state.step + run.steps_per_epoch
            row = _runlog.metrics_row(index + 1, step, offset + time.perf_counter() - start, metrics, run.replicas)
            row.update(_privacy.epoch_row(run.privacy, step, metrics) if run.privacy else {})
            bad = _guard.nonfinite_names(row, metrics["params_finite"])
            log.epoch({**row, _guard.FLAG: bad} if bad else row)  # a signal from here on: resume drops the row
            state = Checkpoint(params, opt_state, step, index + 1, state.key)  # the epoch is done only now
            if bad and train_cfg["on_nonfinite"] == "stop":  # the checkpoint on disk stays as it is
                raise _guard.diverged(state.epoch, bad, saved, checkpoint, config, _blame(run, finite))
            finite = finite if bad else state
            if checkpoint and every and state.epoch % every == 0 and state.epoch < epochs:
                saved = _save(log, checkpoint, meta, state, finite, saved)
            _cluster.stop_together(pending())  # a signal to any of several processes stops them all here
    except KeyboardInterrupt:
        if checkpoint and finite.epoch > first:
            saved = _save(log, checkpoint, meta, finite, finite, saved)
            log.message(f"interrupted after epoch {state.epoch} (the checkpoint holds epoch {saved}); continue with: "
                        f"jaxbp train --resume {run_dir} --set train.epochs={epochs}")
        raise
    if run.mesh is not None:  # sharded over devices (and processes): gathered to the host once, at the end
        state, finite = (host := _cluster.host_state(state)), (host if finite is state else finite)
    summary = _summary(run, log.rows, state, first, time.perf_counter() - start, first_epoch_s)
    saved = _save(log, checkpoint, meta, state, finite, saved) if run_dir is not None else saved  # every process
    chosen, which = _finish.which_params(state, finite, train_cfg["final_params"])
    params = _params(run, chosen)
    if run_dir is not None and _cluster.is_writer():  # summary.json, the "done", is written last
        _finish.write_final(run_dir, run, log.rows, params, which, summary, meta, plugins, log.message)
    return TrainResult(params, state.opt_state, {**summary, "params": which}, config, run_dir)


def _blame(run: Run, finite: Checkpoint) -> str | None:
    """Whose backward made NaN gradients from a finite loss, at the last finite params (None: not a backward's)."""
    model_cfg, batch = run.config["model"], run.config["train"]["batch_size"] or run.data.x_train.shape[0]
    names = model_cfg["activation"]
    names = [names] * len(model_cfg["hidden"]) if isinstance(names, str) else names
    try:
        params = jax.tree.map(lambda leaf: jax.device_get(leaf)[0], finite.params)
        return blame_backward(run.model, params, run.data.x_train[:batch], run.data.y_train[:batch], names,
                              model_cfg["loss"])
    except Exception:  # a diagnosis only: the divergence error stands without it
        return None


def _params(run: Run, state: Checkpoint):
    return state.params if run.replicas > 1 else jax.tree.map(lambda leaf: leaf[0], state.params)


def _summary(run: Run, rows: list[dict], state: Checkpoint, first: int, wall: float, first_epoch_s: float) -> dict:
    data, train_cfg, epochs = run.data, run.config["train"], run.config["train"]["epochs"]
    per_epoch = run.steps_per_epoch * (train_cfg["batch_size"] or data.x_train.shape[0]) * run.replicas
    timed = (epochs - first - 1, wall - first_epoch_s) if epochs - first > 1 else (1, wall)  # after compiling
    summary = _runlog.summarize(rows, run.replicas, {
        "dataset": data.name, "n_train": data.x_train.shape[0], "n_test": data.x_test.shape[0],
        "dropped_per_epoch": data.x_train.shape[0] % (train_cfg["batch_size"] or data.x_train.shape[0]),
        "dtype": str(data.x_train.dtype), "resumed_from_epoch": first, "wall_time_s": round(wall, 3),
        "first_epoch_s": round(first_epoch_s, 3),
        "examples_per_second": round(per_epoch * timed[0] / max(timed[1], 1e-9), 1),
        **_cluster.describe(run.mesh, train_cfg["precision"])})
    if run.privacy:
        summary["privacy"] = _privacy.summary(run.privacy, rows)
        summary["dropped_per_epoch"] = 0 if run.privacy["sampling"] == "poisson" else summary["dropped_per_epoch"]
    if run.replicas > 1:
        summary["per_replica"] = _per_replica(rows[-1], state.opt_state, train_cfg["replicas"] > 1)
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
             **{name: row[name][r] for name in _runlog.METRIC_NAMES[1:]}} for r, rate in enumerate(rates)]
