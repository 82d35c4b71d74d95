"""DP-SGD's noise draw: blocked on the CPU, at most two generator calls per parameter array (no loop) on
accelerators, the same numbers on both (so the noise proofs in tests/test_privacy.py, run on the CPU, hold for the accelerator draw)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbp
from jaxbp.privacy import DPConfig, private_optimizer
from jaxbp.privacy import noise

SHAPES = [(20, 48), (301,), (5, 7, 3)]


def test_accelerator_draw_equals_the_blocked_cpu_draw_bit_for_bit(monkeypatch):
    monkeypatch.setattr(noise, "NOISE_BLOCK", 100)  # every array but the smallest in several blocks
    key = jax.random.key(4)

    @jax.jit
    def draws(key, us):
        with jax.threefry_partitionable(False):
            return [(noise._noise_blocked(key, u, 2.0), noise._noise_at_once(key, u, 2.0)) for u in us]

    us = [jnp.full(shape, 0.5, jnp.float32) for shape in SHAPES]
    for (blocked, at_once), u in zip(draws(key, us), us):
        np.testing.assert_array_equal(blocked, at_once)
        assert blocked.shape == u.shape and abs(float(jnp.std(blocked)) / 2 - 1) < 0.5
    assert [noise._blocks(u) for u in us] == [(10, 2), (4, 100), (2, 4)]


def _eqns(jaxpr):
    """Every equation of ``jaxpr`` and of the jaxprs inside it (jit, cond branches, loop bodies)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _eqns(inner)


def _noise_branches(step, *args):
    """For each platform switch of the private step: the (cpu, accelerator) branches' primitive names."""
    jaxpr = jax.make_jaxpr(step)(*args).jaxpr
    index = {id(e.outvars[0]): e.params["platforms"] for e in _eqns(jaxpr) if e.primitive.name == "platform_index"}
    out = []
    for eqn in _eqns(jaxpr):
        if eqn.primitive.name == "cond" and id(eqn.invars[0]) in index:
            assert index[id(eqn.invars[0])] == (("cpu",), None)  # branch 0 the CPU's, branch 1 every other
            out.append([[e.primitive.name for e in _eqns(branch.jaxpr)] for branch in eqn.params["branches"]])
    return out


@pytest.fixture
def private_step(monkeypatch):
    monkeypatch.setattr(noise, "NOISE_BLOCK", 100)  # the 48 x 20 weight in 10 blocks of 5 rows, the 3 x 48 in 2
    model = jaxbp.mlp([20, 48, 3], "relu")
    params = jax.eval_shape(model.init, jax.random.key(0))
    dp = DPConfig(clip_norm=0.5, noise_multiplier=2.0, expected_batch_size=12.0)
    optimizer = private_optimizer(optax.sgd(1.0), dp)
    args = (params, jax.eval_shape(optimizer.init, params), jax.ShapeDtypeStruct((16, 20), jnp.float32),
            jax.ShapeDtypeStruct((16,), jnp.int32))
    return lambda: _noise_branches(jaxbp.make_train_step(model, optimizer, privacy=dp), *args), len(
        jax.tree.leaves(params))


def _counts(branches):
    draws = [sum(name == "random_bits" for name in b) for b in branches]
    loops = [sum(name in ("scan", "while") for name in b) for b in branches]
    return draws, loops


def test_private_step_draws_each_arrays_noise_without_a_loop_on_accelerators(private_step):
    make, leaves = private_step
    switches = make()
    assert len(switches) == leaves  # one switch per parameter array: (b1, w1, b2, w2)
    draws, loops = _counts([accelerator for _, accelerator in switches])
    assert draws == [1, 2, 1, 2] and loops == [0] * 4  # the whole blocks in one call, a shorter last block in one
    cpu_loops = sum(_counts([cpu])[1][0] for cpu, _ in switches)
    assert cpu_loops == 1  # the CPU loops over the first weight's 9 whole blocks (then draws the cut one)


def test_the_call_count_catches_a_loop_of_draws_on_accelerators(private_step, monkeypatch):
    make, _ = private_step
    monkeypatch.setattr(noise, "_noise_at_once", noise._noise_blocked)  # the planted bug: the CPU's loop there
    loops = [_counts([accelerator])[1][0] for _, accelerator in make()]
    assert loops == [0, 1, 0, 0]  # (b1, w1, b2, w2): w1's loop of draws, caught
