"""What the data step does to inputs and labels, kept so a saved run can repeat it on new data.

``Standardize`` is z = (x - mean) / std with train-split column statistics; ``encode_labels``
maps any int or string labels to classes 0..k-1 and returns the labels in class order, so a
gap (labels 1..4) gives 4 classes, not 5 with an empty class 0.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, DataError

STD_FLOOR = 1e-8


class Standardize(NamedTuple):
    """Column statistics of the train split; a std below 1e-8 (a constant column) is stored as 1."""

    mean: np.ndarray  # (d,) float64
    std: np.ndarray  # (d,) float64

    @classmethod
    def fit(cls, x_train: np.ndarray) -> "Standardize":
        x_train = np.asarray(x_train, np.float64)
        with np.errstate(all="ignore"):  # values near 1e308 overflow: ``check_range`` names the column
            std = x_train.std(axis=0)
            return cls(x_train.mean(axis=0), np.where(std < STD_FLOOR, 1.0, std))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """z = (x - mean) / std in float64 (an overflow gives Inf, quietly: ``check_range`` reports it)."""
        with np.errstate(all="ignore"):
            return (np.asarray(x, np.float64) - self.mean) / self.std

    def distance(self, x: np.ndarray) -> float:
        """How far the columns of ``x`` sit from these statistics: mean over columns of |m - mean|/std +
        |log(s/std)|, with m and s the columns' own mean and std (constant columns left out)."""
        m, s = x.mean(axis=0), x.std(axis=0)
        keep = s > STD_FLOOR
        return float(np.mean(np.abs(m - self.mean)[keep] / self.std[keep] + np.abs(np.log(s[keep] / self.std[keep]))))

    def looks_applied(self, x: np.ndarray) -> bool:
        """True when ``x`` (n >= 16 rows) looks standardized already: columns near mean 0 and std 1, and far from
        the raw training statistics (when those are near 0 and 1 themselves, standardizing twice is harmless)."""
        x = np.asarray(x, np.float64)
        if x.shape[0] < 16 or not np.any(x.std(axis=0) > STD_FLOOR):
            return False
        unit = Standardize(np.zeros_like(self.mean), np.ones_like(self.std))
        return unit.distance(x) < 0.5 and self.distance(x) > 2.0

    def to_json(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}  # float repr round-trips float64 exactly

    @classmethod
    def from_json(cls, data: dict) -> "Standardize":
        return cls(np.asarray(data["mean"], np.float64), np.asarray(data["std"], np.float64))


def held_out(n_train: int, fraction: float) -> int:
    """How many of the train split's last rows a validation split of ``fraction`` holds out: round(fraction * n),
    at least one, 0 for ``fraction`` 0; a ConfigError when none would be left to train on."""
    if not fraction:
        return 0
    m = max(1, round(fraction * n_train))
    if m >= n_train:
        raise ConfigError(f"data.validation_fraction = {fraction} holds out {m} of the {n_train} training examples, "
                          f"leaving none to train on; use a smaller fraction, or 0 for no validation split")
    return m


