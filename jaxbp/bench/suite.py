"""``jaxbp bench``: how fast the hand-written training step is, against jax.grad, PyTorch, numpy and the matmul roofline.

Every measurement is interleaved with its contenders and reported as medians and same-round
ratios; the run writes ``results-<suite>.md`` and ``.json`` (versions, device and XLA_FLAGS
included) and judges the speed targets (``targets.py``) on them. ``--suite accelerator`` runs wider models
at larger batches in float32 and bfloat16 on whatever ``jax.devices()`` offers.
"""

from __future__ import annotations

import sys
import time

import jax.numpy as jnp

from . import accelerator as bench_accelerator
from . import contenders as bench_contenders
from . import convnet as bench_convnet
from . import modes as bench_modes
from . import privacy as bench_privacy
from . import report as bench_report
from . import special as bench_special
from ..errors import ConfigError
from .judge import JUDGES, judge
from .results import command, write
from .timing import ACCELERATOR_CONFIGS as MLP_ACCELERATOR_CONFIGS
from .timing import (CONFIGS, BenchModel, environment, interleave, limit_threads, matmul_runner, median,
                           paired_ratio, paired_spread, spread, useful_flops)

ACCELERATOR_CONFIGS = MLP_ACCELERATOR_CONFIGS | {"lenet": bench_convnet.BENCH_MODEL}  # the convnet on the GPU too
PARTS = ("steps", "fused", "replicas", "compile", "per-example", "private")
SUITES = {
    "cpu": {"configs": CONFIGS, "batches": (128, 1024, 8192), "dtypes": ("float32",), "matmul": 2048,
            "parts": PARTS[:5]},
    "accelerator": {"configs": ACCELERATOR_CONFIGS, "batches": (1024, 8192, 65536), "dtypes": ("float32", "bfloat16"),
                    "matmul": 8192, "parts": ("steps", "replicas", "private")},
    "privacy": {"configs": {"mnist": CONFIGS["mnist"]}, "batches": (1024,), "dtypes": ("float32",), "matmul": 0},
    "scale": {},  # jaxbp.bench.scale: 1, 2, 4 devices and 16 replicas split over them
    "lenet": {},  # jaxbp.bench.convnet: the LeNet-style convnet at n = 128 and 1024, PyTorch's beside it
    "modes": {},  # jaxbp.bench.modes: batch norm against jax.grad, dropout against a dense step
}


def _names(text, known, what, default=None):
    if not text:
        return list(default or known)
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in names if t not in known]
    if unknown:
        raise ConfigError(f"unknown {what} {unknown}; choose from {', '.join(map(str, known))}")
    return names


def _batches(text, default):
    try:
        return [int(t) for t in text.split(",")] if text else list(default)
    except ValueError:
        raise ConfigError(f"--batches takes comma-separated integers, got {text!r}") from None


def step_rows(configs, batches, dtypes, *, rounds, block_s, matmul_size, torch, numpy, notes,
              torch_device=None) -> tuple[list, dict]:
    """Time every contender on every (config, n, dtype), interleaved with a large matmul; PyTorch on
    ``torch_device`` (a CUDA device) as well where one is given."""
    rows, peaks = [], {}
    for dtype in dtypes:
        dot, dot_flops = matmul_runner(matmul_size, jnp.dtype(dtype))
        peaks[dtype] = []
        for config in configs:
            sizes = (CONFIGS | ACCELERATOR_CONFIGS)[config]
            for n in batches:
                cpu = dtype == "float32" and (torch or numpy)
                contenders = bench_contenders.all_contenders(sizes, n, dtype=jnp.dtype(dtype), torch=cpu and torch,
                                                             numpy=cpu and numpy)
                if torch_device is not None and not isinstance(sizes, BenchModel):
                    contenders |= bench_accelerator.torch_contenders(sizes, n, dtype, torch_device, notes)
                runners = {name: c.run for name, c in contenders.items()} | {"matmul": dot}
                prepares = {name: c.prepare for name, c in contenders.items() if c.prepare}
                t = interleave(runners, rounds, block_s, prepares)
                flops = useful_flops(sizes, n)
                peak = [dot_flops / s for s in t["matmul"]]
                peaks[dtype] += peak
                for kind in ("torch", "numpy"):
                    if kind in t and f"{kind}-1t" in t:
                        t[f"{kind}_best"] = [min(a, b) for a, b in zip(t[kind], t[f"{kind}-1t"])]
                    elif kind in t:
                        t[f"{kind}_best"] = t[kind]
                ratios = {"jaxbp/jax.grad": paired_ratio(t["jaxbp"], t["jax.grad"])}
                ratios |= {f"{k}/jaxbp": paired_ratio(t[k], t["jaxbp"]) for k in t if k not in ("jaxbp", "jax.grad", "matmul")}
                rows.append({
                    "config": config, "n": n, "sizes": f"{sizes.input_shape} -> {sizes.classes}"
                    if isinstance(sizes, BenchModel) else sizes, "dtype": dtype, "useful_flops": flops,
                    "times": {k: median(v) for k, v in t.items() if k != "matmul"},
                    "spread": {k: round(spread(v), 3) for k, v in t.items()},
                    "ratios": ratios,
                    "ratio_spread": round(paired_spread(t["jaxbp"], t["jax.grad"]), 3),  # of jaxbp/jax.grad
                    "gflops": {k: flops / median(v) / 1e9 for k, v in t.items() if k != "matmul"},
                    "roofline": {k: median([flops / a / p for a, p in zip(v, peak)]) for k, v in t.items() if k != "matmul"},
                })
                print(f"  {config:9s} {dtype:8s} n={n:<6d} jaxbp {1e3 * rows[-1]['times']['jaxbp']:.3f} ms, "
                      f"jaxbp/jax.grad {ratios['jaxbp/jax.grad']:.3f}", file=sys.stderr, flush=True)
    if torch and not bench_contenders.torch_available():
        notes.append("PyTorch is not installed (`pip install jaxbp[bench]`), so its columns are empty.")
    return rows, {"size": matmul_size, "gflops": {d: median(p) / 1e9 for d, p in peaks.items() if p}}


