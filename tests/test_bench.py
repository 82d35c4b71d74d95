"""``jaxbp bench`` runs at a tiny size and writes well-formed tables; its contenders agree. No timing is asserted."""

import json

import jax
import numpy as np
import optax
import pytest

from jaxbp import cli
from jaxbp.bench import contenders as bench_contenders
from jaxbp.bench import special as bench_special
from jaxbp.bench import targets as bench_targets
import jaxbp as jaxbp_package
from jaxbp import make_train_step
from jaxbp.bench.timing import CONFIGS, useful_flops

SMALL = [3, 5, 4]


def _tables_are_well_formed(text):
    for block in text.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        if rows:
            assert len({row.count("|") for row in rows}) == 1, block
            assert set(rows[1].replace("|", "")) == {"-"}, block


def test_quick_bench_writes_markdown_and_json(tmp_path):
    argv = ["bench", "--quick", "--configs", "toy", "--batches", "8", "--rounds", "1", "--block-ms", "1",
            "--out", str(tmp_path), "--parts", "steps,per-example"]
    assert cli.main(argv) == 0
    results = json.loads((tmp_path / "results-cpu-quick.json").read_text())
    text = (tmp_path / "results-cpu-quick.md").read_text()
    _tables_are_well_formed(text)
    assert {"jax", "jaxlib", "device", "XLA_FLAGS", "torch"} <= set(results["environment"])
    (row,) = results["steps"]
    assert {"jaxbp", "jax.grad", "numpy", "numpy-1t"} <= set(row["times"])
    assert row["ratios"]["jaxbp/jax.grad"] > 0 and results["matmul"]["gflops"]["float32"] > 0
    assert bench_contenders.torch_available() == ("torch" in row["times"])
    assert results["targets"] == [] and "Not judged: a quick run is a look" in text  # 1 round judges nothing
    assert any(note.startswith("A quick run judges no target") for note in results["notes"])
    assert "missed by" not in text and "| toy | float32 | 8 |" in text
    judged = {t["target"]: t for t in bench_targets.targets(results)}  # what a full run would judge, from these rows
    assert judged["PyTorch / jaxbp time, mnist n=1024"]["detail"] == "not measured"
    ynn_off = judged["per-example / batched temporary memory, YNNPACK off"]
    assert (ynn_off["met"] is True) if jax.default_backend() == "cpu" else (ynn_off["detail"] == "not applicable off the CPU")
    assert len(judged) == 15


