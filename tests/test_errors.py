"""Bad input gets a clear error naming the problem and the fix; the CLI never shows a raw traceback."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

import jaxbp
from jaxbp.cli import main


@pytest.fixture
def model():
    return jaxbp.mlp([2, 4, 3], activation="tanh", loss="softmax_cross_entropy")


@pytest.fixture
def params(model):
    return model.init(jax.random.key(0))


X = jnp.ones((5, 2))
Y = jnp.array([0, 1, 2, 0, 1])


@pytest.mark.parametrize("method", ["apply", "loss", "value_and_grad", "per_example_grads"])
def test_wrong_feature_count_names_expected_and_actual(model, params, method):
    args = (params, jnp.ones((5, 7))) + (() if method == "apply" else (Y,))
    with pytest.raises(jaxbp.ShapeError, match=r"\(n, 2\).*\(5, 7\)"):
        getattr(model, method)(*args)


def test_wrong_rank(model, params):
    with pytest.raises(jaxbp.ShapeError, match=r"shape \(2,\)"):
        model.apply(params, jnp.ones(2))


def test_mismatched_n(model, params):
    with pytest.raises(jaxbp.ShapeError, match="n=5.*shape \\(4,\\)"):
        model.value_and_grad(params, X, Y[:4])


def test_nan_and_inf_in_x(model, params):
    with pytest.raises(jaxbp.DataError, match="NaN/Inf.*index \\(1, 0\\)"):
        model.value_and_grad(params, X.at[1, 0].set(jnp.nan), Y)
    with pytest.raises(jaxbp.DataError, match="NaN/Inf"):
        model.loss(params, X.at[3, 1].set(jnp.inf), Y)


@pytest.mark.parametrize("bad", [3, -1])
def test_label_out_of_range(model, params, bad):
    with pytest.raises(jaxbp.DataError, match=f"label {bad} is out of range for 3 classes"):
        model.value_and_grad(params, X, Y.at[2].set(bad))


def test_bce_label_out_of_range():
    model = jaxbp.mlp([2, 1], loss="binary_cross_entropy")
    with pytest.raises(jaxbp.DataError, match="out of range for 2 classes"):
        model.loss(model.init(jax.random.key(0)), X, jnp.array([0, 1, 2, 0, 1]))


def test_one_hot_of_wrong_width(model, params):
    with pytest.raises(jaxbp.ShapeError, match=r"\(n, 3\).*\(5, 4\)"):
        model.loss(params, X, jax.nn.one_hot(Y, 4))


def test_mse_targets_must_match_outputs():
    model = jaxbp.mlp([2, 3], loss="mse")
    with pytest.raises(jaxbp.ShapeError, match=r"\(n, 3\)"):
        model.loss(model.init(jax.random.key(0)), X, jnp.ones((5, 2)))


def test_params_of_another_network(model):
    other = jaxbp.mlp([2, 3], loss="softmax_cross_entropy").init(jax.random.key(0))
    with pytest.raises(jaxbp.ShapeError, match="1 entries but the network has 2 layers"):
        model.apply(other, X)


@pytest.mark.parametrize("sizes,activation,match", [
    ([2], "tanh", "sizes must be"),
    ([2, 0, 3], "tanh", "sizes must be"),
    ([2, 4, 4, 3], ["tanh"], "one name per hidden layer"),
])
def test_malformed_network_spec(sizes, activation, match):
    with pytest.raises(jaxbp.ConfigError, match=match):
        jaxbp.mlp(sizes, activation=activation)


def test_errors_inside_jit_still_check_shapes(model, params):
    with pytest.raises(jaxbp.ShapeError):
        jax.jit(model.value_and_grad)(params, jnp.ones((5, 3)), Y)


def test_cli_reports_errors_without_traceback(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--kind", "nonsense"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_python_m_jaxbp_check_runs_and_passes():
    result = subprocess.run([sys.executable, "-m", "jaxbp", "check", "--kind", "activation"],  # the entry point, not the proofs
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout and "activation:tanh" in result.stdout and "Traceback" not in result.stderr


def test_cli_check_exits_nonzero_when_a_plugin_is_wrong(capsys, restore_registries):
    jaxbp.register_activation("tanh", forward=jnp.tanh, backward=lambda z, a, g: g * (1 - a), replace=True)
    assert main(["check", "--kind", "activation", "--failures-only"]) == 1
    out = capsys.readouterr().out
    assert "activation:tanh" in out and "FAIL" in out
