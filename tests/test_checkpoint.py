"""Checkpoints: exact round trip without pickle, atomic writes, and clear errors for every bad file."""

import io
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbp
from jaxbp import CheckpointError
from jaxbp.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint, write_atomic


@pytest.fixture(scope="module")
def state():
    model, optimizer = jaxbp.mlp([2, 5, 3]), optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
    params = jax.jit(model.init)(jax.random.key(0))
    step = jaxbp.make_train_step(model, optimizer)
    params, opt_state, _ = step(params, optimizer.init(params), jnp.ones((4, 2)), jnp.array([0, 1, 2, 0]))
    return Checkpoint(params, opt_state, 17, 3, jax.random.key(42))  # non-trivial moments and count


def _load(path, ckpt):
    return load_checkpoint(path, ckpt.params, ckpt.opt_state, ckpt.key)


def test_round_trip_is_exact(tmp_path, state):
    path = str(tmp_path / "checkpoint.npz")
    save_checkpoint(path, state)
    loaded = _load(path, state)
    assert (loaded.step, loaded.epoch) == (17, 3)
    assert jax.tree.structure((loaded.params, loaded.opt_state)) == jax.tree.structure((state.params, state.opt_state))
    pairs = zip(jax.tree.leaves((loaded.params, loaded.opt_state)), jax.tree.leaves((state.params, state.opt_state)))
    for a, b in pairs:
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(jax.random.key_data(loaded.key), jax.random.key_data(state.key))
    np.testing.assert_array_equal(jax.random.normal(loaded.key, (3,)), jax.random.normal(state.key, (3,)))
    with np.load(path, allow_pickle=False) as archive:  # plain arrays with readable names, no pickle
        assert {"params.0.w", "params.1.b", "key", "meta"} <= set(archive.files)
        assert all(archive[name].dtype != object for name in archive.files)


def test_templates_may_be_shape_structs(tmp_path, state):
    path = str(tmp_path / "c.npz")
    save_checkpoint(path, state)
    shapes = jax.eval_shape(lambda: (state.params, state.opt_state))
    loaded = load_checkpoint(path, *shapes, state.key)
    np.testing.assert_array_equal(loaded.params[0]["w"], state.params[0]["w"])


def test_missing_and_corrupt_files(tmp_path, state):
    path = str(tmp_path / "checkpoint.npz")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        _load(path, state)
    save_checkpoint(path, state)
    data = open(path, "rb").read()
    for broken in (data[: len(data) // 2], b"not a zip file at all", b""):
        open(path, "wb").write(broken)
        with pytest.raises(CheckpointError, match="corrupt or not a jaxbp checkpoint"):
            _load(path, state)
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array([{"format": "jaxbp-checkpoint"}], dtype=object))  # would need pickle
    open(path, "wb").write(buffer.getvalue())
    with pytest.raises(CheckpointError, match="corrupt"):
        _load(path, state)
    np.savez(path, meta=np.array('{"format": "other"}'))
    with pytest.raises(CheckpointError, match="not a jaxbp-checkpoint version 1 file"):
        _load(path, state)


def test_flipped_byte_is_caught(tmp_path, state):
    path = str(tmp_path / "checkpoint.npz")
    save_checkpoint(path, state)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 3] ^= 0xFF  # inside a stored array: the zip CRC no longer matches
    open(path, "wb").write(bytes(data))
    with pytest.raises(CheckpointError):
        _load(path, state)


def test_a_checkpoint_for_another_model_or_dtype_is_refused(tmp_path, state):
    path = str(tmp_path / "checkpoint.npz")
    save_checkpoint(path, state)
    wider = jax.eval_shape(jaxbp.mlp([2, 6, 3]).init, jax.random.key(0))
    with pytest.raises(CheckpointError, match=r"'params.0.b' is float64\[5\] but the config makes float64\[6\]; the"):
        load_checkpoint(path, wider, state.opt_state, state.key)
    deeper = jax.eval_shape(jaxbp.mlp([2, 5, 3, 3]).init, jax.random.key(0))
    with pytest.raises(CheckpointError, match="lacks leaf 'params.2.b'"):
        load_checkpoint(path, deeper, state.opt_state, state.key)
    single = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, jnp.float32), state.params)
    with pytest.raises(CheckpointError, match="jax_enable_x64"):
        load_checkpoint(path, single, state.opt_state, state.key)
    with pytest.raises(CheckpointError, match="holds 2 leaf/leaves the config does not make"):
        load_checkpoint(path, state.params[:1], state.opt_state, state.key)


def test_writes_are_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / "file.bin")
    write_atomic(path, b"old")

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_atomic(path, b"new")
    assert open(path, "rb").read() == b"old"
    assert os.listdir(tmp_path) == ["file.bin"]  # no temporary file left behind
