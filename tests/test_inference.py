"""After training: load_run, jaxbp predict / evaluate, CSV/TSV data with any labels, --plugins, and the
run folder's model.json (preprocessing, classes, features, plugins) -- each with the bug it catches."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxbp
from jaxbp import datasets
from jaxbp.cli import main
from jaxbp.plugins import user
from jaxbp.training.checkpoint import save_trees
from jaxbp.training.build import build
from jaxbp.config import load_config

SPECIES = np.array(["cat", "dog"])
# the shapes and optimizer of test_runner's SMALL run, so the compiled epoch is shared within a test session
SHARED = ["model.hidden=[12]", "optimizer.name=adam", "train.batch_size=24", "train.plots=false"]
TOL = dict(rtol=1e-12, atol=1e-12)


def write_table(path, x, labels, names=("height", "weight"), label="species", sep=","):
    """The label column second, so reading by name (not position) is exercised."""
    header = [names[0], label, *names[1:]]
    rows = [[repr(float(r[0])), str(lab), *(repr(float(v)) for v in r[1:])] for r, lab in zip(x, labels)]
    path.write_text("\n".join(sep.join(row) for row in [header, *rows]) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A run on a CSV with string labels in a 'species' column, features on very different scales."""
    tmp = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    x = rng.normal(size=(200, 2)) + 1.5 * np.eye(2)[y] + np.array([170.0, -60.0])
    csv = write_table(tmp / "pets.csv", x, SPECIES[y])
    overrides = [f"data.name={csv}", "data.label_column=species", "train.epochs=3", *SHARED]
    result = jaxbp.train(None, tmp / "run", overrides=overrides, progress=False)
    raw = datasets.load(csv, key=jax.random.key(0), standardize=False, label_column="species")  # the same split, raw
    return tmp, result, raw


def test_predict_and_evaluate_on_held_out_rows_match_the_runs_test_accuracy(table_run, capsys):
    tmp, result, raw = table_run
    run, summary = str(tmp / "run"), result.summary
    labels = np.asarray(raw.classes)[np.asarray(raw.y_test)]
    held_out = write_table(tmp / "held_out.tsv", np.asarray(raw.x_test), labels, sep="\t")
    unlabelled = tmp / "unlabelled.csv"
    unlabelled.write_text("\n".join(",".join(line.split("\t")[:1] + line.split("\t")[2:])
                                    for line in open(held_out).read().splitlines()) + "\n")
    assert main(["predict", run, "--input", str(unlabelled), "--out", str(tmp / "pred.csv")]) == 0
    table = [line.split(",") for line in (tmp / "pred.csv").read_text().splitlines()]
    assert table[0] == ["label", "p_cat", "p_dog"]
    predicted = np.array([row[0] for row in table[1:]])
    assert np.mean(predicted == labels) == pytest.approx(summary["test_accuracy"], abs=1e-6)
    assert main(["evaluate", run, "--data", held_out]) == 0
    printed = capsys.readouterr().out
    assert f"accuracy {summary['test_accuracy']:.2%}" in printed and "true \\ predicted" in printed
    assert os.path.isfile(tmp / "run" / "confusion.png")
    loaded = jaxbp.load_run(run)
    x, y = read_back(held_out)
    report = loaded.evaluate(x, y)
    assert report.accuracy == pytest.approx(summary["test_accuracy"], abs=1e-6)
    assert report.loss == pytest.approx(summary["test_loss"], rel=1e-12)  # the loss too: same inputs, same model
    assert report.confusion.sum() == len(y) and np.trace(report.confusion) == round(report.accuracy * len(y))


def read_back(path):
    from jaxbp.datasets.table import read_table

    x, labels, _ = read_table(path, "species", features=("height", "weight"))
    return x, labels


def test_load_run_predict_on_raw_inputs_equals_the_training_probabilities(table_run):
    tmp, result, raw = table_run
    run = build(load_config(str(tmp / "run" / "config.toml")))  # the data exactly as training saw it
    during_training = run.model.predict(result.params, run.data.x_test)
    loaded = jaxbp.load_run(tmp / "run")
    np.testing.assert_allclose(loaded.predict(raw.x_test), during_training, **TOL)
    assert list(loaded.classify(raw.x_test)) == list(SPECIES[np.argmax(during_training, axis=1)])
    trained = raw.x_train[:run.data.x_train.shape[0]]  # the rows trained on: not the test nor the validation rows
    np.testing.assert_allclose(loaded.record["standardize"]["mean"], np.mean(trained, axis=0), **TOL)
    # planted bug: forgetting the stored standardization gives other probabilities, which the check above rejects
    forgot = loaded._replace(record={**loaded.record, "standardize": None})
    assert not np.allclose(forgot.predict(raw.x_test), during_training, atol=1e-3)


