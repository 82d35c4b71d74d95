"""model.l2 / model.l1 in the objective: the hand-written l2 W + l1 sign(W) proven against jax.grad, in the
batched and per-example gradients and in the private step (added after clipping), each with a planted bug."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbp
from jaxbp import checking
from jaxbp.regularize import penalty_value

BASE = jaxbp.mlp([3, 5, 4, 3], "tanh", "softmax_cross_entropy")


@pytest.mark.parametrize("l2,l1,biases", [(0.3, 0.0, False), (0.1, 0.05, True)])
def test_penalized_gradients_equal_jax_grad_finite_differences_and_the_mean_of_per_example(l2, l1, biases):
    model = jaxbp.regularized(BASE, l2=l2, l1=l1, biases=biases)
    report = jaxbp.check_model(model, smooth=not l1)  # |W| has a kink at 0: the 1e-4 band with l1
    assert report.ok, f"\n{report}"
    params = jax.tree.map(lambda p: p + 0.1, BASE.init(jax.random.key(0)))  # biases off 0, where sign(0) = 0
    x, y = jnp.ones((4, 3)), jnp.array([0, 1, 2, 1])
    (plain, g0), (value, g1) = BASE.value_and_grad(params, x, y), model.value_and_grad(params, x, y)
    penalty = float(penalty_value(params, l2, l1, biases))
    assert penalty > 0 and float(value - plain) == pytest.approx(penalty, rel=1e-12)
    bias_moved = not np.allclose(g1[0]["b"], g0[0]["b"])
    assert bias_moved == biases and not np.allclose(g1[0]["w"], g0[0]["w"])


def test_a_penalty_gradient_missing_its_factor_is_caught():
    model = jaxbp.regularized(BASE, l2=0.3)

    def half(params, x, y):  # the planted bug: d(l2/2 W^2)/dW written as l2/2 W
        value, grads = BASE.value_and_grad(params, x, y)
        grads = [{"w": g["w"] + 0.15 * p["w"], "b": g["b"]} for g, p in zip(grads, params)]
        return value + penalty_value(params, 0.3), grads

    failed = {row.leaf for row in checking.check_model(model._replace(value_and_grad=half), smooth=True).failures}
    assert {"[0]['w']", "[1]['w']", "[2]['w']"} <= failed


def test_the_private_step_adds_the_penalty_after_clipping():
    model, n = jaxbp.regularized(BASE, l2=0.2), 6
    params = BASE.init(jax.random.key(1))
    x, y = jax.random.normal(jax.random.key(2), (n, 3)), jnp.arange(n) % 3
    clip = 0.05  # every example is clipped: the penalty is not
    dp = jaxbp.DPConfig(clip_norm=clip, noise_multiplier=0.0, expected_batch_size=n)
    optimizer = jaxbp.private_optimizer(optax.sgd(1.0), dp)
    new, _, loss = jaxbp.make_train_step(model, optimizer, privacy=dp)(params, optimizer.init(params), x, y)
    per = BASE.per_example_grads(params, x, y)
    norms = jnp.sqrt(sum(jnp.sum(leaf.reshape(n, -1) ** 2, axis=1) for leaf in jax.tree.leaves(per)))
    assert float(jnp.min(norms)) > clip
    clipped = jax.tree.map(lambda g: jnp.mean(g * (clip / norms).reshape((n,) + (1,) * (g.ndim - 1)), axis=0), per)
    expected = jax.tree.map(lambda p, g: p - g, params, jaxbp.regularize.add_to(
        clipped, params, lambda p: jaxbp.regularize.penalty_grad(p, 0.2)))
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert float(loss) == pytest.approx(float(model.loss(params, x, y)), rel=1e-12)


def test_a_run_reports_the_regularized_loss_and_a_loaded_run_computes_it(tmp_path):
    config = {"data": {"name": "moons", "n": 64}, "model": {"hidden": [4], "l2": 0.5},
              "train": {"epochs": 1, "batch_size": 16, "plots": False}}
    result = jaxbp.train(config, tmp_path / "run", progress=False)
    loaded = jaxbp.load_run(tmp_path / "run")
    data = jaxbp.datasets.load("moons", key=jax.random.key(0), n=64, standardize=False)
    scored = loaded.evaluate(data.x_test, np.asarray(data.y_test))
    assert scored.loss == pytest.approx(result.summary["test_loss"], rel=1e-5)
    assert scored.loss > float(loaded.model.loss(loaded.params, loaded.preprocess(data.x_test), data.y_test)) - 1e-6
    assert penalty_value(loaded.params, 0.5) > 0.01
