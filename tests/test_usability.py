"""The rough edges a new user meets, each fixed and held: --version, jaxbp plugins, predict to standard output,
short reprs, inputs standardized twice, the check report's counts, the final line after a resume."""

import os
import re
import tomllib

import jax
import numpy as np
import pytest

import jaxbp
from jaxbp import checking, datasets, testing
from jaxbp.cli import main

# the shapes and optimizer of test_inference's shared run, so the compiled epoch is shared within a session
SHARED = ["model.hidden=[12]", "optimizer.name=adam", "train.batch_size=24", "train.plots=false"]


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    """A CSV whose raw features are far from mean 0, std 1 (170 cm, -60), trained 2 epochs."""
    tmp = tmp_path_factory.mktemp("pets")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    x = rng.normal(size=(200, 2)) + 1.5 * np.eye(2)[y] + np.array([170.0, -60.0])
    lines = ["height,species,weight"] + [f"{float(a)!r},{'cat' if c == 0 else 'dog'},{float(b)!r}" for (a, b), c in zip(x, y)]
    (tmp / "pets.csv").write_text("\n".join(lines) + "\n")
    argv = [f"data.name={tmp / 'pets.csv'}", "data.label_column=species", "train.epochs=2", *SHARED]
    assert main(["train", "--out", str(tmp / "run"), "--quiet", *sum((["--set", a] for a in argv), [])]) == 0
    return tmp


def test_version_matches_the_package_and_pyproject(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    with open(os.path.join(os.path.dirname(jaxbp.__file__), "..", "pyproject.toml"), "rb") as file:
        declared = tomllib.load(file)["project"]["version"]
    assert capsys.readouterr().out.strip() == f"jaxbp {jaxbp.__version__}" == f"jaxbp {declared}"


def test_plugins_lists_every_kind_and_where_each_came_from(tmp_path, capsys, restore_registries, monkeypatch):
    from jaxbp.plugins import user

    monkeypatch.setattr(user, "_loaded", {})
    plugin = tmp_path / "my_rule.py"
    plugin.write_text("import jaxbp\njaxbp.register_rule('my_rule', send=lambda back, w, b, e: back(w))\n")
    assert main(["plugins", "--plugins", str(plugin)]) == 0
    rows = [line.split(None, 2) for line in capsys.readouterr().out.splitlines()[1:-1]]
    where = {(kind, name): origin for kind, name, origin in rows}
    assert where[("rule", "my_rule")] == f"--plugins {plugin}"
    assert where[("loss", "multiclass_hinge")] == where[("layer", "dense")] == "built in"
    assert {kind for kind, _ in where} == {"activation", "loss", "layer", "rule"}
    jaxbp.register_activation("here", forward=lambda z: z, backward=lambda z, a, g: g)
    assert jaxbp.plugins.ACTIVATIONS.origins["here"] == f"module {__name__}"


def test_predict_writes_csv_to_standard_output_and_its_summary_to_standard_error(pets, capsys):
    (pets / "new.csv").write_text("weight,height\n-58.1,170.2\n-60.0,171.9\n")
    assert main(["predict", str(pets / "run"), "--input", str(pets / "new.csv"), "--out", "-"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "label,p_cat,p_dog" and len(out.splitlines()) == 3
    assert "-> standard output" in err and "predicted" not in out


def test_reprs_describe_the_weights_instead_of_printing_them(pets):
    loaded = jaxbp.load_run(pets / "run")
    text = repr(loaded)
    assert len(text) < 300 and "4 arrays, 62 numbers" in text and "('cat', 'dog')" in text
    result = jaxbp.TrainResult(loaded.params, (), {"epochs": 2, "test_accuracy": 0.9}, {}, str(pets / "run"))
    assert len(repr(result)) < 300 and "'test_accuracy': 0.9" in repr(result)


def test_inputs_standardized_twice_are_refused_with_the_way_out(pets):
    loaded = jaxbp.load_run(pets / "run")
    raw = datasets.load(str(pets / "pets.csv"), key=jax.random.key(0), standardize=False, label_column="species")
    scaled = datasets.load(str(pets / "pets.csv"), key=jax.random.key(0), label_column="species",  # standardized as
                           validation_fraction=loaded.config.data.validation_fraction)  # the run's training was
    with pytest.raises(jaxbp.DataError, match="look standardized already.*standardize=False.*standardized=True"):
        loaded.evaluate(scaled.x_test, np.asarray(scaled.classes)[scaled.y_test])
    right = loaded.predict(raw.x_test)
    np.testing.assert_allclose(loaded.predict(scaled.x_test, standardized=True), right, rtol=1e-5, atol=1e-6)
    assert loaded.predict(raw.x_test[:3]).shape == (3, 2)  # a few rows are not judged (under 16)


def test_check_report_counts_agree_and_a_raised_row_keeps_the_columns(restore_registries):
    jaxbp.register_activation("broken", forward=lambda z: z, backward=lambda z, a, g: 1 / 0)
    passing = checking.CheckReport((checking.CheckRow("activation:tanh", "(input)", 0.0, 1e-12, 1e-7),))
    report = checking.merge([jaxbp.check_plugin("activation", "broken"), passing])
    table = report.table(report.failures).splitlines()
    assert table[-1] == f"1 of {len(report.rows)} leaves shown: those outside the bands"
    header, row = table[0], table[1]
    assert row.index("inf") < header.index("vs fin.diff") + len("vs fin.diff") and "(raised)" in row
    assert table[2].strip().startswith("raised ZeroDivisionError")
    assert str(report).splitlines()[-1] == f"{len(report.rows)} leaves checked, 1 failed"
    with pytest.raises(AssertionError) as failed:
        testing.assert_plugin_correct("activation", "broken", variants=["jit"])
    message = str(failed.value)
    counts = re.search(r"(\d+) of (\d+) leaves outside", message).groups()
    assert message.splitlines()[-1] == f"{counts[0]} of {counts[1]} leaves shown: those outside the bands"


def test_after_a_resume_the_final_line_says_which_seconds_it_counts(pets, capsys):
    import shutil

    shutil.copytree(pets / "run", pets / "resumed")
    assert main(["train", "--resume", str(pets / "resumed"), "--set", "train.epochs=3"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert re.search(r"epochs 3\.\.3 in [\d.]+ s \(this invocation; [\d.]+ s since epoch 1, as the progress line", last)
    assert "examples/s timed one epoch, compiling included" in last


def test_a_continuous_label_column_is_a_one_line_error_not_hundreds_of_classes(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = [f"{a:.4f},{b:.4f},{p:.2f}" for a, b, p in zip(*rng.normal(size=(2, 200)), rng.uniform(1e4, 9e4, 200))]
    (tmp_path / "houses.csv").write_text("rooms,age,price\n" + "\n".join(rows) + "\n")
    argv = ["train", "--set", f"data.name={tmp_path / 'houses.csv'}", "--set", "data.label_column=price"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "column 'price' holds 200 distinct non-integer numbers" in err
    binned = [f"{a:.4f},{b:.4f},{p:.1f}" for a, b, p in zip(*rng.normal(size=(2, 200)), rng.integers(0, 3, 200) + 0.5)]
    (tmp_path / "few.csv").write_text("rooms,age,price\n" + "\n".join(binned) + "\n")  # 3 values: classes
    assert datasets.load(str(tmp_path / "few.csv"), key=jax.random.key(0), label_column="price").num_classes == 3
