"""Dropout under per-example and private training: example i's mask is row i of the batched train step's mask.

The reference is each example's own train-mode loss, its masks fixed (row i of each dropout layer's mask, drawn
from the step key folded with the layer's index), differentiated by ``jax.vmap(jax.grad(...))``. A conv network
with both of the conv's norm rules (per-example gradients, ghost norm), max pooling (a cache with a shape in it),
dense layers and two dropouts, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbp
from jaxbp import networks
from jaxbp.plugins.losses import get_loss
from jaxbp.plugins.modes import layer_context, step_keys

N, CLIP = 8, 3.0
DP = jaxbp.DPConfig(clip_norm=CLIP, noise_multiplier=0.5, expected_batch_size=6.0, seed=4)
OPTIMIZER = jaxbp.private_optimizer(optax.sgd(1.0), DP)  # the update is -(sum_i c_i g_i + noise) / B
MASK = jnp.arange(N) < N - 2  # two padding rows, as in a Poisson batch


def _model(drop=None):
    return jaxbp.network((8, 8, 1), [jaxbp.conv2d(2, 3, activation="tanh"), drop or jaxbp.dropout(0.5),
                                     jaxbp.max_pool2d(2), jaxbp.conv2d(3, 3, stride=2, activation="tanh"),
                                     jaxbp.flatten(), jaxbp.dropout(0.25), jaxbp.dense(3)], "softmax_cross_entropy")


def _masks(model, params, x):
    """Each dropout layer's batch mask / p, as the layer draws it from the step key folded with its index."""
    _, key = step_keys(params.key)
    masks = []
    for i, (layer, shape) in enumerate(zip(model.layers, model.shapes)):
        ones = jnp.ones((x.shape[0], *shape))
        masks.append(layer.forward({}, ones, layer_context(True, key, i, None))[0] if layer.modal else None)
    return masks


def _example_loss(model, trained, x, t, masks):
    """One example's train-mode loss with its masks fixed: dropout multiplies by its row of the mask."""
    for layer, p, mask in zip(model.layers, trained, masks):
        x = x * mask if layer.modal else layer.forward(p, x)[0]
    return get_loss(model.loss_name).value(x, t)


def _reference(model, params, x, y):
    """Losses and per-example grads by jax.vmap(jax.grad) of each example's loss, its rows of the masks; then the
    private update from them: clipped to C, the padding rows out, summed, the optimizer's noise from its fixed key."""
    masks, t = _masks(model, params, x), model.targets(y).astype(x.dtype)
    f = lambda p, x, t, m: _example_loss(model, p, x, t, m)  # noqa: E731
    losses = jax.vmap(f, (None, 0, 0, 0))(params.params, x, t, masks)
    grads = jax.vmap(jax.grad(f), (None, 0, 0, 0))(params.params, x, t, masks)
    norms = jnp.sqrt(sum(jnp.sum(g.reshape(N, -1) ** 2, 1) for g in jax.tree.leaves(grads)))
    c = jnp.where(MASK, jnp.minimum(1.0, CLIP / norms), 0.0)
    summed = jax.tree.map(lambda g: jnp.tensordot(c, g, 1), grads)
    updates = OPTIMIZER.update(summed, OPTIMIZER.init(params.params), params.params)[0]
    return losses, grads, norms, optax.apply_updates(params.params, updates)


def _private_step(model, params, x, y):
    step = jaxbp.train_step_fn(model, OPTIMIZER, privacy=DP)
    return step(params, OPTIMIZER.init(jaxbp.trainable(params)), x, y, MASK)[0]


def _both_steps(model, params, x, y):
    """The per_example=True step and the batched step with sgd(1), from the same params."""
    sgd = optax.sgd(1.0)
    state = sgd.init(jaxbp.trainable(params))
    return [jaxbp.train_step_fn(model, sgd, per_example=each)(params, state, x, y)[0] for each in (True, False)]


@pytest.fixture(scope="module")
def setup():
    """The model, its params, a batch, and in one program: the train-mode per-example gradients, the batched train
    step's gradient, the private step's params, the references, and the per-example and batched steps."""
    model = _model()
    rng = np.random.default_rng(0)
    params = model.init(jax.random.key(0))
    params = params._replace(params=jax.tree.map(lambda p: p + 0.3 * rng.standard_normal(p.shape), params.params))
    x, y = jnp.asarray(rng.standard_normal((N, 8, 8, 1))), jnp.asarray(rng.integers(0, 3, N))
    run = jax.jit(lambda params, x, y: (model.train_per_example_value_and_grad(params, x, y),
                                        model.train_value_and_grad(params, x, y), _private_step(model, params, x, y),
                                        _reference(model, params, x, y), _both_steps(model, params, x, y)))
    return model, params, x, y, run(params, x, y)


