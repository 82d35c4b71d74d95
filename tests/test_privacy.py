"""DP-SGD proofs: the book-keeping clipped sum equals clipping vmapped per-example gradients, the norms are
right, the noise has std sigma C / B and is fresh and resumable, and planted bugs are caught."""

import numpy as np
import jax
import jax.numpy as jnp
import optax
import pytest

import jaxbp
from jaxbp.plugins.activations import ACTIVATIONS
from jaxbp.plugins.layers import Layer, dense, layer_norm
from jaxbp.plugins.losses import LOSSES
from jaxbp.privacy import DPConfig, clipped_sum, per_example_norms, private_optimizer
from jaxbp.privacy.clipping import _fallback_sq_norms

TOL = dict(rtol=1e-12, atol=1e-12)


def labels(loss: str, rng, n: int, k: int):
    if loss == "softmax_cross_entropy":
        return rng.integers(0, k, n)
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, n)
    return rng.standard_normal((n, k))


def random_model(seed: int, loss: str):
    """A random stack of dense layers (random activations) with a layer norm (the fallback rule) now and then."""
    rng = np.random.default_rng(seed)
    d, n = int(rng.integers(2, 6)), int(rng.integers(5, 12))
    k = 1 if loss == "binary_cross_entropy" else int(rng.integers(2, 5))
    layers = []
    for _ in range(int(rng.integers(0, 3))):
        layers.append(dense(int(rng.integers(2, 7)), str(rng.choice(sorted(ACTIVATIONS._plugins)))))
        if rng.random() < 0.4:
            layers.append(layer_norm())
    model = jaxbp.network(d, layers + [dense(k)], loss)
    shapes = jax.eval_shape(model.init, jax.random.key(seed))  # random weights, biases and norm scales, all nonzero
    params = jax.tree.map(lambda a: 0.7 * rng.standard_normal(a.shape), shapes)
    return model, params, rng.standard_normal((n, d)), labels(loss, rng, n, k)


def reference(model, params, x, y, clip):
    """optax's per-example global-norm clipping of the vmapped single-example gradients, summed."""
    grads = model.per_example_grads(params, x, y)
    summed, _ = optax.per_example_global_norm_clip(jax.tree.leaves(grads), clip)
    return jax.tree.unflatten(jax.tree.structure(grads), summed)


def vmapped_norms(model, params, x, y):
    grads = model.per_example_grads(params, x, y)
    return jnp.sqrt(sum(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1) for g in jax.tree.leaves(grads)))


def assert_clipping_right(model, params, x, y, value_and_sum=None):
    norms = jax.jit(vmapped_norms, static_argnums=0)(model, params, x, y)
    clips = (float(jnp.median(norms)), 10 * float(jnp.max(norms)))  # some clipped, some not; then none clipped
    assert jnp.sum(norms > clips[0]) >= 1 and jnp.sum(norms < clips[0]) >= 1

    @jax.jit
    def both(params, x, y):
        return [((value_and_sum or clipped_sum)(model, c)(params, x, y)[1], reference(model, params, x, y, c))
                for c in clips]

    for got, want in both(params, x, y):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), got, want)


@pytest.mark.parametrize("loss", sorted(LOSSES._plugins))
@pytest.mark.parametrize("seed", range(2))
def test_clipped_sum_equals_clipping_vmapped_per_example_grads(loss, seed):
    assert_clipping_right(*random_model(seed + 3 * sorted(LOSSES._plugins).index(loss), loss))


@pytest.mark.parametrize("seed", range(2))
def test_per_example_norms_equal_vmapped_gradient_norms(seed):
    model, params, x, y = random_model(seed, "softmax_cross_entropy")
    norms = jax.jit(lambda p, x, y: (per_example_norms(model, p, x, y), vmapped_norms(model, p, x, y)))
    np.testing.assert_allclose(*norms(params, x, y), **TOL)


def test_dense_rule_equals_its_fallback():
    layer = dense(4, "tanh")
    _, params = layer.init(jax.random.key(1), 3)
    x, g = jax.random.normal(jax.random.key(2), (6, 3)), jax.random.normal(jax.random.key(3), (6, 4))
    both = jax.jit(lambda p, x, g: (layer.per_example_sq_norms(p, layer.forward(p, x)[1], g),
                                    _fallback_sq_norms(layer)(p, layer.forward(p, x)[1], g)))
    np.testing.assert_allclose(*both(params, x, g), **TOL)


def _forgets_bias(layer: Layer) -> Layer:
    def sq_norms(params, cache, g):
        x, z, a = cache
        return jnp.sum(layer.backward(params, cache, g)[1] * 0, -1) + jnp.sum(g * g, -1) * jnp.sum(x * x, -1)

    return layer._replace(per_example_sq_norms=sq_norms)


def _per_layer_clipping(model, clip):
    """Clip each layer's gradient to C on its own: the classic mistake (not the global norm)."""

    def value_and_sum(params, x, y, mask=None):
        grads = model.per_example_grads(params, x, y)
        out = []
        for layer_grads in grads:
            summed, _ = optax.per_example_global_norm_clip(jax.tree.leaves(layer_grads), clip)
            out.append(jax.tree.unflatten(jax.tree.structure(layer_grads), summed))
        return None, out, None

    return value_and_sum


