"""The hinge losses against CS231n's naive SVM loss and its gradient, and the binary hinge by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbp
from jaxbp import checking
from jaxbp.checking.compare import FD_ROUNDING, FD_STEP_KINK, _finite_differences


def _svm_loss_naive(scores, y):
    """CS231n assignment 1's svm_loss_naive, on scores (N, C) rather than W: mean loss and dL/dscores."""
    loss, dscores = 0.0, np.zeros_like(scores)
    for i in range(scores.shape[0]):
        for j in range(scores.shape[1]):
            margin = scores[i, j] - scores[i, y[i]] + 1
            if j != y[i] and margin > 0:
                loss += margin
                dscores[i, j] += 1
                dscores[i, y[i]] -= 1
    return loss / len(y), dscores / len(y)


def test_multiclass_hinge_is_cs231n_svm_loss():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 4)), rng.integers(0, 3, 7)
    model = jaxbp.mlp([4, 3], loss="multiclass_hinge")  # one dense layer: scores = x W^T + b
    params = jax.tree.map(lambda p: p + rng.standard_normal(p.shape), model.init(jax.random.key(0)))
    loss, grads = model.value_and_grad(params, jnp.asarray(x), jnp.asarray(y))
    reference, dscores = _svm_loss_naive(np.asarray(model.apply(params, jnp.asarray(x))), y)
    assert abs(float(loss) - reference) < 1e-12 and dscores.any()
    np.testing.assert_allclose(grads[0]["w"], dscores.T @ x, atol=1e-12)  # dW = dscores^T X
    np.testing.assert_allclose(grads[0]["b"], dscores.sum(0), atol=1e-12)


def test_binary_hinge_uses_0_1_labels_as_signs():
    loss = jaxbp.get_loss("binary_hinge")
    z = jnp.array([[2.0], [0.5], [-0.3], [-2.0]])
    t = loss.encode(jnp.array([1, 1, 0, 1]), 1)
    assert jnp.allclose(jax.vmap(loss.value)(z, t), jnp.array([0.0, 0.5, 0.7, 3.0]))  # max(0, 1 - s z), s = 2y - 1
    assert jnp.allclose(jax.vmap(loss.backward)(z, t)[:, 0], jnp.array([0.0, -1.0, 1.0, -1.0]))


def test_a_hinge_is_checked_in_the_kink_band_and_a_wrong_sign_is_caught(restore_registries):
    good = jaxbp.get_loss("multiclass_hinge")  # the built-ins pass: tests/test_plugins.py checks every registered one
    jaxbp.register_loss("flipped_hinge", value=good.value, backward=lambda z, y: -good.backward(z, y),
                        encode=good.encode, smooth=False)
    report = jaxbp.check_plugin("loss", "flipped_hinge")
    assert not report.ok and {row.fd_band for row in report.rows} == {checking.FD_BAND_KINK}, f"\n{report}"


def test_an_exact_zero_gradient_is_judged_against_the_stencils_resolution_not_its_noise():
    # here one output bias's gradient is exactly 0 (a hinge's dJ/dz counts violated margins: +1s and -1s cancel);
    # the stencil's rounding noise there (~1.5e-10) against a floor of 1e-5 x 0.125 once read as 1.2e-4 > 1e-4:
    # the false alarm a user's hinge hit
    model = jaxbp.mlp([3, 5, 3], "tanh", "multiclass_hinge")
    rng, (kp, ky) = np.random.default_rng(21), jax.random.split(jax.random.key(21))
    params = jax.tree.map(lambda p: p + 0.1 * rng.standard_normal(p.shape), model.init(kp))
    x, y = jnp.asarray(rng.standard_normal((8, 3))), checking.example_labels(model, ky, 8)
    _, grads = jax.jit(model.value_and_grad)(params, x, y)
    assert grads[1]["b"][2] == 0 and np.any(grads[1]["b"]), "the case needs an exactly-zero coordinate"
    report = jaxbp.check_model(model, seed=21, params=params, x=x, y=y)
    assert report.ok, f"\n{report}"
    wrong = jax.tree.map(lambda g: g, grads)
    wrong[1]["b"] = wrong[1]["b"].at[2].set(1e-6)  # a planted error far below its neighbours' gradients (0.125)
    caught = checking.compare("net", lambda p: model.loss(p, x, y), params, wrong, smooth=False, reference=wrong)
    assert next(r for r in caught.rows if r.leaf == "[1]['b']").vs_fd > checking.FD_BAND_KINK


def test_the_floor_is_the_stencils_rounding_over_the_band():
    picks, analytic = [np.arange(3)], [np.array([0.125, -0.125, 0.0])]
    fd = np.array([0.125, -0.125, 4e-10])  # the zero read through rounding noise at h = 1e-6, |J| ~ 1
    rounding = FD_ROUNDING * np.ones(3) / FD_STEP_KINK
    band = checking.FD_BAND_KINK
    assert _finite_differences(picks, fd, rounding, analytic, band)[0] < band
    assert _finite_differences(picks, fd, 0 * rounding, analytic, band)[0] > band  # the old floor
    fd[2] = 1e-6  # a real error of 1e-6 is still 100x beyond what the stencil resolves
    assert _finite_differences(picks, fd, rounding, analytic, band)[0] > band


def test_check_feeds_integer_labels_through_encode_as_training_does(restore_registries):
    svm = jaxbp.get_loss("multiclass_hinge")
    jaxbp.register_loss("my_svm", value=svm.value, backward=svm.backward, smooth=False)  # no encode
    report = jaxbp.check_plugin("loss", "my_svm")
    failed = [row for row in report.rows if not row.ok]
    assert [row.subject for row in failed] == ["loss:my_svm (int labels via encode)"]
    assert "encode=jaxbp.plugins.class_targets" in failed[0].leaf and "(raised)" in str(report)
    jaxbp.register_loss("my_svm", value=svm.value, backward=svm.backward, smooth=False, replace=True,
                        encode=jaxbp.plugins.class_targets)
    assert jaxbp.check_plugin("loss", "my_svm").ok
    model, optimizer = jaxbp.mlp([2, 3], loss="my_svm"), optax.sgd(0.1)  # and it trains on integer labels
    params = model.init(jax.random.key(0))
    jaxbp.make_train_step(model, optimizer)(params, optimizer.init(params), jnp.ones((4, 2)), jnp.array([0, 1, 2, 1]))


def test_huber_is_optax_huber_loss_with_delta_one():
    z, y = jnp.array([[0.2, -3.0, 1.5]]), jnp.array([[0.0, 0.0, 0.0]])
    loss = jaxbp.get_loss("huber")
    assert float(loss.value(z[0], y[0])) == pytest.approx(float(jnp.sum(optax.huber_loss(z[0], y[0], delta=1.0))))
    np.testing.assert_allclose(loss.backward(z[0], y[0]), [0.2, -1.0, 1.0])
    np.testing.assert_allclose(loss.encode(jnp.array([0, 2]), 3), [[1, 0, 0], [0, 0, 1]])  # classes one-hot, as mse
