"""The hinge losses against CS231n's naive SVM loss and its gradient, and the binary hinge by hand."""

import jax
import jax.numpy as jnp
import numpy as np

import jaxbp
from jaxbp import checking


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
