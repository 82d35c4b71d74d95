"""The training step: jitted, pure, compiled once, vmappable, per-example mode, replicas, and
step-by-step agreement with a plain ``jax.grad`` + optax step (float64, 1e-12)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbp
from jaxbp.config import OPTIMIZERS, load_config
from jaxbp.training.optimizer import make_optimizer
from jaxbp.training.epochs import epoch_batches as _epoch_batches

TOL = dict(rtol=1e-12, atol=1e-12)
epoch_batches = jax.jit(_epoch_batches, static_argnums=(1, 2))


def _init(model, key):
    return jax.jit(model.init)(key)


def _pick(tree, r):
    """Replica r of a stacked tree (sliced in numpy: no per-leaf compile)."""
    return jax.tree.map(lambda leaf: np.asarray(leaf)[r], tree)


def _data(n=50, d=2, k=3, seed=1):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(n, d))), jnp.asarray(rng.integers(0, k, n, dtype=np.int32))


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


# one network, optimizer and set of compiled steps shared by the tests below (compiling dominates their time)
MODEL, ADAM = jaxbp.mlp([2, 8, 8, 3], activation=["tanh", "relu"]), optax.adam(1e-2)
STEP, SCAN = jaxbp.make_train_step(MODEL, ADAM), jaxbp.make_scan_step(MODEL, ADAM)
X, Y = _data(n=50)
ORDER = epoch_batches(jax.random.key(1), 50, 16)  # (3, 16): full batches only
GRADS = jax.jit(MODEL.value_and_grad)


def test_step_compiles_once_over_epochs_with_a_ragged_remainder(key):
    params = scan_params = _init(MODEL, key)
    opt_state = scan_state = ADAM.init(params)
    sizes = []
    for epoch in range(3):
        order = epoch_batches(jax.random.fold_in(key, epoch), 50, 16)
        for batch in order:
            params, opt_state, _ = STEP(params, opt_state, X[batch], Y[batch])
            sizes.append(STEP._cache_size())
        scan_params, scan_state, _ = SCAN(scan_params, scan_state, X[order], Y[order])
        sizes.append(SCAN._cache_size())
    assert len(set(sizes[:3])) == 1 and sizes[3:] == sizes[:3] * 3  # nothing compiled after the first call
    _close(params, scan_params)  # the fused scan is the same K steps
    STEP(params, opt_state, X[48:], Y[48:])  # a ragged batch WOULD compile a second program: hence the drop
    assert STEP._cache_size() == sizes[0] + 1


def test_step_is_pure():
    params = _init(MODEL, jax.random.key(0))
    opt_state = ADAM.init(params)
    before = jax.tree.map(np.array, (params, opt_state))
    first, second = STEP(params, opt_state, X[ORDER[0]], Y[ORDER[0]]), STEP(params, opt_state, X[ORDER[0]], Y[ORDER[0]])
    _close(jax.tree.map(np.array, (params, opt_state)), before)  # inputs untouched
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)))


def test_vmap_over_stacked_params_and_optimizer_states():
    params, states = jaxbp.init_replicas(MODEL, ADAM, jax.random.split(jax.random.key(0), 3))
    vstep = jax.jit(jax.vmap(jaxbp.train_step_fn(MODEL, ADAM), in_axes=(0, 0, None, None)))
    for batch in ORDER:
        new_params, new_states, losses = vstep(params, states, X[batch], Y[batch])
        for r in range(3):
            _close(_pick((new_params, new_states, losses), r), STEP(*_pick((params, states), r), X[batch], Y[batch]))
        params, states = new_params, new_states


def test_per_example_gradients_reach_the_same_params():
    per_example = jaxbp.make_scan_step(MODEL, ADAM, per_example=True)
    params = _init(MODEL, jax.random.key(0))
    a, _, loss_a = SCAN(params, ADAM.init(params), X[ORDER], Y[ORDER])
    b, _, loss_b = per_example(params, ADAM.init(params), X[ORDER], Y[ORDER])
    _close(a, b)
    _close(loss_a, loss_b)
    assert not np.allclose(a[0]["w"], params[0]["w"])  # it did train


def test_replicas_with_different_seeds_each_equal_their_own_run():
    keys = jax.random.split(jax.random.key(0), 4)
    params, states = jaxbp.init_replicas(MODEL, ADAM, keys)
    together, _, losses = jaxbp.make_replica_step(MODEL, ADAM, scan=True)(params, states, X[ORDER], Y[ORDER])
    for r, replica_key in enumerate(keys):
        alone = _init(MODEL, replica_key)
        alone, _, alone_losses = SCAN(alone, ADAM.init(alone), X[ORDER], Y[ORDER])
        _close(_pick(together, r), alone)
        _close(losses[r], alone_losses)


def test_replicas_with_different_learning_rates_each_equal_their_own_run():
    """The rate lives in the optimizer state (optax.inject_hyperparams), so each replica carries its own."""
    rates = [0.01, 0.1, 0.3, 1.0]
    injected = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)
    params = jax.tree.map(lambda leaf: jnp.stack([leaf] * 4), _init(MODEL, jax.random.key(0)))  # one init for all
    states = jax.vmap(injected.init)(params)
    states.hyperparams["learning_rate"] = jnp.array(rates)
    together, _, _ = jaxbp.make_replica_step(MODEL, injected, scan=True)(params, states, X[ORDER], Y[ORDER])
    alone_scan = jaxbp.make_scan_step(MODEL, injected)
    for r, rate in enumerate(rates):
        alone = _init(MODEL, jax.random.key(0))
        state = injected.init(alone)
        state.hyperparams["learning_rate"] = jnp.asarray(rate)
        alone, _, _ = alone_scan(alone, state, X[ORDER], Y[ORDER])
        _close(_pick(together, r), alone)
    plain = optax.sgd(rates[2], momentum=0.9)  # and a run at one rate is plain optax.sgd at that rate
    alone = _init(MODEL, jax.random.key(0))
    _close(_pick(together, 2), jaxbp.make_scan_step(MODEL, plain)(alone, plain.init(alone), X[ORDER], Y[ORDER])[0])
    assert not np.allclose(together[0]["w"][0], together[0]["w"][3])


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_full_batch_training_matches_jax_grad_and_optax_step_by_step(name):
    """Same network, same initial weights, full batch: jaxbp's hand-written step vs jax.grad + optax."""
    x, y, model = X, Y, MODEL
    config = load_config(None, [f"optimizer.name={name}", "optimizer.learning_rate=0.05"])
    optimizer = make_optimizer(config.optimizer)
    ours, reference = jaxbp.make_train_step(model, optimizer), _reference_step(model, optimizer)
    params = theirs = _init(model, jax.random.key(3))
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
    ours, plain = make_optimizer(config.optimizer), OPTIMIZERS[name][0](0.03, **settings)
    a = b = _init(MODEL, jax.random.key(1))
    state_a, state_b = ours.init(a), plain.init(b)
    for _ in range(5):
        grads = GRADS(a, X, Y)[1]
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
    section = config.optimizer.resolved(total_steps=10)  # decay_steps = 0 -> the run length
    assert section.decay_steps == 10
    ours, expected = make_optimizer(section), reference()
    params = {"w": jnp.zeros(())}
    state = ours.init(params)
    for t in range(12):
        updates, state = ours.update({"w": jnp.ones(())}, state, params)  # params set the dtype
        np.testing.assert_allclose(-updates["w"], expected(float(t)), rtol=1e-12, atol=1e-15)
