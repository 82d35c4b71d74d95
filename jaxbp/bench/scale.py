"""``jaxbp bench --suite scale``: the hand-written step on 1, 2 and 4 devices, and 16 replicas split over them.

Strong scaling keeps the global batch fixed, weak scaling the batch per device; both time
``make_train_step`` on the mnist model with the batch sharded over a ``data`` mesh axis. The
replica part trains 16 toy models (32 steps of n=128) one after another, vmapped on one device, and
vmapped with the replica axis split over the devices. All times are interleaved rounds; every ratio
comes from this one run. On a CPU the devices are host devices (``jax_num_cpu_devices``) sharing the
machine's cores; on a GPU or TPU machine they are the real chips.
"""

from __future__ import annotations

import sys
import time

import jax
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ..networks import mlp
from ..training.steps import init_replicas, make_replica_step, make_scan_step, make_train_step
from .contenders import LEARNING_RATE, batch, start_params
from .results import command, write
from .special import TOY, _stream, step_by_step
from .timing import CONFIGS, environment, interleave, limit_threads, median, paired_ratio, paired_spread, step_runner

DEVICE_COUNTS = (1, 2, 4)
DEVICES = 4  # host devices the scale suite asks for on a CPU, before the backend starts


def _counts() -> list[int]:
    return [d for d in DEVICE_COUNTS if d <= len(jax.devices())]


def _step_runner(sizes, n: int, devices: int):
    """k hand-written steps on a batch of ``n`` split over ``devices`` (params replicated)."""
    model, params = start_params(sizes)
    optimizer = optax.sgd(LEARNING_RATE)
    mesh = jax.make_mesh((devices,), ("data",), devices=jax.devices()[:devices])
    x, y = jax.device_put(batch(sizes, n), NamedSharding(mesh, P("data")))
    params, state = jax.device_put((params, optimizer.init(params)), NamedSharding(mesh, P()))
    return step_runner(make_train_step(model, optimizer), params, state, x, y)


def scaling(*, rounds: int, block_s: float, global_n: int = 2048, per_device_n: int = 512) -> dict:
    """Seconds per step: strong (global batch fixed) and weak (batch per device fixed) on 1, 2, 4 devices."""
    sizes, counts = CONFIGS["mnist"], _counts()
    runners = {f"strong-{d}": _step_runner(sizes, global_n, d) for d in counts}
    runners |= {f"weak-{d}": _step_runner(sizes, per_device_n * d, d) for d in counts}
    t = interleave(runners, rounds, block_s)
    rows = []
    for kind, n_of in (("strong", lambda d: global_n), ("weak", lambda d: per_device_n * d)):
        for d in counts:
            rows.append({"kind": kind, "devices": d, "n": n_of(d), "step_s": median(t[f"{kind}-{d}"]),
                         "examples_per_s": n_of(d) / median(t[f"{kind}-{d}"]),
                         "speedup": paired_ratio([a * n_of(d) / n_of(1) for a in t[f"{kind}-1"]], t[f"{kind}-{d}"]),
                         "spread": paired_spread(t[f"{kind}-1"], t[f"{kind}-{d}"])})
    return {"config": "mnist", "sizes": sizes, "rows": rows}


def replicas(*, rounds: int, block_s: float, count: int = 16, n: int = 128, steps: int = 32) -> dict:
    """16 toy replicas: sequential runs, vmapped on one device, vmapped and split over the devices; step by step
    (one call per step) and fused (all steps in one ``lax.scan`` call, as ``jaxbp train`` runs them)."""
    model, optimizer = mlp(TOY), optax.sgd(LEARNING_RATE)
    stacked = init_replicas(model, optimizer, jax.random.split(jax.random.key(0), count))
    singles = [jax.tree.map(lambda a, i=i: a[i], stacked) for i in range(count)]
    xs, ys, x_list, y_list = _stream(TOY, steps, n)
    step, replica_step = make_train_step(model, optimizer), make_replica_step(model, optimizer)
    scan, replica_scan = make_scan_step(model, optimizer), make_replica_step(model, optimizer, scan=True)
    runners = {"sequential": step_by_step(step, singles, x_list, y_list),
               "sequential-fused": step_by_step(scan, singles, [xs], [ys])}
    for d in _counts():
        mesh = jax.make_mesh((d,), ("replica",), devices=jax.devices()[:d])
        state = jax.device_put(stacked, NamedSharding(mesh, P("replica")))
        placed = jax.device_put((x_list, y_list, xs, ys), NamedSharding(mesh, P()))
        runners[f"vmapped-{d}"] = step_by_step(replica_step, [state], *placed[:2])
        runners[f"vmapped-fused-{d}"] = step_by_step(replica_scan, [state], [placed[2]], [placed[3]])
    t = interleave(runners, rounds, block_s)
    out = {"replicas": count, "n": n, "steps": steps, "sequential_s": median(t["sequential"]),
           "sequential_fused_s": median(t["sequential-fused"]), "rows": []}
    for kind, base in (("", "sequential"), ("fused-", "sequential-fused")):
        for d in _counts():
            name = f"vmapped-{kind}{d}"
            out["rows"].append({"fused": bool(kind), "devices": d, "vmapped_s": median(t[name]),
                                "speedup_vs_sequential": paired_ratio(t["sequential"], t[name]),
                                "speedup_vs_same_kind": paired_ratio(t[base], t[name]),
                                "spread": paired_spread(t["sequential"], t[name])})
    return out


