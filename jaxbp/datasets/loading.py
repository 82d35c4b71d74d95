"""Datasets: synthetic 2-D sets drawn from JAX keys, small real sets shipped
offline (real.py), and the user's own ``.npz``, ``.csv`` and ``.tsv`` files, all shuffled, split and standardized
the same way. A Dataset keeps what the data step did (``standardize``, ``classes``, ``features``) so a
saved run can repeat it on new inputs.

>>> data = jaxbp.datasets.load("spiral", key=jax.random.key(0))
>>> data.x_train.shape, data.num_classes
((1200, 2), 3)
"""

from __future__ import annotations

import functools
import math
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import real as _real
from . import synthetic as _synthetic
from .preprocess import Standardize, encode_labels, refuse_continuous
from .preprocess import check_finite as _check_finite
from .preprocess import check_range, held_out
from .table import is_table, read_table
from .targets import read_targets as _read_targets
from ..boundary.archive import read_npz
from ..errors import ConfigError, DataError, UnknownPluginError
from .checks import check_memory



class Dataset(NamedTuple):
    """Train/test split; x float (n, d), y int32 (n,) in 0..k-1 (a regression: y float (n, k) targets)."""

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array
    num_classes: int
    name: str
    standardize: Standardize | None = None  # the train-split statistics applied to x, or None
    classes: tuple = ()  # the user's label of each class 0..k-1
    features: tuple = ()  # a table's feature column names, in the order of x's columns
    target_standardize: Standardize | None = None  # a regression's train-split target statistics applied to y


def names() -> tuple[str, ...]:
    """The built-in dataset names (any path ending in ``.npz``, ``.csv`` or ``.tsv`` is accepted too)."""
    return (*_synthetic.GENERATORS, *_real.CLASSES)


def load(
    name: str,
    *,
    key: jax.Array,
    n: int | None = None,
    test_fraction: float = 0.2,
    noise: float | None = None,
    standardize: bool = True,
    label_column: str | None = None,
    targets: bool = False,
    standardize_targets: bool = True,
    validation_fraction: float = 0.0,
    **options,
) -> Dataset:
    """Load ``name``: a built-in from ``names()``, a ``.npz`` path with arrays ``x``, ``y``, or a ``.csv`` /
    ``.tsv`` path with a header row, numeric features and the label column ``label_column`` (default "label").
    Labels of a user file (any ints or strings) become classes 0..k-1 in sorted order; ``classes`` keeps them.

    ``key`` is split into a generation key and a shuffle key; the permuted examples are cut into
    ``n_test = round(n * test_fraction)`` test and the rest train examples. With ``standardize``
    every column becomes ``z = (x - mean_train) / std_train`` using train statistics only (a
    train std below 1e-8, i.e. a constant column, is replaced by 1). ``n`` defaults to the whole
    real set or to the synthetic set's default size; ``noise`` applies to synthetic sets only.
    Same key, same arguments: bit-identical arrays. The train split's last ``validation_fraction`` of rows (the
    validation split a run holds out) are left out of the statistics: they come from the rows trained on alone.

    With ``targets`` (a regression: mse or huber) a user file's label column, or an ``.npz``'s y of shape (n,)
    or (n, k), is read as float targets: y is float (n, k) and ``num_classes`` is k, the output width; with
    ``standardize_targets`` each target column becomes (y - mean) / std of the train split (``target_standardize``).
    """
    name = os.fspath(name)
    features, classes = (), None
    _check_fraction(test_fraction)
    try:
        gen_key, shuffle_key = jax.random.split(key)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"key must be a JAX random key such as jax.random.key(0); got {key!r} ({err})") from None
    if name in _synthetic.GENERATORS:
        x, y, k = _load_synthetic(name, gen_key, n, noise, options)
    else:
        if noise is not None:
            synthetic = ", ".join(_synthetic.GENERATORS)
            raise ConfigError(f"noise applies only to the synthetic sets {synthetic}; drop noise= for {name!r}")
        _check_options(name, options, {})
        if targets and (name.endswith(".npz") or is_table(name)):
            x, y, features = _read_targets(name, label_column)
            _check_finite(name, x)
            data = _split(name, x, y, y.shape[1], (), features, n, test_fraction, standardize, shuffle_key, validation_fraction)
            if not standardize_targets:
                return data
            fit = data.y_train.shape[0] - held_out(data.y_train.shape[0], validation_fraction)
            stats = Standardize.fit(np.asarray(data.y_train[:fit], np.float64))  # trained-on targets only
            as_float = functools.partial(jnp.asarray, dtype=float)
            return data._replace(y_train=as_float(stats.apply(data.y_train)), y_test=as_float(stats.apply(data.y_test)),
                                 target_standardize=stats)
        if name.endswith(".npz") or is_table(name):
            if name.endswith(".npz"):
                x, labels = _read_npz(name)
            else:
                x, labels, features = read_table(name, label_column)
                refuse_continuous(labels, f"{name} column {label_column or 'label'!r}")
            y, classes = encode_labels(labels)
            k = len(classes)
        elif name in _real.CLASSES:
            x, y = _real.LOADERS[name]()
            k = _real.CLASSES[name]
        else:
            raise UnknownPluginError(
                f"unknown dataset {name!r}; known datasets: {', '.join(names())}, "
                f"or a path ending in .npz holding arrays x (n, d) and y (n,), or in .csv/.tsv with a header row"
            )
    x, y = np.asarray(x, np.float64), np.asarray(y, np.int32)
    classes = tuple(range(int(k))) if classes is None else classes
    if k < 2:
        raise DataError(f"{name} holds only one class ({classes[0]!r}); a classifier needs at least two labels")
    _check_finite(name, x)
    return _split(name, x, y, k, classes, features, n, test_fraction, standardize, shuffle_key,
                  validation_fraction, k if name in _synthetic.GENERATORS else 1)


