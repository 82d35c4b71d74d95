"""The checker can fail: each classic backprop bug, planted on purpose, is flagged in the leaf it breaks."""

import jax
import jax.numpy as jnp
import pytest

import jaxbp
from jaxbp import checking
from jaxbp.plugins.layers import Layer


def _model():
    return jaxbp.mlp([3, 4, 3], activation="sigmoid", loss="softmax_cross_entropy")


def _failed_leaves(report):
    assert not report.ok, f"the planted bug went unnoticed:\n{report}"
    return {row.leaf for row in report.failures}


def test_dropped_one_over_n():
    model = _model()

    def no_mean(params, x, y):  # sum over the batch instead of the mean: (A - Y) X^T without / n
        loss, grads = model.value_and_grad(params, x, y)
        return loss, jax.tree.map(lambda g: g * x.shape[0], grads)

    assert _failed_leaves(checking.check_model(model._replace(value_and_grad=no_mean), smooth=True)) >= {"[0]['w']", "[1]['b']"}


def test_missing_sigma_prime(restore_registries):
    jaxbp.register_activation("sigmoid", forward=jax.nn.sigmoid, backward=lambda z, a, g: g, replace=True)
    assert not jaxbp.check_plugin("activation", "sigmoid").ok
    failed = _failed_leaves(checking.check_model(_model(), smooth=True))
    assert "[0]['w']" in failed and "[1]['w']" not in failed  # the bug sits below the output layer


@pytest.mark.parametrize("loss", ["binary_cross_entropy", "softmax_cross_entropy", "mse"])
def test_y_minus_a_instead_of_a_minus_y(loss, restore_registries):
    good = jaxbp.get_loss(loss)
    jaxbp.register_loss(loss, value=good.value, backward=lambda z, y: -good.backward(z, y),
                        link=good.link, encode=good.encode, replace=True)
    assert not jaxbp.check_plugin("loss", loss).ok
    model = jaxbp.mlp([3, 4, 1 if loss == "binary_cross_entropy" else 3], activation="tanh", loss=loss)
    assert _failed_leaves(checking.check_model(model, smooth=True))


def test_softmax_backward_that_assumes_targets_sum_to_one(restore_registries):
    good = jaxbp.get_loss("softmax_cross_entropy")  # a - y is right only when sum(y) = 1
    jaxbp.register_loss("softmax_cross_entropy", value=good.value, backward=lambda z, y: jax.nn.softmax(z) - y,
                        link=good.link, encode=good.encode, replace=True)
    report = jaxbp.check_plugin("loss", "softmax_cross_entropy")
    assert {row.subject for row in report.failures} == {"loss:softmax_cross_entropy (half-weight y)"}


def _dense_with_transposed_x(features):
    good = jaxbp.dense(features, "tanh")

    def backward(params, cache, g):
        grads, dx = good.backward(params, cache, g)
        return {"w": grads["w"].T, "b": grads["b"]}, dx  # x (a - y)^T instead of (a - y) x^T

    return Layer(good.init, good.forward, backward)


def test_transposed_x_square_and_rectangular(restore_registries):
    jaxbp.register_layer("bad_dense", _dense_with_transposed_x, example={"features": 4})  # square 4x4: values wrong
    assert "[0]['w']" in _failed_leaves(jaxbp.check_plugin("layer", "bad_dense"))
    model = jaxbp.network(3, [_dense_with_transposed_x(5), jaxbp.dense(3)], "softmax_cross_entropy")
    assert "[0]['w']" in _failed_leaves(checking.check_model(model, smooth=True))  # 5x3 vs 3x5: shape wrong


def test_wrong_softmax_vjp(restore_registries):
    jaxbp.register_activation("softmax", forward=lambda z: jax.nn.softmax(z, axis=-1),
                              backward=lambda z, a, g: g * a * (1 - a), replace=True)  # diagonal of the Jacobian only
    assert not jaxbp.check_plugin("activation", "softmax").ok
    model = jaxbp.mlp([3, 4, 3], activation="softmax", loss="mse")
    assert "[0]['w']" in _failed_leaves(checking.check_model(model, smooth=True))


def test_wrong_layer_norm_input_gradient(restore_registries):
    good = jaxbp.layer_norm()

    def backward(params, cache, g):
        grads, _ = good.backward(params, cache, g)
        xhat, inv_std = cache
        return grads, g * params["scale"] * inv_std  # forgets that the mean and variance depend on x

    jaxbp.register_layer("bad_norm", lambda: Layer(good.init, good.forward, backward), example={})
    assert _failed_leaves(jaxbp.check_plugin("layer", "bad_norm")) == {"[1]"}


def test_a_correct_gradient_with_a_subtle_scale_error_is_caught():
    """An error of 1e-6 relative is far inside any eyeball test but outside the 1e-10 band against jax.grad."""
    model = _model()

    def slightly_off(params, x, y):
        loss, grads = model.value_and_grad(params, x, y)
        return loss, jax.tree.map(lambda g: g * (1 + 1e-6), grads)

    report = checking.check_model(model._replace(value_and_grad=slightly_off), smooth=True)
    assert all(row.vs_grad > checking.GRAD_TOL for row in report.failures) and not report.ok


def test_relative_error_reports_shape_mismatch_as_infinite():
    assert checking.relative_error(jnp.ones((2, 3)), jnp.ones((3, 2))) == float("inf")
    assert checking.relative_error(jnp.zeros(3), jnp.zeros(3)) == 0.0