def markdown(results: dict) -> str:
    env, scale, rep = results["environment"], results["scaling"], results["replicas"]
    lines = ["# jaxbp bench --suite scale", "", f"`{results['command']}` on {env['device']} "
             f"({len(jax.devices())} {jax.devices()[0].platform} device(s), load average {env['load_average']}); "
             f"{results['settings']['rounds']} interleaved rounds, ratios from this one run "
             f"(spread: relative half-width of the middle half of the rounds).", "",
             f"## Strong and weak scaling: one hand-written training step, mnist model {scale['sizes']}", "",
             "| scaling | devices | global batch | ms/step | examples/s | speedup vs 1 device | spread |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['kind']} | {r['devices']} | {r['n']} | {1e3 * r['step_s']:.2f} | {r['examples_per_s']:,.0f} | "
              f"{r['speedup']:.2f}x | {r['spread']:.3f} |" for r in scale["rows"]]
    lines += ["", "Weak scaling's speedup is throughput: examples/s against 1 device's.", "",
              f"## {rep['replicas']} toy replicas, {rep['steps']} steps of n={rep['n']}", "",
              f"16 sequential runs: {1e3 * rep['sequential_s']:.1f} ms step by step, "
              f"{1e3 * rep['sequential_fused_s']:.1f} ms fused (one scan call per run).", "",
              "| 16 replicas vmapped over | steps | ms | speedup vs 16 sequential runs step by step | "
              "vs 16 sequential runs alike | spread |", "|---:|---|---:|---:|---:|---:|"]
    lines += [f"| {r['devices']} device(s) | {'fused' if r['fused'] else 'step by step'} | {1e3 * r['vmapped_s']:.1f} | "
              f"{r['speedup_vs_sequential']:.2f}x | {r['speedup_vs_same_kind']:.2f}x | {r['spread']:.3f} |"
              for r in rep["rows"]]
    return "\n".join(lines + [""] + [f"- {note}" for note in results["notes"]] + [""])


def run(args) -> int:
    """The suite: strong and weak scaling, the replicas split over devices, their notes, results-scale.md and .json."""
    start = time.perf_counter()
    rounds = args.rounds or (3 if args.quick else 9)
    block_s = args.block_ms / 1e3 if args.block_ms else 0.05 if args.quick else 0.2
    limit_threads()
    results = {"suite": "scale", "quick": args.quick, "command": command(args), "environment": environment(),
               "settings": {"rounds": rounds, "block_s": block_s}}
    print(f"jaxbp bench --suite scale: {results['environment']['device']}, {rounds} rounds", file=sys.stderr, flush=True)
    results["scaling"] = scaling(rounds=rounds, block_s=block_s)
    results["replicas"] = replicas(rounds=rounds, block_s=block_s, steps=8 if args.quick else 32)
    results["elapsed_s"] = time.perf_counter() - start
    best = max(r["speedup_vs_sequential"] for r in results["replicas"]["rows"] if r["devices"] > 1 and not r["fused"])
    results["notes"] = [f"Replicas split over devices, step by step: goal >= 2.4x against 16 sequential runs (half the "
                        f"arithmetic ceiling of the cpu suite); best here {best:.2f}x: {'met' if best >= 2.4 else 'missed'}."]
    if results["environment"]["backend"] == "cpu":
        results["notes"].append("Host devices share this machine's cores: more devices split the work, not the "
                                "hardware, so strong scaling on a CPU shows the cost of the split; on GPUs or "
                                "TPUs each device is a chip.")
    write(args, results, markdown(results))
    return 0
