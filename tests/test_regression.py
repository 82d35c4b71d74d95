"""Regression on a user's table: mse / huber read the label column as float targets, metrics are MSE, MAE, R^2."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxbp
from jaxbp import datasets
from jaxbp.errors import ConfigError
from jaxbp.cli import main
from jaxbp.training.steps import regression_scores
from jaxbp.networks import mlp


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2))
    price = 50 + 3 * x[:, 0] - 2 * x[:, 1] + 0.1 * rng.normal(size=80)  # linear: a small net fits it well
    path = tmp_path_factory.mktemp("reg") / "houses.csv"
    path.write_text("rooms,age,price\n" + "\n".join(f"{a:.4f},{b:.4f},{p:.4f}" for (a, b), p in zip(x, price)) + "\n")
    return path


@pytest.fixture(scope="module")
def run(table, tmp_path_factory):
    out = tmp_path_factory.mktemp("reg") / "run"
    argv = ["train", "--set", f"data.name={table}", "--set", "data.label_column=price"] + ["--set", "model.loss=mse", "--set", "model.hidden=[8]", "--set", "train.epochs=40",
                   "--set", "optimizer.name=adam", "--set", "optimizer.learning_rate=0.05", "--set", "train.plots=false",
                   "--out", str(out)]
    assert main(argv) == 0
    return out


def test_a_continuous_column_suggests_mse_and_mse_trains_a_regressor(table, run, capsys):
    assert main(["train", "--set", f"data.name={table}", "--set", "data.label_column=price"]) == 2
    assert "--set model.loss=mse" in capsys.readouterr().err
    out = run
    summary = json.loads((out / "summary.json").read_text())
    assert "test_accuracy" not in summary and summary["test_r2"] > 0.9, summary
    assert summary["test_mae"] > 0 and summary["test_mse"] == pytest.approx(2 * summary["test_loss"], rel=1e-6)
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"train_mse", "train_mae", "train_r2", "test_r2"} <= set(row)


def test_targets_of_an_npz_keep_their_k_columns_and_the_scores_match_numpy(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 3)), rng.normal(size=(30, 2))
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = datasets.load(str(tmp_path / "d.npz"), key=jax.random.key(0), targets=True)
    assert data.num_classes == 2 and data.y_train.shape == (24, 2) and data.y_train.dtype.kind == "f"
    model = mlp([3, 2], loss="mse")
    params = model.init(jax.random.key(0))
    z, t = np.asarray(model.predict(params, data.x_test)), np.asarray(data.y_test)
    got = regression_scores(model, params, data.x_test, data.y_test)
    r2 = 1 - np.sum((z - t) ** 2) / np.sum((t - t.mean(0)) ** 2)
    np.testing.assert_allclose([got["mse"], got["mae"], got["r2"]],
                               [np.mean(np.sum((z - t) ** 2, 1)), np.mean(np.abs(z - t)), r2], rtol=1e-12)


def test_targets_are_standardized_saved_and_undone_at_predict_and_evaluate(table, run, tmp_path, capsys):
    record = json.loads((run / "model.json").read_text())
    assert record["regression"] and record["target_standardize"]["mean"][0] == pytest.approx(50, abs=1)
    assert main(["predict", str(run), "--input", str(table), "--out", str(tmp_path / "p.csv")]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    truth = [float(line.split(",")[2]) for line in table.read_text().splitlines()[1:]]
    predicted = [float(v) for v in lines[1:]]
    assert lines[0] == "predicted_price" and np.mean(np.abs(np.subtract(predicted, truth))) < 0.5  # in price units
    assert main(["evaluate", str(run), "--data", str(table)]) == 0
    r2 = float(capsys.readouterr().out.split("R2 ")[1].split(",")[0])
    assert r2 > 0.9 and (run / "predicted_vs_true.png").stat().st_size > 1000
    loaded = jaxbp.load_run(run)
    with pytest.raises(ConfigError, match="is a regression .* use .predict"):
        loaded.classify(np.zeros((2, 2)))


def test_standardize_targets_off_keeps_the_raw_targets(table):
    raw = datasets.load(str(table), key=jax.random.key(0), label_column="price", targets=True, standardize_targets=False)
    scaled = datasets.load(str(table), key=jax.random.key(0), label_column="price", targets=True)
    assert raw.target_standardize is None and float(np.mean(raw.y_train)) == pytest.approx(50, abs=1)
    np.testing.assert_allclose(scaled.target_standardize.apply(np.asarray(raw.y_test)), scaled.y_test, rtol=1e-12)
    assert abs(float(np.mean(scaled.y_train))) < 1e-9


def test_the_readme_regression_commands_work_as_written(tmp_path, monkeypatch, capsys):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Regression on a table", 1)[1]
    commands = section.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    monkeypatch.chdir(tmp_path)
    assert commands[0].startswith("python -c ")
    subprocess.run([sys.executable, "-c", shlex.split(commands[0])[2]], check=True)
    for command in commands[1:]:
        words = shlex.split(command)
        assert words[0] == "jaxbp" and main(words[1:]) == 0, command
    out = capsys.readouterr().out
    r2 = float(out.split("houses.csv: 300 examples, R2 ")[1].split(",")[0])
    assert r2 > 0.9 and (tmp_path / "predictions.csv").read_text().startswith("predicted_price\n")


def test_a_regression_selects_on_validation_r2_and_refuses_val_accuracy(table, tmp_path, capsys):
    base = ["train", "--set", f"data.name={table}", "--set", "data.label_column=price", "--set", "model.loss=mse",
            "--set", "data.validation_fraction=0.2", "--set", "model.hidden=[8]", "--set", "train.plots=false",
            "--set", "optimizer.name=adam", "--set", "optimizer.learning_rate=0.05", "--set", "train.epochs=6"]
    assert main(base + ["--set", "train.early_stopping.metric=val_accuracy"]) == 2
    assert "use val_loss, val_mse, val_mae or val_r2" in capsys.readouterr().err
    assert main(base + ["--set", "train.early_stopping.metric=val_r2", "--out", str(tmp_path / "r")]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert "val_accuracy" not in rows[0] and summary["best_val_r2"] == max(row["val_r2"] for row in rows)


@pytest.mark.parametrize("standardize", [True, False])
def test_a_regressor_trains_on_k_targets_of_an_npz_and_predicts_them_in_their_units(tmp_path, standardize):
    # two linear targets on their own scales (means 100 and -3, stds about 20 and 1.5): a learnable (n, 2)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(160, 3))
    y = np.c_[100 + x @ [12.0, -8.0, 5.0], -3 + x @ [0.5, 1.0, -1.0]] + 0.05 * rng.normal(size=(160, 2))
    if not standardize:
        y = (y - [100, -3]) / [16, 1.6]  # raw targets of order 1: the default rate trains them unscaled too
    np.savez(tmp_path / "d.npz", x=x, y=y)
    out = tmp_path / "run"
    assert main(["train", "--quiet", "--out", str(out), "--set", f"data.name={tmp_path / 'd.npz'}",
                 "--set", "model.loss=mse", "--set", "model.hidden=[16]", "--set", "train.epochs=30",
                 "--set", f"data.standardize_targets={str(standardize).lower()}", "--set", "train.plots=false"]) == 0
    record = json.loads((out / "model.json").read_text())
    assert (record["target_standardize"] is not None) == standardize
    assert main(["predict", str(out), "--input", str(tmp_path / "d.npz"), "--out", str(tmp_path / "p.csv")]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    predicted = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    assert lines[0].count(",") == 1 and predicted.shape == y.shape  # k = 2 values per row
    per_output = 1 - np.sum((predicted - y) ** 2, 0) / np.sum((y - y.mean(0)) ** 2, 0)
    assert np.all(per_output > 0.9), per_output  # each target in its own units (a standardized one would fail)
    np.testing.assert_allclose(predicted.mean(0), y.mean(0), atol=0.2 * y.std(0).max())
    scores = jaxbp.load_run(out).evaluate_values(x, y)  # `jaxbp evaluate`'s numbers, without its plot
    np.testing.assert_allclose(scores["predicted"], predicted, rtol=1e-6)  # the CSV's values, to its digits
    assert scores["r2"] == pytest.approx(1 - np.sum((predicted - y) ** 2) / np.sum((y - y.mean(0)) ** 2), abs=1e-6)
    assert scores["r2"] > 0.95  # pooled over both targets: 1 - SS_res / SS_tot


def test_mse_at_the_default_rate_trains_the_readme_table_in_float64(tmp_path):
    # the README's houses.csv: at the old default rate 0.2 this diverged in epoch 1 (the loss's sharpest direction at
    # init is about 69, so SGD is stable below 2/69 = 0.029); an unset rate is 0.02 for mse / huber
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    y = 50 + 3 * x[:, 0] - 2 * x[:, 1] ** 2 + 0.1 * rng.normal(size=300)
    np.savez(tmp_path / "houses.npz", x=x, y=y)
    result = jaxbp.train(None, overrides=[f"data.name={tmp_path / 'houses.npz'}", "model.loss=mse", "train.epochs=2",
                                          "train.precision=float64", "train.plots=false"], progress=False)
    assert result.config.optimizer.learning_rate == 0.02 and "warnings" not in result.summary
    assert result.summary["train_r2"] > 0.5, result.summary


def test_a_finished_regression_run_is_complete_with_r2_png_and_rebuilds_it_when_missing(table, tmp_path, capsys):
    out = tmp_path / "run"  # a regression plots r2.png where a classifier plots accuracy.png
    assert main(["train", "--set", f"data.name={table}", "--set", "data.label_column=price", "--set",
                 "model.loss=mse", "--set", "model.hidden=[4]", "--set", "train.epochs=1", "--out", str(out),
                 "--quiet"]) == 0
    assert (out / "r2.png").exists() and not (out / "accuracy.png").exists()
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 2  # complete: nothing rebuilt (it once rebuilt accuracy.png)
    assert "final files are complete" in capsys.readouterr().err
    (out / "r2.png").unlink()
    assert main(["train", "--resume", str(out)]) == 0
    assert "rebuilt r2.png" in capsys.readouterr().out and (out / "r2.png").exists()
