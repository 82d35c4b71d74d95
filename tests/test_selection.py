"""Model selection on a validation split: val metrics each epoch, early stopping, best.npz, load_run(which=)."""

import json
import shutil

import jax
import numpy as np
import pytest

import jaxbp
from jaxbp import datasets
from jaxbp.cli import main
from jaxbp.config import ADDED_LATER, load_saved, print_config
from jaxbp.datasets import loading
from jaxbp.training.build import build
from jaxbp.training.guard import fingerprint

TINY = ["data.name=moons", "data.n=64", "model.hidden=[4]", "train.batch_size=16", "train.plots=false",
        "data.validation_fraction=0.25"]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("select")
    # min_delta so large that no epoch after the first improves: patience 2 stops after epoch 3, keeping epoch 1
    argv = ["train", "--out", str(tmp / "run"), "--quiet", *sum((["--set", a] for a in [
        *TINY, "train.epochs=20", "train.early_stopping.patience=2", "train.early_stopping.min_delta=1e9"]), [])]
    assert main(argv) == 0
    return tmp


def test_early_stopping_keeps_the_best_epoch_and_says_so(stopped):
    summary = json.loads((stopped / "run" / "summary.json").read_text())
    assert (summary["best_epoch"], summary["stopped_early_at_epoch"], summary["epochs"]) == (1, 3, 3)
    assert (summary["n_train"], summary["n_validation"], summary["n_test"]) == (38, 13, 13)  # 51 = 38 + 13 held out
    rows = [json.loads(line) for line in (stopped / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3] and all("val_loss" in row for row in rows)
    assert summary["best_val_loss"] == pytest.approx(rows[0]["val_loss"])
    assert "early stopping after epoch 3" in (stopped / "run" / "train.log").read_text()


def test_best_npz_holds_the_best_epoch_and_load_run_chooses(stopped, tmp_path):
    one = jaxbp.train(None, tmp_path / "one", overrides=[*TINY, "train.epochs=1"], progress=False)  # epoch 1 alone
    best, last = jaxbp.load_run(stopped / "run", which="best"), jaxbp.load_run(stopped / "run")
    for a, b in zip(jax.tree.leaves(best.params), jax.tree.leaves(one.params)):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(best.params), jax.tree.leaves(last.params)))
    with pytest.raises(jaxbp.CheckpointError, match="no best.npz.*validation_fraction"):
        jaxbp.load_run(_plain_run(tmp_path), which="best")
    with pytest.raises(jaxbp.ConfigError, match="'last'.*'best'"):
        jaxbp.load_run(stopped / "run", which="first")


def _plain_run(tmp_path):
    overrides = [a for a in TINY if not a.startswith("data.validation")] + ["data.validation_fraction=0",
                                                                            "train.epochs=1"]
    jaxbp.train(None, tmp_path / "plain", overrides=overrides, progress=False)
    return tmp_path / "plain"


def test_early_stopping_needs_a_validation_split():
    with pytest.raises(jaxbp.ConfigError, match="set data.validation_fraction"):
        jaxbp.load_config(None, ["train.early_stopping.patience=3", "data.validation_fraction=0"])
    with pytest.raises(jaxbp.ConfigError, match="leaving none to train on"):
        jaxbp.train(None, overrides=["data.name=moons", "data.n=16", "data.validation_fraction=0.99"], progress=False)
    # 8 rows: 2 test, 6 train of which the default 0.1 holds out 1; a batch of 6 no longer fits, and says why
    with pytest.raises(jaxbp.ConfigError, match=r"6 is more than the 5 training examples \(1 of the training split "
                                                r"are held out by data.validation_fraction = 0.1; lower it, or 0"):
        jaxbp.train(None, overrides=["data.name=moons", "data.n=8", "data.test_fraction=0.25", "train.batch_size=6"],
                    progress=False)


def test_a_sweep_names_its_best_replica_by_validation_not_test(tmp_path):
    result = jaxbp.train(None, tmp_path / "sweep", overrides=[*TINY, "train.epochs=2",
                                                               "optimizer.learning_rate=[0.01, 0.5]"], progress=False)
    rows = [json.loads(line) for line in (tmp_path / "sweep" / "metrics.jsonl").read_text().splitlines()]
    at_best = rows[result.summary["best_epoch"] - 1]
    assert result.summary["best_replica"] == int(np.argmin(at_best["val_loss"]))
    assert len(at_best["val_loss"]) == 2 and "val loss" in (tmp_path / "sweep" / "train.log").read_text()


def test_an_early_stop_counts_the_examples_of_the_epochs_it_trained(stopped):
    # the figure from a fixed clock (no wall time): 3 epochs trained of train.epochs = 20, the first untimed
    # (it compiles), so 2 epochs x 2 steps x 16 examples in 10 - 2 = 8 s; counting to epoch 20 gives 19 epochs
    from jaxbp.training.build import build
    from jaxbp.training.checkpoint import Checkpoint
    from jaxbp.training.loop import summary_of
    run = build(jaxbp.load_config(stopped / "run" / "config.toml"))
    rows = [json.loads(line) for line in (stopped / "run" / "metrics.jsonl").read_text().splitlines()]
    summary = summary_of(run, rows, Checkpoint(None, None, rows[-1]["step"], 3, None), 0, 10.0, 2.0)
    assert (run.config.train.epochs, run.steps_per_epoch) == (20, 2)
    assert summary["examples_per_second"] == 2 * 2 * 16 / 8 == 8.0
    assert summary["examples_per_second_timed"].startswith("after the first epoch")
    resumed = summary_of(run, rows, Checkpoint(None, None, rows[-1]["step"], 3, None), 1, 4.0, 0.0)  # epochs 2-3
    assert resumed["examples_per_second"] == 1 * 2 * 16 / 4


