"""The lecture notes' worked examples, as tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp


def test_single_neuron_a_07_y_1_gives_minus_03():
    bce = jaxbp.get_loss("binary_cross_entropy")
    z = jnp.log(0.7 / 0.3)  # sigma(z) = 0.7
    np.testing.assert_allclose(jax.nn.sigmoid(z), 0.7, rtol=1e-14)
    np.testing.assert_allclose(bce.backward(jnp.array([z]), jnp.array([1.0])), [-0.3], rtol=1e-13)


def test_softmax_worked_example_and_delta_w_shape():
    sce = jaxbp.get_loss("softmax_cross_entropy")
    a = jnp.array([0.7, 0.2, 0.1])
    z = jnp.log(a)  # softmax(log a) = a
    y = jnp.array([1.0, 0.0, 0.0])
    dz = sce.backward(z, y)
    np.testing.assert_allclose(dz, [-0.3, 0.2, 0.1], rtol=1e-13, atol=1e-15)
    model = jaxbp.mlp([2, 3], loss="softmax_cross_entropy")  # d = 2, k = 3
    params = [{"w": jnp.zeros((3, 2)), "b": z}]
    x = jnp.array([[1.5, -2.0]])
    delta_w = model.value_and_grad(params, x, jnp.array([0]))[1][0]["w"]
    assert delta_w.shape == (3, 2)  # k x d
    np.testing.assert_allclose(delta_w, jnp.outer(dz, x[0]), rtol=1e-13)  # (a - y) x^T


@pytest.mark.parametrize("k", [2, 3, 10])
def test_zero_weights_give_ln_k(k):
    model = jaxbp.mlp([4, k], loss="softmax_cross_entropy")
    params = jax.tree.map(jnp.zeros_like, model.init(jax.random.key(0)))
    x = jax.random.normal(jax.random.key(1), (16, 4))
    y = jax.random.randint(jax.random.key(2), (16,), 0, k)
    np.testing.assert_allclose(model.loss(params, x, y), np.log(k), rtol=1e-14)


def test_zero_weights_give_ln_2_for_bce():
    model = jaxbp.mlp([4, 1], loss="binary_cross_entropy")
    params = jax.tree.map(jnp.zeros_like, model.init(jax.random.key(0)))
    x = jax.random.normal(jax.random.key(1), (16, 4))
    y = jax.random.randint(jax.random.key(2), (16,), 0, 2)
    np.testing.assert_allclose(model.loss(params, x, y), np.log(2), rtol=1e-14)


def test_many_points_update_is_mean_of_single_point_updates():
    """w' = w - alpha (1/n) sum_i (a_i - y_i) x_i^T, the same as the matrix form (A - Y) X^T / n."""
    model = jaxbp.mlp([3, 1], loss="binary_cross_entropy")
    params = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (10, 3))
    y = jax.random.randint(jax.random.key(2), (10,), 0, 2)
    a = jax.nn.sigmoid(x @ params[0]["w"][0] + params[0]["b"][0])
    summed = sum((a[i] - y[i]) * x[i] for i in range(10)) / 10
    matrix = ((a - y) @ x) / 10
    _, grads = model.value_and_grad(params, x, y)
    np.testing.assert_allclose(grads[0]["w"][0], summed, rtol=1e-13)
    np.testing.assert_allclose(grads[0]["w"][0], matrix, rtol=1e-13)
    np.testing.assert_allclose(grads[0]["b"][0], jnp.mean(a - y), rtol=1e-13)
