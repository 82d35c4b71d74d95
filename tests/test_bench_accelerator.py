"""``jaxbp bench --suite accelerator``: its four targets judged on recorded results (met and missed), PyTorch's
GPU contenders run through with CPU PyTorch, the private step part. No timing is asserted."""

import copy
import json
import pathlib

import jax
import numpy as np
import pytest

import jaxbp
from jaxbp import cli
from jaxbp.bench import accelerator as bench_accelerator
from jaxbp.bench import contenders as bench_contenders
from jaxbp.bench import report as bench_report
from jaxbp.bench import suite as bench_suite
from jaxbp.bench.timing import BenchModel, useful_flops

torch = pytest.importorskip("torch")
SMALL = [3, 5, 4]
BENCH = pathlib.Path(__file__).parents[1] / "bench"


def _row(config, dtype, ratio, share, n=65536):
    return {"config": config, "sizes": [4, 4], "n": n, "dtype": dtype, "useful_flops": 1, "times": {"jaxbp": 0.01},
            "ratios": {"jaxbp/jax.grad": ratio}, "gflops": {"jaxbp": share * 700e3}, "roofline": {"jaxbp": share}}


PASSING = {
    "suite": "accelerator", "quick": False, "command": "jaxbp bench --suite accelerator", "elapsed_s": 60,
    "environment": {"date": "2026-12-04", "device": "gpu: NVIDIA H200 x1", "cpu": "x", "cpu_count": 16, "jax": "0.11.2",
                    "jaxlib": "0.11.2", "numpy": "2", "optax": "0.2", "torch": None, "XLA_FLAGS": "",
                    "load_average": [0, 0, 0], "backend": "gpu"},
    "settings": {"rounds": 5}, "matmul": {"size": 8192, "gflops": {"bfloat16": 700e3}},
    "steps": [_row("wide", "bfloat16", 1.02, 0.84), _row("deep-wide", "bfloat16", 0.99, 0.76),
              _row("wide", "float32", 1.04, 0.68, n=8192), _row("wide", "float32", 1.30, 0.1, n=1024)],  # n < 8192: not judged
    "replicas": {"replicas": 16, "n": 128, "steps": 32, "sequential_s": 0.08, "vmapped_s": 0.005,
                 "sequential_fused_s": 0.014, "vmapped_fused_s": 0.0016, "speedup_per_step": 15.7, "speedup_fused": 9.4},
    "private": [{"sizes": [784, 512, 512, 10], "n": 8192, "plain_s": 2e-4, "private_s": 2.4e-4, "ratio": 1.2,
                 "memory_ratio": 1.25}, {"sizes": [784, 512, 512, 10], "n": 1024, "plain_s": 1e-4, "private_s": 2.5e-4,
                                         "ratio": 2.5, "memory_ratio": 1.05}],  # n < 8192: not judged
    "notes": [], "targets": [],
}


def _judge(tmp_path, results):
    path = tmp_path / "recorded.json"
    path.write_text(json.dumps(results))
    out = tmp_path / "judged"
    assert cli.main(["bench", "--judge", str(path), "--out", str(out)]) == 0
    judged = json.loads((out / "results-accelerator.json").read_text())
    return {t["target"]: t for t in judged["targets"]}, (out / "results-accelerator.md").read_text()


def test_a_recorded_run_that_meets_every_target_is_judged_met(tmp_path):
    judged, text = _judge(tmp_path, PASSING)
    assert len(judged) == 5 and all(t["met"] is True for t in judged.values()), judged
    assert judged["hand-written / jax.grad step, n >= 8192 (worst)"]["measured"] == 1.04
    assert "| share of the bf16 matmul peak, deep-wide n=65536 | >= 75% | 76% | met |" in text
    assert "| 784-512-512-10 | 8192 | 0.2 | 0.24 | 1.20 | 1.25 |" in text


def test_a_recorded_run_that_misses_says_which_and_by_how_much(tmp_path):
    failing = copy.deepcopy(PASSING)
    failing["steps"][2]["ratios"]["jaxbp/jax.grad"] = 1.10
    failing["steps"][1]["roofline"]["jaxbp"] = 0.60
    failing["replicas"]["speedup_per_step"] = 6.0
    failing["private"][0]["ratio"] = 1.51
    judged, text = _judge(tmp_path, failing)
    assert [t["met"] for t in judged.values()] == [False, True, False, False, False]
    assert judged["private / plain step, n >= 8192 (worst)"]["why"].startswith("missed by 16%")
    assert judged["share of the bf16 matmul peak, deep-wide n=65536"]["why"].startswith("missed by 20%")
    assert "- 16 vmapped toy replicas vs 16 sequential runs: missed by 25%" in text  # a note for each miss


