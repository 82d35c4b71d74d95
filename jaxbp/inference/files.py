"""New data for a trained run: inputs from ``.npz`` / ``.csv`` / ``.tsv``, and predictions written back out.

A table is read by the run's feature column names (any order, extra columns ignored); an ``.npz``
holds ``x`` (n, d) and, for evaluation, ``y`` (n,) in the user's labels.
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np

from ..boundary.archive import read_npz
from ..datasets.table import is_table, read_table
from ..errors import DataError
from ..boundary.files import write_atomic


def read_inputs(path, record: dict, *, need_labels: bool = False, with_lines: bool = False) -> tuple:
    """(x raw (n, d), labels or None) from ``path``; labels are required with ``need_labels``. ``with_lines`` adds
    each row's line in a table (None for an .npz), so a later error can name it."""
    path = os.fspath(path)
    if is_table(path):
        features = tuple(record["features"]) or None
        x, labels, _, lines = read_table(path, record.get("label_column"), need_label=need_labels, features=features,
                                         with_lines=True)
        return (x, labels, lines) if with_lines else (x, labels)
    if not path.endswith(".npz"):
        raise DataError(f"{path}: give a .npz (arrays x and y) or a .csv/.tsv file with a header row")
    if not os.path.isfile(path):
        raise DataError(f"no such file: {path!r}; check the path")
    stored = read_npz(path, DataError, "save it with np.savez(path, x=x, y=y)", "an .npz archive of arrays x (and y)")
    arrays = {name: value for name, value in stored.items() if name in ("x", "y")}
    wanted = ("x", "y") if need_labels else ("x",)
    missing = [name for name in wanted if name not in arrays]
    if missing:
        raise DataError(f"{path} lacks array(s) {', '.join(missing)}; save it with np.savez(path, "
                        f"{', '.join(f'{n}={n}' for n in wanted)})")
    return (arrays["x"], arrays.get("y"), None) if with_lines else (arrays["x"], arrays.get("y"))


def write_predictions(path, probabilities: np.ndarray, labels: np.ndarray, classes: tuple, stdout=None) -> None:
    """``.npz`` (``probabilities``, ``labels``, ``classes``) or ``.csv`` / ``.tsv`` (label, then one p_<class>
    column per class; a sigmoid output has the one column p_<second class>); ``-`` writes the CSV to ``stdout``."""
    path = os.fspath(path)
    probabilities, labels = np.asarray(probabilities, np.float64), np.asarray(labels)
    if path.endswith(".npz"):
        buffer = io.BytesIO()
        np.savez(buffer, probabilities=probabilities, labels=labels, classes=np.asarray(classes))
        write_atomic(path, buffer.getvalue())
        return
    if not is_table(path) and path != "-":
        raise DataError(f"--out {path}: name the output file .csv, .tsv or .npz, or - for CSV on standard output")
    one = probabilities.shape[1] == 1  # a sigmoid output: the probability of the second class
    names = [f"p_{classes[-1]}"] if one else [f"p_{c}" for c in classes]
    text = io.StringIO()
    writer = csv.writer(text, delimiter="\t" if path.lower().endswith(".tsv") else ",", lineterminator="\n")
    writer.writerow(["label", *names])
    writer.writerows([label, *(repr(float(p)) for p in row)] for label, row in zip(labels.tolist(), probabilities))
    if path == "-":
        stdout.write(text.getvalue())
        stdout.flush()
    else:
        write_atomic(path, text.getvalue().encode())


def write_values(path, values: np.ndarray, name: str, stdout=None) -> None:
    """A regression's predictions: ``.npz`` (``values`` (n, k)) or ``.csv`` / ``.tsv`` with one column
    ``predicted_<name>`` (``predicted_<name>_<j>`` per output for k > 1); ``-`` writes the CSV to ``stdout``."""
    path, values = os.fspath(path), np.asarray(values, np.float64)
    if path.endswith(".npz"):
        buffer = io.BytesIO()
        np.savez(buffer, values=values)
        write_atomic(path, buffer.getvalue())
        return
    if not is_table(path) and path != "-":
        raise DataError(f"--out {path}: name the output file .csv, .tsv or .npz, or - for CSV on standard output")
    names = [f"predicted_{name}"] if values.shape[1] == 1 else [f"predicted_{name}_{j}" for j in range(values.shape[1])]
    text = io.StringIO()
    writer = csv.writer(text, delimiter="\t" if path.lower().endswith(".tsv") else ",", lineterminator="\n")
    writer.writerow(names)
    writer.writerows([repr(float(v)) for v in row] for row in values)
    if path == "-":
        stdout.write(text.getvalue())
        stdout.flush()
    else:
        write_atomic(path, text.getvalue().encode())
