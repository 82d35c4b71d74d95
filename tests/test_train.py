"""The training step: jitted, pure, compiled once, vmappable, per-example mode, replicas, and
step-by-step agreement with a plain ``jax.grad`` + optax step (float64, 1e-12)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbp
from jaxbp._config import OPTIMIZERS, load_config, make_optimizer, resolve_schedule
from jaxbp._runner import epoch_batches

TOL = dict(rtol=1e-12, atol=1e-12)


def _data(n=50, d=2, k=3, seed=1):
    kx, ky = jax.random.split(jax.random.key(seed))
    return jax.random.normal(kx, (n, d)), jax.random.randint(ky, (n,), 0, k)


def _close(a, b):
    for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(leaf_a, leaf_b, **TOL)


def _reference_step(model, optimizer):
    """The trusted step: gradients from jax.grad of the plain loss, then the same optax update."""

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(model.loss)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def test_epoch_batches_drop_the_ragged_last_batch(key):
    order = epoch_batches(key, 50, 16)
    assert order.shape == (3, 16)  # 50 = 3 * 16 + 2: the last 2 examples of the shuffle are dropped
    assert len(set(np.asarray(order).ravel().tolist())) == 48  # no example twice
    other = epoch_batches(jax.random.fold_in(key, 1), 50, 16)
    assert not np.array_equal(order, other)  # each epoch drops (and orders) differently


def test_step_compiles_once_over_epochs_with_a_ragged_remainder(key):
    x, y = _data(n=50)
    model, optimizer = jaxbp.mlp([2, 8, 3]), optax.adam(1e-2)
    step, scan = jaxbp.make_train_step(model, optimizer), jaxbp.make_scan_step(model, optimizer)
    params = scan_params = model.init(key)
    opt_state = scan_state = optimizer.init(params)
    for epoch in range(3):
        order = epoch_batches(jax.random.fold_in(key, epoch), 50, 16)
        for batch in order:
            params, opt_state, _ = step(params, opt_state, x[batch], y[batch])
        scan_params, scan_state, _ = scan(scan_params, scan_state, x[order], y[order])
    assert step._cache_size() == 1 and scan._cache_size() == 1
    _close(params, scan_params)  # the fused scan is the same K steps
    step(params, opt_state, x[48:], y[48:])  # a ragged batch WOULD compile a second program: hence the drop
    assert step._cache_size() == 2


def test_step_is_pure():
    x, y = _data()
    model, optimizer = jaxbp.mlp([2, 8, 3]), optax.sgd(0.1, momentum=0.9)
    params = model.init(jax.random.key(0))
    opt_state = optimizer.init(params)
    before = jax.tree.map(np.array, (params, opt_state))
    step = jaxbp.make_train_step(model, optimizer)
    first, second = step(params, opt_state, x, y), step(params, opt_state, x, y)
    _close(jax.tree.map(np.array, (params, opt_state)), before)  # inputs untouched
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)))


def test_vmap_over_stacked_params_and_optimizer_states():
    x, y = _data()
    model, optimizer = jaxbp.mlp([2, 8, 8, 3], activation="tanh"), optax.adam(1e-2)
    params, states = jaxbp.init_replicas(model, optimizer, jax.random.split(jax.random.key(0), 3))
    vstep = jax.jit(jax.vmap(jaxbp.train_step_fn(model, optimizer), in_axes=(0, 0, None, None)))
    single = jaxbp.make_train_step(model, optimizer)
    for _ in range(3):
        new_params, new_states, losses = vstep(params, states, x, y)
        for r in range(3):
            alone = single(*jax.tree.map(lambda leaf: leaf[r], (params, states)), x, y)
            _close(jax.tree.map(lambda leaf: leaf[r], (new_params, new_states, losses)), alone)
        params, states = new_params, new_states


def test_per_example_gradients_reach_the_same_params():
    x, y = _data(n=64)
    model, optimizer = jaxbp.mlp([2, 16, 3], activation="sigmoid"), optax.sgd(0.3, momentum=0.9)
    batched, per_example = (jaxbp.make_scan_step(model, optimizer, per_example=flag) for flag in (False, True))
    params = model.init(jax.random.key(0))
    order = epoch_batches(jax.random.key(5), 64, 8)
    a, _, loss_a = batched(params, optimizer.init(params), x[order], y[order])
    b, _, loss_b = per_example(params, optimizer.init(params), x[order], y[order])
    _close(a, b)
    _close(loss_a, loss_b)
    assert not np.allclose(jax.tree.leaves(a)[0], jax.tree.leaves(params)[0])  # it did train


def test_replicas_with_different_seeds_each_equal_their_own_run():
    x, y = _data(n=48)
    model, optimizer = jaxbp.mlp([2, 8, 3]), optax.rmsprop(1e-2, momentum=0.9)
    keys = jax.random.split(jax.random.key(0), 4)
    params, states = jaxbp.init_replicas(model, optimizer, keys)
    order = epoch_batches(jax.random.key(1), 48, 12)
    replica_step, scan = jaxbp.make_replica_step(model, optimizer, scan=True), jaxbp.make_scan_step(model, optimizer)
    together, _, losses = replica_step(params, states, x[order], y[order])
    for r, replica_key in enumerate(keys):
        alone = model.init(replica_key)
        alone, _, alone_losses = scan(alone, optimizer.init(alone), x[order], y[order])
        _close(jax.tree.map(lambda leaf: leaf[r], together), alone)
        _close(losses[r], alone_losses)


def test_replicas_with_different_learning_rates_each_equal_their_own_run():
    x, y = _data(n=48)
    model, rates = jaxbp.mlp([2, 8, 3]), jnp.array([0.01, 0.1, 0.3, 1.0])
    injected = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)
    params = jax.tree.map(lambda leaf: jnp.stack([leaf] * 4), model.init(jax.random.key(0)))  # one init for all
    states = jax.vmap(injected.init)(params)
    states.hyperparams["learning_rate"] = rates
    order = epoch_batches(jax.random.key(1), 48, 12)
    together, _, _ = jaxbp.make_replica_step(model, injected, scan=True)(params, states, x[order], y[order])
    for r, rate in enumerate(rates.tolist()):
        plain = optax.sgd(rate, momentum=0.9)
        alone = model.init(jax.random.key(0))
        alone, _, _ = jaxbp.make_scan_step(model, plain)(alone, plain.init(alone), x[order], y[order])
        _close(jax.tree.map(lambda leaf: leaf[r], together), alone)
    assert not np.allclose(together[0]["w"][0], together[0]["w"][3])


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_full_batch_training_matches_jax_grad_and_optax_step_by_step(name):
    """Same network, same initial weights, full batch: jaxbp's hand-written step vs jax.grad + optax."""
    x, y = _data(n=40)
    model = jaxbp.mlp([2, 12, 12, 3], activation=["tanh", "relu"])
    config = load_config(None, [f"optimizer.name={name}", "optimizer.learning_rate=0.05"])
    optimizer = make_optimizer(config["optimizer"])
    ours, reference = jaxbp.make_train_step(model, optimizer), _reference_step(model, optimizer)
    params = theirs = model.init(jax.random.key(3))
    state = their_state = optimizer.init(params)
    for _ in range(25):
        params, state, loss = ours(params, state, x, y)
        theirs, their_state, their_loss = reference(theirs, their_state, x, y)
        _close((params, state, loss), (theirs, their_state, their_loss))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_named_optimizer_is_the_plain_optax_optimizer(name):
    """The config's optimizer (learning rate injected for replicas) updates exactly like optax.<name>(...)."""
    settings = {"sgd": {"momentum": 0.9, "nesterov": True}, "rmsprop": {"momentum": 0.5, "decay": 0.8},
                "adam": {"b1": 0.8}, "adamw": {"weight_decay": 0.01}}[name]
    config = load_config({"optimizer": {"name": name, "learning_rate": 0.03, **settings}})
    ours, plain = make_optimizer(config["optimizer"]), OPTIMIZERS[name][0](0.03, **settings)
    x, y = _data()
    model = jaxbp.mlp([2, 6, 3])
    a = b = model.init(jax.random.key(1))
    state_a, state_b = ours.init(a), plain.init(b)
    for _ in range(5):
        grads = model.value_and_grad(a, x, y)[1]
        updates_a, state_a = ours.update(grads, state_a, a)
        updates_b, state_b = plain.update(grads, state_b, b)
        a, b = optax.apply_updates(a, updates_a), optax.apply_updates(b, updates_b)
        _close(a, b)


