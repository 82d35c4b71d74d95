"""Float targets of a regression file (mse or huber): a table's label column, or an .npz's y (n,) / (n, k)."""

from __future__ import annotations

import os

import numpy as np

from .preprocess import check_finite as _check_finite
from .table import read_table
from ..boundary.archive import read_npz
from ..errors import DataError


def read_targets(name: str, label_column) -> tuple[np.ndarray, np.ndarray, tuple]:
    """x (n, d) and float targets y (n, k) of a regression file: the label column, or an .npz's y (n,) / (n, k)."""
    if name.endswith(".npz"):
        fix = "save it with np.savez(path, x=x, y=y), x (n, d) floats and y (n,) or (n, k) float targets"
        if not os.path.isfile(name):
            raise DataError(f"no such file: {name!r}; check the path ({fix})")
        arrays = read_npz(name, DataError, fix)
        if "x" not in arrays or "y" not in arrays:
            raise DataError(f"{name} lacks array x or y (has: {', '.join(arrays) or 'none'}); {fix}")
        x, y = arrays["x"], arrays["y"]
        if x.ndim != 2 or y.ndim not in (1, 2) or x.shape[0] != y.shape[0] or y.size == 0:
            raise DataError(f"{name}: x of shape {x.shape} and y of shape {y.shape} do not fit; {fix}")
        where, features = f"y in {name}", ()
    else:
        x, y, features = read_table(name, label_column)
        where = f"{name} column {label_column or 'label'!r}"
    try:
        y = np.asarray(y, np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where} holds non-numeric values; a regression (model.loss mse or huber) needs numbers "
                        f"as targets: point data.label_column at a numeric column, or use a classification "
                        f"loss for class labels") from None
    y = y.reshape(len(y), -1)
    _check_finite(where, y)
    return np.asarray(x, np.float64), y, features
