"""Modes through a run: `--set model.dropout=0.5 --set model.batch_norm=true` trains in train mode, resumes
bit-exactly (the key and the running averages are in the checkpoint), and predicts and evaluates in eval mode."""

import json

import jax
import numpy as np
import pytest

import jaxbp
from jaxbp.cli import main

SMALL = ["data.name=moons", "data.n=200", "model.hidden=[12, 12]", "optimizer.name=adam", "optimizer.learning_rate=0.02",
         "train.batch_size=24", "train.plots=false", "train.checkpoint_every=2", "model.dropout=0.5",
         "model.batch_norm=true"]


def test_a_run_with_dropout_and_batch_norm_resumes_bit_exactly_and_predicts_in_eval_mode(tmp_path, capsys):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    full = jaxbp.train(None, straight, overrides=SMALL + ["train.epochs=4"], progress=False)
    assert isinstance(full.params, jaxbp.Stateful) and full.summary["modes"]["modal_layers"] == ["batch_norm", "dropout"]
    jaxbp.train(None, stopped, overrides=SMALL + ["train.epochs=2"], progress=False)
    resumed = jaxbp.resume(stopped, overrides=["train.epochs=4"], progress=False)
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(a, b)  # the key and the running averages too
    record = json.loads((straight / "model.json").read_text())
    assert record["model"]["dropout"] == 0.5 and record["model"]["batch_norm"] is True
    loaded = jaxbp.load_run(straight)
    x = np.random.default_rng(0).normal(size=(7, 2))
    probabilities = loaded.predict(x)
    np.testing.assert_allclose(probabilities, loaded.model.predict(full.params, loaded.preprocess(x)), rtol=1e-6)
    np.testing.assert_allclose(loaded.predict(x[:1]), probabilities[:1], rtol=1e-5)  # eval mode: no batch effect
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(7) % 2)
    assert main(["evaluate", str(straight), "--data", str(tmp_path / "d.npz")]) == 0
    assert "eval mode: batch_norm from its running averages, dropout off" in capsys.readouterr().out


@pytest.mark.parametrize("setting", ["train.per_example=true", "privacy.enabled=true"])
def test_batch_norm_with_per_example_or_private_training_is_refused_at_the_door(setting, tmp_path):
    with pytest.raises(jaxbp.ConfigError, match=r"= true cannot train with model.batch_norm.*layer_norm"):
        jaxbp.load_config(None, ["model.batch_norm=true", setting])
    (tmp_path / "c.toml").write_text('[[model.layers]]\nkind = "batch_norm"\n')
    with pytest.raises(jaxbp.ConfigError, match=r"cannot train with a batch_norm table in model.layers.*layer_norm"):
        jaxbp.load_config(tmp_path / "c.toml", [setting])
    assert jaxbp.load_config(None, ["model.dropout=0.25", setting]).model.dropout == 0.25  # dropout has: its row
    with pytest.raises(jaxbp.ConfigError, match=r"model.dropout must be"):
        jaxbp.load_config(None, ["model.dropout=1.0"])


def test_model_layers_tables_take_both_modal_kinds(tmp_path):
    (tmp_path / "c.toml").write_text('[[model.layers]]\nkind = "dense"\nfeatures = 4\nactivation = "relu"\n'
                                     '[[model.layers]]\nkind = "batch_norm"\nmomentum = 0.8\n'
                                     '[[model.layers]]\nkind = "dropout"\nrate = 0.25\n')
    specs = jaxbp.load_config(tmp_path / "c.toml").model.layers
    model = jaxbp.network(3, [jaxbp.layer(s.kind, **s.kwargs) for s in specs] + [jaxbp.dense(2)], "mse")
    assert model.modal and [s.kind for s in specs] == ["dense", "batch_norm", "dropout"]
