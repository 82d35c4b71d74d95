"""Timing for ``jaxbp bench``: interleaved rounds, medians, paired ratios, FLOP counts, the machine.

Contenders are timed in rounds, each round running every contender once in a rotated order, so
a burst of load from another process hits them all alike. Each contender reports its median
seconds per step; a ratio is the median over rounds of the ratio *within* a round.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import time
from typing import Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

THREADS = 2  # every CPU contender gets the same two threads

CONFIGS = {
    "toy": [2, 64, 64, 2],
    "mnist": [784, 512, 512, 10],
    "deep": [784] + [256] * 10 + [10],
}


class BenchModel(NamedTuple):
    """A bench config that is not an MLP (an MLP config is its list of widths): jaxbp and jax.grad time it,
    PyTorch and numpy (MLPs only) do not. The accelerator suite's ``lenet`` is one (``jaxbp.bench.convnet``)."""

    build: Callable  # () -> jaxbp Model
    input_shape: tuple  # one example's shape
    classes: int
    flops: Callable[[int], int]  # the useful FLOPs of one training step on n examples


ACCELERATOR_CONFIGS = {
    "toy": [2, 64, 64, 2],
    "wide": [1024, 4096, 4096, 1024],
    "deep-wide": [1024] + [2048] * 8 + [1024],
}  # and "lenet", a BenchModel from jaxbp.bench.convnet (jaxbp.bench.suite puts it beside these)

# A runner takes ``k`` and runs k steps from a fixed start, returning when the work is done.
# ``prepare()`` (optional, untimed) resets its state before each block.
Runner = Callable[[int], None]


def useful_flops(sizes: Sequence[int] | BenchModel, n: int) -> int:
    """Matmul FLOPs of one training step: forward, weight gradient, input gradient (none for layer 1)."""
    if isinstance(sizes, BenchModel):
        return sizes.flops(n)
    total = 0
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        total += 2 * n * d_in * d_out * (3 if i > 0 else 2)
    return total


SETTLE_S = 0.01  # idle before each block: the last contender's spinning OpenMP/BLAS threads go to sleep


def time_block(runner: Runner, k: int, prepare: Callable[[], None] | None = None) -> float:
    """Seconds per step for ``k`` steps (``prepare`` and a short settling pause are not timed)."""
    if prepare is not None:
        prepare()
    time.sleep(SETTLE_S)
    start = time.perf_counter()
    runner(k)
    return (time.perf_counter() - start) / k


def calibrate(runner: Runner, block_s: float, prepare=None, max_reps: int = 100_000) -> int:
    """Steps per block so that one block lasts about ``block_s`` (at least one step)."""
    time_block(runner, 1, prepare)  # compile, allocate, warm caches
    k = 1
    while True:
        t = time_block(runner, k, prepare)
        if t * k >= block_s / 4 or k >= max_reps:
            return int(min(max_reps, max(1, math.ceil(block_s / t))))
        k *= 4


def interleave(runners: Mapping[str, Runner], rounds: int, block_s: float,
               prepares: Mapping[str, Callable[[], None]] | None = None,
               reps: Mapping[str, int] | None = None) -> dict[str, list[float]]:
    """Seconds per step of each runner, one entry per round; the order rotates every round."""
    prepares = prepares or {}
    names = list(runners)
    reps = dict(reps or {})
    for name in names:
        if name not in reps:
            reps[name] = calibrate(runners[name], block_s, prepares.get(name))
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            times[name].append(time_block(runners[name], reps[name], prepares.get(name)))
    return times


def step_runner(step: Callable, params, state, x, y) -> Runner:
    """``run(k)``: k training steps from the same start on one batch, waited for."""

    def run(k):
        p, s = params, state
        for _ in range(k):
            p, s, _ = step(p, s, x, y)
        jax.block_until_ready(p)

    return run


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over rounds of numerator / denominator measured in the same round."""
    return median([a / b for a, b in zip(numerator, denominator)])


def paired_spread(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """``spread`` of the same-round ratios behind ``paired_ratio``."""
    return spread([a / b for a, b in zip(numerator, denominator)])


def spread(values: Sequence[float]) -> float:
    """Relative half-width of the middle half of the rounds: (q75 - q25) / (2 median)."""
    if len(values) < 4:
        return float("nan")
    q = np.percentile(values, [25, 50, 75])
    return float((q[2] - q[0]) / (2 * q[1]))


def matmul_runner(size: int, dtype=jnp.float32) -> tuple[Runner, int]:
    """A large jitted ``jnp.dot`` (size x size x size) and its FLOPs: the machine's matmul roofline."""
    a = jax.random.normal(jax.random.key(1), (size, size), dtype)
    b = jax.random.normal(jax.random.key(2), (size, size), dtype)
    dot = jax.jit(jnp.dot)

    def run(k):
        out = None
        for _ in range(k):
            out = dot(a, b)
        jax.block_until_ready(out)

    return run, 2 * size**3


def set_blas_threads(threads: int) -> bool:
    """Limit numpy's BLAS to ``threads`` threads (threadpoolctl); False where threadpoolctl is absent."""
    try:
        import threadpoolctl
    except ImportError:
        return False
    threadpoolctl.threadpool_limits(threads, user_api="blas")
    return True


def limit_threads(threads: int = THREADS) -> dict:
    """Give numpy's BLAS and PyTorch the same thread count; say how it was done."""
    how = {}
    if set_blas_threads(threads):
        how["numpy"] = f"threadpoolctl limit {threads}"
    else:  # only effective if set before numpy loaded its BLAS
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
        how["numpy"] = f"OMP/OPENBLAS/MKL_NUM_THREADS={threads} (threadpoolctl absent)"
    try:
        import torch

        torch.set_num_threads(threads)
        how["torch"] = f"torch.set_num_threads({threads})"
    except ImportError:
        how["torch"] = "not installed"
    how["xla"] = f"XLA uses the cores it has ({os.cpu_count()})"
    return how


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def environment() -> dict:
    """Versions, device, XLA_FLAGS and the machine: recorded beside every result."""
    import jaxlib

    device = jax.devices()[0]
    return {
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
        "optax": _version("optax"),
        "torch": _version("torch"),
        "jaxbp": _version("jaxbp"),
        "backend": jax.default_backend(),
        "device": f"{device.platform}: {device.device_kind} x{jax.device_count()}",
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "XLA_PYTHON_CLIENT_PREALLOCATE": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