def _statistics_left_the_validation_rows_out(overrides, name="standardize") -> bool:
    """Whether the run's standardization statistics are the mean/std of its trained-on rows alone (not of the
    whole training split with the validation rows), measured on the raw split ``datasets.load`` gives."""
    run = build(jaxbp.load_config(None, overrides))
    raw = datasets.load(run.config.data.name, key=jax.random.key(run.config.data.seed), n=run.config.data.n,
                        standardize=False, targets=name != "standardize", standardize_targets=False)
    rows = np.asarray(raw.x_train if name == "standardize" else raw.y_train, np.float64)
    trained, whole, stats = rows[:run.data.x_train.shape[0]], rows, getattr(run.data, name)
    assert run.validation[0].shape[0] == rows.shape[0] - trained.shape[0] > 0
    assert not np.allclose(whole.mean(axis=0), trained.mean(axis=0), rtol=0, atol=1e-6)  # the leak would show
    return np.allclose(stats.mean, trained.mean(axis=0), rtol=0, atol=1e-12) and np.allclose(
        stats.std, trained.std(axis=0), rtol=0, atol=1e-12)


def test_standardization_comes_from_the_trained_rows_not_the_validation_rows(tmp_path, monkeypatch):
    x = np.random.default_rng(0).normal(3.0, 2.0, (40, 2))
    np.savez(tmp_path / "r.npz", x=x, y=x @ [1.0, -2.0] + 5.0)
    regression = [f"data.name={tmp_path / 'r.npz'}", "model.loss=mse", "data.validation_fraction=0.25",
                  "train.batch_size=8"]
    assert _statistics_left_the_validation_rows_out(TINY)
    assert _statistics_left_the_validation_rows_out(regression, "target_standardize")
    run = jaxbp.train(None, tmp_path / "run", overrides=[*TINY, "train.epochs=1"], progress=False)  # what predict uses
    record = json.loads((tmp_path / "run" / "model.json").read_text())
    np.testing.assert_array_equal(record["standardize"]["mean"], build(run.config).data.standardize.mean)
    monkeypatch.setattr(loading, "held_out", lambda n, fraction: 0)  # planted: statistics of the whole split
    assert not _statistics_left_the_validation_rows_out(TINY)
    assert not _statistics_left_the_validation_rows_out(regression, "target_standardize")


OLD = [a for a in TINY if not a.startswith("data.validation")] + ["data.validation_fraction=0"]  # as runs trained


def _as_saved_by_an_older_jaxbp(run_dir):
    """A folder as a jaxbp without data.validation_fraction left it: the key in neither config.toml nor the
    checkpoint's config (its fingerprint taken without it), and no model.json (rebuilt from config.toml)."""
    text = (run_dir / "config.toml").read_text()
    assert "validation_fraction = 0.0\n" in text
    (run_dir / "config.toml").write_text(text.replace("validation_fraction = 0.0\n", ""))
    with np.load(run_dir / "checkpoint.npz") as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(str(arrays["meta"]))
    del meta["config"]["data"]["validation_fraction"]
    arrays["meta"] = np.array(json.dumps({**meta, "config_sha256": fingerprint(meta["config"])}))
    np.savez(run_dir / "checkpoint.npz", **arrays)
    (run_dir / "model.json").unlink()


def _resumes_and_loads_as_trained(old, straight) -> bool:
    """Whether the old folder loads with the standardization it trained with and resumes bit-exactly."""
    loaded = jaxbp.load_run(old)
    if loaded.record["standardize"] != json.loads((straight / "model.json").read_text())["standardize"]:
        return False
    try:
        jaxbp.resume(old, overrides=["train.epochs=2"], progress=False)
    except jaxbp.ConfigError:
        return False
    with np.load(old / "checkpoint.npz") as a, np.load(straight / "checkpoint.npz") as b:
        return all(np.array_equal(a[name], b[name]) for name in b.files if name != "meta")


def test_a_run_saved_before_validation_fraction_existed_resumes_and_loads_as_it_trained(tmp_path, monkeypatch):
    assert jaxbp.load_config().data.validation_fraction == 0.1  # a new config without the key: the default
    jaxbp.train(None, tmp_path / "straight", overrides=[*OLD, "train.epochs=2"], progress=False)
    jaxbp.train(None, tmp_path / "old", overrides=[*OLD, "train.epochs=1"], progress=False)
    _as_saved_by_an_older_jaxbp(tmp_path / "old")
    shutil.copytree(tmp_path / "old", tmp_path / "planted")
    assert load_saved(tmp_path / "old" / "config.toml").data.validation_fraction == 0.0
    assert "validation_fraction = 0.0" in print_config(load_saved(tmp_path / "old" / "config.toml"))
    assert _resumes_and_loads_as_trained(tmp_path / "old", tmp_path / "straight")
    assert json.loads((tmp_path / "old" / "model.json").read_text())["standardize"] == json.loads(
        (tmp_path / "straight" / "model.json").read_text())["standardize"]  # the resumed run's record as well
    monkeypatch.delitem(ADDED_LATER, "data.validation_fraction")  # planted: the missing key read as today's 0.1
    assert not _resumes_and_loads_as_trained(tmp_path / "planted", tmp_path / "straight")