def check_finite(name: str, x: np.ndarray) -> None:
    """A DataError naming the first few (row, column) positions of NaN/Inf in ``x``."""
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        where = ", ".join(f"(row {r}, column {c})" for r, c in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise DataError(
            f"x of dataset {name!r} holds {len(bad)} NaN/Inf value(s) at {where}; "
            f"remove or impute those entries before loading"
        )


def check_range(name: str, x: np.ndarray, dtype, features=(), stats: "Standardize | None" = None) -> None:
    """A DataError naming the column whose values (after standardization, if any) do not fit ``dtype``: a
    column near 1e308 overflows the standardization; raw values beyond the square root of the dtype's largest
    number (1.8e19 in float32) overflow the network's products, standardized ones beyond the largest itself."""
    top = float(np.finfo(dtype).max) ** (1.0 if stats is not None else 0.5)
    with np.errstate(all="ignore"):
        bad_stats = np.zeros(x.shape[1], bool) if stats is None else ~(np.isfinite(stats.mean) & np.isfinite(stats.std))
        bad = bad_stats | ~np.all(np.isfinite(x) & (np.abs(x) <= top), axis=0) if len(x) else bad_stats
    if np.any(bad):
        column = int(np.flatnonzero(bad)[0])
        shown = f"{features[column]!r}" if column < len(features) else str(column)
        what = ("overflows the standardization (its mean or std is not a finite float64)" if bad_stats[column]
                else f"has values beyond +-{top:.3g}, where {np.dtype(dtype).name} overflows"
                + (" after standardization" if stats is not None else " in the network's products"))
        raise DataError(f"{name}: column {shown} {what}; rescale that column (e.g. to units near 1) or drop it")


def label_values(labels) -> np.ndarray:
    """Labels as given, with strings that all spell integers read as ints (so "10" and 10 are one label)."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "US":
        try:
            return np.asarray([int(v) for v in labels.tolist()], np.int64)
        except ValueError:
            return labels.astype(str)
    if labels.dtype.kind == "f":
        if not (np.all(np.isfinite(labels)) and np.all(labels == np.round(labels))):
            bad = int(np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)))[0])
            raise DataError(f"label at row {bad} is {labels[bad]!r}, not a class label; use ints or strings")
        return labels.astype(np.int64)
    if labels.dtype.kind in "iub":
        return labels.astype(np.int64)
    raise DataError(f"labels must be ints or strings; got dtype {labels.dtype}")


CONTINUOUS = 20  # distinct non-integer numbers (and over a tenth of the rows) that read as a measurement


def refuse_continuous(labels, where: str) -> None:
    """A label column of many distinct non-integer numbers is a measurement, not classes: a one-line DataError
    instead of one class per distinct value (a 196-class classifier of prices, silently)."""
    try:
        numbers = np.asarray([float(v) for v in np.asarray(labels).tolist()], np.float64)
    except (TypeError, ValueError):
        return  # names or mixed labels: classes
    distinct = np.unique(numbers[np.isfinite(numbers)])
    fractional = np.any(distinct != np.round(distinct))
    if fractional and len(distinct) > max(CONTINUOUS, len(numbers) // 10):
        shown = ", ".join(f"{v:g}" for v in distinct[:3])
        raise DataError(f"{where} holds {len(distinct)} distinct non-integer numbers ({shown}, ...): a continuous "
                        f"target, which a classification loss would turn into {len(distinct)} classes; to "
                        f"predict the values, train a regression with --set model.loss=mse (or huber); to "
                        f"classify, give class labels (ints or names) or point data.label_column elsewhere")


def encode_labels(labels) -> tuple[np.ndarray, tuple]:
    """(y int32 in 0..k-1, classes): ``classes[y[i]] == labels[i]``; classes sorted (numbers numerically)."""
    values = label_values(labels)
    classes, y = np.unique(values, return_inverse=True)
    return y.astype(np.int32).reshape(-1), tuple(classes.tolist())


def labels_to_classes(labels, classes: tuple, where: str, lines=None) -> np.ndarray:
    """The class index of each label under a saved mapping; a label the run never saw is a DataError naming
    ``where`` and the row, or its line in the file when ``lines`` (one per row) are given."""
    values = label_values(labels)
    index = {label: j for j, label in enumerate(classes)}
    y = np.empty(len(values), np.int32)
    for row, value in enumerate(values.tolist()):
        if value not in index:
            shown = ", ".join(map(repr, classes[:10])) + (", ..." if len(classes) > 10 else "")
            place = f"line {lines[row]}" if lines is not None else f"row {row}"
            raise DataError(f"{where} {place}: label {value!r} is not one of the run's classes ({shown}); "
                            f"evaluate only on labels the model was trained on")
        y[row] = index[value]
    return y
