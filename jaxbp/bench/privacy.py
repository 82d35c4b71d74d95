"""``jaxbp bench --suite privacy``: what DP-SGD costs over an ordinary step, and against the usual routes.

Contenders, one SGD step of the same MLP on the same batch of n examples:

- ``plain``: ``make_train_step``, the ordinary hand-written step;
- ``jaxbp-dp``: the private step (book-keeping norms, clipped sum, noise), with a Poisson mask;
- ``vmapped-dp``: the JAX-Privacy / optax route -- ``jax.vmap(jax.grad)`` per-example gradients, then
  ``optax.per_example_global_norm_clip``, noise, SGD;
- ``opacus-ghost``: Opacus's ghost clipping (``grad_sample_mode="ghost"``, two backward passes) on the
  CPU, when ``opacus`` is installed.

Temporary memory is XLA's ``memory_analysis`` of the compiled steps, with YNNPACK on and (in a child
process) off, where the vmapped route is left out (its compile is slow). Run as ``python -m jaxbp.bench.privacy memory SIZES:N ...`` it prints that analysis as JSON.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..privacy import DPConfig, private_optimizer
from ..training.steps import make_train_step
from . import special
from .contenders import LEARNING_RATE, batch, start_params
from .results import write
from .timing import THREADS, environment, interleave, limit_threads, median, paired_ratio, paired_spread

CLIP, SIGMA = 1.0, 1.0
TARGETS = (("jaxbp-dp / plain time", "<= 1.3"), ("jaxbp-dp / plain temporary memory", "<= 1.5"),
           ("vmapped-dp / jaxbp-dp time", ">= 3"), ("opacus-ghost / jaxbp-dp time", ">= 1.0"))


def vmapped_step(model, optimizer, dp: DPConfig):
    """The usual route: every per-example gradient by ``jax.vmap(jax.grad)``, clipped with optax, summed, noised."""

    def single_loss(params, x, y):
        return model.loss(params, x[None], y[None])

    def step(params, opt_state, x, y, key):
        grads = jax.vmap(jax.grad(single_loss), in_axes=(None, 0, 0))(params, x, y)  # n x every parameter
        leaves, tree = jax.tree.flatten(grads)
        summed, _ = optax.per_example_global_norm_clip(leaves, dp.clip_norm)
        keys = jax.random.split(key, len(summed))
        noisy = [(g + dp.noise_multiplier * dp.clip_norm * jax.random.normal(k, g.shape, g.dtype))
                 / dp.expected_batch_size for g, k in zip(summed, keys)]
        updates, opt_state = optimizer.update(jax.tree.unflatten(tree, noisy), opt_state, params)
        return optax.apply_updates(params, updates), opt_state, jax.random.split(key)[0]

    return jax.jit(step)


def steps(sizes, n: int, dtype=jnp.float32) -> dict:
    """``name -> (jitted step, args)``: plain, jaxbp-dp and vmapped-dp from the same start."""
    model, params = start_params(sizes, dtype)
    x, y = (jnp.asarray(a) for a in batch(sizes, n))
    x = x.astype(dtype)
    dp = DPConfig(CLIP, SIGMA, float(n))
    plain, private = optax.sgd(LEARNING_RATE), private_optimizer(optax.sgd(LEARNING_RATE), dp)
    mask = jnp.ones(n, bool)
    return {
        "plain": (make_train_step(model, plain), (params, plain.init(params), x, y)),
        "jaxbp-dp": (make_train_step(model, private, privacy=dp), (params, private.init(params), x, y, mask)),
        "vmapped-dp": (vmapped_step(model, plain, dp), (params, plain.init(params), x, y, jax.random.key(0))),
    }


def temp_bytes(sizes, n: int, names=("plain", "jaxbp-dp", "vmapped-dp")) -> dict:
    """XLA temporary bytes of the ``names`` steps compiled, and the bytes one (n, d_out, d_in) float32 array takes."""
    out = {name: int(step.lower(*args).compile().memory_analysis().temp_size_in_bytes)
           for name, (step, args) in steps(sizes, n).items() if name in names}
    out["per_example_weight_bytes"] = 4 * n * max(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return out


def memory(specs, names=("plain", "jaxbp-dp", "vmapped-dp")) -> list[dict]:
    """``temp_bytes`` for each (sizes, n)."""
    return [{"sizes": list(sizes), "n": n, **temp_bytes(sizes, n, names)} for sizes, n in specs]


def _runner(step, args):
    state = [args]

    def run(k):
        a = state[0]
        for _ in range(k):
            out = step(*a)
            a = (out[0], out[1], *a[2:])
        jax.block_until_ready(out[0])

    return run


def opacus_runner(sizes, n: int):
    """Opacus ghost clipping on the CPU (``THREADS`` threads), or None when opacus is not installed."""
    try:
        import torch
        from opacus import PrivacyEngine
    except ImportError:
        return None
    torch.set_num_threads(THREADS)
    layers = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [torch.nn.Linear(d_in, d_out)] + ([torch.nn.ReLU()] if i < len(sizes) - 2 else [])
    net = torch.nn.Sequential(*layers)
    x_np, y_np = batch(sizes, n)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np.astype(np.int64))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=n)
    # Opacus warns that its secure RNG is off (neither side uses a cryptographic RNG here) and that its backward
    # hook fires with no input gradients (the input needs none); neither concerns the timing
    warnings.filterwarnings("ignore", message="Secure RNG turned off", category=UserWarning)
    warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
    net, optimizer, criterion, _ = PrivacyEngine().make_private(
        module=net, optimizer=torch.optim.SGD(net.parameters(), lr=LEARNING_RATE), data_loader=loader,
        criterion=torch.nn.CrossEntropyLoss(), noise_multiplier=SIGMA, max_grad_norm=CLIP,
        grad_sample_mode="ghost", poisson_sampling=False)

    def run(k):
        for _ in range(k):
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(net(x), y)
            loss.backward()
            optimizer.step()

    return run


def run(args) -> int:
    """Time and measure the contenders at mnist 784-512-512-10 (or ``--batches``), write results-privacy.md/.json."""
    start = time.perf_counter()
    threads, env = limit_threads(), environment()
    sizes = [784, 512, 512, 10]
    n = int(args.batches.split(",")[0]) if args.batches else 1024
    rounds = args.rounds or (3 if args.quick else 11)
    block_s = args.block_ms / 1e3 if args.block_ms else 0.03 if args.quick else 0.2
    print(f"jaxbp bench --suite privacy: {env['device']}, n={n}, {rounds} rounds", file=sys.stderr, flush=True)
    runners = {name: _runner(step, a) for name, (step, a) in steps(sizes, n).items()}
    notes = []
    ghost = None if args.no_torch else opacus_runner(sizes, n)
    if ghost is not None:
        runners["opacus-ghost"] = ghost
    else:
        notes.append("Opacus is not installed (pip install torch, then opacus), so its ratio is not measured.")
    t = interleave(runners, rounds, block_s)
    ratios = {"jaxbp-dp/plain": paired_ratio(t["jaxbp-dp"], t["plain"]),
              "vmapped-dp/jaxbp-dp": paired_ratio(t["vmapped-dp"], t["jaxbp-dp"])}
    if ghost is not None:
        ratios["opacus-ghost/jaxbp-dp"] = paired_ratio(t["opacus-ghost"], t["jaxbp-dp"])
    mem = memory([(sizes, n)])[0]
    no_ynn = "not applicable off the CPU" if env["backend"] != "cpu" else special.memory_without_ynnpack(
        [f"{'-'.join(map(str, sizes))}:{n}"], module="jaxbp.bench.privacy")  # YNNPACK is XLA:CPU's
    no_ynn = no_ynn if isinstance(no_ynn, str) else no_ynn[0]
    results = {"suite": "privacy", "quick": args.quick, "environment": env, "threads": threads, "sizes": sizes,
               "n": n, "rounds": rounds, "block_s": block_s, "dp": {"clip_norm": CLIP, "noise_multiplier": SIGMA},
               "times": {k: median(v) for k, v in t.items()}, "ratios": ratios,
               "spread": {"jaxbp-dp/plain": paired_spread(t["jaxbp-dp"], t["plain"])},
               "memory": mem, "memory_no_ynn": no_ynn}
    memory_ratio = mem["jaxbp-dp"] / mem["plain"]
    measured = [ratios["jaxbp-dp/plain"], memory_ratio, ratios["vmapped-dp/jaxbp-dp"],
                ratios.get("opacus-ghost/jaxbp-dp")]
    met = [measured[0] <= 1.3, measured[1] <= 1.5, measured[2] >= 3, None if measured[3] is None else measured[3] >= 1]
    results["targets"] = [{"target": name, "threshold": threshold, "measured": m, "met": ok}
                          for (name, threshold), m, ok in zip(TARGETS, measured, met)]
    results["notes"] = notes
    results["elapsed_s"] = time.perf_counter() - start
    results["load_average_end"] = environment()["load_average"]
    write(args, results, markdown(results))
    return 0


def _x(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(results) -> str:
    env, mem = results["environment"], results["memory"]
    met = {True: "met", False: "**missed**", None: "not measured"}
    lines = ["# jaxbp bench: privacy suite", "",
             f"{env['date']}; {env['device']}; {env['cpu']} ({env['cpu_count']} cores); jax {env['jax']}, "
             f"optax {env['optax']}, torch {env['torch'] or 'absent'}; load average {env['load_average']} at the "
             f"start, {results['load_average_end']} at the end; {results['rounds']} interleaved rounds, medians, "
             f"ratios from this one run (a shared machine: expect a few percent of noise).", "",
             f"Model {'-'.join(map(str, results['sizes']))} relu, n = {results['n']}, float32, SGD; DP-SGD with "
             f"clip norm {CLIP} and noise multiplier {SIGMA}.", "", "| target | threshold | measured | |",
             "|---|---|---|---|"]
    lines += [f"| {t['target']} | {t['threshold']} | {_x(t['measured'])} | {met[t['met']]} |" for t in results["targets"]]
    lines += ["", "| step | ms | temporary MiB (YNNPACK on) | temporary MiB (YNNPACK off) |", "|---|---|---|---|"]
    off = results["memory_no_ynn"]
    for name, seconds in results["times"].items():
        on_mib = f"{mem[name] / 2**20:.1f}" if name in mem else "-"
        off_mib = f"{off[name] / 2**20:.1f}" if isinstance(off, dict) and name in off else "-"
        lines.append(f"| {name} | {1e3 * seconds:.2f} | {on_mib} | {off_mib} |")
    lines += ["", f"One (n, d_out, d_in) float32 per-example weight gradient of the widest layer would take "
              f"{mem['per_example_weight_bytes'] / 2**20:.0f} MiB; the private step's whole temporary memory is "
              f"{mem['jaxbp-dp'] / 2**20:.1f} MiB."]
    lines += [f"- {note}" for note in results["notes"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:2] != ["memory"]:
        sys.exit("usage: python -m jaxbp.bench.privacy memory D0-D1-...:N ...")
    specs = [([int(d) for d in a.split(":")[0].split("-")], int(a.split(":")[1])) for a in sys.argv[2:]]
    print(json.dumps(memory(specs, ("plain", "jaxbp-dp"))))  # the child (YNNPACK off) skips the slow vmapped compile