def test_the_committed_h200_results_are_judged(capsys):
    assert cli.main(["bench", "--judge", str(BENCH / "results-accelerator.json")]) == 0
    text = capsys.readouterr().out
    assert "NVIDIA H200" in text and text.count("| met |") + text.count("| **missed** |") == 5


@pytest.mark.parametrize("content, message", [
    (None, "cannot read"), ("{not json", "is not JSON"), ('{"suite": "privacy"}', "holds no cpu or accelerator"),
    ('{"suite": "accelerator", "steps": [{"n": 8192}]}', "missing a field")])
def test_a_file_that_cannot_be_judged_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    assert cli.main(["bench", "--judge", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def _no_compile(*args, **kwargs):
    raise RuntimeError("no C++ compiler for inductor\nmore")


def test_pytorch_gpu_contenders_make_jaxbps_update_and_run_in_the_step_table(monkeypatch):
    """On CPU PyTorch: float32 eager (and TF32, a no-op here) make jax.grad's SGD update; bfloat16 autocast is near
    it; a torch.compile that fails leaves eager only, with a note; the rows and the table carry their columns."""
    monkeypatch.setattr(torch, "compile", _no_compile)
    cpu, notes = torch.device("cpu"), []
    reference = bench_contenders.jax_contenders(SMALL, 16)["jax.grad"]
    contenders = bench_accelerator.torch_contenders(SMALL, 16, "float32", cpu, notes)
    contenders["torch-bf16"] = bench_accelerator.torch_contenders(SMALL, 16, "bfloat16", cpu, notes)["torch"]
    assert set(contenders) == {"torch", "torch-tf32", "torch-bf16"}
    assert notes == ["torch.compile did not work here (RuntimeError: no C++ compiler for inductor), so PyTorch runs "
                     "eager only."]
    for contender in [reference, *contenders.values()]:
        if contender.prepare:
            contender.prepare()
        contender.run(2)
    for name, contender in contenders.items():
        for mine, ref in zip(contender.params(), reference.params()):
            tol = 2e-3 if name == "torch-bf16" else 1e-6  # bf16 matmuls: 8 bits of mantissa, times lr = 1e-3
            np.testing.assert_allclose(mine["w"], ref["w"], rtol=0, atol=tol, err_msg=name)
    monkeypatch.setitem(bench_suite.ACCELERATOR_CONFIGS, "small", SMALL)
    rows, _ = bench_suite.step_rows(["small"], [16], ["float32"], rounds=1, block_s=0.001, matmul_size=32, torch=False,
                                    numpy=False, notes=[], torch_device=cpu)
    assert {"jaxbp", "jax.grad", "torch", "torch-tf32"} <= set(rows[0]["times"]) and rows[0]["ratios"]["torch/jaxbp"] > 0
    results = copy.deepcopy(PASSING) | {"steps": rows, "notes": [bench_accelerator.TF32_NOTE]}
    results["targets"] = bench_accelerator.targets(results)
    text = bench_report.markdown(results)
    assert "| small | float32 | 16 |" in text and "TF32" in text


def test_a_model_that_is_not_an_mlp_joins_the_suite_as_a_bench_model(monkeypatch):
    """How a convnet (``lenet``) joins: jaxbp and jax.grad are timed on it, PyTorch's MLP steps are not."""
    net = BenchModel(lambda: jaxbp.network(3, [jaxbp.dense(5, "relu"), jaxbp.dense(4)], "softmax_cross_entropy"), (3,), 4,
                     lambda n: useful_flops(SMALL, n))
    monkeypatch.setitem(bench_suite.ACCELERATOR_CONFIGS, "net", net)
    rows, _ = bench_suite.step_rows(["net"], [16], ["float32"], rounds=1, block_s=0.001, matmul_size=32, torch=True,
                                    numpy=True, notes=[], torch_device=torch.device("cpu"))
    assert set(rows[0]["times"]) == {"jaxbp", "jax.grad"} and rows[0]["useful_flops"] == useful_flops(SMALL, 16)
    json.dumps(rows, default=float)  # the results file can hold it


def test_the_lenet_convnet_is_an_accelerator_config():
    lenet = bench_suite.SUITES["accelerator"]["configs"]["lenet"]
    x, y = bench_contenders.batch(lenet, 2)
    assert x.shape == (2, 28, 28, 1) and set(y) <= set(range(10))
    params = jax.eval_shape(lenet.build().init, jax.random.key(0))
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == 61706  # the lenet5 preset's parameters
    assert useful_flops(lenet, 3) == 3 * (2 * 235200 + 3 * (480000 + 96000 + 20160 + 1680))
