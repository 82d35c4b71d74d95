"""Training runs: run folder contents, resume bit-identical to a straight run, determinism,
replicas inside a run, and the ``jaxbp train`` command line."""

import json
import os
import tomllib

import jax
import numpy as np
import pytest

import jaxbp
from jaxbp.training import runlog as _runlog
from jaxbp.config import load_config
from jaxbp.training.build import build
from jaxbp.cli import main

# a small run: 160 moons train examples in batches of 24 (16 dropped per epoch), adam with momentum state
SMALL = ["data.name=moons", "data.n=200", "model.hidden=[12]", "optimizer.name=adam", "optimizer.learning_rate=0.02",
         "train.batch_size=24", "train.plots=false", "train.checkpoint_every=2"]


def _leaves(path):
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """``jaxbp train`` with no config: the built-in spiral run."""
    out = tmp_path_factory.mktemp("default") / "run"
    assert main(["train", "--out", str(out), "--quiet"]) == 0
    return out


def test_default_run_reaches_97_percent_and_writes_every_file(default_run):
    files = set(os.listdir(default_run))
    assert files == set(_runlog.RUN_FILES) - {_runlog.REGRESSION_PLOT}  # config, metrics, summary, params, best, checkpoint, log, 3 plots, record
    summary = json.loads((default_run / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.97
    for key in ("train_loss", "train_accuracy", "test_loss", "steps", "wall_time_s", "examples_per_second"):
        assert summary[key] > 0, key
    config = tomllib.loads((default_run / "config.toml").read_text())
    assert config["data"] == {"name": "spiral", "n": 1500, "test_fraction": 0.2, "noise": 0.2, "standardize": True,
                              "classes": 3, "seed": 0, "validation_fraction": 0.1,
                              "standardize_targets": True}
    assert config["model"]["hidden"] == [64, 64] and config["optimizer"]["name"] == "sgd"
    rows = [json.loads(line) for line in (default_run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == list(range(1, config["train"]["epochs"] + 1))
    assert rows[-1]["step"] == summary["steps"] == config["train"]["epochs"] * (1080 // 32)  # 1200 less 120 held out
    assert summary["n_validation"] == 120 and "val_loss" in rows[-1] and summary["best_epoch"] >= 1
    assert len((default_run / "train.log").read_text().splitlines()) >= len(rows)
    params = _leaves(default_run / "params.npz")
    assert params["params.0.w"].shape == (64, 2) and params["params.2.w"].shape == (3, 64)


def test_resume_is_bit_identical_to_a_straight_run(tmp_path):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    jaxbp.train(None, straight, overrides=SMALL + ["train.epochs=5"], progress=False)
    jaxbp.train(None, stopped, overrides=SMALL + ["train.epochs=3"], progress=False)
    result = jaxbp.resume(stopped, overrides=["train.epochs=5"], progress=False)
    assert result.summary["resumed_from_epoch"] == 3 and result.summary["epochs"] == 5
    for name in ("params.npz", "checkpoint.npz"):  # params, optimizer state, step and key
        _assert_identical(_leaves(straight / name), _leaves(stopped / name))
    strip = lambda path: [{k: v for k, v in json.loads(line).items() if k != "time_s"}
                          for line in path.read_text().splitlines()]
    assert strip(straight / "metrics.jsonl") == strip(stopped / "metrics.jsonl")
    assert tomllib.loads((stopped / "config.toml").read_text())["train"]["epochs"] == 5


def test_ctrl_c_keeps_the_finished_epochs_and_resume_is_still_bit_identical(tmp_path, monkeypatch):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    jaxbp.train(None, straight, overrides=SMALL + ["train.epochs=5"], progress=False)
    metrics_row = _runlog.metrics_row

    def interrupt_in_epoch_4(epoch, *args):
        if epoch == 4:
            raise KeyboardInterrupt  # as if Ctrl-C landed while epoch 4 was computing
        return metrics_row(epoch, *args)

    monkeypatch.setattr(_runlog, "metrics_row", interrupt_in_epoch_4)
    with pytest.raises(KeyboardInterrupt):
        jaxbp.train(None, stopped, overrides=SMALL + ["train.epochs=5", "train.checkpoint_every=0"], progress=False)
    monkeypatch.undo()
    assert "interrupted after epoch 3" in (stopped / "train.log").read_text()
    jaxbp.resume(stopped, overrides=["train.epochs=5"], progress=False)
    _assert_identical(_leaves(straight / "params.npz"), _leaves(stopped / "params.npz"))
    rows = (stopped / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in rows] == [1, 2, 3, 4, 5]


def test_same_config_and_seed_give_the_same_numbers():
    a = jaxbp.train(None, overrides=SMALL + ["train.epochs=2"], progress=False)
    b = jaxbp.train(load_config(None, SMALL + ["train.epochs=2"]), progress=False)  # the typed config, read once
    assert isinstance(b.config, jaxbp.RunConfig) and a.config == b.config and a.config.data.n == 200
    for x, y in zip(jax.tree.leaves((a.params, a.opt_state)), jax.tree.leaves((b.params, b.opt_state))):
        np.testing.assert_array_equal(x, y)
    drop = lambda s: {k: v for k, v in s.items() if not k.endswith("_s") and k != "examples_per_second"}
    assert drop(a.summary) == drop(b.summary)
    c = jaxbp.train(None, overrides=SMALL + ["train.epochs=2", "train.seed=1"], progress=False)
    assert not np.array_equal(c.params[0]["w"], a.params[0]["w"])


def test_replicas_in_a_run_equal_their_single_runs():
    """Replica 0 of a seed sweep is the one-replica run; replica r of a rate sweep is the run at that rate."""
    base = SMALL + ["train.epochs=2", "train.precision=float64"]  # equal to 1e-12: float64
    seeds = jaxbp.train(None, overrides=base + ["train.replicas=3"], progress=False)
    rates = jaxbp.train(None, overrides=base + ["optimizer.learning_rate=[0.01, 0.05]"], progress=False)
    single = jaxbp.train(None, overrides=base, progress=False)
    fast = jaxbp.train(None, overrides=base + ["optimizer.learning_rate=0.05"], progress=False)  # no new compile
    for replicas, r, alone in ((seeds, 0, single), (rates, 1, fast)):
        for together, leaf in zip(jax.tree.leaves(replicas.params), jax.tree.leaves(alone.params)):
            np.testing.assert_allclose(together[r], leaf, rtol=1e-12, atol=1e-12)
    assert not np.allclose(seeds.params[0]["w"][0], seeds.params[0]["w"][1])  # other seeds, other weights
    assert [r["learning_rate"] for r in rates.summary["per_replica"]] == [0.01, 0.05]
    assert seeds.summary["spread"]["test_accuracy"]["min"] <= seeds.summary["test_accuracy"]


def test_epoch_function_compiles_once_despite_ragged_data():
    run = build(load_config(None, SMALL + ["train.replicas=3"]))
    key = jax.random.key(0)
    params, opt_state = run.init(key)
    arrays = (run.data.x_train, run.data.y_train, run.data.x_test, run.data.y_test)
    params, opt_state, _ = run.epoch(params, opt_state, key, 0, *arrays)
    compiled = run.epoch._cache_size()
    for epoch in range(1, 4):
        params, opt_state, _ = run.epoch(params, opt_state, key, epoch, *arrays)
    assert run.epoch._cache_size() == compiled
    assert run.steps_per_epoch == 160 // 24


def test_cli_config_file_set_overrides_resume_and_replicas(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('[data]\nname = "moons"\nn = 200\n\n[model]\nhidden = [12]\n\n[optimizer]\nname = "adam"\n\n'
                      '[train]\nepochs = 30\nbatch_size = 24\nplots = false\ncheckpoint_every = 2\n')
    out = tmp_path / "out"
    args = ["train", "--config", str(config), "--set", "train.epochs=2", "--set", "optimizer.learning_rate=0.1",
            "--set", "train.replicas=3", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "replica   2" in printed and "spread test_accuracy" in printed and "epoch 2/2" in printed
    resolved = tomllib.loads((out / "config.toml").read_text())
    assert resolved["train"]["epochs"] == 2 and resolved["optimizer"]["learning_rate"] == 0.1
    assert resolved["model"]["hidden"] == [12] and resolved["train"]["batch_size"] == 24
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["per_replica"]) == 3 and set(summary["spread"]) >= {"test_accuracy", "test_loss"}
    assert len(json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["test_accuracy"]) == 3
    assert main(["train", "--resume", str(out), "--set", "train.epochs=3", "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["epochs"] == 3
    assert main(["train", "--print-config", "--set", "train.epochs=7"]) == 0
    assert "epochs = 7" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--set", "train.epochs=many"], "train.epochs must be an integer"),
    (["--set", "epochs=5"], "use --set section.key=value"),
    (["--set", "optimizer.name=lbfgs"], "known: sgd, adam, adamw, rmsprop"),
    (["--set", "data.name=nope"], "known datasets: blobs"),
    (["--set", "optimizer.schedule=wavy"], "known: constant, linear, cosine"),
    (["--set", "train.batch_size=100000"], "use at most 1080"),
    (["--config", "missing.toml"], "not found"),
    (["--resume", "no/such/run"], "cannot resume"),
])
def test_cli_errors_are_one_line_with_exit_code_2(args, message, capsys, tmp_path):
    assert main(["train", "--out", str(tmp_path / "x"), *args] if "--resume" not in args else ["train", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()  # nothing written on a bad config


def test_out_onto_a_run_folder_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--out", str(out), "--quiet"] + [a for s in SMALL + ["train.epochs=1"] for a in ("--set", s)]
    assert main(base) == 0
    before = (out / "checkpoint.npz").read_bytes()
    assert main(base) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "checkpoint.npz").read_bytes() == before
    for name in ("confusion.png", "confusion-replica1.png", "predicted_vs_true.png", "r2.png", "notes.txt"):
        # jaxbp evaluate's plots, a regression run's; the user's file
        (out / name).write_bytes(b"kept?")
    assert (out / "best.npz").exists()
    assert main(base + ["--overwrite", "--set", "train.seed=7", "--set", "data.validation_fraction=0"]) == 0
    assert (out / "checkpoint.npz").read_bytes() != before and not (out / "best.npz").exists()  # not the old run's
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(("confusion", "notes", "predicted", "r2"))) == [
        "notes.txt"]


def test_resume_errors(tmp_path, capsys):
    out = tmp_path / "run"
    jaxbp.train(None, out, overrides=SMALL + ["train.epochs=2"], progress=False)
    checkpoint = (out / "checkpoint.npz").read_bytes()
    for overrides, message in ((["train.epochs=1"], "already trained 2 epochs"),
                               (["train.epochs=2"], "already trained 2 epochs"),
                               (["model.hidden=[4]"], "cannot change on --resume")):
        with pytest.raises(jaxbp.ConfigError, match=message):
            jaxbp.resume(out, overrides=overrides, progress=False)
    (out / "checkpoint.npz").write_bytes(checkpoint[: len(checkpoint) // 2])  # a torn file
    assert main(["train", "--resume", str(out), "--set", "train.epochs=4"]) == 2
    assert "corrupt" in capsys.readouterr().err
    (out / "checkpoint.npz").unlink()
    with pytest.raises(jaxbp.CheckpointError, match="no checkpoint.npz"):
        jaxbp.resume(out, overrides=["train.epochs=4"], progress=False)


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_otherwise(tmp_path, monkeypatch, capsys):
    row = {"epoch": 1, "step": 3, "time_s": 0.5, **{name: 0.5 for name in _runlog.METRIC_NAMES}}
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    log = _runlog.RunLog(str(tmp_path), 2, True, [])
    log.message("training on spiral")
    log.epoch(row)
    log.epoch({**row, "epoch": 2, "step": 6})
    log.close()
    bar = capsys.readouterr().out
    assert "\rtraining on spiral\n" in bar  # a message clears the bar's line, which is redrawn in place
    assert "2/2" in bar and "epoch/s" in bar and "test acc 50.0%" in bar  # progress, rate and the latest metrics
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    log = _runlog.RunLog(None, 2, True, [])
    log.epoch(row)
    expected = "epoch 1/2 step 3 batch loss 0.5000 train acc 50.0% test loss 0.5000 test acc 50.0% 0.5s\n"
    assert capsys.readouterr().out == expected
    assert (tmp_path / "train.log").read_text().startswith("training on spiral\nepoch 1/2")  # plain, no bar


def test_plots_are_skipped_with_a_note_without_matplotlib(monkeypatch, tmp_path):
    from jaxbp.training.plots import save_plots

    monkeypatch.setitem(__import__("sys").modules, "matplotlib.figure", None)
    notes = []
    assert save_plots(str(tmp_path), [], None, None, None, notes.append) == []
    assert notes == ["plots skipped: matplotlib is not installed (pip install 'jaxbp[plots]')"]
