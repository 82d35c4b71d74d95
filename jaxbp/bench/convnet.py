"""``jaxbp bench --suite lenet``: the LeNet-style convnet's SGD step, hand-written against jax.grad's,
the private step against the plain one, PyTorch's CPU convnet beside them, and compile times.

The model is ``model.preset = "lenet5"`` on 28x28x1 images (61,706 parameters); the batches are
n = 128 and 1024 of N(0, 1) images, float32. Timing is the cpu suite's: interleaved rounds,
medians, same-round ratios. Temporary memory is XLA's ``temp_size_in_bytes`` of the compiled step.
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..networks import network
from ..plugins.layers import dense
from ..plugins.presets import from_spec, preset
from ..privacy import DPConfig, private_optimizer
from ..training.steps import train_step_fn
from .contenders import LEARNING_RATE, grad_step, torch_available
from .timing import THREADS, BenchModel, environment, interleave, limit_threads, median, paired_ratio, paired_spread, step_runner

SHAPE, CLASSES, BATCHES = (28, 28, 1), 10, (128, 1024)
TARGETS = {"jaxbp/jax.grad": 1.10, "private/plain time": 2.0, "private/plain memory": 2.0,
           "compile jaxbp/jax.grad": 1.0}


def lenet():
    return network(SHAPE, [from_spec(spec) for spec in preset("lenet5")] + [dense(CLASSES)], "softmax_cross_entropy")


def useful_flops(n: int) -> int:
    """Multiply-add FLOPs of one training step of ``lenet()``: conv and dense layers' forward, weight gradient and
    input gradient (none for the first layer), as ``timing.useful_flops`` counts an MLP's; pooling adds none."""
    first = 2 * 28 * 28 * 5 * 5 * 1 * 6  # conv 5x5, 1 -> 6 channels, 28x28 out (SAME)
    rest = 2 * 10 * 10 * 5 * 5 * 6 * 16 + 2 * (400 * 120 + 120 * 84 + 84 * CLASSES)  # conv 6 -> 16 (VALID), dense
    return n * (2 * first + 3 * rest)


BENCH_MODEL = BenchModel(lenet, SHAPE, CLASSES, useful_flops)  # the accelerator suite's "lenet" config


def _batch(n: int):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((n, *SHAPE), dtype=np.float32), rng.integers(0, CLASSES, n).astype(np.int32))


def steps(n: int) -> dict:
    """name -> (jitted step, its arguments): jaxbp's, jax.grad's, and the private one (sigma 1, clip 1)."""
    model, optimizer = lenet(), optax.sgd(LEARNING_RATE)
    params = model.init(jax.random.key(0))
    x, y = map(jnp.asarray, _batch(n))
    dp = DPConfig(clip_norm=1.0, noise_multiplier=1.0, expected_batch_size=float(n))
    private = private_optimizer(optax.sgd(LEARNING_RATE), dp)
    return {"jaxbp": (jax.jit(train_step_fn(model, optimizer)), (params, optimizer.init(params), x, y)),
            "jax.grad": (grad_step(model, optimizer), (params, optimizer.init(params), x, y)),
            "private": (jax.jit(train_step_fn(model, private, privacy=dp)), (params, private.init(params), x, y))}


def torch_runner(n: int, threads: int = THREADS):
    """PyTorch's LeNet on the CPU: Conv2d/ReLU/MaxPool2d/Linear, autograd and torch.optim.SGD, NCHW."""
    import torch

    torch.set_num_threads(threads)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(400, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(), torch.nn.Linear(84, CLASSES))
    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
    x_np, y_np = _batch(n)
    x, y = torch.from_numpy(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2))), torch.from_numpy(y_np.astype(np.int64))

    def run(k):
        for _ in range(k):
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()

    return run


def temp_bytes(n: int) -> dict:
    return {name: int(step.lower(*args).compile().memory_analysis().temp_size_in_bytes)
            for name, (step, args) in steps(n).items() if name != "jax.grad"}


def compile_seconds(n: int, reps: int) -> dict:
    """Trace, lower and compile a fresh jaxbp and jax.grad step (new closures each time), alternating."""
    makers = {"jaxbp": lambda m, o: jax.jit(train_step_fn(m, o)), "jax.grad": grad_step}
    times = {name: [] for name in makers}
    for r in range(reps):
        for name in (list(makers) if r % 2 == 0 else list(makers)[::-1]):
            model, optimizer = lenet(), optax.sgd(LEARNING_RATE)
            params = jax.eval_shape(model.init, jax.random.key(0))
            args = (params, jax.eval_shape(optimizer.init, params), jax.ShapeDtypeStruct((n, *SHAPE), jnp.float32),
                    jax.ShapeDtypeStruct((n,), jnp.int32))
            start = time.perf_counter()
            makers[name](model, optimizer).lower(*args).compile()
            times[name].append(time.perf_counter() - start)
    return {"jaxbp_s": median(times["jaxbp"]), "jax.grad_s": median(times["jax.grad"]),
            "ratio": paired_ratio(times["jaxbp"], times["jax.grad"])}