def test_a_full_run_judges_its_targets_and_judge_repeats_them(tmp_path, capsys):
    argv = ["bench", "--configs", "toy", "--batches", "8", "--rounds", "1", "--block-ms", "1", "--parts", "steps",
            "--no-torch", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    results = json.loads((tmp_path / "results-cpu.json").read_text())
    assert len(results["targets"]) == 15 and results["command"].startswith("jaxbp bench --suite cpu --configs toy")
    capsys.readouterr()
    assert cli.main(["bench", "--judge", str(tmp_path / "results-cpu.json")]) == 0
    assert "| target |" in capsys.readouterr().out


def test_accelerator_suite_is_a_ready_command(tmp_path):
    argv = ["bench", "--suite", "accelerator", "--quick", "--configs", "toy", "--batches", "8", "--rounds", "1",
            "--block-ms", "1", "--parts", "steps", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    results = json.loads((tmp_path / "results-accelerator-quick.json").read_text())
    assert [r["dtype"] for r in results["steps"]] == ["float32", "bfloat16"]
    assert set(results["matmul"]["gflops"]) == {"float32", "bfloat16"}
    _tables_are_well_formed((tmp_path / "results-accelerator-quick.md").read_text())


def test_without_torch_the_bench_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_contenders, "torch_available", lambda: False)
    argv = ["bench", "--quick", "--configs", "toy", "--batches", "4", "--rounds", "1", "--block-ms", "1",
            "--parts", "steps", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    results = json.loads((tmp_path / "results-cpu-quick.json").read_text())
    assert "torch" not in results["steps"][0]["times"]
    assert any("PyTorch is not installed" in note for note in results["notes"])


def test_fused_replica_and_compile_measurements_are_well_formed():
    (fused,) = bench_special.fused_throughput([4], rounds=1, block_s=0.001, examples=32)
    assert fused["steps"] == 8 and fused["fused_examples_per_s"] > 0
    replicas = bench_special.replicas(count=2, n=4, steps=2, rounds=1, block_s=0.001)
    assert replicas["speedup_per_step"] > 0 and replicas["vmapped_fused_s"] > 0
    rows = bench_special.compile_times([1, 2], reps=1, width=8, n=4)
    assert [r["hidden_layers"] for r in rows] == [1, 2] and all(r["jaxbp_s"] > 0 for r in rows)
    assert bench_special.slope(rows, "jaxbp_s") == pytest.approx(rows[1]["jaxbp_s"] - rows[0]["jaxbp_s"])


def test_unknown_config_is_a_readable_error(capsys):
    assert cli.main(["bench", "--configs", "nope"]) == 2
    assert "unknown config ['nope']; choose from toy, mnist, deep" in capsys.readouterr().err


def test_every_contender_makes_the_same_sgd_update():
    with jax.default_matmul_precision("highest"):  # no TF32 on a GPU: numpy and PyTorch's CPU steps have none
        contenders = bench_contenders.all_contenders(SMALL, 16)
        _run_all(contenders)
    reference = contenders["jax.grad"].params()
    start = bench_contenders._to_numpy(bench_contenders.start_params(SMALL)[1])
    assert any(not np.allclose(a["w"], b["w"]) for a, b in zip(reference, start))  # the step moved the weights
    for name, contender in contenders.items():
        for mine, ref in zip(contender.params(), reference):
            for leaf in ("w", "b"):
                np.testing.assert_allclose(mine[leaf], ref[leaf], rtol=0, atol=1e-6, err_msg=name)


def _run_all(contenders):
    for contender in contenders.values():
        if contender.prepare:
            contender.prepare()
        contender.run(2)


def test_per_example_step_matches_batched_step_without_a_larger_temporary(xla_cpu, optimized):
    (row,) = bench_special.memory([("mnist", 256)])
    assert row["ratio"] <= 1.5
    model, params = bench_contenders.start_params(SMALL)
    x, y = bench_contenders.batch(SMALL, 32)
    steps = [make_train_step(model, optax.sgd(0.1), per_example=p) for p in (False, True)]
    opt_state = optax.sgd(0.1).init(params)
    batched, per_example = (step(params, opt_state, x, y) for step in steps)
    for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(per_example)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_useful_flops_leave_out_the_first_layers_input_gradient():
    assert useful_flops([2, 64, 64, 2], 1) == 2 * (2 * 64 * 2 + 64 * 64 * 3 + 64 * 2 * 3)
    assert useful_flops(CONFIGS["mnist"], 10) == 10 * useful_flops(CONFIGS["mnist"], 1)
    assert CONFIGS["deep"] == [784] + [256] * 10 + [10]


def test_missed_targets_say_by_how_much():
    results = {"steps": [{"config": "toy", "n": 128, "dtype": "float32", "times": {"jaxbp": 1e-4},
                          "ratios": {"jaxbp/jax.grad": 1.2, "torch_best/jaxbp": 3.0}, "roofline": {}}],
               "matmul": {"gflops": {"float32": 100.0}}, "toy_flops_per_example": useful_flops(CONFIGS["toy"], 1)}
    judged = {t["target"]: t for t in bench_targets.targets(results)}
    torch = judged["PyTorch / jaxbp time, toy n=128"]
    assert torch["met"] is False and torch["why"].startswith("missed by 25%")
    assert judged["hand-written / jax.grad step, n < 1024 (worst)"]["why"].startswith("missed by 9.1%")
    assert judged["toy throughput, fused multi-step mode"]["met"] is None
    results["steps"][0]["times"]["torch_best"] = 3e-4
    results["fused"] = [{"n": 128, "steps": 512, "fused_examples_per_s": 2.56e6, "fused_speedup": 1.5}]
    torch = {t["target"]: t for t in bench_targets.targets(results)}["PyTorch / jaxbp time, toy n=128"]
    assert "a step costs 50 us, 6.0x less than PyTorch's; the target is judged on the single-call step" in torch["why"]


def test_a_miss_against_a_negative_threshold_names_both_numbers_not_a_negative_percentage():
    # compile-time growth with 3 noisy depths can give jax.grad a negative slope: "missed by -269.5%" was printed
    assert bench_targets._missed_by(3.5, -2.07, False) == "missed (3.5 against -2.07)"
    assert bench_targets._missed_by(1.2, 1.1, False) == "missed by 9.1%"


@pytest.mark.parametrize("spread,word", [(0.04, "inside"), (0.01, "beyond")])
def test_a_near_miss_is_set_against_the_ratios_spread(spread, word):
    row = {"config": "toy", "n": 8192, "dtype": "float32", "times": {}, "roofline": {},
           "ratios": {"jaxbp/jax.grad": 1.07}, "ratio_spread": spread}
    judged = {t["target"]: t for t in bench_targets.targets({"steps": [row], "matmul": {"gflops": {}}})}
    why = judged["hand-written / jax.grad step, n >= 1024 (worst)"]["why"]
    assert why.startswith(f"missed by 1.9%, {word} this run's round-to-round spread of the ratio (+-{100 * spread:.1f}%)")


def test_only_the_checker_and_the_bench_reference_call_jax_autodiff():
    import pathlib
    import re

    autodiff = re.compile(r"\bjax\.(grad|vjp|jvp|jacrev|jacfwd|value_and_grad|linearize|linear_transpose)\(")
    package = pathlib.Path(jaxbp_package.__file__).parent
    callers = {p.relative_to(package).as_posix() for p in package.rglob("*.py") if autodiff.search(p.read_text())}
    # checking/: the proof, where jax.grad is the reference (checking/rules.py: each backward rule's angle to it)
    # bench/privacy.py: its vmapped-dp contender is the usual jax.vmap(jax.grad) route that DP-SGD is timed against
    # bench/modes.py: its jax.grad contender differentiates the batch-norm MLP's train-mode loss
    assert {c for c in callers if not c.startswith("checking/")} <= {"bench/contenders.py", "bench/privacy.py",
                                                                     "bench/modes.py"}, callers
    assert {"checking/compare.py", "checking/models.py", "checking/rules.py"} <= callers  # the walk finds them


def test_lenet_targets_are_judged_from_the_rows():
    """The convnet suite's judge: each threshold against its row, a missed one marked in the markdown."""
    from jaxbp.bench import convnet

    row = {"n": 128, "times": {"jaxbp": 0.04, "jax.grad": 0.05, "private": 0.05},
           "ratios": {"jaxbp/jax.grad": 0.8, "private/plain time": 1.2}, "ratio_spread": 0.01,
           "temp_bytes": {"jaxbp": 10, "private": 30}, "private/plain memory": 3.0}
    results = {"rows": [row], "compile": {"jaxbp_s": 1.9, "jax.grad_s": 2.4, "ratio": 0.8},
               "environment": {"device": "cpu", "load_average": [1.0], "jax": "0"}, "rounds": 1, "block_s": 0.1}
    results["targets"] = convnet.targets(results)
    assert [t["met"] for t in results["targets"]] == [True, True, False, True]
    assert "| private/plain memory, lenet n=128 | <= 2.0 | 3.000 | **missed** |" in convnet.markdown(results)
