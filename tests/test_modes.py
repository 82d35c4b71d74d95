"""Layers with modes: the key and state ride in the params, train steps run in train mode and write the state
back, everything else runs in eval mode; dropout and batch norm as written, on one device and on a mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType

import jaxbp
from jaxbp.plugins import modal
from jaxbp.training.epochs import make_epoch_fn


def _model(rate=0.5):
    return jaxbp.network(3, [jaxbp.dense(6, "tanh"), jaxbp.batch_norm(), jaxbp.dropout(rate), jaxbp.dense(3)],
                         "softmax_cross_entropy")


@pytest.fixture(scope="module")
def setup():
    model = _model()
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=(4, 16, 3)))  # 4 batches of 16
    ys = jnp.asarray(rng.integers(0, 3, (4, 16)), dtype=jnp.int32)
    optimizer = optax.adam(0.05)
    params = model.init(jax.random.key(0))
    return model, optimizer, params, optimizer.init(jaxbp.trainable(params)), xs, ys


def _same(a, b, tol=0.0):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64)), initial=0) <= tol


def test_state_and_key_ride_in_the_params_beside_the_trained_ones(setup):
    model, optimizer, params, _, _, _ = setup
    assert model.modal and isinstance(params, jaxbp.Stateful)
    assert params.state[1]["mean"].shape == (6,) and params.state[0] is None and params.key.dtype == jnp.uint32
    assert jaxbp.trainable(params) is params.params  # the optimizer sees the layers' params alone
    assert not jaxbp.mlp([3, 4, 2]).modal and isinstance(jaxbp.mlp([3, 4, 2]).init(jax.random.key(0)), list)


def test_train_steps_advance_the_key_write_the_state_and_resume_bit_exactly(setup):
    model, optimizer, params, opt_state, xs, ys = setup
    step = jaxbp.make_train_step(model, optimizer)
    p, s = params, opt_state
    keys, losses = [], []
    for x, y in zip(xs, ys):
        p, s, loss = step(p, s, x, y)
        keys.append(np.asarray(p.key))
        losses.append(loss)
    assert len({k.tobytes() for k in keys}) == 4  # a new key every step
    assert not np.allclose(p.state[1]["mean"], 0) and not np.allclose(p.state[1]["var"], 1)  # the averages moved
    # resume: two steps, a round trip through host arrays (as a checkpoint), two more: the same bits
    q, t = params, opt_state
    for x, y in zip(xs[:2], ys[:2]):
        q, t, _ = step(q, t, x, y)
    q, t = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), (q, t))
    for x, y in zip(xs[2:], ys[2:]):
        q, t, _ = step(q, t, x, y)
    _same(q, p)
    # the fused scan runs the same train-mode steps
    r, _, scanned = jaxbp.make_scan_step(model, optimizer)(params, opt_state, xs, ys)
    _same(r, p, 1e-12)
    _same(scanned, jnp.stack(losses), 1e-12)


def test_replicas_draw_their_own_masks_and_replica_zero_is_the_single_run(setup):
    model, optimizer, params, opt_state, xs, ys = setup
    stacked = jaxbp.init_replicas(model, optimizer, jnp.stack([jax.random.key(0), jax.random.key(1)]))
    p, _, losses = jaxbp.make_replica_step(model, optimizer)(*stacked, xs[0], ys[0])
    single = jaxbp.make_train_step(model, optimizer)(params, opt_state, xs[0], ys[0])
    _same(jax.tree.map(lambda a: a[0], p), single[0], 1e-12)
    assert not np.allclose(p.key[0], p.key[1]) and losses[0] != losses[1]


def test_apply_predict_and_evaluate_run_in_eval_mode(setup):
    model, optimizer, params, opt_state, xs, ys = setup
    params = jaxbp.make_train_step(model, optimizer)(params, opt_state, xs[0], ys[0])[0]
    z = model.apply(params, xs[1])
    _same(z, model.apply(params, xs[1]))  # no key: the same every time
    w, bn = params.params[0], params.state[1]
    g, b = params.params[1]["gamma"], params.params[1]["beta"]
    h = jnp.tanh(xs[1] @ w["w"].T + w["b"])
    by_hand = (g * (h - bn["mean"]) / jnp.sqrt(bn["var"] + 1e-5) + b) @ params.params[3]["w"].T + params.params[3]["b"]
    _same(z, by_hand, 1e-12)  # batch norm an affine map of the running averages, dropout the identity
    _same(model.apply(params, xs[1][:1]), z[:1], 1e-12)  # an example's output does not depend on the batch
    assert model.train_loss(params, xs[1], ys[1]) != model.loss(params, xs[1], ys[1])


def _forward(layer, x, train=True, key=0, state=None):
    return layer.forward(layer.init(jax.random.key(0), x.shape[-1])[1], x, jaxbp.Context(
        train, jax.random.key(key) if train else None, state))


def test_dropout_is_inverted_and_rate_zero_is_exactly_the_identity():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(64, 32)))
    y, cache, _ = _forward(jaxbp.dropout(0.0), x)
    assert y is x and cache is None and jaxbp.dropout(0.0).backward({}, cache, x)[1] is x
    y, cache, _ = _forward(jaxbp.dropout(0.25), x)
    kept = y != 0
    assert 0.7 < float(jnp.mean(kept)) < 0.8
    _same(y[kept], x[kept] / 0.75, 1e-15)
    _same(jaxbp.dropout(0.25).backward({}, cache, jnp.ones_like(x))[1], kept / 0.75)  # the same mask, not redrawn
    assert _forward(jaxbp.dropout(0.25), x, train=False)[0] is x  # eval: the identity
    assert not np.array_equal(y, _forward(jaxbp.dropout(0.25), x, key=1)[0])  # another key, another mask
    for rate in (1.0, -0.1, "half", True):
        with pytest.raises(jaxbp.ConfigError, match=r"dropout rate must be a number in \[0, 1\)"):
            jaxbp.dropout(rate)


@pytest.mark.parametrize("rate, bits", [(0.5, 1), (0.25, 2), (0.75, 2), (0.1875, 4), (0.1171875, 8), (0.1, 16), (0.3, 16)])
def test_dropout_masks_drop_at_the_rate_independently_from_the_fewest_bits(rate, bits):
    from jaxbp.plugins.modal import _keep, _mask_bits
    b, kept = _mask_bits(rate)
    assert b == bits and abs(1 - kept / 2**b - rate) <= 2**-17
    keep = np.asarray(_keep(jax.random.key(3), (512, 250), b, kept), np.float64)  # 250: not a multiple of 32 / b
    p, n = 1 - rate, keep.size
    assert abs(keep.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)  # the rate, within 5 sigma
    flat = keep.reshape(-1) - p
    for lag in (1, 32 // b - 1, 32 // b):  # neighbours share a random word: their fields must not be correlated
        assert abs(np.mean(flat[:-lag] * flat[lag:])) / (p * (1 - p)) < 5 / np.sqrt(n)


def _planted_shared_fields(key, shape, bits, kept):  # a planted bug: every field of a word reads the same bits
    size, per_word = int(np.prod(shape)), 32 // bits
    words = jax.random.bits(key, (-(-size // per_word),), jnp.uint32)
    fields = jnp.repeat(words & jnp.uint32(2**bits - 1), per_word)
    return fields[:size].reshape(shape) < jnp.uint32(kept)


def test_the_dropout_mask_test_catches_fields_that_share_bits(monkeypatch):
    import jaxbp.plugins.modal as modal
    monkeypatch.setattr(modal, "_keep", _planted_shared_fields)
    with pytest.raises(AssertionError):
        test_dropout_masks_drop_at_the_rate_independently_from_the_fewest_bits(0.5, 1)


def test_batch_norm_normalizes_each_channel_over_batch_and_space_and_backward_is_jax_grad():
    layer = jaxbp.batch_norm(momentum=0.8)
    x = jnp.asarray(np.random.default_rng(1).normal(2.0, 3.0, size=(4, 3, 3, 2)))  # NHWC: 2 channels
    state = layer.init_state((3, 3, 2))
    y, cache, new = _forward(layer, x, state=state)
    _same(jnp.mean(y, axis=(0, 1, 2)), jnp.zeros(2), 1e-12)
    _same(jnp.var(y, axis=(0, 1, 2)), jnp.var(x, axis=(0, 1, 2)) / (jnp.var(x, axis=(0, 1, 2)) + 1e-5), 1e-12)
    _same(new["mean"], 0.2 * jnp.mean(x, axis=(0, 1, 2)), 1e-12)
    _same(new["var"], 0.8 + 0.2 * jnp.var(x, axis=(0, 1, 2)), 1e-12)
    params = {"gamma": jnp.asarray([1.5, -0.5]), "beta": jnp.asarray([0.1, 0.2])}
    g = jnp.asarray(np.random.default_rng(2).normal(size=x.shape))
    for train in (True, False):
        ctx = jaxbp.Context(train, None, new)
        grads, dx = layer.backward(params, layer.forward(params, x, ctx)[1], g)
        ref = jax.grad(lambda p, x: jnp.sum(g * layer.forward(p, x, ctx)[0]), argnums=(0, 1))(params, x)
        _same((grads, dx), ref, 1e-12)
    for bad, match in (({"momentum": 1.0}, "momentum must be"), ({"eps": 0}, "eps must be")):
        with pytest.raises(jaxbp.ConfigError, match=match):
            jaxbp.batch_norm(**bad)


def test_per_example_and_private_training_with_batch_norm_name_layer_norm(setup):
    model, optimizer = setup[:2]
    with pytest.raises(jaxbp.ConfigError, match="batch norm has none.*jaxbp.layer_norm"):
        jaxbp.make_train_step(model, optimizer, per_example=True)
    privacy = jaxbp.DPConfig(clip_norm=1.0, noise_multiplier=1.0, expected_batch_size=16)
    with pytest.raises(jaxbp.ConfigError, match="private training needs.*jaxbp.layer_norm"):
        jaxbp.make_train_step(model, jaxbp.private_optimizer(optimizer, privacy), privacy=privacy)
    only_dropout = jaxbp.network(3, [jaxbp.dropout(0.5), jaxbp.dense(2)], "softmax_cross_entropy")
    jaxbp.make_train_step(only_dropout, optimizer, per_example=True)  # dropout has per-example gradients: its mask's row
    jaxbp.make_train_step(only_dropout, jaxbp.private_optimizer(optimizer, privacy), privacy=privacy)


def test_mixed_precision_keeps_the_state_and_the_trained_params_in_float32(setup):
    model, optimizer, params, opt_state, xs, ys = setup
    p32, s32 = jax.tree.map(lambda a: a.astype(jnp.float32) if a.dtype == jnp.float64 else a, (params, opt_state))
    step = jaxbp.make_train_step(jaxbp.mixed_precision(model, "bfloat16"), optimizer)
    p, _, loss = step(p32, s32, xs[0].astype(jnp.float32), ys[0])
    assert p.state[1]["mean"].dtype == jnp.float32 and p.params[0]["w"].dtype == jnp.float32 and np.isfinite(loss)


def test_on_a_mesh_the_batch_statistics_are_the_global_batch(setup):
    """An epoch with the batch split over 4 devices equals the one-device epoch (statistics over all 16 rows)."""
    model, optimizer, params, opt_state, xs, ys = setup
    x, y = xs.reshape(-1, 3), ys.reshape(-1)
    stacked = jax.tree.map(lambda a: a[None], (params, opt_state))
    one = make_epoch_fn(model, optimizer, 16)(*stacked, jax.random.key(3), 0, x, y, x, y)
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]).reshape(1, 4), ("replica", "data"),
                             axis_types=(AxisType.Auto,) * 2)
    sharded = make_epoch_fn(model, optimizer, 16, mesh=mesh)(*stacked, jax.random.key(3), 0, x, y, x, y)
    _same(jax.device_get(sharded[0]), one[0], 1e-10)
    _same(sharded[2]["test_loss"], one[2]["test_loss"], 1e-10)


def _planted(layer, backward):
    return lambda: layer._replace(backward=backward)


def test_planted_bugs_are_caught_in_the_mode_they_break(restore_registries):
    bn, drop = jaxbp.batch_norm(), jaxbp.dropout(0.5)

    def no_mean_term(params, cache, g):  # the mean's term dropped: dx = inv_std * (gx - xhat * mean(gx * xhat))
        grads, dx = bn.backward(params, cache, g)
        return grads, dx + cache.inv_std * jnp.mean(g * params["gamma"], axis=tuple(range(g.ndim - 1))) * isinstance(cache, modal._Train)

    def constants_in_eval_too(params, cache, g):  # eval's affine map differentiated as if the batch made it
        return bn.backward(params, modal._Train(*cache), g)

    def redrawn_mask(params, cache, g):  # a fresh mask in the backward instead of the cached one
        return {}, g if cache is None else g * jax.random.bernoulli(jax.random.key(99), 0.5, g.shape) / 0.5

    for name, layer, backward, broken in (("bn_no_mean", bn, no_mean_term, "train"),
                                          ("bn_eval_wrong", bn, constants_in_eval_too, "eval"),
                                          ("drop_redrawn", drop, redrawn_mask, "train")):
        jaxbp.register_layer(name, _planted(layer, backward), example={})
        report = jaxbp.check_plugin("layer", name)
        assert not report.ok and {row.subject for row in report.failures} == {f"layer:{name} ({broken})"}
    bad = jaxbp.network(3, [jaxbp.dense(4, "tanh"), jaxbp.layer("bn_no_mean"), jaxbp.dense(2)], "mse")
    report = jaxbp.check_model(bad, smooth=True, name="bad")
    assert {row.subject for row in report.failures} == {"bad (train)"} and "[0]['w']" in {r.leaf for r in report.failures}


def test_the_bench_reference_is_the_same_train_step_through_jax_grad():
    """`jaxbp bench --suite modes` times jax.grad of the train-mode loss against the hand-written step: same numbers."""
    from jaxbp.bench.modes import judge, reference_step

    model, optimizer = jaxbp.mlp([3, 5, 4, 2], batch_norm=True, dropout=0.25), optax.sgd(0.1)
    params = model.init(jax.random.key(0))
    x, y = jnp.asarray(np.random.default_rng(0).normal(size=(8, 3))), jnp.arange(8) % 2
    opt_state = optimizer.init(jaxbp.trainable(params))
    _same(reference_step(model, optimizer)(params, opt_state, x, y),
          jaxbp.make_train_step(model, optimizer)(params, opt_state, x, y), 1e-12)
    rows = [{"n": n, "ratios": {"batch_norm/batch_norm jax.grad": r, "dropout/dense": d},
             "spread": {"batch_norm/batch_norm jax.grad": 0.01, "dropout/dense": 0.01}}
            for n, r, d in ((1024, 1.02, 1.04), (8192, 1.12, 1.3))]
    assert [(t["measured"], t["met"]) for t in judge(rows)] == [(1.12, False), (1.04, True)]
