"""Networks of depth 1..6 with mixed activations and each loss, proven against jax.grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp import checking

SUITE = checking.network_suite()


@pytest.mark.parametrize("name,model,smooth", SUITE, ids=[name for name, _, _ in SUITE])
def test_network_matches_jax_grad_finite_differences_and_per_example(name, model, smooth):
    report = jaxbp.check_model(model, smooth=smooth, name=name)
    assert report.ok, f"\n{report}"
    assert {row.leaf for row in report.rows} >= {"[0]['w']", "[0]['b']"}


def test_suite_covers_depths_one_to_six_and_every_loss():
    depths = {len(model.init(jax.random.key(0))) for _, model, _ in SUITE}
    assert depths == set(range(1, 7))
    assert {model.loss_name for _, model, _ in SUITE} == set(jaxbp.plugin_names()["loss"])


def _data(n=32, d=2, k=3, seed=1):
    kx, ky = jax.random.split(jax.random.key(seed))
    return jax.random.normal(kx, (n, d)), jax.random.randint(ky, (n,), 0, k)


def test_issue_example_runs_as_written():
    x, y = _data()
    model = jaxbp.mlp([2, 16, 16, 3], activation="tanh", loss="softmax_cross_entropy")
    params = model.init(jax.random.key(0))
    assert [set(p) for p in params] == [{"w", "b"}] * 3
    assert [p["w"].shape for p in params] == [(16, 2), (16, 16), (3, 16)]
    assert model.apply(params, x).shape == (32, 3)
    loss, grads = model.value_and_grad(params, x, y)
    np.testing.assert_allclose(loss, model.loss(params, x, y), rtol=1e-14)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    per_example = model.per_example_grads(params, x, y)
    assert jax.tree.map(jnp.shape, per_example) == jax.tree.map(lambda p: (32,) + p.shape, params)


@pytest.mark.parametrize("loss,k", [("softmax_cross_entropy", 4), ("binary_cross_entropy", 1), ("mse", 2)])
def test_matrix_form_equals_mean_of_per_example_rule(loss, k):
    x, y = _data(n=50, d=5, k=max(k, 2))
    if loss == "mse":
        y = jax.random.normal(jax.random.key(3), (50, k))
    model = jaxbp.mlp([5, 7, 6, k], activation=["sigmoid", "relu"], loss=loss)
    params = model.init(jax.random.key(2))
    _, grads = model.value_and_grad(params, x, y)
    mean_per_example = jax.tree.map(lambda g: g.mean(axis=0), model.per_example_grads(params, x, y))
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(mean_per_example)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_single_point_rule_is_outer_product_of_a_minus_y_and_x():
    """One sigmoid neuron, one point: dJ/dw = (a - y) x^T, dJ/db = a - y (the notes' boxed result)."""
    model = jaxbp.mlp([3, 1], loss="binary_cross_entropy")
    params = [{"w": jnp.array([[0.5, -1.0, 2.0]]), "b": jnp.array([0.1])}]
    x, y = jnp.array([[1.0, 2.0, 3.0]]), jnp.array([1])
    a = jax.nn.sigmoid(params[0]["w"] @ x[0] + params[0]["b"])
    _, grads = model.value_and_grad(params, x, y)
    np.testing.assert_allclose(grads[0]["w"], jnp.outer(a - 1, x[0]), rtol=1e-14)
    np.testing.assert_allclose(grads[0]["b"], a - 1, rtol=1e-14)


def test_batched_step_does_not_build_per_example_weight_gradients(optimized):
    """Compiled temporary memory of the matrix form stays close to jax.grad's, far below the vmapped form's."""
    model = jaxbp.mlp([64, 128, 128, 10], activation="relu")
    params = model.init(jax.random.key(0))
    x, y = _data(n=512, d=64, k=10)

    def temp_bytes(f):
        return jax.jit(f).lower(params, x, y).compile().memory_analysis().temp_size_in_bytes

    hand = temp_bytes(model.value_and_grad)
    reference = temp_bytes(jax.value_and_grad(model.loss))
    per_example_weight_grads = x.shape[0] * sum(p["w"].size * p["w"].dtype.itemsize for p in params)
    assert hand <= 1.25 * reference + 64 * 1024, (hand, reference)
    assert hand < 0.1 * per_example_weight_grads, (hand, per_example_weight_grads)


def test_init_suits_activation_and_comes_from_the_key():
    wide = 2000
    relu = jaxbp.mlp([wide, 500, 2], activation="relu").init(jax.random.key(0))
    tanh = jaxbp.mlp([wide, 500, 2], activation="tanh").init(jax.random.key(0))
    np.testing.assert_allclose(jnp.std(relu[0]["w"]), np.sqrt(2 / wide), rtol=0.02)  # He
    np.testing.assert_allclose(jnp.std(tanh[0]["w"]), np.sqrt(2 / (wide + 500)), rtol=0.02)  # Glorot
    assert not jnp.any(relu[0]["b"])
    model = jaxbp.mlp([2, 4, 3])
    same = jax.tree.map(jnp.array_equal, model.init(jax.random.key(1)), model.init(jax.random.key(1)))
    assert all(jax.tree.leaves(same))
    assert not jnp.array_equal(model.init(jax.random.key(1))[0]["w"], model.init(jax.random.key(2))[0]["w"])


def test_network_of_registered_layers_with_layer_norm():
    layers = [jaxbp.layer("dense", features=8, activation="gelu"), jaxbp.layer("layer_norm"), jaxbp.dense(3)]
    model = jaxbp.network(4, layers, "softmax_cross_entropy")
    assert model.d_out == 3
    assert jaxbp.check_model(model, smooth=True).ok


def test_value_and_grad_is_jittable_and_vmappable():
    x, y = _data(n=16)
    model = jaxbp.mlp([2, 8, 3], activation="elu")
    keys = jax.random.split(jax.random.key(0), 4)
    stacked = jax.vmap(model.init)(keys)
    losses, grads = jax.jit(jax.vmap(model.value_and_grad, in_axes=(0, None, None)))(stacked, x, y)
    assert losses.shape == (4,) and grads[0]["w"].shape == (4, 8, 2)
    one_loss, one_grads = model.value_and_grad(jax.tree.map(lambda p: p[2], stacked), x, y)
    np.testing.assert_allclose(losses[2], one_loss, rtol=1e-13)
    np.testing.assert_allclose(grads[1]["w"][2], one_grads[1]["w"], rtol=1e-12)