@pytest.mark.parametrize("schedule,reference", [
    ("cosine", lambda: optax.cosine_decay_schedule(0.2, 10, alpha=0.1)),
    ("linear", lambda: optax.linear_schedule(0.2, 0.02, 10)),
    ("warmup_cosine", lambda: optax.warmup_cosine_decay_schedule(0.0, 0.2, 3, 10, 0.02)),
    ("exponential", lambda: optax.exponential_decay(0.2, 10, 0.5)),
])
def test_learning_rate_schedules(schedule, reference):
    args = {"end_factor": 0.1, "decay_steps": 0} | ({"warmup_steps": 3} if schedule == "warmup_cosine" else {})
    if schedule == "exponential":
        args = {"decay_rate": 0.5, "decay_steps": 0}
    config = load_config({"optimizer": {"name": "sgd", "learning_rate": 0.2, "schedule": schedule, **args}})
    section = resolve_schedule(config["optimizer"], total_steps=10)  # decay_steps = 0 -> the run length
    assert section["decay_steps"] == 10
    ours, expected = make_optimizer(section), reference()
    params = {"w": jnp.zeros(())}
    state = ours.init(params)
    for t in range(12):
        updates, state = ours.update({"w": jnp.ones(())}, state, params)  # params set the dtype
        np.testing.assert_allclose(-updates["w"], expected(float(t)), rtol=1e-12, atol=1e-15)