def _close(a, b, tol):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        error = np.max(np.abs(np.asarray(u) - np.asarray(v)), initial=0) / max(1.0, np.max(np.abs(v)))
        assert error <= tol, f"differs by {error:.1e} > {tol:.0e}"


def _assert_per_example_right(each, reference):
    losses, grads, _ = each
    _close((losses, grads), reference[:2], 1e-10)  # each example's own gradient, its row of the masks


def test_per_example_train_grads_are_vmapped_jax_grad_with_each_examples_row_of_the_masks(setup):
    model, params, _, _, (each, (value, batched, stepped), _, reference, (per_example_step, batched_step)) = setup
    _assert_per_example_right(each, reference)
    _close(jax.tree.map(lambda g: jnp.mean(g, 0), each[1]), batched, 1e-12)  # their mean: the batched train step's
    _close(jnp.mean(each[0]), value, 1e-12)
    np.testing.assert_array_equal(each[2].key, stepped.key)  # the key carried on as by the batched step
    assert not np.array_equal(each[2].key, params.key)
    _close(per_example_step, batched_step, 1e-12)  # train.per_example = true: the batched step's params and key


def test_planted_bugs_a_neighbours_mask_or_a_mask_redrawn_in_the_backward_are_caught(setup, monkeypatch):
    _, params, x, y, (*_, reference, _) = setup
    redrawn = jaxbp.dropout(0.5)  # the backward draws a fresh mask instead of reading the cached one
    redrawn = redrawn._replace(backward=lambda p, c, g: ({}, g * jax.random.bernoulli(jax.random.key(9), 0.5, g.shape) / 0.5))
    with pytest.raises(AssertionError, match="differs by"):
        _assert_per_example_right(jax.jit(_model(redrawn).train_per_example_value_and_grad)(params, x, y), reference)
    each_example = networks.each_example

    def neighbours(caches, n, layers):  # example i reads row i - 1 of each dropout mask
        return each_example([jnp.roll(c, 1, 0) if layer.modal else c for layer, c in zip(layers, caches)], n, layers)

    monkeypatch.setattr(networks, "each_example", neighbours)
    with pytest.raises(AssertionError, match="differs by"):
        _assert_per_example_right(jax.jit(_model().train_per_example_value_and_grad)(params, x, y), reference)


def test_private_step_is_clipped_vmapped_jax_grad_with_the_same_masks_and_noise(setup):
    _, params, _, _, (_, _, new, (_, _, norms, want), _) = setup
    assert np.sum(norms[:N - 2] > CLIP) >= 2 and np.sum(norms[:N - 2] < CLIP) >= 1  # some clipped, some not
    _close(new.params, want, 1e-10)
    assert np.max(np.abs(np.asarray(new.params[-1]["w"]) - np.asarray(params.params[-1]["w"]))) > 0
    np.testing.assert_array_equal(new.key, step_keys(params.key)[0])  # the key split as the batched step splits it


def test_planted_bug_private_masks_not_the_train_steps_are_caught(setup, monkeypatch):
    model, params, x, y, (*_, (_, _, _, want), _) = setup
    shifted = lambda train, key, index, state: layer_context(train, key, index + 1, state)  # noqa: E731
    monkeypatch.setattr(networks, "layer_context", shifted)  # the train-mode forward the private step walks back:
    # each layer folds in its neighbour's index
    with pytest.raises(AssertionError, match="differs by"):
        _close(jax.jit(lambda p, x, y: _private_step(model, p, x, y))(params, x, y).params, want, 1e-10)


def test_batch_norm_is_still_refused_by_the_models_own_per_example_and_private_functions():
    model = jaxbp.network(3, [jaxbp.dense(4, "tanh"), jaxbp.batch_norm(), jaxbp.dropout(0.5), jaxbp.dense(2)], "mse")
    x, y = jnp.ones((4, 3)), jnp.ones((4, 2))  # refused before the params are read
    with pytest.raises(jaxbp.ConfigError, match="batch norm has none.*jaxbp.layer_norm"):
        model.train_per_example_value_and_grad(None, x, y)
    with pytest.raises(jaxbp.ConfigError, match="private training needs.*batch norm has none.*jaxbp.layer_norm"):
        jaxbp.privacy.clipped_sum(model, 1.0)(None, x, y)