def _split(name, x, y, k, classes, features, n, test_fraction, standardize, shuffle_key, validation_fraction,
           per_class=1) -> Dataset:
    """Shuffle, cut into train and test, standardize x with the statistics of the train rows trained on."""
    n = x.shape[0] if n is None else n
    _check_n(name, n, per_class, available=x.shape[0])
    order = _synthetic.permutation(shuffle_key, x.shape[0])[:n]
    x, y = x[order], y[order]
    n_test = round(n * test_fraction)
    if n_test < 1 or n - n_test < 2:
        raise ConfigError(
            f"n={n} with test_fraction={test_fraction} leaves {n - n_test} train and {n_test} test examples; "
            f"need >= 2 train and >= 1 test: raise n or change test_fraction"
        )
    n_train = n - n_test
    x_train, x_test = x[:n_train], x[n_train:]
    fit = n_train - held_out(n_train, validation_fraction)  # not the validation rows at the split's end
    stats = Standardize.fit(x_train[:fit]) if standardize else None  # trained-on statistics only
    if stats is not None:
        x_train, x_test = stats.apply(x_train), stats.apply(x_test)
    as_float = functools.partial(jnp.asarray, dtype=float)  # float32, or float64 under x64
    for part in (x_train, x_test):
        check_range(name, part, jnp.zeros((), float).dtype, features, stats)
    y_train, y_test = jnp.asarray(y[:n_train]), jnp.asarray(y[n_train:])
    if y.dtype.kind == "f":
        y_train, y_test = as_float(y_train), as_float(y_test)
    return Dataset(as_float(x_train), y_train, as_float(x_test), y_test, int(k), name, stats, classes, features)


# --- checks -------------------------------------------------------------------------------


def _check_fraction(test_fraction) -> None:
    ok = isinstance(test_fraction, (int, float)) and not isinstance(test_fraction, bool)
    if not ok or not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be a number strictly between 0 and 1, e.g. 0.2; got {test_fraction!r}")


def _check_n(name: str, n, k: int, available: int | None = None) -> None:
    """n must be an int, at most ``available``, at least 3 and at least the k classes to draw."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise ConfigError(f"n must be an integer number of examples; got {n!r}")
    if available is not None and n > available:
        raise ConfigError(f"n={n} but {name!r} has only {available} examples; pass n <= {available} or leave n=None")
    if n < max(k, 3):
        raise ConfigError(f"n={n} is too small for {name!r}: use n >= {max(k, 3)} (2 train + 1 test, one per class)")


def _check_options(name: str, options: dict, accepted: dict) -> None:
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        allowed = ", ".join(accepted) if accepted else "none"
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; accepted options: {allowed} "
            f"(plus n, test_fraction, noise, standardize)"
        )


# --- synthetic ----------------------------------------------------------------------------


def _load_synthetic(name: str, key: jax.Array, n, noise, options: dict):
    generate, default_n, default_noise, defaults = _synthetic.GENERATORS[name]
    _check_options(name, options, defaults)
    options = {**defaults, **options}
    if "classes" in options:
        c = options["classes"]
        if not isinstance(c, (int, np.integer)) or isinstance(c, bool) or c < 2:
            raise ConfigError(f"classes must be an integer >= 2 for {name!r}; got {c!r}")
    if "factor" in options:
        f = options["factor"]
        if not isinstance(f, (int, float)) or isinstance(f, bool) or not 0.0 < f < 1.0:
            raise ConfigError(f"factor (inner / outer radius) must be strictly between 0 and 1; got {f!r}")
    noise = default_noise if noise is None else noise
    if not isinstance(noise, (int, float)) or isinstance(noise, bool) or not math.isfinite(noise) or noise < 0:
        raise ConfigError(f"noise must be a finite number >= 0 (the Gaussian std); got {noise!r}")
    n = default_n if n is None else n
    k = int(options.get("classes", 2))
    _check_n(name, n, k)
    check_memory(name, int(n), 2)
    x, y = generate(key, int(n), float(noise), **options)
    return x, y, k


# --- user files ---------------------------------------------------------------------------


def _read_npz(path: str) -> tuple[np.ndarray, np.ndarray]:
    """x (n, d) real numbers and y (n,) labels: ints (or whole floats) or strings."""
    fix = "save it with np.savez(path, x=x, y=y), x of shape (n, d) floats and y of shape (n,) int or string labels"
    if not os.path.isfile(path):
        raise DataError(f"no such file: {path!r}; check the path ({fix})")
    arrays = read_npz(path, DataError, fix)
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        raise DataError(f"{path} lacks array(s) {', '.join(missing)} (has: {', '.join(arrays) or 'none'}); {fix}")
    x, y = arrays["x"], arrays["y"]
    if x.ndim != 2:
        raise DataError(f"x in {path} must have rank 2 (n, d); got shape {x.shape} (reshape 1-D x to (n, 1)); {fix}")
    if y.ndim != 1:
        raise DataError(f"y in {path} must have rank 1 (n,); got shape {y.shape}; {fix}")
    if x.shape[0] != y.shape[0]:
        raise DataError(f"x in {path} has {x.shape[0]} rows but y has {y.shape[0]} labels; give one label per row")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == bool):
        raise DataError(f"x in {path} must hold real numbers; got dtype {x.dtype}; {fix}")
    if not np.issubdtype(y.dtype, np.integer) and y.dtype.kind not in "US":
        whole = np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y))
        if not whole:
            raise DataError(f"y in {path} must hold integer class labels; got non-integer {y.dtype} values; {fix}")
    if y.size == 0:
        raise DataError(f"{path} holds no examples; {fix}")
    return x, y

