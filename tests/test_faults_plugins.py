"""Fault battery, plugins: a plugin's fault is named as the plugin's, in one line, before or instead of a trace.

Wrong shapes are found abstractly when the model is built (no compile); a backward that cannot be
jitted says so; NaN gradients from a finite loss name the backward, not the learning rate; a
plugin that calls sys.exit on import does not end jaxbp quietly; a plugin file that moved is
given anew with --plugins on --resume.
"""

import shutil

import jax.numpy as jnp
import pytest

import jaxbp
from jaxbp.cli import main
from jaxbp.plugins import probe, user

TINY = ["data.name=moons", "data.n=64", "model.hidden=[4]", "train.batch_size=16", "train.plots=false",
        "train.epochs=2"]


def train(activation="bad", loss="softmax_cross_entropy"):
    return jaxbp.train(None, None, overrides=TINY + [f"model.activation={activation}", f"model.loss={loss}"],
                       progress=False)


@pytest.mark.parametrize("forward, backward, error, says", [
    (lambda z: z[:, :1], lambda z, a, g: g, jaxbp.ShapeError, "forward returns shape (2, 1) but must return z's"),
    (jnp.tanh, lambda z, a, g: g.sum(0), jaxbp.ShapeError, "backward returns shape (4,) but must return z's"),
    (jnp.tanh, lambda z, a, g: g if float(z.sum()) > 0 else -g, jaxbp.ConfigError, "backward cannot be traced by jax.jit"),
    (jnp.tanh, lambda z, a, g: g @ jnp.ones((3, 3)), jaxbp.ConfigError, "backward fails on inputs of shape (2, 4)"),
])
def test_a_faulty_activation_is_named_when_the_model_is_built(restore_registries, forward, backward, error, says):
    jaxbp.register_activation("bad", forward=forward, backward=backward)
    with pytest.raises(error, match="activation plugin 'bad'") as raised:
        train()
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_a_faulty_loss_is_named_when_the_model_is_built(restore_registries):
    jaxbp.register_loss("bad_loss", value=lambda z, y: jnp.sum((z - y) ** 2), backward=lambda z, y: (z - y)[:1])
    with pytest.raises(jaxbp.ShapeError, match="loss plugin 'bad_loss': backward returns shape"):
        train("relu", "bad_loss")


def test_the_probe_passes_every_registered_activation_and_loss():
    for name in jaxbp.plugins.ACTIVATIONS.names():
        probe.probe([name], [3], "softmax_cross_entropy", 3)
    for name in jaxbp.plugins.LOSSES.names():
        probe.probe(["relu"], [3], name, 1 if name == "binary_cross_entropy" else 3)


def test_nan_from_a_backward_is_the_backwards_fault_not_the_learning_rates(restore_registries, capsys):
    jaxbp.register_activation("bad", forward=jnp.tanh, backward=lambda z, a, g: g * jnp.nan)
    with pytest.raises(jaxbp.DivergenceError) as raised:
        train()
    text = str(raised.value)
    assert "backward of activation 'bad' (layer 0)" in text and "learning rate is not the cause" in text
    assert "Lower optimizer.learning_rate" not in text
    # the control: a true divergence (learning rate 1e6) with correct backwards is still the learning rate's
    with pytest.raises(jaxbp.DivergenceError, match="Lower optimizer.learning_rate"):
        jaxbp.train(None, None, overrides=TINY + ["model.activation=relu", "optimizer.learning_rate=1e6",
                                                  "train.epochs=30"], progress=False)


def test_a_plugin_that_calls_sys_exit_on_import_is_one_line_exit_2(tmp_path, capsys):
    plugin = tmp_path / "quits.py"
    plugin.write_text("import sys\nsys.exit(0)\n")
    assert main(["train", "--plugins", str(plugin), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "called sys.exit(0)" in err and str(plugin) in err


def test_resume_with_plugins_takes_the_new_path_of_a_moved_plugin_file(tmp_path, capsys, restore_registries,
                                                                       monkeypatch):
    old, new = tmp_path / "old" / "acts.py", tmp_path / "new" / "acts.py"
    old.parent.mkdir()
    old.write_text("import jax.numpy as jnp, jaxbp\njaxbp.register_activation('mine', forward=jnp.tanh, "
                   "backward=lambda z, a, g: g * (1 - a * a), replace=True)\n")
    run = tmp_path / "run"
    jaxbp.train(None, run, overrides=TINY + ["model.activation=mine"], plugins=[str(old)], progress=False)
    new.parent.mkdir()
    shutil.move(old, new)
    monkeypatch.setattr(user, "_loaded", {})  # as a new process: nothing imported yet
    jaxbp.plugins.ACTIVATIONS.unregister("mine")
    assert main(["train", "--resume", str(run), "--set", "train.epochs=3", "--quiet"]) == 2
    assert "--plugins" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--set", "train.epochs=3", "--quiet", "--plugins", str(new)]) == 0
    assert jaxbp.load_run(run).record["plugins"] == [str(new)]  # recorded anew
