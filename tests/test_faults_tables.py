"""Fault battery, tables: a table is read exactly as written, or refused with a DataError naming the column.

Duplicate header names, values that overflow the standardization or the training dtype, and the
model.json that records the data step (strict JSON: never ``Infinity``). No raw numpy warning escapes.
"""

import json
import warnings

import jax
import numpy as np
import pytest

import jaxbp
from jaxbp.cli import main
from jaxbp.datasets import table
from jaxbp.datasets.preprocess import check_range


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def load(path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a raw numpy warning fails the test
        return jaxbp.datasets.load(path, key=jax.random.key(0), test_fraction=0.25, **options)


ROWS = "".join(f"{i % 3},{i % 5 * 0.5},{i % 2}\n" for i in range(12))


@pytest.mark.parametrize("header, twice", [("f1,f1,label", "f1"), ("f1,label,label", "label"), ("a, b ,b", "b")])
def test_duplicate_header_names_are_a_data_error_naming_them(tmp_path, header, twice):
    path = write(tmp_path, header + "\n" + ROWS)
    with pytest.raises(jaxbp.DataError, match=f"names column '{twice}' twice"):
        load(path, label_column="label")
    with pytest.raises(jaxbp.DataError, match=f"names column '{twice}' twice"):
        table.read_table(path, "label", need_label=False, features=("f1",))  # as predict reads new data


def test_planted_without_the_header_check_the_wrong_columns_train(tmp_path, monkeypatch):
    path = write(tmp_path, "f1,f1,label\n" + ROWS)
    monkeypatch.setattr(table, "_check_header", lambda path, header: None)
    x, _, names = table.read_table(path, "label")
    assert names == ("f1", "f1") and np.array_equal(x[:, 0], x[:, 1])  # the second column silently lost


@pytest.mark.parametrize("value, standardize, says", [
    ("1e308", True, "overflows the standardization"),
    ("-1.7e308", True, "overflows the standardization"),
    ("1e200", False, r"has values beyond \+-1.34e\+154, where float64 overflows"),
])
def test_values_that_overflow_are_a_data_error_naming_the_column(tmp_path, value, standardize, says):
    rows = "".join(f"{i % 3},{value if i % 4 == 0 else i},{i % 2}\n" for i in range(12))
    path = write(tmp_path, "f1,big,label\n" + rows)
    with pytest.raises(jaxbp.DataError, match=f"column 'big' {says}"):
        load(path, standardize=standardize)


def test_values_beyond_float32_are_named_when_the_run_is_float32():
    x = np.array([[0.0, 1.0], [1.0, 1e39]])  # standardized or not, 1e39 has no float32
    with pytest.raises(jaxbp.DataError, match=r"column 'big' has values beyond \+-1.84e\+19, where float32"):
        check_range("data.csv", x, np.float32, ("f1", "big"))
    check_range("data.csv", x, np.float64, ("f1", "big"))


def test_the_cli_prints_one_line_and_no_numpy_warning(tmp_path, capsys):
    rows = "".join(f"{i % 3},{'1e308' if i % 4 == 0 else i},{i % 2}\n" for i in range(12))
    path = write(tmp_path, "f1,big,label\n" + rows)
    assert main(["train", "--set", f"data.name={path}", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "column 'big'" in err and "Warning" not in err and "learning rate" not in err


def test_model_json_is_strict_json_and_a_non_strict_one_is_refused(tmp_path):
    run = tmp_path / "run"
    jaxbp.train(None, run, overrides=["data.name=moons", "data.n=64", "model.hidden=[4]", "train.epochs=1",
                                      "train.plots=false"], progress=False)
    text = (run / "model.json").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in model.json"))
    record = json.loads(text)
    std = record["standardize"]["std"]
    (run / "model.json").write_text(text.replace(json.dumps(std), json.dumps(std).replace(str(std[0]), "Infinity", 1)))
    with pytest.raises(jaxbp.CheckpointError, match="Infinity"):
        jaxbp.load_run(run)
