"""Fault battery, the end of a run: a finished run always has its model, and its metadata cannot be silently wrong.

summary.json ("done") is written last; a finished run whose final files are missing or damaged is
rebuilt by ``--resume`` from its checkpoint and metrics.jsonl, without training. model.json and
params.npz carry checksums and the run identity; predict refuses a file edited, from another run,
or holding NaN. One finished run serves every case (copied by the tests that damage it).
"""

import errno
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp.cli import main
from jaxbp.training import finish, runlog
from jaxbp.training.checkpoint import read_meta

TINY = ["data.name=moons", "data.n=64", "model.hidden=[4]", "train.batch_size=16", "train.checkpoint_every=1",
        "train.plots=false"]
X = np.array([[0.0, 1.0], [1.5, -0.5], [-1.0, 0.3]])


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    run = tmp_path_factory.mktemp("final") / "run"
    jaxbp.train(None, run, overrides=TINY + ["train.epochs=2"], progress=False)
    return run


def resume(run, capsys):
    code = main(["train", "--resume", str(run), "--set", "train.epochs=2"])
    out, err = capsys.readouterr()
    assert "predict" not in out + err  # resume never sends the user to predict
    return code, out, err


@pytest.mark.parametrize("name, damage", [
    ("params.npz", None), ("summary.json", None), ("model.json", None),
    ("params.npz", b"PK\x03\x04torn"), ("summary.json", b'{"epochs": 2, "train_lo'), ("model.json", b"{"),
])
def test_resume_rebuilds_missing_or_damaged_final_files_without_training(done, tmp_path, capsys, name, damage, copy_of):
    run = copy_of(done)
    kept = {entry: (run / entry).read_bytes() for entry in ("checkpoint.npz", "metrics.jsonl")}
    (run / name).unlink() if damage is None else (run / name).write_bytes(damage)
    code, out, _ = resume(run, capsys)
    assert code == 0 and f"rebuilt {name}" in out and "without training" in out
    assert all((run / entry).read_bytes() == data for entry, data in kept.items())  # no epoch trained
    assert np.array_equal(jaxbp.load_run(run).classify(X), jaxbp.load_run(done).classify(X))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2 and "no epoch was trained" in summary["rebuilt"]
    assert resume(run, capsys)[0] == 2  # complete again: "already trained"


def test_a_complete_run_says_already_trained_and_predict_points_to_resume(done, tmp_path, capsys, copy_of):
    code, _, err = resume(done, capsys)
    assert code == 2 and "already trained 2 epochs and its final files are complete" in err
    run = copy_of(done)
    (run / "params.npz").unlink()
    assert main(["predict", str(run), "--input", str(write_x(tmp_path)), "--out", str(tmp_path / "p.csv")]) == 2
    assert f"jaxbp train --resume {run}" in capsys.readouterr().err


def write_x(tmp_path):
    np.savez(tmp_path / "x.npz", x=X)
    return tmp_path / "x.npz"


@pytest.mark.parametrize("where", ["params", "plots", "record", "summary"])
def test_a_stop_during_the_final_writes_leaves_a_run_that_resume_completes(tmp_path, capsys, monkeypatch, where):
    """A SIGTERM (a KeyboardInterrupt) while each final file is written: "done" is not recorded, the checkpoint
    is at the last epoch, and --resume rebuilds."""
    run, target = tmp_path / "run", {"params": "params.npz", "plots": "loss.png", "record": "model.json",
                                     "summary": "summary.json"}[where]
    real = os.replace

    def replace(source, destination):
        finished = (run / "checkpoint.npz").exists() and read_meta(str(run / "checkpoint.npz"))["epoch"] == 2
        if str(destination).endswith(target) and finished:
            raise jaxbp.errors.Terminated("terminated by SIGTERM")
        return real(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    assert main(["train", "--out", str(run), "--quiet", *[a for s in TINY for a in ("--set", s)],
                 "--set", "train.epochs=2", "--set", f"train.plots={where == 'plots'}".lower()]) == 143
    monkeypatch.undo()
    capsys.readouterr()
    assert not (run / "summary.json").exists()  # "done" is recorded last
    code, out, _ = resume(run, capsys)
    assert code == 0 and "without training" in out and jaxbp.load_run(run).classify(X).shape == (3,)


def test_a_full_disk_while_plotting_keeps_the_model_and_summary(tmp_path, capsys, monkeypatch):
    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr("jaxbp.training.plots.write_atomic", full)
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--quiet", *[a for s in TINY for a in ("--set", s)],
                 "--set", "train.epochs=2", "--set", "train.plots=true"]) == 0
    assert "plots not saved (No space left" in (run / "train.log").read_text()
    assert (run / "summary.json").exists() and not (run / "loss.png").exists()
    monkeypatch.undo()
    code, out, _ = resume(run, capsys)
    assert code == 0 and "rebuilt loss.png" in out and (run / "loss.png").exists()


def test_a_folder_named_params_npz_is_one_line_and_a_damaged_metrics_row_is_skipped(done, tmp_path, capsys, copy_of):
    run = copy_of(done)
    (run / "params.npz").unlink()
    (run / "params.npz").mkdir()
    code, _, err = resume(run, capsys)
    assert code == 2 and "params.npz" in err and err.count("\n") == 1
    (run / "params.npz").rmdir()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([lines[0], "{bad row", *lines[1:]]) + "\n")
    code, out, _ = resume(run, capsys)
    assert code == 0 and "skipped the damaged line 2" in out


