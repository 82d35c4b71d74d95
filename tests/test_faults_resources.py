"""Fault battery, resources: memory is estimated before it is spent, and a config cannot exhaust the parser.

A model or class count that cannot fit is a one-line ConfigError giving the estimate, before any
array is allocated or program compiled; a 500-level nested --set value is a ConfigError, not a
RecursionError. (Signals during a long compile or transfer: test_faults_signals.)
"""

import time

import pytest

import jaxbp
from jaxbp.cli import main
from jaxbp.training import resources
from jaxbp.config.load import parse_override

SMALL = ["data.name=moons", "data.n=64", "train.epochs=1", "train.plots=false"]


@pytest.mark.parametrize("hidden, says", [("[2000000000]", "sizes 2-2000000000-2"),
                                          ("[200000,200000]", "params, gradients and update 480 GB")])
def test_a_model_that_cannot_fit_is_refused_before_anything_is_allocated(hidden, says, monkeypatch):
    monkeypatch.setattr(resources, "available", lambda devices=1: (16 * 10**9, "the test's 16 GB device"))
    start = time.perf_counter()
    with pytest.raises(jaxbp.ConfigError, match="this run needs at least") as error:
        jaxbp.train(None, None, overrides=SMALL + [f"model.hidden={hidden}"], progress=False)
    assert says in str(error.value) and "the test's 16 GB device has 16 GB" in str(error.value)
    assert time.perf_counter() - start < 5  # refused, not attempted


def test_a_convnet_that_cannot_fit_is_refused_from_its_own_shapes_not_model_hidden(monkeypatch):
    """Planted by the default model.hidden = [64, 64]: an estimate from it would let this convnet reach XLA."""
    monkeypatch.setattr(resources, "available", lambda devices=1: (16 * 10**9, "the test's 16 GB device"))
    layers = 'model.layers=[{kind="conv2d", features=50000000, kernel_size=3}, {kind="flatten"}]'
    start = time.perf_counter()
    with pytest.raises(jaxbp.ConfigError, match="this run needs at least") as error:
        jaxbp.train(None, None, overrides=["data.name=digits", "train.epochs=1", "train.plots=false", layers],
                    progress=False)
    assert "params" in str(error.value) and "model.layers" in str(error.value), error.value
    assert time.perf_counter() - start < 10  # refused, not attempted
    params, per_row = resources.counts(jaxbp.network((8, 8, 1), [jaxbp.conv2d(3, 3), jaxbp.flatten(), jaxbp.dense(2)],
                                                     loss="softmax_cross_entropy"))
    assert params == 3 * 9 + 3 + 2 * 8 * 8 * 3 + 2 and per_row == 2 * (8 * 8 * 3 * 2) + 3 * 2


def test_a_hundred_thousand_classes_count_their_one_hot_targets_and_logits():
    parts = resources.estimate([4, 64, 100_000], replicas=1, rows=100_000, batch=32, n=125_000,
                               optimizer={"name": "sgd"}, itemsize=4)
    assert parts["activations"] > 100_000 * 100_000 * 4 * 3  # logits, probabilities, targets: 120 GB at least


def test_the_estimate_counts_what_each_optimizer_keeps():
    sizes, common = [10, 20, 3], dict(replicas=2, rows=0, batch=0, n=0, itemsize=4)
    params = 2 * 4 * (11 * 20 + 21 * 3)
    assert resources.estimate(sizes, optimizer={"name": "sgd"}, **common)["optimizer state"] == 0
    assert resources.estimate(sizes, optimizer={"name": "sgd", "momentum": 0.9}, **common)["optimizer state"] == params
    assert resources.estimate(sizes, optimizer={"name": "adam"}, **common)["optimizer state"] == 2 * params


def test_a_small_run_passes_and_a_planted_tiny_device_refuses_it(monkeypatch, capsys):
    small = dict(replicas=1, rows=64, batch=16, n=64, optimizer={"name": "sgd"}, itemsize=4)
    resources.check([2, 4, 2], **small)  # the real device: fits
    monkeypatch.setattr(resources, "available", lambda devices=1: (1000, "a planted 1 kB device"))
    assert main(["train", *[a for s in SMALL + ["model.hidden=[4]"] for a in ("--set", s)], "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a planted 1 kB device has" in err
    monkeypatch.setenv("JAXBP_MEMORY_CHECK", "0")
    resources.check([2, 4, 2], **small)  # the escape hatch


@pytest.mark.parametrize("value", ["[" * 500 + "]" * 500, "[" * 5000, "{a=" * 600 + "1" + "}" * 600])
def test_deeply_nested_set_values_are_a_config_error(value, capsys):
    with pytest.raises(jaxbp.ConfigError, match="nests"):
        parse_override(f"model.hidden={value}")
    assert main(["train", "--set", f"model.hidden={value}", "--print-config"]) == 2
    assert "RecursionError" not in capsys.readouterr().err


def test_a_deeply_nested_config_file_is_a_config_error(tmp_path):
    (tmp_path / "deep.toml").write_text("[model]\nhidden = " + "[" * 2000 + "]" * 2000 + "\n")
    with pytest.raises(jaxbp.ConfigError):
        jaxbp.load_config(tmp_path / "deep.toml")