def test_an_older_run_folder_or_another_precision_still_loads_or_says_what_is_missing(table_run, tmp_path):
    tmp, _, raw = table_run
    old = tmp_path / "old"
    shutil.copytree(tmp / "run", old)
    os.remove(old / "model.json")  # a folder made before runs recorded their data step
    np.testing.assert_allclose(jaxbp.load_run(old).predict(raw.x_test), jaxbp.load_run(tmp / "run").predict(raw.x_test),
                               **TOL)
    single = jax.tree.map(lambda leaf: np.asarray(leaf, np.float32), jaxbp.load_run(old).params)
    save_trees(str(old / "params.npz"), {"params": single}, {"replicas": 1})  # as a float32 run writes it
    with jax.default_matmul_precision("highest"):  # float32 matmuls, not a GPU's TF32 (10-bit mantissas)
        in_float32 = jaxbp.load_run(old).predict(raw.x_test)
    assert in_float32.dtype == np.float32
    np.testing.assert_allclose(in_float32, jaxbp.load_run(tmp / "run").predict(raw.x_test), rtol=1e-4, atol=1e-5)
    config = (old / "config.toml").read_text()
    (old / "config.toml").write_text(config.replace("pets.csv", "gone.csv"))
    with pytest.raises(jaxbp.CheckpointError, match="no model.json.*no such file.*gone.csv"):
        jaxbp.load_run(old)


PLUGIN = '''
import jax.numpy as jnp
import jaxbp

jaxbp.register_activation(
    "softsign",
    forward=lambda z: z / (1 + jnp.abs(z)),
    backward=lambda z, a, g: g / (1 + jnp.abs(z)) ** 2,  # da/dz = 1 / (1 + |z|)^2
)
'''
NEW_PROCESS = '''
import os, sys
from jaxbp.cli import main
run, x = sys.argv[1:]
codes = [main(["predict", run, "--input", x, "--out", os.path.join(run, "p.npz")]),
         main(["train", "--resume", run, "--set", "train.epochs=3", "--quiet"])]
print("exit codes", *codes)
'''


