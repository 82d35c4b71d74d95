"""Fault battery, runs: divergence, edited configs, torn files, stale temporaries, unwritable folders, locks.

Each case asserts the exact error class or exit status, and that what was saved before is still there.
All runs share one tiny config, so the epoch compiles once for the whole module.
"""

import errno
import json
import os
import subprocess

import jax
import numpy as np
import pytest

import jaxbp
from jaxbp.cli import main
from jaxbp.boundary import files
from jaxbp.training import lock
from jaxbp.training.checkpoint import Checkpoint, load_checkpoint, read_meta, save_checkpoint

TINY = ["data.name=moons", "data.n=64", "model.hidden=[4]", "train.batch_size=16", "train.plots=false",
        "train.checkpoint_every=1"]


def sets(*extra):
    return [arg for item in TINY + list(extra) for arg in ("--set", item)]


def strict_json(text: str):
    """json.loads that refuses the bare NaN/Infinity that Python's json writes by default."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in a JSON file"))


def rows(run) -> list[dict]:
    return [strict_json(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A finished 2-epoch run, copied by the tests that damage it."""
    run = tmp_path_factory.mktemp("done") / "run"
    jaxbp.train(None, run, overrides=TINY + ["train.epochs=2"], progress=False)
    return run


def test_divergence_stops_with_exit_3_keeping_the_last_finite_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--out", str(run), "--quiet", *sets("train.epochs=60", "optimizer.learning_rate=1e6")])
    err = capsys.readouterr().err
    assert code == 3 and "diverged at epoch" in err and "internal error" not in err
    diverged_at = int(err.split("diverged at epoch ")[1].split(":")[0])
    kept = int(err.split("holds epoch ")[1].split(",")[0])
    assert kept == diverged_at - 1 == read_meta(str(run / "checkpoint.npz"))["epoch"]
    lines = rows(run)  # every line is strict JSON; the last one says what was NaN
    assert len(lines) == diverged_at and lines[-1]["nonfinite"] and None in lines[-1].values()
    assert not any("nonfinite" in row for row in lines[:-1])
    before = (run / "checkpoint.npz").read_bytes()
    with pytest.raises(jaxbp.DivergenceError):  # the library raises the same; the checkpoint is untouched
        jaxbp.resume(run, overrides=["train.epochs=60"], progress=False)
    assert (run / "checkpoint.npz").read_bytes() == before


def test_on_nonfinite_continue_trains_on_and_writes_valid_json(tmp_path):
    run = tmp_path / "run"
    result = jaxbp.train(None, run, overrides=TINY + ["train.epochs=60", "optimizer.learning_rate=1e6",
                                                       "train.on_nonfinite=continue"], progress=False)
    summary = strict_json((run / "summary.json").read_text())
    assert summary["epochs"] == 60 and summary["train_loss"] is None and "train_loss" in summary["nonfinite"]
    assert np.isnan(result.summary["train_loss"])
    kept = read_meta(str(run / "checkpoint.npz"))["epoch"]
    assert 0 < kept < 60 and "nonfinite" not in rows(run)[kept - 1] and "nonfinite" in rows(run)[kept]
    assert f"keeps epoch {kept}, the last finite one" in (run / "train.log").read_text()


def test_resume_from_a_nonfinite_checkpoint_is_refused(done, tmp_path, copy_of):
    run = copy_of(done)
    path = str(run / "checkpoint.npz")
    state = load_checkpoint(path, *_templates(run))
    meta = {key: value for key, value in read_meta(path).items() if key.startswith("config")}
    poisoned = jax.tree.map(lambda leaf: leaf * np.nan, state.params)
    save_checkpoint(path, Checkpoint(poisoned, state.opt_state, state.step, state.epoch, state.key), meta)
    before = (run / "checkpoint.npz").read_bytes()
    with pytest.raises(jaxbp.CheckpointError, match="NaN/Inf params"):
        jaxbp.resume(run, overrides=["train.epochs=3"], progress=False)
    assert (run / "checkpoint.npz").read_bytes() == before


def _templates(run):
    from jaxbp.training.build import build

    built = build(jaxbp.load_config(run / "config.toml"))
    key = jax.random.key(built.config.train.seed)
    return (*jax.eval_shape(built.init, key), key)


def test_resume_refuses_an_edited_config_naming_the_changed_keys(done, tmp_path, copy_of):
    run = copy_of(done)
    text = (run / "config.toml").read_text()
    edited = text.replace("learning_rate = 0.2", "learning_rate = 0.5").replace("batch_size = 16", "batch_size = 8")
    (run / "config.toml").write_text(edited)
    saved = {name: (run / name).read_bytes() for name in ("checkpoint.npz", "metrics.jsonl")}
    with pytest.raises(jaxbp.ConfigError) as error:
        jaxbp.resume(run, overrides=["train.epochs=3"], progress=False)
    assert "optimizer.learning_rate (0.2 in the checkpoint, 0.5 now)" in str(error.value)
    assert "train.batch_size (16 in the checkpoint, 8 now)" in str(error.value)
    assert (run / "config.toml").read_text() == edited  # not rewritten to claim the new values
    assert all((run / name).read_bytes() == data for name, data in saved.items())
    (run / "config.toml").write_text(text.replace('on_nonfinite = "stop"', 'on_nonfinite = "continue"'))
    result = jaxbp.resume(run, overrides=["train.epochs=3"], progress=False)  # resumable keys may change
    assert result.summary["epochs"] == 3


