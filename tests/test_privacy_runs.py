"""Private runs end to end: accounting against dp-accounting, Poisson batches, no per-example weight array in the
compiled step (YNNPACK on and off), the [privacy] config's errors, bit-exact resume, and the CLI printing epsilon."""

import json

import numpy as np
import jax
import pytest

import jaxbp
from jaxbp.bench import privacy as bench_privacy
from jaxbp.bench import special
from jaxbp.cli.main import main as cli_main
from jaxbp.privacy import capacity, poisson_batches
from jaxbp.privacy.accounting import calibrate_sigma, epsilon

dp_accounting = pytest.importorskip("dp_accounting")


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_epsilon_is_dp_accountings_for_the_same_q_sigma_steps_delta(accountant):
    q, sigma, steps, delta = 0.05, 1.1, 300, 1e-5
    direct = (dp_accounting.rdp.RdpAccountant() if accountant == "rdp" else
              dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3))
    direct.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    assert epsilon(q, sigma, steps, delta, accountant) == pytest.approx(direct.get_epsilon(delta), rel=1e-9)
    assert epsilon(q, sigma, 2 * steps, delta, accountant) > epsilon(q, sigma, steps, delta, accountant)


def test_calibrated_sigma_spends_the_target_epsilon():
    sigma = calibrate_sigma(3.0, 0.02, 500, 1e-5)
    assert epsilon(0.02, sigma, 500, 1e-5) <= 3.0
    assert epsilon(0.02, sigma * 0.99, 500, 1e-5) > 3.0  # the smallest such sigma, to 1%


def test_poisson_batches_have_static_shapes_and_count_what_they_drop():
    n, q, steps = 400, 0.05, 50
    rows = capacity(n, q)
    sample = jax.jit(poisson_batches, static_argnums=(1, 2, 3, 4))
    index, mask, dropped = sample(jax.random.key(0), n, q, steps, rows)
    index, mask = np.asarray(index), np.asarray(mask)
    assert index.shape == mask.shape == (steps, rows) and int(dropped) == 0
    sizes = mask.sum(1)
    assert abs(sizes.mean() - q * n) < 4 * np.sqrt(q * n / steps)  # Binomial(n, q) batch sizes
    for i, m in zip(index, mask):
        assert len(set(i[m])) == m.sum()  # real rows are distinct examples
    _, tight, dropped = sample(jax.random.key(0), n, q, steps, 10)  # capacity below q n: drops, counted
    assert int(dropped) == int(np.maximum(sizes - 10, 0).sum()) > 0
    np.testing.assert_array_equal(np.asarray(tight).sum(1), np.minimum(sizes, 10))


SPEC = "64-256-256-4:128"  # a per-example (n, 256, 256) float32 weight gradient would take 32 MiB


def _assert_no_per_example_array(row):
    assert row["jaxbp-dp"] <= 1.5 * row["plain"] + (1 << 20), row
    assert row["jaxbp-dp"] < row["per_example_weight_bytes"] / 8, row
    # (the vmapped route's step does build it: 4.1 GiB at mnist size in bench/results-privacy.md)


def test_compiled_private_step_builds_no_per_example_array_with_and_without_ynnpack(xla_cpu, optimized):
    sizes, n = [int(d) for d in SPEC.split(":")[0].split("-")], int(SPEC.split(":")[1])
    _assert_no_per_example_array(bench_privacy.memory([(sizes, n)], ("plain", "jaxbp-dp"))[0])
    rows = special.memory_without_ynnpack([SPEC], module="jaxbp.bench.privacy")
    assert not isinstance(rows, str), rows
    _assert_no_per_example_array(rows[0])


BASE = ["data.name=moons", "data.n=400", "model.hidden=[8]", "train.epochs=4", "train.batch_size=20",
        "train.plots=false", "train.checkpoint_every=2", "privacy.enabled=true", "privacy.noise_multiplier=1.0",
        "privacy.delta=1e-4"]


@pytest.mark.parametrize("override, message", [
    ("train.batch_size=0", "full batch"),
    ("privacy.delta=0.01", "privacy.delta"),
    ("privacy.noise_multiplier=0", "noise_multiplier must be > 0"),
    ("privacy.accountant=moments", "unknown privacy.accountant"),
    ("privacy.target_epsilon=0.01", "spends epsilon"),
])
def test_configs_that_cannot_be_private_are_refused(override, message):
    with pytest.raises(jaxbp.ConfigError, match=message):
        jaxbp.train(None, overrides=[*BASE, override], progress=False)


def test_a_private_run_with_dropout_records_epsilon_and_resumes_bit_exactly(tmp_path):
    """Dropout in train mode (each example's mask its row of the batch's): the key resumes with the params."""
    base = [*BASE, "model.dropout=0.25"]
    straight = jaxbp.train(None, tmp_path / "a", overrides=base, progress=False)
    jaxbp.train(None, tmp_path / "b", overrides=[*base, "train.epochs=2"], progress=False)
    resumed = jaxbp.resume(tmp_path / "b", overrides=["train.epochs=4"], progress=False)
    assert isinstance(resumed.params, jaxbp.Stateful) and resumed.summary["modes"]["modal_layers"] == ["dropout"]
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), straight.params, resumed.params)  # the key too
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    q, steps = 20 / 288, [row["step"] for row in rows]  # 320 training rows, 32 held out for validation: not sampled
    assert [row["epsilon"] for row in rows] == [epsilon(q, 1.0, s, 1e-4) for s in steps]
    p = straight.summary["privacy"]
    assert p["epsilon"] == rows[-1]["epsilon"] and (p["q"], p["steps"], p["noise_multiplier"]) == (q, steps[-1], 1.0)