def run(args) -> int:
    if args.judge:
        return judge(args)  # a recorded results file, judged again
    if args.suite == "privacy":
        return bench_privacy.run(args)  # its own contenders, targets and tables
    if args.suite == "scale":
        from . import scale as bench_scale  # its host devices exist before the backend starts (cli/bench.py)

        return bench_scale.run(args)
    if args.suite == "lenet":
        return bench_convnet.run(args, write)
    if args.suite == "modes":
        return bench_modes.run(args)
    start = time.perf_counter()
    suite = SUITES[args.suite]
    configs = _names(args.configs, suite["configs"], "config")
    batches = _batches(args.batches, suite["batches"][:1] if args.quick else suite["batches"])
    parts = _names(args.parts, PARTS, "part", suite["parts"])
    rounds = args.rounds or (3 if args.quick else 11)
    block_s = args.block_ms / 1e3 if args.block_ms else 0.03 if args.quick else 0.1
    accelerator = args.suite == "accelerator"
    threads = limit_threads()
    env = environment()
    notes = []
    results = {"suite": args.suite, "quick": args.quick, "command": command(args),
               "environment": env, "threads": threads,
               "settings": {"configs": configs, "batches": batches, "parts": parts, "rounds": rounds, "block_s": block_s},
               "toy_flops_per_example": useful_flops(CONFIGS["toy"], 1)}
    print(f"jaxbp bench --suite {args.suite}: {env['device']}, {rounds} rounds", file=sys.stderr, flush=True)
    gpu_torch = bench_accelerator.torch_device() if accelerator and not args.no_torch else None
    results["steps"], results["matmul"] = step_rows(
        configs, batches, suite["dtypes"], rounds=rounds, block_s=block_s,
        matmul_size=1024 if args.quick else suite["matmul"], torch=not args.no_torch and not accelerator,
        numpy=not accelerator, notes=notes, torch_device=gpu_torch) if "steps" in parts else ([], {"size": 0, "gflops": {}})
    if accelerator and "steps" in parts:
        notes.append(bench_accelerator.TF32_NOTE if gpu_torch is not None else "PyTorch sees no CUDA device here (or "
                     "is not installed) and numpy runs on the CPU only, so this suite times jaxbp, jax.grad and the matmul.")
    if gpu_torch is not None and "steps" in parts and env.get("XLA_PYTHON_CLIENT_PREALLOCATE") != "false":
        notes.append("JAX took 75% of the GPU's memory at start and PyTorch shared the rest; with "
                     "XLA_PYTHON_CLIENT_PREALLOCATE=false both allocate on demand.")
    if "private" in parts:
        results["private"] = bench_accelerator.private_rows(batches, rounds=rounds, block_s=block_s)
    if "fused" in parts:
        results["fused"] = bench_special.fused_throughput(batches, rounds=rounds, block_s=block_s)
    if "replicas" in parts:
        results["replicas"] = bench_special.replicas(rounds=rounds, block_s=block_s, steps=8 if args.quick else 32)
        results["replicas"]["flops_per_step"] = useful_flops(CONFIGS["toy"], results["replicas"]["n"])
    if "compile" in parts:
        depths = (1, 8, 64) if args.quick else (1, 2, 4, 8, 16, 32, 64)
        results["compile"] = bench_special.compile_times(depths, reps=1 if args.quick else 11)
        results["compile_slopes"] = {k: bench_special.slope(results["compile"], f"{k}_s") for k in ("jaxbp", "jax.grad")}
    if "per-example" in parts:
        pairs = [(c, n) for c in configs if c in CONFIGS for n in batches]
        memory = bench_special.memory(pairs)
        temp = {(r["config"], r["n"]): r["per_example_bytes"] for r in memory}
        results["per_example"] = {
            "memory": memory,
            "memory_no_ynn": "not applicable off the CPU" if env["backend"] != "cpu" else bench_special.memory_without_ynnpack(pairs),
            "time": bench_special.per_example_times(pairs, rounds=rounds, block_s=block_s, temp=temp)}
    results["elapsed_s"] = time.perf_counter() - start
    results["load_average_end"] = environment()["load_average"]
    results["targets"] = [] if args.quick else JUDGES[args.suite](results)  # `--judge FILE` judges one if asked
    if args.quick:  # 3 rounds, the smallest batch, a 1024 matmul for the roofline: a look only
        notes.append("A quick run judges no target: its 3 rounds are too few to tell a ratio from noise, it times the "
                     "smallest batch only, and its roofline comes from a 1024 matmul, which runs slower than the "
                     "step's own matmuls, so a roofline share can read over 100%. Run `jaxbp bench` to judge the "
                     "targets.")
    if not accelerator and "steps" in parts:
        notes.append("On a shared machine PyTorch's OpenMP pool and OpenBLAS with 2 threads stall whenever another "
                     "process holds a core, so both are also timed on 1 thread and judged by the faster; the load "
                     "average is in the header. Compare runs on a quiet machine.")
    results["notes"] = notes  # a missed target's note is added to the markdown from its "why"
    write(args, results, bench_report.markdown(results))
    return 0