def test_a_torn_last_metrics_line_is_dropped_on_resume(done, tmp_path, capsys, copy_of):
    run = copy_of(done)
    with open(run / "metrics.jsonl", "a") as file:
        file.write('{"epoch": 3, "step": 9, "ti')  # a kill during the write of epoch 3, past the checkpoint
    assert main(["train", "--resume", str(run), "--set", "train.epochs=3"]) == 0
    assert "dropped the torn last line" in capsys.readouterr().out
    assert [row["epoch"] for row in rows(run)] == [1, 2, 3]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([lines[0], "{torn", *lines[1:]]) + "\n")  # inside: refused
    with pytest.raises(jaxbp.CheckpointError, match="line 2 is not a metrics row"):
        jaxbp.resume(run, overrides=["train.epochs=4"], progress=False)


def test_stale_temporary_files_of_dead_processes_are_removed(done, tmp_path, copy_of):
    run = copy_of(done)
    dead = _dead_pid()
    ours = f".checkpoint.npz{files.MARK}{dead}-0123abcd"  # what write_atomic names a temporary
    (run / ours).write_bytes(b"half a checkpoint")
    (run / f".params.npz{files.MARK}1-0123abcd").write_bytes(b"a live process")  # pid 1 is alive: not ours to remove
    users = [f"mynotes.txt.tmp-{dead}", f"checkpoint.npz.tmp-{dead}", f"notes{files.MARK}{dead}", f".x{files.MARK}{dead}"]
    for name in users:  # look alike, but jaxbp never made them: never swept
        (run / name).write_text("the user's")
    jaxbp.train(None, run, overrides=TINY + ["train.epochs=1"], overwrite=True, progress=False)
    assert not (run / ours).exists() and (run / f".params.npz{files.MARK}1-0123abcd").exists()
    assert all((run / name).read_text() == "the user's" for name in users)
    assert "removed 1 temporary file(s)" in (run / "train.log").read_text()


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_read_only_out_is_exit_2_naming_path_and_reason(capsys):
    """sysfs refuses new folders even to root (EPERM; EACCES or EROFS elsewhere), as a read-only mount does."""
    code = main(["train", "--out", "/sys/jaxbp-test-run", "--quiet", *sets("train.epochs=1")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write /sys/jaxbp-test-run: " in err and "internal error" not in err
    assert any(reason in err for reason in ("Operation not permitted", "Permission denied", "Read-only file system"))


@pytest.mark.parametrize("fault", [errno.ENOSPC, errno.EACCES])  # a full disk; a folder made read-only mid-run
def test_write_failure_mid_run_is_exit_2_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch, fault):
    run, calls, real = tmp_path / "run", [], os.replace

    def replace(source, target):  # the third checkpoint write (epoch 3) fails
        calls.append(target) if str(target).endswith("checkpoint.npz") else None
        if len(calls) >= 3:
            raise OSError(fault, os.strerror(fault), source)
        return real(source, target)

    monkeypatch.setattr(os, "replace", replace)
    assert main(["train", "--out", str(run), "--quiet", *sets("train.epochs=5")]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {run}" in err and os.strerror(fault) in err
    monkeypatch.undo()
    assert read_meta(str(run / "checkpoint.npz"))["epoch"] == 2
    assert not [name for name in os.listdir(run) if files.MARK in name]


def test_a_folder_in_use_is_refused_naming_the_holder(done, tmp_path, capsys, copy_of):
    run = copy_of(done)
    held = lock.acquire(str(run))
    try:
        assert main(["train", "--resume", str(run), "--set", "train.epochs=3"]) == 2
        assert main(["train", "--out", str(tmp_path / "run"), "--overwrite", *sets("train.epochs=1")]) == 2
    finally:
        held.release()
    err = capsys.readouterr().err
    assert err.count(f"is in use by process {os.getpid()} (this process)") == 2
    assert read_meta(str(run / "checkpoint.npz"))["epoch"] == 2
    (run / lock.LOCK).write_text(f"{_dead_pid()} somehost 2026-01-01T00:00:00\n")  # left by a killed run
    jaxbp.resume(run, overrides=["train.epochs=3"], progress=False)
    assert "took over the lock" in (run / "train.log").read_text() and not (run / lock.LOCK).exists()