def test_model_json_edited_by_one_digit_is_refused(done, tmp_path, capsys, copy_of):
    run = copy_of(done)
    record = json.loads((run / "model.json").read_text())
    std = record["standardize"]["std"]
    text = (run / "model.json").read_text().replace(repr(std[0]), repr(std[0] * 1.1), 1)
    (run / "model.json").write_text(text)
    with pytest.raises(jaxbp.CheckpointError, match="does not match its sha256"):
        jaxbp.load_run(run)
    assert main(["predict", str(run), "--input", str(write_x(tmp_path)), "--out", str(tmp_path / "p.csv")]) == 2
    assert "does not match its sha256" in capsys.readouterr().err and not (tmp_path / "p.csv").exists()


def test_params_of_another_run_are_refused(done, tmp_path, copy_of):
    other = tmp_path / "other"
    jaxbp.train(None, other, overrides=TINY + ["train.epochs=1", "train.seed=5"], progress=False)
    run = copy_of(done)
    (run / "params.npz").write_bytes((other / "params.npz").read_bytes())  # same shapes, another run
    with pytest.raises(jaxbp.CheckpointError, match="belongs to another run"):
        jaxbp.load_run(run)


def test_nonfinite_params_are_never_the_final_model_unless_asked_and_then_predict_refuses(tmp_path, capsys):
    sets = TINY + ["train.epochs=8", "optimizer.learning_rate=1e6", "train.on_nonfinite=continue"]
    kept = jaxbp.train(None, tmp_path / "kept", overrides=sets, progress=False)
    which = json.loads((tmp_path / "kept" / "summary.json").read_text())["params"]
    assert which["finite"] and "last finite epoch" in which["which"] and which["epoch"] < 8
    assert which["epoch"] == read_meta(str(tmp_path / "kept" / "checkpoint.npz"))["epoch"] == kept.summary["params"]["epoch"]
    assert np.all(np.isfinite(jaxbp.load_run(tmp_path / "kept").predict(X)))
    jaxbp.train(None, tmp_path / "last", overrides=sets + ["train.final_params=last"], progress=False)
    assert main(["predict", str(tmp_path / "last"), "--input", str(write_x(tmp_path)),
                 "--out", str(tmp_path / "p.csv")]) == 2
    assert "holds NaN/Inf params" in capsys.readouterr().err and not (tmp_path / "p.csv").exists()


def test_summary_is_written_after_params_and_model_json(tmp_path, monkeypatch):
    order, real = [], os.replace
    monkeypatch.setattr(os, "replace", lambda s, d: (order.append(os.path.basename(d)), real(s, d))[1])
    jaxbp.train(None, tmp_path / "run", overrides=TINY + ["train.epochs=1", "train.plots=true"], progress=False)
    final = order[order.index("params.npz"):]
    assert final[-1] == "summary.json" and "model.json" in final and "loss.png" in final
    assert finish.incomplete(str(tmp_path / "run"), read_meta(str(tmp_path / "run" / "checkpoint.npz")), True) == []
    assert runlog.SUMMARY == "summary.json"


def test_a_bfloat16_run_evaluates_in_bfloat16_as_it_trained(tmp_path):
    run = tmp_path / "bf16"
    result = jaxbp.train(None, run, overrides=TINY + ["train.epochs=2", "train.precision=bfloat16"], progress=False)
    loaded = jaxbp.load_run(run)
    config = result.config.data
    raw = jaxbp.datasets.load(config.name, key=jax.random.key(config.seed), n=config.n, noise=config.noise,
                              test_fraction=config.test_fraction, standardize=False)
    evaluation = loaded.evaluate(np.asarray(raw.x_test), np.asarray(raw.y_test))
    assert evaluation.accuracy == pytest.approx(result.summary["test_accuracy"], abs=1e-6)
    assert evaluation.loss == pytest.approx(result.summary["test_loss"], rel=1e-2)  # bfloat16's last digits
    assert loaded.predict(X).dtype == np.float32  # computed in bfloat16, returned in the params' dtype


def test_the_bfloat16_softmax_gradient_sums_to_zero_like_float32s():
    """The cause of bfloat16 + Adam diverging: a - y rounded the true class's 1 - e to 1, so the output gradient
    summed to the other classes' small a (every bias drifted one way). Planted: the old formula in bfloat16."""
    from jaxbp.plugins.losses import _log_sum_exp, get_loss

    z, y = jnp.array([9.0, 1.0, -2.0], jnp.bfloat16), jnp.array([1.0, 0.0, 0.0], jnp.bfloat16)
    grad = get_loss("softmax_cross_entropy").backward(z, y)
    assert grad.dtype == jnp.bfloat16 and float(grad[0]) < 0
    assert abs(float(jnp.sum(grad.astype(jnp.float32)))) < 1e-2 * float(grad[1])
    planted = jnp.exp(z - _log_sum_exp(z)) * jnp.sum(y) - y
    assert float(planted[0]) == 0.0  # the true class lost its -e: the sum is the other classes' a
    assert float(jnp.sum(planted.astype(jnp.float32))) == pytest.approx(float(grad[1] + grad[2]), rel=2e-2)
