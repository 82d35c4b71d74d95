"""Model selection on a validation split: val metrics each epoch, early stopping, best.npz, load_run(which=)."""

import json

import jax
import numpy as np
import pytest

import jaxbp
from jaxbp.cli import main

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
    overrides = [a for a in TINY if not a.startswith("data.validation")] + ["train.epochs=1"]
    jaxbp.train(None, tmp_path / "plain", overrides=overrides, progress=False)
    return tmp_path / "plain"


def test_early_stopping_needs_a_validation_split():
    with pytest.raises(jaxbp.ConfigError, match="set data.validation_fraction"):
        jaxbp.load_config(None, ["train.early_stopping.patience=3"])
    with pytest.raises(jaxbp.ConfigError, match="leaving none to train on"):
        jaxbp.train(None, overrides=["data.name=moons", "data.n=16", "data.validation_fraction=0.99"], progress=False)


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
