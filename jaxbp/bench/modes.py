"""``jaxbp bench --suite modes``: what batch norm and dropout cost in a training step, against jax.grad and a dense step.

The 784-512-512-10 relu MLP at n = 1024 and 8192, float32, SGD, five steps interleaved in the same rounds:
the plain step; the same MLP with dropout(0.5) after each hidden layer (the hand-written step), and with
dropout(0.1) (a rate that takes 16 random bits per unit, where 0.5 takes one: reported, not judged); with
batch norm after each hidden layer, once hand-written and once as ``jax.value_and_grad`` of the same
train-mode loss (the batch statistics, the running averages written back, the same optimizer).
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import optax

from ..networks import mlp
from ..plugins.rules import join, split, trainable
from ..training.steps import make_train_step
from .contenders import LEARNING_RATE, batch
from .results import write
from .timing import environment, interleave, limit_threads, median, paired_ratio, paired_spread, step_runner

SIZES = [784, 512, 512, 10]
TARGETS = (("batch-norm MLP: hand-written / jax.grad step", "batch_norm/batch_norm jax.grad", 1.10),
           ("dropout(0.5) MLP / dense MLP step, n = 1024", "dropout/dense", 1.10))


def reference_step(model, optimizer):
    """``jax.value_and_grad`` of the model's train-mode loss (``has_aux``: its new state), the same optimizer."""

    def step(params, opt_state, x, y):
        trained, fixed = split(params)
        (loss, params), grads = jax.value_and_grad(
            lambda t: model.train_loss(join(t, fixed), x, y, with_state=True), has_aux=True)(trained)
        trained, fixed = split(params)
        updates, opt_state = optimizer.update(grads, opt_state, trained)
        return join(optax.apply_updates(trained, updates), fixed), opt_state, loss

    return jax.jit(step)


def runners(n: int) -> dict:
    optimizer = optax.sgd(LEARNING_RATE)
    x, y = (jnp.asarray(a) for a in batch(SIZES, n))
    models = {"dense": mlp(SIZES), "dropout": mlp(SIZES, dropout=0.5), "dropout 0.1": mlp(SIZES, dropout=0.1),
              "batch_norm": mlp(SIZES, batch_norm=True)}
    out = {}
    for name, model in models.items():
        params = model.init(jax.random.key(0))
        opt_state = optimizer.init(trainable(params))
        out[name] = step_runner(make_train_step(model, optimizer), params, opt_state, x, y)
        if name == "batch_norm":
            out["batch_norm jax.grad"] = step_runner(reference_step(model, optimizer), params, opt_state, x, y)
    return out


def run(args) -> int:
    start = time.perf_counter()
    threads, env = limit_threads(), environment()
    batches = [int(b) for b in args.batches.split(",")] if args.batches else [1024] if args.quick else [1024, 8192]
    rounds = args.rounds or (3 if args.quick else 11)
    block_s = args.block_ms / 1e3 if args.block_ms else 0.03 if args.quick else 0.2
    print(f"jaxbp bench --suite modes: {env['device']}, n={batches}, {rounds} rounds", file=sys.stderr, flush=True)
    rows = []
    for n in batches:
        t = interleave(runners(n), rounds, block_s)
        ratios = {"batch_norm/batch_norm jax.grad": paired_ratio(t["batch_norm"], t["batch_norm jax.grad"]),
                  "dropout/dense": paired_ratio(t["dropout"], t["dense"]),
                  "dropout 0.1/dense": paired_ratio(t["dropout 0.1"], t["dense"]),
                  "batch_norm/dense": paired_ratio(t["batch_norm"], t["dense"])}
        spreads = {key: paired_spread(t[key.split("/")[0]], t[key.split("/")[1]]) for key in ratios}
        rows.append({"n": n, "times": {k: median(v) for k, v in t.items()}, "ratios": ratios, "spread": spreads})
        print(f"  n={n}: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()), file=sys.stderr, flush=True)
    results = {"suite": "modes", "quick": args.quick, "environment": env, "threads": threads, "sizes": SIZES,
               "rounds": rounds, "block_s": block_s, "rows": rows, "targets": [] if args.quick else judge(rows),
               "elapsed_s": time.perf_counter() - start, "load_average_end": environment()["load_average"]}
    write(args, results, markdown(results))
    return 0


def judge(rows) -> list[dict]:
    """Batch norm's target at every n (the worst counts); dropout's at n = 1024."""
    out = []
    for name, key, threshold in TARGETS:
        picked = [r for r in rows if key != "dropout/dense" or r["n"] == 1024]
        worst = max(picked, key=lambda r: r["ratios"][key], default=None)
        value = None if worst is None else round(worst["ratios"][key], 3)
        out.append({"target": name, "threshold": f"<= {threshold:g}", "measured": value,
                    "met": None if value is None else value <= threshold,
                    "detail": "" if worst is None else f"n={worst['n']}, spread {worst['spread'][key]:.3f}"})
    return out


def markdown(results) -> str:
    env = results["environment"]
    met = {True: "met", False: "**missed**", None: "not measured"}
    lines = ["# jaxbp bench: modes suite (batch norm, dropout)", "",
             f"{env['date']}; {env['device']}; {env['cpu']} ({env['cpu_count']} cores); jax {env['jax']}; load "
             f"average {env['load_average']} at the start, {results['load_average_end']} at the end; "
             f"{results['rounds']} interleaved rounds, medians, same-round ratios (a shared machine: expect a few "
             f"percent of noise).", "",
             f"Model {'-'.join(map(str, results['sizes']))} relu, float32, SGD; batch norm or dropout(0.5) after "
             f"each hidden layer; the jax.grad contender differentiates the same train-mode loss.", "",
             "| target | threshold | measured | where | |", "|---|---|---|---|---|"]
    lines += [f"| {t['target']} | {t['threshold']} | {t['measured']} | {t['detail']} | {met[t['met']]} |"
              for t in results["targets"]]
    lines += ["", "| n | dense ms | dropout ms | batch norm ms | batch norm, jax.grad ms | dropout / dense | "
              "dropout(0.1) / dense | batch norm / jax.grad |", "|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        t, q = r["times"], r["ratios"]
        lines.append(f"| {r['n']} | {1e3 * t['dense']:.2f} | {1e3 * t['dropout']:.2f} | {1e3 * t['batch_norm']:.2f} | "
                     f"{1e3 * t['batch_norm jax.grad']:.2f} | {q['dropout/dense']:.3f} | {q['dropout 0.1/dense']:.3f} | "
                     f"{q['batch_norm/batch_norm jax.grad']:.3f} |")
    return "\n".join(lines) + "\n"
