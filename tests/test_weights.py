"""Weights from numpy/CS231n (d_in, d_out) and PyTorch (d_out, d_in) become jaxbp's (d_out, d_in) params."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp


def _cs231n_net(seed=0, d=4, h=5, c=3):
    rng = np.random.default_rng(seed)
    return {"W1": rng.standard_normal((d, h)), "b1": rng.standard_normal(h),
            "W2": rng.standard_normal((h, c)), "b2": rng.standard_normal(c)}


def test_cs231n_two_layer_net_scores_and_gradients_match_after_import():
    net, x, y = _cs231n_net(), np.random.default_rng(1).standard_normal((6, 4)), np.array([0, 2, 1, 1, 0, 2])
    model = jaxbp.mlp([4, 5, 3], "relu", "softmax_cross_entropy")
    params = jaxbp.dense_params(net, layout="in_out", model=model)
    scores = np.maximum(0, x @ net["W1"] + net["b1"]) @ net["W2"] + net["b2"]  # CS231n's forward
    np.testing.assert_allclose(model.apply(params, jnp.asarray(x)), scores, rtol=1e-12)
    _, grads = model.value_and_grad(params, jnp.asarray(x), jnp.asarray(y))
    hidden = np.maximum(0, x @ net["W1"] + net["b1"])  # CS231n's backward, in numpy
    dscores = np.exp(scores - scores.max(1, keepdims=True))
    dscores /= dscores.sum(1, keepdims=True)
    dscores[np.arange(len(y)), y] -= 1
    dscores /= len(y)
    dhidden = (dscores @ net["W2"].T) * (hidden > 0)
    np.testing.assert_allclose(grads[0]["w"].T, x.T @ dhidden, rtol=1e-10)  # back to (d_in, d_out)
    np.testing.assert_allclose(grads[1]["w"].T, hidden.T @ dscores, rtol=1e-10)
    np.testing.assert_allclose(grads[1]["b"], dscores.sum(0), rtol=1e-10)


def test_pytorch_state_dict_is_already_out_in():
    """A state_dict of Sequential(Linear(4, 5), Tanh(), Linear(5, 3)): its keys and (out, in) weights, y = x W^T + b."""
    rng = np.random.default_rng(2)
    state = {"0.weight": rng.standard_normal((5, 4)), "0.bias": rng.standard_normal(5),
             "2.weight": rng.standard_normal((3, 5)), "2.bias": rng.standard_normal(3)}
    model = jaxbp.mlp([4, 5, 3], "tanh", "softmax_cross_entropy")
    params = jaxbp.dense_params(state, layout="out_in", model=model)
    x = rng.standard_normal((6, 4))
    expected = np.tanh(x @ state["0.weight"].T + state["0.bias"]) @ state["2.weight"].T + state["2.bias"]
    np.testing.assert_allclose(model.apply(params, jnp.asarray(x)), expected, rtol=1e-12)


def test_the_wrong_layout_is_a_one_line_error_naming_the_other():
    model = jaxbp.mlp([4, 5, 3], "relu")
    with pytest.raises(jaxbp.ShapeError, match="try layout='in_out'"):
        jaxbp.dense_params(_cs231n_net(), layout="out_in", model=model)
    square = {"W1": np.eye(4), "b1": np.zeros(4), "W2": np.ones((4, 3)), "b2": np.zeros(3)}
    with pytest.raises(jaxbp.ShapeError, match="layer 1"):  # a square first layer reads either way; the next one not
        jaxbp.dense_params(square, layout="out_in", model=jaxbp.mlp([4, 4, 3]))
    with pytest.raises(jaxbp.ConfigError, match="in_out"):
        jaxbp.dense_params(_cs231n_net(), layout="transposed")
    with pytest.raises(jaxbp.ShapeError, match="layer by layer"):
        jaxbp.dense_params({"W1": np.ones((4, 5))}, layout="in_out")
    with pytest.raises(jaxbp.ShapeError, match="layer 0"):  # the model has 3 inputs: the import names the layer
        jaxbp.dense_params(_cs231n_net(), layout="in_out", model=jaxbp.mlp([3, 5, 3]))