def test_plugins_train_then_predict_and_resume_in_a_new_process(tmp_path, restore_registries, monkeypatch, capsys):
    monkeypatch.setattr(user, "_loaded", {})
    plugin = tmp_path / "my_act.py"
    plugin.write_text(PLUGIN)
    run = tmp_path / "run"
    args = ["train", "--out", str(run), "--quiet", "--set", "data.name=moons", "--set", "data.n=60", "--set",
            "model.hidden=[6]", "--set", "model.activation=softsign", "--set", "train.epochs=2", "--set",
            "train.plots=false"]
    assert main(args) == 2  # without the plugin: the error says how to bring it
    err = capsys.readouterr().err
    assert "unknown activation 'softsign'" in err and "--plugins" in err and "Traceback" not in err
    os.chdir(tmp_path)  # a relative path is recorded as an absolute one
    assert main(args + ["--plugins", "my_act.py"]) == 0
    assert json.loads((run / "model.json").read_text())["plugins"] == [str(plugin)]
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(0).normal(size=(5, 2)))
    env = {**os.environ, "JAX_ENABLE_X64": "1"}  # the run was trained in float64 here
    done = subprocess.run([sys.executable, "-c", NEW_PROCESS, str(run), str(tmp_path / "x.npz")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.stdout.splitlines()[-1] == "exit codes 0 0", done.stdout + done.stderr
    with np.load(run / "p.npz") as out:
        assert out["probabilities"].shape == (5, 2) and set(out["labels"]) <= {0, 1}
    assert json.loads((run / "summary.json").read_text())["epochs"] == 3
    plugin.rename(tmp_path / "elsewhere.py")  # the recorded path is gone: a clear error, not a raw traceback
    monkeypatch.setattr(user, "_loaded", {})
    capsys.readouterr()
    assert main(["predict", str(run), "--input", str(tmp_path / "x.npz"), "--out", str(tmp_path / "q.npz")]) == 2
    err = capsys.readouterr().err
    assert f"plugin file {plugin} not found" in err and "--plugins" in err and "Traceback" not in err


@pytest.mark.parametrize("text, message", [
    ("a,b,label\n1,2,x\n3,4\n", "line 3: ragged row with 2 value"),
    ("a,b,label\n1,2,x\n3,tall,y\n", "line 3, column 'b': 'tall', not a number"),
    ("a,b,kind\n1,2,x\n3,4,y\n", r"no label column 'label' \(its header: a, b, kind\).*data.label_column"),
    ("a,b,label\n1,2,x\nnan,4,y\n", "line 3, column 'a': nan is not a finite number"),
    ("a,b,label\n1,,x\n3,4,y\n", "line 2, column 'b': an empty value"),
])
def test_bad_data_names_row_and_column_and_the_cli_exits_2(tmp_path, capsys, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(jaxbp.DataError, match=message):
        datasets.load(str(path), key=jax.random.key(0))
    assert main(["train", "--set", f"data.name={path}", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "jaxbp: error:" in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_labels_of_any_ints_or_strings_map_to_classes_with_the_mapping_kept(tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 2))
    np.savez(tmp_path / "gap.npz", x=x, y=np.arange(40) % 4 + 1)  # labels 1..4: four classes, not five
    data = datasets.load(str(tmp_path / "gap.npz"), key=jax.random.key(0), standardize=False)
    assert data.num_classes == 4 and data.classes == (1, 2, 3, 4)
    ids = {tuple(row): label for row, label in zip(x.round(9), np.arange(40) % 4 + 1)}
    for xs, ys in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        assert [ids[tuple(row)] for row in np.asarray(xs).round(9)] == [data.classes[j] for j in np.asarray(ys)]
    tsv = write_table(tmp_path / "t.tsv", x, np.where(np.arange(40) % 2, 10, -3), ("a", "b"), "label", "\t")
    assert datasets.load(tsv, key=jax.random.key(0)).classes == (-3, 10)  # ints sorted as numbers, negatives too
    mixed = write_table(tmp_path / "s.csv", x, np.where(np.arange(40) % 2, "b", "10"), ("a", "b"), "label")
    assert datasets.load(mixed, key=jax.random.key(0)).classes == ("10", "b")
    with pytest.raises(jaxbp.ConfigError, match="label column of a .csv/.tsv file; 'moons' has none"):
        load_config(None, ["data.name=moons", "data.label_column=y"])


def test_an_unknown_label_in_evaluation_data_names_its_file_and_line(table_run, tmp_path, capsys):
    tmp, _, raw = table_run
    labels = np.asarray(raw.classes)[np.asarray(raw.y_test)]
    labels[4] = "yak"
    path = write_table(tmp_path / "odd.csv", np.asarray(raw.x_test), labels)
    assert main(["evaluate", str(tmp / "run"), "--data", path]) == 2
    err = capsys.readouterr().err
    assert f"{path} line 6: label 'yak' is not one of the run's classes ('cat', 'dog')" in err  # row 4, header 1
    npz = tmp_path / "odd.npz"
    np.savez(npz, x=np.asarray(raw.x_test), y=labels)  # an .npz has rows, not lines
    assert main(["evaluate", str(tmp / "run"), "--data", str(npz)]) == 2
    assert f"jaxbp: error: {npz} row 4: label 'yak'" in capsys.readouterr().err


def test_replicas_are_picked_by_index_and_named_in_plots(tmp_path):
    from matplotlib.figure import Figure

    from jaxbp.training import plots

    out = tmp_path / "run"
    result = jaxbp.train(None, out, progress=False, overrides=["data.name=moons", "data.n=200", "train.replicas=3",
                                                               "train.epochs=1", *SHARED])
    with pytest.raises(jaxbp.ConfigError, match=r"3 replicas \(0: seed \+0; 1: seed \+1; 2: seed \+2\); pick one"):
        jaxbp.load_run(out)
    loaded = jaxbp.load_run(out, replica=1)
    for mine, stacked in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(result.params)):
        np.testing.assert_array_equal(mine, np.asarray(stacked)[1])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    axes = Figure().add_subplot()
    plots._curves(axes, rows, "loss", loaded.record["replica_labels"])
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend == ["seed +0", "seed +1", "seed +2", "train set (solid)", "test set (dashed)"]
    axes = Figure().add_subplot()
    data = build(load_config(str(out / "config.toml"))).data
    plots._boundary(axes, loaded.model, loaded.params, data, "seed +0", resolution=8)
    assert "replica 0 (seed +0)" in axes.get_title()
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["train", "test", "class 0", "class 1"]
