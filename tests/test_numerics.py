"""Float32 stability: finite losses and gradients at logits of +-1e4, no sigmoid gradient rounded to zero."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp

F32 = jnp.float32


@pytest.mark.parametrize("loss", ["binary_cross_entropy", "softmax_cross_entropy", "mse"])
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_losses_stay_finite_in_float32_at_huge_logits(loss, scale):
    plugin = jaxbp.get_loss(loss)
    z = jnp.array([scale, -scale, 0.5 * scale], F32)[: 1 if loss == "binary_cross_entropy" else 3]
    for y in (jnp.zeros_like(z), jnp.ones_like(z) if loss == "binary_cross_entropy" else jnp.array([0, 1, 0], F32)):
        value, dz = plugin.value(z, y), plugin.backward(z, y)
        assert value.dtype == F32 and jnp.isfinite(value) and jnp.all(jnp.isfinite(dz))


def test_bce_value_is_exact_at_huge_logits():
    bce = jaxbp.get_loss("binary_cross_entropy")
    np.testing.assert_allclose(bce.value(jnp.array([-1e4], F32), jnp.array([1.0], F32)), 1e4, rtol=1e-6)  # -log sigma(-1e4)
    assert bce.value(jnp.array([1e4], F32), jnp.array([1.0], F32)) == 0.0


def test_network_float32_training_step_is_finite_at_huge_inputs():
    model = jaxbp.mlp([2, 8, 3], activation="tanh", loss="softmax_cross_entropy")
    params = jax.tree.map(lambda p: p.astype(F32), model.init(jax.random.key(0)))
    x = jnp.array([[1e4, -1e4], [-1e4, 1e4], [0.0, 1.0]], F32)
    loss, grads = model.value_and_grad(params, x, jnp.array([0, 1, 2]))
    assert loss.dtype == F32 and jnp.isfinite(loss)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("name,reference", [
    ("sigmoid", lambda z: np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))) ** 2),
    ("tanh", lambda z: 1 / np.cosh(z) ** 2),
])
def test_saturated_derivative_does_not_round_to_zero_in_float32(name, reference):
    act = jaxbp.get_activation(name)
    z = jnp.array([20.0, 30.0, 40.0, -40.0], F32)  # a rounds to +-1 in float32, yet da/dz ~ 1e-9..1e-35 is representable
    grad = act.backward(z, act.forward(z), jnp.ones_like(z))
    assert np.all(np.asarray(1 - act.forward(z) ** (2 if name == "tanh" else 1))[:3] == 0)  # the naive form is 0
    np.testing.assert_allclose(grad, reference(np.float64(z)), rtol=1e-5)


def test_bce_gradient_does_not_round_to_zero_in_float32():
    bce = jaxbp.get_loss("binary_cross_entropy")
    dz = bce.backward(jnp.array([20.0], F32), jnp.array([1.0], F32))  # a - y = sigma(20) - 1 = -2.06e-9
    np.testing.assert_allclose(dz, [-np.exp(-20.0) / (1 + np.exp(-20.0))], rtol=1e-5)


@pytest.mark.parametrize("name", jaxbp.plugin_names()["activation"])
def test_every_activation_is_finite_in_float32_at_large_inputs(name):
    act = jaxbp.get_activation(name)
    z = jnp.array([[-1e4, -50.0, 0.0, 50.0, 1e4]], F32)
    a = act.forward(z)
    dz = act.backward(z, a, jnp.ones_like(z))
    assert a.dtype == F32 and dz.dtype == F32
    assert jnp.all(jnp.isfinite(a)) and jnp.all(jnp.isfinite(dz))
