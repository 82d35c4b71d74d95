"""The training run behind ``jaxbp train``: the config read at the door, the run folder locked, then trained or resumed.

``train`` builds a run from a config (``build``), ``resume`` rebuilds it from a run folder's
config.toml and checkpoint, refusing a config edited since; both hand it to the loop (``loop.fit``).
Replicas are a leading K axis on params and optimizer state, vmapped; the batches are shared.
Replica r starts from ``fold_in(init_key, r)`` (r = 0 for all when only the learning rate varies),
so replica 0 of any run is the run with one replica. All randomness comes from the run key
``jax.random.key(train.seed)`` (data: ``key(data.seed)``), so resume and reruns are bit-identical.
"""

from __future__ import annotations

import os

import jax

from . import finish as _finish
from . import guard as _guard
from . import lock as _lock
from . import runlog as _runlog
from ..config import load_config, load_saved, parse_override
from ..errors import CheckpointError, ConfigError
from ..plugins.user import load_plugins
from ..scale import cluster as _cluster
from ..scale.precision import x64_for
from .build import Run, build
from .checkpoint import Checkpoint, load_checkpoint, read_meta
from .loop import TrainResult, fit, params_of, summary_of
from .record import recorded_plugins

__all__ = ["TrainResult", "resume", "train"]


def train(config=None, out_dir=None, *, overrides=(), overwrite: bool = False, progress: bool = True,
          plugins=()) -> TrainResult:
    """Train from ``config`` (None: the default spiral run; a dict, a .toml path or a ``RunConfig``) with
    ``--set``-style ``overrides``; with ``out_dir`` the run folder gets config, metrics, summary, params,
    checkpoint, plots and model.json. ``plugins``: modules or .py files to import first (recorded in model.json)."""
    plugins, config = load_plugins(plugins), load_config(config, overrides)
    with x64_for(config.train.precision):
        run = build(config)
        key = jax.random.key(run.config.train.seed)
        if out_dir is None or not _cluster.is_writer():  # of several processes, only process 0 writes the folder
            return fit(run, Checkpoint(*run.init(key), 0, 0, key), out_dir and os.fspath(out_dir), [], progress, plugins)
        with _lock.holding(out_dir) as lock:  # one run per folder, for the run's whole life
            run_dir = _runlog.prepare_run_dir(out_dir, overwrite)
            return fit(run, Checkpoint(*run.init(key), 0, 0, key), run_dir, [], progress, plugins, lock.notes)


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
        if f"{section}.{key}" not in _guard.RESUMABLE:
            raise ConfigError(f"--set {section}.{key} cannot change on --resume (only {', '.join(_guard.RESUMABLE)}); "
                              f"to train with other settings start a new run: --config {run_dir}/config.toml --out NEW")
    config = load_saved(os.path.join(run_dir, _runlog.CONFIG), overrides)  # an older folder's missing keys: ADDED_LATER
    with x64_for(config.train.precision):
        run = build(config)
        key = jax.random.key(run.config.train.seed)
        params, opt_state = jax.eval_shape(run.init, key)
        path = os.path.join(run_dir, _runlog.CHECKPOINT)
        meta = read_meta(path)
        _guard.check_same_config(meta, run.config, run_dir)  # before the leaves are matched
        state = load_checkpoint(path, params, opt_state, key)
        _guard.require_finite(state, path)
        epochs = run.config.train.epochs
        run_id = meta.get("run_id") or _finish.run_id(_guard.fingerprint(run.config))
        if state.epoch >= epochs:
            missing = _finish.incomplete(run_dir, {**meta, "run_id": run_id}, run.config.train.plots)
            if not missing:
                raise ConfigError(f"{run_dir} has already trained {state.epoch} epochs and its final files are "
                                  f"complete; resume to more, e.g. --set train.epochs={state.epoch * 2}")
            return _rebuild(run, state, run_dir, missing, progress, plugins, notes, run_id)
        rows = _runlog.read_metrics(os.path.join(run_dir, _runlog.METRICS), state.epoch, notes)
        return fit(run, state, run_dir, rows, progress, plugins, notes, run_id=run_id)


def _rebuild(run: Run, state: Checkpoint, run_dir: str, missing: list[str], progress: bool, plugins, notes,
             run_id: str) -> TrainResult:
    """A finished run whose final files are missing or damaged: made again from its checkpoint and metrics.jsonl
    (unreadable lines skipped), with no epoch trained."""
    rows = _runlog.read_metrics(os.path.join(run_dir, _runlog.METRICS), state.epoch, notes, tolerant=True)
    say = print if progress else (lambda text: None)
    for note in notes:
        say(note)
    host = _cluster.host_state(state) if run.mesh is not None else state
    summary = summary_of(run, rows, host, state.epoch, rows[-1]["time_s"] if rows else 0.0,
                         rows[0]["time_s"] if rows else 0.0)
    summary.update(epochs=state.epoch, steps=state.step, rebuilt=f"from the checkpoint (epoch {state.epoch}) and "
                   f"{_runlog.METRICS} after {', '.join(missing)} went missing or damaged; no epoch was trained")
    params = params_of(run, host)
    meta = {**_guard.config_meta(run.config), "run_id": run_id, "plugins": list(plugins)}
    if _cluster.is_writer():
        _finish.write_final(run_dir, run, rows, params, {"epoch": state.epoch, "which": "the last epoch (rebuilt)",
                            "finite": True}, summary, meta, plugins, say)
        say(f"{run_dir} had trained all {state.epoch} epochs; rebuilt {', '.join(missing)} from its checkpoint "
            f"and {_runlog.METRICS} without training")
    return TrainResult(params, host.opt_state, summary, run.config, run_dir)
