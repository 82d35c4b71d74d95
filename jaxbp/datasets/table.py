"""CSV and TSV files: a header row, numeric feature columns and (for training) one label column.

Read with the standard library's ``csv`` module; every bad cell is a ``DataError`` naming the
file, its line and column, and the fix. Labels stay as the strings in the file (``encode_labels``
maps them to classes).
"""

from __future__ import annotations

import csv
import math
import os

import numpy as np

from ..errors import DataError

DEFAULT_LABEL_COLUMN = "label"
TABLE_SUFFIXES = (".csv", ".tsv")


def is_table(path) -> bool:
    return os.fspath(path).lower().endswith(TABLE_SUFFIXES)


def read_table(path, label_column: str | None = DEFAULT_LABEL_COLUMN, *, need_label: bool = True,
               features: tuple | None = None, with_lines: bool = False) -> tuple:
    """``(x (n, d) float64, labels (n,) str or None, feature names)`` from a .csv (commas) or .tsv (tabs).

    Every column but ``label_column`` is a feature, unless ``features`` names the columns to take (in that
    order; others are ignored). Without ``need_label`` a missing label column gives ``labels = None``.
    ``with_lines`` adds a fourth entry: each row's line number in the file (for errors found later).
    """
    path = os.fspath(path)
    label_column = label_column or DEFAULT_LABEL_COLUMN
    rows = _rows(path)
    header, body = [name.strip() for name in rows[0][1]], rows[1:]
    _check_header(path, header)
    if label_column in header:
        label_at = header.index(label_column)
    elif need_label:
        raise DataError(f"{path} has no label column {label_column!r} (its header: {', '.join(header)}); "
                        f"name the label column with --set data.label_column=NAME")
    else:
        label_at = None
    names = tuple(features) if features is not None else tuple(n for i, n in enumerate(header) if i != label_at)
    missing = [name for name in names if name not in header]
    if missing:
        raise DataError(f"{path} lacks feature column(s) {', '.join(missing)} that the model was trained on "
                        f"(its header: {', '.join(header)}); give the same columns as the training file")
    columns = [header.index(name) for name in names]
    if not columns:
        raise DataError(f"{path} has no feature columns besides the label column {label_column!r}")
    x = np.empty((len(body), len(columns)), np.float64)
    for i, (line, cells) in enumerate(body):
        if len(cells) != len(header):
            raise DataError(f"{path} line {line}: ragged row with {len(cells)} value(s) but the header has "
                            f"{len(header)} columns; give every row one value per column")
        for j, column in enumerate(columns):
            x[i, j] = _number(path, line, header[column], cells[column])
    labels = None
    if label_at is not None:
        labels = np.asarray([cells[label_at].strip() for _, cells in body], dtype=str)
        for (line, _), label in zip(body, labels):
            if not label:
                raise DataError(f"{path} line {line}, column {label_column!r}: empty label; give every row a label")
    return (x, labels, names, [line for line, _ in body]) if with_lines else (x, labels, names)


def _check_header(path: str, header: list[str]) -> None:
    """No name twice: a repeated name would make the columns read ambiguous."""
    for column, name in enumerate(header):
        if name in header[:column]:
            raise DataError(f"{path}: the header names column {name!r} twice (columns {header.index(name) + 1} and "
                            f"{column + 1}); give every column its own name")


def _rows(path: str) -> list[tuple[int, list[str]]]:
    """(line number, cells) of the header and every non-blank row."""
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            rows = [(reader.line_num, cells) for reader in [csv.reader(file, delimiter=delimiter)] for cells in reader
                    if any(cell.strip() for cell in cells)]
    except FileNotFoundError:
        raise DataError(f"no such file: {path!r}; check the path") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read {path} as {'TSV' if delimiter == chr(9) else 'CSV'} ({error})") from None
    if len(rows) < 2:
        raise DataError(f"{path} needs a header row and at least one data row; it has {len(rows)} non-blank line(s)")
    return rows


def _number(path: str, line: int, column: str, cell: str) -> float:
    text = cell.strip()
    try:
        value = float(text)
    except ValueError:
        what = "an empty value" if not text else f"{text!r}, not a number"
        raise DataError(f"{path} line {line}, column {column!r}: {what}; features must be numbers "
                        f"(encode categories as numbers, or drop the column)") from None
    if not math.isfinite(value):
        raise DataError(f"{path} line {line}, column {column!r}: {text} is not a finite number; "
                        f"remove or impute that value")
    return value
