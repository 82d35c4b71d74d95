"""The end of a run: its final files, written so that "done" is recorded last, and rebuilt when they are lost.

The order is checkpoint -> params.npz -> plots -> model.json -> summary.json. ``summary.json`` is
the run's "done": it is written last, and only when params.npz and model.json are in place. A run
killed (or a disk filled) anywhere before that has a checkpoint at the last epoch but no valid
summary, and ``jaxbp train --resume`` rebuilds the final files from the checkpoint and metrics.jsonl
without training (``incomplete`` says which are missing or damaged). Plots are a view: one that
cannot be written is a note, never a reason to lose the model.

Every file carries the run's identity: ``run_id`` (from the config fingerprint, kept in every
checkpoint) and the fingerprint itself. params.npz also records which state it holds (the last
finite one unless ``train.on_nonfinite = "continue"`` with ``train.final_params = "last"``), and
model.json the digest of params.npz, so a file from another run is refused, not silently used.
"""

from __future__ import annotations

import hashlib
import json
import os

import jax
import numpy as np

from ..boundary import archive
from . import runlog as _runlog
from .plots import save_plots
from .checkpoint import named_leaves, read_meta, save_trees
from .record import make_record, read_record, replica_labels, write_record


def run_id(config_sha256: str) -> str:
    """A run's identity: its config's fingerprint (without the keys that may change on resume), so a rerun of
    one config is bit-identical, files included; a file of another config never matches."""
    return config_sha256[:16]


def params_digest(sums: dict) -> str:
    """One sha256 over params.npz's per-array checksums (what model.json records of it)."""
    return hashlib.sha256(json.dumps(sums, sort_keys=True).encode()).hexdigest()[:32]


def write_final(run_dir: str, run, rows: list[dict], params, which: dict, summary: dict, meta: dict, plugins,
                note) -> None:
    """params.npz, the plots, model.json, then summary.json (the "done"); ``params`` are what params.npz holds
    (one replica's, or all with a leading replica axis), ``which`` says which epoch and why."""
    identity = {"run_id": meta["run_id"], "config_sha256": meta["config_sha256"]}
    arrays = {name: np.asarray(leaf) for name, leaf in named_leaves("params", params).items()}
    save_trees(os.path.join(run_dir, _runlog.PARAMS), {"params": params},
               {"replicas": run.replicas, **identity, **which})
    if run.config.train.plots:
        first = jax.tree.map(lambda leaf: leaf[0], params) if run.replicas > 1 else params
        try:
            save_plots(run_dir, rows, run.model, first, run.data, note, replica_labels(run.config, run.replicas))
        except OSError as error:  # a full disk or a folder in a plot's place: the model matters more
            note(f"plots not saved ({error.strerror or error}: {error.filename}); jaxbp train --resume {run_dir} "
                 f"makes them again once there is room")
    record = make_record(run.config, run.data, run.model, run.replicas, plugins)
    write_record(run_dir, {**record, **identity, "params_sha256": params_digest(archive.checksums(arrays)),
                           "params_epoch": which["epoch"]})
    _runlog.write_json(os.path.join(run_dir, _runlog.SUMMARY), {**summary, **identity, "params": which})


def which_params(state, finite, final_params: str = "last_finite") -> tuple:
    """(the state whose params params.npz holds, what the summary says of it)."""
    chosen = state if final_params == "last" or finite is state else finite
    why = ("the last epoch" if chosen is state else
           f"the last finite epoch (epochs {finite.epoch + 1}..{state.epoch} were not finite)")
    return chosen, {"epoch": int(chosen.epoch), "which": why, "finite": chosen is finite or finite is state}


def incomplete(run_dir: str, meta: dict, plots: bool) -> list[str]:
    """The final files of a finished run (checkpoint ``meta``) that are missing, damaged or of another run."""
    bad = []
    try:
        summary = json.loads(open(os.path.join(run_dir, _runlog.SUMMARY), encoding="utf-8").read())
        done = isinstance(summary, dict) and summary.get("epochs") == meta["epoch"]
        done = done and summary.get("run_id", meta.get("run_id")) == meta.get("run_id")
    except (OSError, ValueError):
        done = False
    bad += [] if done else [_runlog.SUMMARY]
    try:
        stored = read_meta(os.path.join(run_dir, _runlog.PARAMS))
        fits = stored.get("run_id", meta.get("run_id")) == meta.get("run_id")
    except Exception:  # a damaged or missing file of any kind: it is rebuilt
        fits = False
    bad += [] if fits else [_runlog.PARAMS]
    try:
        record = read_record(run_dir)
        fits = record.get("run_id", meta.get("run_id")) == meta.get("run_id")
    except Exception:
        fits = False
    bad += [] if fits and os.path.isfile(os.path.join(run_dir, _runlog.RECORD)) else [_runlog.RECORD]
    if plots:  # loss.png, and accuracy.png or a regression's r2.png
        second = _runlog.REGRESSION_PLOT if done and "test_r2" in summary else _runlog.PLOTS[1]
        bad += [name for name in (_runlog.PLOTS[0], second) if not os.path.isfile(os.path.join(run_dir, name))]
    return bad


def check_params(meta: dict, record: dict, sums: dict, path: str, error) -> None:
    """Refuse params.npz when it is not the one model.json was written with (another run's, or replaced)."""
    if "run_id" in record and meta.get("run_id") != record["run_id"]:
        raise error(f"{path} belongs to another run (run id {meta.get('run_id')}, model.json says "
                    f"{record['run_id']}); copy the run folder whole, or rebuild its final files with "
                    f"jaxbp train --resume {os.path.dirname(path)}")
    if "params_sha256" in record and params_digest(sums) != record["params_sha256"]:
        raise error(f"{path} does not match the digest model.json recorded of it (replaced or edited); rebuild "
                    f"the final files with jaxbp train --resume {os.path.dirname(path)}")