def _runner(step, args):
    params, state, x, y = args
    return step_runner(step, params, state, x, y)


def measure(batches, *, rounds: int, block_s: float, torch: bool) -> dict:
    rows = []
    for n in batches:
        runners = {name: _runner(*pair) for name, pair in steps(n).items()}
        if torch:
            runners["torch"] = torch_runner(n)
        t = interleave(runners, rounds, block_s)
        memory = temp_bytes(n)
        rows.append({"n": n, "times": {k: median(v) for k, v in t.items()},
                     "ratios": {"jaxbp/jax.grad": paired_ratio(t["jaxbp"], t["jax.grad"]),
                                "private/plain time": paired_ratio(t["private"], t["jaxbp"]),
                                **({"torch/jaxbp": paired_ratio(t["torch"], t["jaxbp"])} if torch else {})},
                     "ratio_spread": paired_spread(t["jaxbp"], t["jax.grad"]),
                     "temp_bytes": memory, "private/plain memory": memory["private"] / max(memory["jaxbp"], 1)})
        print(f"  lenet n={n:<5d} jaxbp {1e3 * rows[-1]['times']['jaxbp']:.2f} ms, jaxbp/jax.grad "
              f"{rows[-1]['ratios']['jaxbp/jax.grad']:.3f}", file=sys.stderr, flush=True)
    return {"rows": rows}


def targets(results: dict) -> list[dict]:
    out = []
    for row in results["rows"]:
        for name, value in (("jaxbp/jax.grad", row["ratios"]["jaxbp/jax.grad"]),
                            ("private/plain time", row["ratios"]["private/plain time"]),
                            ("private/plain memory", row["private/plain memory"])):
            out.append({"target": f"{name}, lenet n={row['n']}", "threshold": TARGETS[name], "value": value,
                        "met": value <= TARGETS[name]})
    ratio = results["compile"]["ratio"]
    out.append({"target": "compile time jaxbp/jax.grad, lenet", "threshold": 1.0, "value": ratio, "met": ratio <= 1.0})
    return out


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [f"# jaxbp bench --suite lenet", "", f"{env['device']}; load average {env['load_average']}; "
             f"jax {env.get('jax')}, {results['rounds']} rounds of {results['block_s']} s blocks.", "",
             "| n | jaxbp ms | jax.grad ms | private ms | torch ms | jaxbp/jax.grad | private/plain time | "
             "private/plain temp memory | torch/jaxbp |", "|---|---|---|---|---|---|---|---|---|"]
    for row in results["rows"]:
        t, r = row["times"], row["ratios"]
        torch_ms = f"{1e3 * t['torch']:.2f}" if "torch" in t else "-"
        lines.append(f"| {row['n']} | {1e3 * t['jaxbp']:.2f} | {1e3 * t['jax.grad']:.2f} | {1e3 * t['private']:.2f} | "
                     f"{torch_ms} | {r['jaxbp/jax.grad']:.3f} | {r['private/plain time']:.2f} | "
                     f"{row['private/plain memory']:.2f} | {r.get('torch/jaxbp', float('nan')):.2f} |")
    c = results["compile"]
    lines += ["", f"Compile (trace, lower, compile; n=128): jaxbp {c['jaxbp_s']:.2f} s, jax.grad {c['jax.grad_s']:.2f} s, "
              f"ratio {c['ratio']:.2f}.", "", "| target | threshold | measured | |", "|---|---|---|---|"]
    lines += [f"| {t['target']} | <= {t['threshold']} | {t['value']:.3f} | {'met' if t['met'] else '**missed**'} |"
              for t in results["targets"]]
    return "\n".join(lines) + "\n"


def run(args, write) -> int:
    start = time.perf_counter()
    rounds = args.rounds or (3 if args.quick else 11)
    block_s = args.block_ms / 1e3 if args.block_ms else 0.05 if args.quick else 0.2
    threads = limit_threads()
    batches = [int(b) for b in args.batches.split(",")] if args.batches else list(BATCHES[:1] if args.quick else BATCHES)
    results = {"suite": "lenet", "quick": args.quick, "environment": environment(), "threads": threads,
               "rounds": rounds, "block_s": block_s}
    print(f"jaxbp bench --suite lenet: {results['environment']['device']}, {rounds} rounds", file=sys.stderr, flush=True)
    results |= measure(batches, rounds=rounds, block_s=block_s, torch=not args.no_torch and torch_available())
    results["compile"] = compile_seconds(128, 1 if args.quick else 5)
    results["targets"] = targets(results)
    results["elapsed_s"] = time.perf_counter() - start
    write(args, results, markdown(results))
    return 0
