"""Fault battery, input: bad data, optimizer values, params, plugins and API calls get a clear JaxbpError."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbp
from jaxbp.cli import main
from jaxbp.datasets import checks
from jaxbp.config import load_config


def npz(tmp_path, x, y) -> str:
    path = tmp_path / "data.npz"
    np.savez(path, x=x, y=y)
    return str(path)


@pytest.mark.parametrize("labels", [[0, 1, 1_000_000, 1], [0, 1, 3e9, 1.0]])
def test_huge_labels_are_classes_not_output_units(tmp_path, labels):
    """Label 1,000,000 (or 3e9) once built a 1,000,001-way network, or hung: labels are mapped to classes."""
    data = jaxbp.datasets.load(npz(tmp_path, np.arange(8.0).reshape(4, 2), np.array(labels)), key=jax.random.key(0),
                               test_fraction=0.25)
    assert data.num_classes == 3


def test_a_single_class_is_refused(tmp_path):
    with pytest.raises(jaxbp.DataError, match="only one class"):
        jaxbp.datasets.load(npz(tmp_path, np.arange(8.0).reshape(4, 2), np.ones(4, int)), key=jax.random.key(0))


def test_a_dataset_too_large_for_memory_is_refused_before_allocating(monkeypatch):
    with pytest.raises(jaxbp.ConfigError, match=r"data.n = 1000000000 .* needs about 192.0 GB"):
        jaxbp.datasets.load("moons", key=jax.random.key(0), n=10**9)
    monkeypatch.setattr(checks, "available_memory", lambda: 10**6)  # a 1 MB machine refuses n = 10,000
    with pytest.raises(jaxbp.ConfigError, match=r"only 0.0 GB are available"):
        jaxbp.datasets.load("moons", key=jax.random.key(0), n=10_000)


def test_out_of_range_targets_and_empty_batches(key):
    x = jnp.ones((3, 2))
    bce = jaxbp.mlp([2, 1], loss="binary_cross_entropy")
    with pytest.raises(jaxbp.DataError, match=r"binary_cross_entropy target value 7.0 at index \(1, 0\)"):
        bce.value_and_grad(bce.init(key), x, jnp.array([0.0, 7.0, 1.0]))
    softmax = jaxbp.mlp([2, 3])
    soft = jnp.array([[0.5, 0.5, 0.0], [1.0, -0.2, 0.2], [0.0, 0.0, 2.0]])  # any mass, but no negative weight
    with pytest.raises(jaxbp.DataError, match=r"target value -0.2 at index \(1, 1\).*must be >= 0"):
        softmax.value_and_grad(softmax.init(key), x, soft)
    with pytest.raises(jaxbp.DataError, match="the batch is empty"):
        softmax.value_and_grad(softmax.init(key), x[:0], jnp.zeros((0,), int))


@pytest.mark.parametrize("override, says", [
    ("optimizer.learning_rate=inf", "learning_rate must be a number in (0, 1e+06]"),
    ("optimizer.learning_rate=1e308", "learning_rate must be a number in (0, 1e+06]"),
    ("optimizer.eps=0", "optimizer.eps must be a number in (0, 1] (added to a denominator: 0 divides by zero)"),
    ("optimizer.b1=-5", "optimizer.b1 must be a number in [0, 1)"),
    ("optimizer.momentum=-3", "optimizer.momentum must be a number in [0, 1)"),
])
def test_optimizer_values_out_of_range_state_the_range(override, says):
    name = "sgd" if "momentum" in override or "learning" in override else "adam"
    with pytest.raises(jaxbp.ConfigError) as error:
        load_config(None, [f"optimizer.name={name}", override])
    assert says in str(error.value)


def test_params_of_another_model_are_a_shape_error_naming_the_layer(key):
    model, x, y = jaxbp.mlp([2, 8, 3]), jnp.ones((4, 2)), jnp.array([0, 1, 2, 0])
    params = model.init(key)
    wrong = {
        "wider": (jaxbp.mlp([2, 16, 3]).init(key), r"layer 0: \['b'\] has shape \(16,\).*makes \(8,\)"),
        "other inputs": (jaxbp.mlp([5, 8, 3]).init(key), r"layer 0: \['w'\] has shape \(8, 5\).*makes \(8, 2\)"),
        "transposed": ([{**params[0]}, {"w": params[1]["w"].T, "b": params[1]["b"]}], r"layer 1: \['w'\]"),
        "one layer": (params[:1], "params has 1 entries but the network has 2 layers"),
    }
    step = jaxbp.make_train_step(model, optax.sgd(0.1))
    for bad, message in wrong.values():
        with pytest.raises(jaxbp.ShapeError, match=message):
            step(bad, optax.sgd(0.1).init(bad), x, y)  # caught at trace time, inside jit


def test_checks_inside_jit_give_the_outside_messages(key):
    model, optimizer = jaxbp.mlp([2, 4, 3]), optax.sgd(0.1)
    params, x, y = model.init(key), jnp.ones((5, 2)), jnp.array([0, 1, 2, 0, 1])
    state = optimizer.init(params)
    plain, checked = jaxbp.make_train_step(model, optimizer), jaxbp.make_train_step(model, optimizer, checks=True)
    for xb, yb in ((x.at[1, 0].set(jnp.nan), y), (x, y.at[3].set(7))):
        with pytest.raises(jaxbp.DataError) as outside:
            model.value_and_grad(params, xb, yb)
        with pytest.raises(jaxbp.DataError) as inside:
            checked(params, state, xb, yb)
        assert str(inside.value) == str(outside.value)
        plain(params, state, xb, yb)  # off by default: no check, no error
    np.testing.assert_array_equal(checked(params, state, x, y)[2], plain(params, state, x, y)[2])
    scan = jaxbp.make_scan_step(model, optimizer, checks=True)
    with pytest.raises(jaxbp.DataError, match=r"x holds 1 NaN/Inf value\(s\), first at index \(3, 1\)"):
        scan(params, state, jnp.stack([x, x.at[3, 1].set(jnp.inf)]), jnp.stack([y, y]))
    stacked = jaxbp.init_replicas(model, optimizer, jax.random.split(key, 2))
    with pytest.raises(jaxbp.DataError, match="label -1 is out of range for 3 classes"):
        jaxbp.make_replica_step(model, optimizer, checks=True)(*stacked, x, y.at[0].set(-1))


def test_a_plugin_that_raises_is_reported_failed_by_name(restore_registries, capsys):
    jaxbp.register_activation("broken", forward=jnp.tanh, backward=lambda z, a, g: 1 / 0)
    jaxbp.register_activation("two_args", forward=jnp.tanh, backward=lambda z, a: a)  # wrong signature
    for name, error in (("broken", "ZeroDivisionError"), ("two_args", "TypeError")):
        report = jaxbp.check_plugin("activation", name)
        assert not report.ok and report.rows[0].leaf.startswith(f"raised {error}") and f"activation:{name}" in str(report)
    assert main(["check", "--kind", "activation", "--failures-only"]) == 1
    out = capsys.readouterr().out
    assert "activation:broken" in out and "raised ZeroDivisionError" in out and "activation:two_args" in out
    with pytest.raises(jaxbp.UnknownPluginError, match="Did you mean 'broken'"):
        jaxbp.check_plugin("activation", "brokn")


def test_api_misuse_gets_a_config_error(restore_registries):
    ok = dict(forward=jnp.tanh, backward=lambda z, a, g: g)
    with pytest.raises(jaxbp.ConfigError, match="init must be 'he'.*got 'xavier'"):
        jaxbp.register_activation("a1", **ok, init="xavier")
    with pytest.raises(jaxbp.ConfigError, match="forward must be a function"):
        jaxbp.register_activation("a2", forward="tanh", backward=ok["backward"])
    with pytest.raises(jaxbp.ConfigError, match="value must be a function"):
        jaxbp.register_loss("l1", value=3, backward=lambda z, y: z)
    for sizes in (None, [2, True, 3], [2, 2.5, 3]):
        with pytest.raises(jaxbp.ConfigError, match="sizes must be >= 2 positive ints"):
            jaxbp.mlp(sizes)
    with pytest.raises(jaxbp.ConfigError, match="activation must be a name"):
        jaxbp.mlp([2, 3, 2], activation=None)
    assert jaxbp.mlp([np.int64(2), np.int32(4), 3]).d_out == 3  # numpy widths are widths


@pytest.mark.parametrize("call, says", [
    (lambda: load_config(None, ["trian.epochs=3"]), "Did you mean 'train'?"),
    (lambda: load_config(None, ["train.epoch=3"]), "Did you mean 'epochs'?"),
    (lambda: load_config(None, ["optimizer.name=adma"]), "Did you mean 'adam'?"),
    (lambda: load_config(None, ["data.name=spirals"]), "Did you mean 'spiral'?"),
    (lambda: jaxbp.mlp([2, 3, 2], activation="rellu"), "Did you mean 'relu'?"),
    (lambda: jaxbp.get_loss("mse2"), "known losses: "),  # not "losss"
])
def test_unknown_names_suggest_the_close_one(call, says):
    with pytest.raises(jaxbp.JaxbpError) as error:
        call()
    assert says in str(error.value) and "losss" not in str(error.value)


def test_a_data_file_with_pickled_objects_is_refused(tmp_path):
    buffer = io.BytesIO()
    np.savez(buffer, x=np.array([object()] * 4, dtype=object), y=np.arange(4))
    (tmp_path / "objects.npz").write_bytes(buffer.getvalue())
    with pytest.raises(jaxbp.DataError, match="corrupt or not an .npz archive.*allow_pickle=False"):
        jaxbp.datasets.load(str(tmp_path / "objects.npz"), key=jax.random.key(0))