def test_cli_trains_privately_to_a_target_epsilon_and_prints_it(tmp_path, capsys):
    code = cli_main(["train", "--set", "privacy.enabled=true", "--set", "model.dropout=0.25",
                     "--set", "privacy.target_epsilon=3", "--set",
                     "data.name=moons", "--set", "data.n=300", "--set", "train.epochs=2", "--set",
                     "model.hidden=[8]", "--set", "train.plots=false", "--set", "privacy.delta=1e-4",
                     "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0 and " eps 3.00" in out and "private: epsilon 3.000" in out, out


def test_a_private_run_on_a_mesh_is_the_one_device_run(host_devices):
    """A seed pair over replica 2 x data 2 host devices, its Poisson batches split over the data axis (capacity
    padded from 43 to a multiple of 2, masked), with dropout (a row's mask is its own, whatever the capacity):
    in float64 replica 0 ends within 1e-10 of the one-device run."""
    base = [*BASE, "train.epochs=2", "train.precision=float64", "model.dropout=0.25"]
    one = jaxbp.train(None, overrides=base, progress=False)
    pair = jaxbp.train(None, overrides=[*base, "train.devices=4", "train.replicas=2"], progress=False)
    assert pair.summary["mesh"] == {"replica": 2, "data": 2}
    assert (one.summary["privacy"]["capacity"], pair.summary["privacy"]["capacity"]) == (43, 44)
    assert pair.summary["privacy"]["epsilon"] == one.summary["privacy"]["epsilon"]
    for a, c in zip(*(jax.tree.leaves(r.params) for r in (one, pair))):
        np.testing.assert_allclose(np.asarray(c)[0], a, rtol=0, atol=1e-10)
    w = jaxbp.trainable(pair.params)[0]["w"]
    assert not np.allclose(w[0], w[1])  # the other seed: other params, noise and masks



def test_a_private_run_resolves_its_unset_batch_size_and_rate_for_dp_sgd():
    from jaxbp.config import TrainConfig
    from jaxbp.config.optimizer import default_rate
    from jaxbp.training.build import build, resolved_train

    assert [resolved_train(TrainConfig(), n, True).batch_size for n in (1438, 240, 3)] == [256, 60, 1]  # n / 4
    assert resolved_train(TrainConfig(), 1438, False).batch_size == 32
    assert resolved_train(TrainConfig(batch_size=64), 1438, True).batch_size == 64  # a key set is kept
    assert [resolved_train(TrainConfig(), 1438, p, 3).batch_size for p in (False, True)] == [30, 255]  # 3 devices
    assert resolved_train(TrainConfig(batch_size=32), 1438, False, 3).batch_size == 32  # set: refused where it runs
    assert [default_rate(False, b) for b in (256, 64, 60, None)] == [0.3, 0.075, 0.0703, 0.2]  # 0.3 per 256
    assert (default_rate(True), default_rate(True, 256)) == (0.02, 0.02)  # mse / huber
    assert {default_rate(r, b, name) for r in (False, True) for b in (None, 256) for name in ("adam", "adamw",
            "rmsprop")} == {1e-3}  # an adaptive optimizer's step is about its rate: optax's and Keras's 1e-3
    adam = build(jaxbp.load_config(None, ["optimizer.name=adam", "data.name=moons", "data.n=100"])).config
    assert adam.optimizer.learning_rate == 1e-3  # not sgd's 0.2, which moves every weight by 0.2 a step
    private = ["privacy.enabled=true", "privacy.noise_multiplier=4.7", "data.name=digits"]
    config = build(jaxbp.load_config(None, private)).config  # digits' defaults (32, 0.2) diverged: 73%
    assert (config.train.batch_size, config.optimizer.learning_rate) == (256, 0.3)
    config = build(jaxbp.load_config(None, [*private, "optimizer.learning_rate=0.5"])).config
    assert (config.train.batch_size, config.optimizer.learning_rate) == (256, 0.5)
    shown = jaxbp.config.print_config(jaxbp.load_config(None, private))
    assert "# batch_size is unset: the run writes 32; a private run 256" in shown
    assert "# learning_rate is unset: the run writes 0.2 for sgd (a private run 0.3 x train.batch_size / 256" in shown
    assert "0.001 for adam, adamw, rmsprop" in shown


def test_the_default_private_run_trains_and_a_planted_rate_is_named_with_advice(tmp_path, capsys):
    # privacy on, everything else the defaults (spiral, 64-64, the resolved batch 256 and rate 0.3), 2 epochs
    assert cli_main(["train", "--set", "privacy.enabled=true", "--set", "privacy.noise_multiplier=1.5", "--set",
                     "train.epochs=2", "--set", "train.plots=false", "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "warning" not in capsys.readouterr().out and "warnings" not in summary and summary["test_loss"] < 1.2
    assert "batch_size = 256" in (tmp_path / "run" / "config.toml").read_text()
    # a rate 100x too large: finite, but the loss climbs back above epoch 1's; one line names both keys
    # on the whole training split, as measured (with the default validation split this rate happens to settle)
    bad = jaxbp.train(None, tmp_path / "bad", overrides=[*BASE, "optimizer.learning_rate=30",
                                                         "data.validation_fraction=0"], progress=False)
    [warning] = bad.summary["warnings"]
    assert "the steps are too large" in warning and "optimizer.learning_rate (now 30.0)" in warning
    assert "raise train.batch_size (now 20" in warning and warning in (tmp_path / "bad" / "train.log").read_text()
    assert "warnings" not in jaxbp.train(None, overrides=[*BASE, "optimizer.learning_rate=3"], progress=False).summary