@pytest.mark.parametrize("bug", ["forgotten bias norm", "per-layer clipping"])
def test_planted_bugs_are_caught(bug):
    model, params, x, y = random_model(0, "mse")
    if bug == "forgotten bias norm":
        bad = model._replace(layers=tuple(map(_forgets_bias, model.layers)))
        with pytest.raises(AssertionError):
            assert_clipping_right(bad, params, x, y)
    else:
        model = jaxbp.mlp([3, 5, 4, 2], "tanh", "mse")
        params = model.init(jax.random.key(0))
        x, y = jax.random.normal(jax.random.key(1), (8, 3)), jax.random.normal(jax.random.key(2), (8, 2))
        with pytest.raises(AssertionError):
            assert_clipping_right(model, params, x, y, _per_layer_clipping)


CLIP, B = 0.5, 12.0


@pytest.fixture(scope="module")
def noisy_setup():
    """A small model, a batch and one private step with sigma = 2, compiled once for the module."""
    model = jaxbp.mlp([20, 48, 3], "relu")
    rng = np.random.default_rng(0)
    params = jax.jit(model.init)(jax.random.key(0))
    dp = DPConfig(clip_norm=CLIP, noise_multiplier=2.0, expected_batch_size=B, seed=3)
    optimizer = private_optimizer(optax.sgd(1.0), dp)
    step = jaxbp.make_train_step(model, optimizer, privacy=dp)
    return model, params, rng.standard_normal((16, 20)), rng.integers(0, 3, 16), dp, optimizer, step


_flat = jax.jit(lambda tree: jnp.concatenate([leaf.ravel() for leaf in jax.tree.leaves(tree)]))
_diff = jax.jit(lambda old, new: _flat(jax.tree.map(jnp.subtract, old, new)))
_clean = jax.jit(lambda model, params, x, y: _flat(reference(model, params, x, y, CLIP)) / B, static_argnums=0)


def test_step_without_noise_is_the_clipped_sum_over_the_expected_batch_size(noisy_setup):
    model, params, x, y, dp, _, _ = noisy_setup
    dp = dp._replace(noise_multiplier=0.0)
    optimizer = private_optimizer(optax.sgd(1.0), dp)
    mask = np.arange(16) < 11  # 11 real rows, 5 padding rows
    new = jaxbp.make_train_step(model, optimizer, privacy=dp)(params, optimizer.init(params), x, y, mask)[0]
    np.testing.assert_allclose(_diff(params, new), _clean(model, params, x[:11], y[:11]), **TOL)


def test_noise_has_std_sigma_c_over_b_and_is_fresh_each_step(noisy_setup):
    model, params, x, y, dp, optimizer, step = noisy_setup
    clean, state, noise = _clean(model, params, x, y), optimizer.init(params), []
    for _ in range(2):  # two steps from the same params: only the key in the state moves on
        new, state, _ = step(params, state, x, y)
        noise.append(np.asarray(_diff(params, new) - clean))
    expected, count = dp.noise_multiplier * CLIP / B, clean.size  # sigma C / B per coordinate
    for sample in noise:  # the sample std is within ~4 / sqrt(2 count) of the true one
        assert abs(np.std(sample) / expected - 1) < 4 / np.sqrt(2 * count)
        assert abs(np.mean(sample)) < 4 * expected / np.sqrt(count)
    assert abs(np.corrcoef(*noise)[0, 1]) < 4 / np.sqrt(count)  # fresh noise each step


def test_private_step_needs_the_noise_in_its_optimizer(noisy_setup):
    model, params, x, y, dp, _, _ = noisy_setup
    step = jaxbp.make_train_step(model, optax.sgd(0.1), privacy=dp)
    with pytest.raises(jaxbp.ConfigError, match="private_optimizer"):
        step(params, optax.sgd(0.1).init(params), x, y)


def test_scan_and_replica_steps_take_the_same_switch(noisy_setup):
    """Two private steps (different masks) in a scan of stacked replicas equal the same two single steps."""
    model, params, x, y, dp, optimizer, step = noisy_setup
    state = optimizer.init(params)
    masks = np.stack([np.arange(16) < 12, np.arange(16) < 9])
    p, s = params, state
    for mask in masks:
        p, s, _ = step(p, s, x, y, mask)
    stack = jax.tree.map(lambda a: np.stack([a, a]), (params, state))
    replicas = jaxbp.make_replica_step(model, optimizer, privacy=dp, scan=True)(
        *stack, np.stack([x, x]), np.stack([y, y]), masks)[0]  # make_scan_step is this scan without the vmap
    np.testing.assert_allclose(_flat(jax.tree.map(lambda a: a[1], replicas)), _flat(p), **TOL)


def test_private_replicas_draw_their_own_noise(noisy_setup):
    """Two replicas from one key (same params, same batch) part after one step: only their noise differs.
    Without the fold of the replica index into the noise key they would stay equal (checked)."""
    model, _, x, y, dp, optimizer, _ = noisy_setup
    params, states = jaxbp.init_replicas(model, optimizer, jnp.stack([jax.random.key(5)] * 2))
    step = jaxbp.make_replica_step(model, optimizer, privacy=dp)
    moved = step(params, states, x, y, np.ones(16, bool))[0]
    a, b = (_flat(jax.tree.map(lambda leaf: leaf[r], moved)) for r in (0, 1))
    assert float(jnp.max(jnp.abs(a - b))) > 1e-3
    unfolded = jax.vmap(optimizer.init)(params)  # the planted bug: one noise key for every replica
    moved = step(params, unfolded, x, y, np.ones(16, bool))[0]
    np.testing.assert_array_equal(*(_flat(jax.tree.map(lambda leaf: leaf[r], moved)) for r in (0, 1)))
