"""model.init and model.bias_init: each family's variance and each draw's shape, the default unchanged."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp.plugins.initializers import weight_init

FAN_IN, FAN_OUT = 400, 300  # 120,000 draws: the sample std is within 0.5% of the true one


@pytest.mark.parametrize("spec,var", [
    ("he", 2 / FAN_IN), ("he_uniform", 2 / FAN_IN), ("glorot_normal", 2 / (FAN_IN + FAN_OUT)),
    ("glorot_uniform", 2 / (FAN_IN + FAN_OUT)), ("lecun_normal", 1 / FAN_IN), ("lecun_uniform", 1 / FAN_IN),
    ("normal(0.01)", 1e-4), ("uniform(0.05)", 0.05 ** 2 / 3)])
def test_each_initializer_has_its_variance_and_its_shape(spec, var):
    w = np.asarray(weight_init(spec, "he")(jax.random.key(0), (FAN_OUT, FAN_IN), jnp.float64))
    assert w.shape == (FAN_OUT, FAN_IN) and abs(w.mean()) < 0.01 * math.sqrt(var)
    assert w.std() == pytest.approx(math.sqrt(var), rel=0.005)
    if "uniform" in spec:  # bounded by a = sqrt(3 Var), and flat: a quarter of the draws in each quarter of [-a, a]
        a = math.sqrt(3 * var)
        assert np.abs(w).max() <= a and np.mean(np.abs(w) < a / 2) == pytest.approx(0.5, abs=0.01)
    else:
        assert np.abs(w).max() > 3 * math.sqrt(var)  # normal tails (not truncated)


def test_a_glorot_drawn_with_fan_in_only_is_caught(monkeypatch):
    from jaxbp.plugins import initializers

    monkeypatch.setitem(initializers.FAMILIES, "glorot", lambda fan_in, fan_out: 1.0 / fan_in)  # the planted bug
    with pytest.raises(AssertionError):
        test_each_initializer_has_its_variance_and_its_shape("glorot_normal", 2 / (FAN_IN + FAN_OUT))


def test_the_default_draws_exactly_what_jaxbp_always_drew():
    params = jaxbp.mlp([3, 8, 2], "relu").init(jax.random.key(4))
    k0, k1 = jax.random.split(jax.random.key(4), 2)
    np.testing.assert_array_equal(params[0]["w"], math.sqrt(2 / 3) * jax.random.normal(k0, (8, 3)))  # He (relu)
    np.testing.assert_array_equal(params[1]["w"], math.sqrt(2 / 10) * jax.random.normal(k1, (2, 8)))  # Glorot
    assert not np.any(params[0]["b"]) and not np.any(params[1]["b"])


def test_mlp_and_the_config_take_init_and_bias_init(tmp_path):
    model = jaxbp.mlp([3, 8, 2], "tanh", init="uniform(0.1)", bias_init=0.5)
    params = model.init(jax.random.key(0))
    assert all(float(jnp.abs(p["w"]).max()) <= 0.1 for p in params) and all(np.all(p["b"] == 0.5) for p in params)
    noisy = jaxbp.mlp([3, 8, 2], bias_init="normal(0.2)").init(jax.random.key(0))
    assert np.std(noisy[0]["b"]) > 0.01
    for bad, message in (("xavier", "unknown model.init 'xavier'"), ("normal(-1)", "scale must be")):
        with pytest.raises(jaxbp.ConfigError, match=message):
            jaxbp.mlp([3, 2], init=bad)
    with pytest.raises(jaxbp.ConfigError, match="bias_init"):
        jaxbp.mlp([3, 2], bias_init="zeros")
    config = jaxbp.load_config(None, ["model.init=lecun_uniform", "model.bias_init=0.1"])
    assert (config.model.init, config.model.bias_init) == ("lecun_uniform", 0.1)


def test_init_beside_model_layers_is_refused_naming_the_dense_tables():
    with pytest.raises(jaxbp.ConfigError, match="give each dense table its own"):
        jaxbp.train({"data": {"name": "moons", "n": 32}, "model": {"init": "lecun", "layers": [
            {"kind": "dense", "features": 4, "activation": "relu"}]}, "train": {"epochs": 1}}, progress=False)
    layer = jaxbp.dense(4, "relu", init="uniform(0.1)", bias_init=0.5)  # what a table's options reach
    _, params = layer.init(jax.random.key(0), 3)
    assert float(jnp.abs(params["w"]).max()) <= 0.1 and np.all(params["b"] == 0.5)
