"""The bench's other measurements: fused toy throughput, vmapped replicas, compile time, per-example steps.

Run as ``python -m jaxbp.bench.special memory CONFIG:N ...`` it prints the XLA memory analysis as
JSON; the bench starts it in a child process with YNNPACK off, since XLA reads XLA_FLAGS once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..networks import mlp
from ..training.steps import init_replicas, make_replica_step, make_scan_step, make_train_step, train_step_fn
from .contenders import LEARNING_RATE, batch, grad_step, start_params
from .timing import CONFIGS, interleave, median, paired_ratio, paired_spread

TOY = CONFIGS["toy"]
YNN_OFF = "--xla_cpu_experimental_ynn_fusion_type="
TIME_LIMIT_BYTES = 4 << 30  # a per-example step needing more temporary memory than this is not timed


def _stream(sizes, steps: int, n: int, seed: int = 1):
    """``steps`` batches of ``n`` examples, stacked (K, n, ...) for a scan and split for a loop."""
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.standard_normal((steps, n, sizes[0]), dtype=np.float32))
    ys = jnp.asarray(rng.integers(0, sizes[-1], size=(steps, n)).astype(np.int32))
    return xs, ys, list(xs), list(ys)


def fused_throughput(batches, *, rounds: int, block_s: float, examples: int = 1 << 17) -> list[dict]:
    """Toy examples/s: K calls of ``make_train_step`` against one ``make_scan_step`` call over K batches."""
    model, params = start_params(TOY)
    optimizer = optax.sgd(LEARNING_RATE)
    opt_state = optimizer.init(params)
    step, scan = make_train_step(model, optimizer), make_scan_step(model, optimizer)
    rows = []
    for n in batches:
        steps = int(min(512, max(8, examples // n)))
        xs, ys, x_list, y_list = _stream(TOY, steps, n)

        def loop(k):
            for _ in range(k):
                p, s = params, opt_state
                for x, y in zip(x_list, y_list):
                    p, s, _ = step(p, s, x, y)
                jax.block_until_ready(p)

        def fused(k):
            for _ in range(k):
                jax.block_until_ready(scan(params, opt_state, xs, ys)[0])

        t = interleave({"loop": loop, "fused": fused}, rounds, block_s)
        rows.append({"n": n, "steps": steps,
                     "loop_examples_per_s": steps * n / median(t["loop"]),
                     "fused_examples_per_s": steps * n / median(t["fused"]),
                     "fused_speedup": paired_ratio(t["loop"], t["fused"])})
    return rows


def step_by_step(step, states, x_list, y_list):
    """A runner: ``k`` times, each (params, opt_state) in ``states`` trained on the batches, one call per step."""

    def run(k):
        for _ in range(k):
            for p, s in states:
                for x, y in zip(x_list, y_list):
                    p, s, _ = step(p, s, x, y)
            jax.block_until_ready(p)

    return run


def replicas(*, count: int = 16, n: int = 128, steps: int = 32, rounds: int, block_s: float) -> dict:
    """``count`` toy models trained as vmapped replicas against ``count`` runs one after another."""
    model = mlp(TOY)
    optimizer = optax.sgd(LEARNING_RATE)
    stacked = init_replicas(model, optimizer, jax.random.split(jax.random.key(0), count))
    singles = [jax.tree.map(lambda a, i=i: a[i], stacked) for i in range(count)]
    xs, ys, x_list, y_list = _stream(TOY, steps, n)
    step, scan = make_train_step(model, optimizer), make_scan_step(model, optimizer)
    replica_step = make_replica_step(model, optimizer)
    replica_scan = make_replica_step(model, optimizer, scan=True)

    sequential = step_by_step(step, singles, x_list, y_list)
    vmapped = step_by_step(replica_step, [stacked], x_list, y_list)

    def sequential_fused(k):
        for _ in range(k):
            for p, s in singles:
                p = scan(p, s, xs, ys)[0]
            jax.block_until_ready(p)

    def vmapped_fused(k):
        for _ in range(k):
            jax.block_until_ready(replica_scan(*stacked, xs, ys)[0])

    t = interleave({"sequential": sequential, "vmapped": vmapped, "sequential_fused": sequential_fused,
                    "vmapped_fused": vmapped_fused}, rounds, block_s)
    out = {"replicas": count, "n": n, "steps": steps}
    out.update({f"{name}_s": median(v) for name, v in t.items()})
    out["speedup_per_step"] = paired_ratio(t["sequential"], t["vmapped"])
    out["speedup_fused"] = paired_ratio(t["sequential_fused"], t["vmapped_fused"])
    out["speedup_fused_vs_sequential"] = paired_ratio(t["sequential"], t["vmapped_fused"])
    return out


def _compile_seconds(make_step, sizes, n: int) -> float:
    """Trace, lower and compile a fresh step (new closures, so no cache can answer)."""
    model = mlp(list(sizes))
    optimizer = optax.sgd(LEARNING_RATE)
    params = jax.eval_shape(model.init, jax.random.key(0))
    opt_state = jax.eval_shape(optimizer.init, params)
    x = jax.ShapeDtypeStruct((n, sizes[0]), jnp.float32)
    y = jax.ShapeDtypeStruct((n,), jnp.int32)
    start = time.perf_counter()
    make_step(model, optimizer).lower(params, opt_state, x, y).compile()
    return time.perf_counter() - start


def compile_times(depths, *, reps: int, width: int = 256, n: int = 128) -> list[dict]:
    """Compile seconds of the hand-written and the jax.grad step, 784-(width x L)-10, L in ``depths``."""
    makers = {"jaxbp": lambda m, o: jax.jit(train_step_fn(m, o)), "jax.grad": grad_step}
    rows = []
    for depth in depths:
        sizes = [784] + [width] * depth + [10]
        _compile_seconds(makers["jaxbp"], [2, 2, 2], 2)  # warm the tracer
        t = {name: [] for name in makers}
        for r in range(reps):
            for name in (list(makers) if r % 2 == 0 else list(makers)[::-1]):
                t[name].append(_compile_seconds(makers[name], sizes, n))
        rows.append({"hidden_layers": depth, "jaxbp_s": median(t["jaxbp"]), "jax.grad_s": median(t["jax.grad"]),
                     "ratio": paired_ratio(t["jaxbp"], t["jax.grad"]),
                     "ratio_spread": paired_spread(t["jaxbp"], t["jax.grad"])})
    return rows


def slope(rows, key: str) -> float:
    """Least-squares seconds per hidden layer."""
    depth = np.array([r["hidden_layers"] for r in rows], float)
    return float(np.polyfit(depth, [r[key] for r in rows], 1)[0]) if len(rows) > 1 else float("nan")


def _temp_bytes(sizes, n: int, per_example: bool) -> int:
    model, params = start_params(sizes)
    optimizer = optax.sgd(LEARNING_RATE)
    x = jax.ShapeDtypeStruct((n, sizes[0]), jnp.float32)
    y = jax.ShapeDtypeStruct((n,), jnp.int32)
    step = jax.jit(train_step_fn(model, optimizer, per_example=per_example))
    analysis = step.lower(params, optimizer.init(params), x, y).compile().memory_analysis()
    return int(analysis.temp_size_in_bytes)


def memory(pairs) -> list[dict]:
    """XLA temporary memory of the batched and the per-example step, for each (config, n)."""
    rows = []
    for config, n in pairs:
        sizes = CONFIGS[config]
        batched, per_example = _temp_bytes(sizes, n, False), _temp_bytes(sizes, n, True)
        rows.append({"config": config, "n": n, "batched_bytes": batched, "per_example_bytes": per_example,
                     "ratio": per_example / batched if batched else float("nan")})
    return rows


def memory_without_ynnpack(pairs, module: str = "jaxbp.bench.special") -> list[dict] | str:
    """``memory(pairs)`` of ``module`` in a child process with XLA_FLAGS += YNN_OFF; a string says why it failed."""
    env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + YNN_OFF).strip(),
               JAX_PLATFORMS="cpu")
    args = [pair if isinstance(pair, str) else f"{pair[0]}:{pair[1]}" for pair in pairs]
    proc = subprocess.run([sys.executable, "-m", module, "memory", *args],
                          env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return f"child process failed: {proc.stderr.strip().splitlines()[-1:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def per_example_times(pairs, *, rounds: int, block_s: float, temp: dict) -> list[dict]:
    """Seconds per step, per-example (vmapped single-example rule) against batched, interleaved."""
    rows = []
    for config, n in pairs:
        if temp.get((config, n), 0) > TIME_LIMIT_BYTES:
            rows.append({"config": config, "n": n, "skipped": "per-example temporary memory over 4 GiB"})
            continue
        sizes = CONFIGS[config]
        model, params = start_params(sizes)
        optimizer = optax.sgd(LEARNING_RATE)
        opt_state = optimizer.init(params)
        x, y = (jnp.asarray(a) for a in batch(sizes, n))
        runners = {}
        for name, per_example in (("batched", False), ("per_example", True)):
            step = make_train_step(model, optimizer, per_example=per_example)

            def run(k, step=step):
                p, s = params, opt_state
                for _ in range(k):
                    p, s, _ = step(p, s, x, y)
                jax.block_until_ready(p)

            runners[name] = run
        t = interleave(runners, rounds, block_s)
        rows.append({"config": config, "n": n, "batched_s": median(t["batched"]),
                     "per_example_s": median(t["per_example"]),
                     "ratio": paired_ratio(t["per_example"], t["batched"])})
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] != ["memory"]:
        sys.exit("usage: python -m jaxbp.bench.special memory CONFIG:N ...")
    pairs = [(a.split(":")[0], int(a.split(":")[1])) for a in sys.argv[2:]]
    print(json.dumps(memory(pairs)))
