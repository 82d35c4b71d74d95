"""``jaxbp bench --suite accelerator``: PyTorch on the GPU beside jaxbp, the private step at large batches, the targets.

The targets, judged on a live run or on a recorded results file (``jaxbp bench --judge results-accelerator.json``):

- the hand-written step / the ``jax.grad`` step <= 1.05 at n >= 8192 (the worst row, every dtype);
- >= 75% of the run's measured bfloat16 matmul peak for ``wide`` and ``deep-wide`` at n = 65536;
- 16 toy replicas vmapped >= 8x faster than 16 runs one after another (step by step);
- the private step <= 1.3x an ordinary step at n >= 8192 (the worst n).

PyTorch joins where it sees a CUDA device: eager in bfloat16 autocast and in float32, and ``torch.compile`` of
the model where it compiles. XLA's default float32 matmul on NVIDIA GPUs uses TF32 tensor cores and PyTorch's
does not, so the float32 rows also time PyTorch with TF32 allowed (``torch-tf32``).
"""

from __future__ import annotations

import sys

from . import privacy as bench_privacy
from .contenders import Contender, torch_contender
from .targets import _missed_by, _noise, _replica_bound, _row, _target
from .timing import interleave, median, paired_ratio, paired_spread

TF32_NOTE = ("XLA's default float32 matmul on NVIDIA GPUs uses TF32 tensor cores and PyTorch's does not, so the "
             "float32 `torch` column is not like for like; `torch TF32` is PyTorch with TF32 allowed. PyTorch's "
             "bfloat16 rows use autocast (float32 weights, bfloat16 matmuls); jaxbp's hold the weights in bfloat16.")
PRIVATE_SIZES = [784, 512, 512, 10]  # the privacy suite's mnist model
LARGE = 8192


def torch_device():
    """The CUDA device PyTorch sees, or None (no PyTorch, or a CPU-only build)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.device("cuda") if torch.cuda.is_available() else None


def torch_contenders(sizes, n: int, dtype: str, device, notes: list) -> dict[str, Contender]:
    """PyTorch's contenders for one row: eager, TF32 (float32 rows), compiled where ``torch.compile`` works."""
    bf16 = dtype == "bfloat16"
    out = {"torch": torch_contender(sizes, n, device=device, bf16=bf16)}
    if not bf16:
        out["torch-tf32"] = torch_contender(sizes, n, device=device, tf32=True)
    try:
        compiled = torch_contender(sizes, n, device=device, bf16=bf16, compiled=True)
        compiled.run(1)  # compiles here, or fails here
        out["torch-compile"] = compiled
    except Exception as error:  # noqa: BLE001 -- any failure of the compiler stack leaves the eager contenders
        note = f"torch.compile did not work here ({type(error).__name__}: {str(error).splitlines()[0][:120]}), " \
               "so PyTorch runs eager only."
        if note not in notes:
            notes.append(note)
    return out


def private_rows(batches, *, rounds: int, block_s: float) -> list[dict]:
    """The private step against the ordinary one at every n >= 8192 of ``batches`` (else the largest)."""
    rows = []
    for n in [b for b in batches if b >= LARGE] or [max(batches)]:
        steps = bench_privacy.steps(PRIVATE_SIZES, n)
        runners = {name: bench_privacy._runner(*steps[name]) for name in ("plain", "jaxbp-dp")}
        t = interleave(runners, rounds, block_s)
        memory = bench_privacy.temp_bytes(PRIVATE_SIZES, n, ("plain", "jaxbp-dp"))
        rows.append({"sizes": PRIVATE_SIZES, "n": n, "plain_s": median(t["plain"]), "private_s": median(t["jaxbp-dp"]),
                     "ratio": paired_ratio(t["jaxbp-dp"], t["plain"]),
                     "ratio_spread": paired_spread(t["jaxbp-dp"], t["plain"]),
                     "memory_ratio": memory["jaxbp-dp"] / memory["plain"] if memory["plain"] else None})
        print(f"  private   n={n:<6d} private/plain {rows[-1]['ratio']:.3f}", file=sys.stderr, flush=True)
    return rows


def targets(results) -> list[dict]:
    """The accelerator suite's four targets against ``results`` (a ``jaxbp bench --suite accelerator`` JSON)."""
    out = []
    rows = [r | {"hg": r["ratios"].get("jaxbp/jax.grad")} for r in results.get("steps", []) if r["n"] >= LARGE]
    rows = [r for r in rows if r["hg"] is not None]
    name = f"hand-written / jax.grad step, n >= {LARGE} (worst)"
    if not rows:
        out.append(_target(name, "<= 1.05", None, None, "not measured"))
    else:
        worst = max(rows, key=lambda r: r["hg"])
        met = worst["hg"] <= 1.05
        out.append(_target(name, "<= 1.05", round(worst["hg"], 3), met, f"{worst['config']} {worst['dtype']} "
                           f"n={worst['n']}", "" if met else f"{_missed_by(worst['hg'], 1.05, False)}"
                           f"{_noise(worst, worst['hg'], 1.05)}: both steps run the same matmuls; the gap is "
                           "what XLA fuses differently around them"))
    for config in ("wide", "deep-wide"):
        row, name = _row(results, config, 65536, "bfloat16"), f"share of the bf16 matmul peak, {config} n=65536"
        if row is None:
            out.append(_target(name, ">= 75%", None, None, "not measured"))
            continue
        share, peak = row["roofline"]["jaxbp"], results["matmul"]["gflops"].get("bfloat16", float("nan"))
        out.append(_target(name, ">= 75%", f"{share:.0%}", share >= 0.75,
                           f"{row['gflops']['jaxbp'] / 1e3:.0f} of {peak / 1e3:.0f} TFLOP/s useful",
                           "" if share >= 0.75 else f"{_missed_by(share, 0.75, True)}: the elementwise passes and "
                           "the transposed weight-gradient matmuls run below the square matmul's speed"))
    rep, name = results.get("replicas"), "16 vmapped toy replicas vs 16 sequential runs"
    if not rep:
        out.append(_target(name, ">= 8x", None, None, "not measured"))
    else:
        value = rep["speedup_per_step"]
        out.append(_target(name, ">= 8x", f"{value:.2f}x", value >= 8, f"n={rep['n']}, step by step; fused both: "
                           f"{rep['speedup_fused']:.2f}x", "" if value >= 8 else f"{_missed_by(value, 8, True)}: {_replica_why(results)}"))
    private, name = [r for r in results.get("private") or [] if r["n"] >= LARGE], f"private / plain step, n >= {LARGE} (worst)"
    if not private:
        out.append(_target(name, "<= 1.3", None, None, "not measured"))
    else:
        worst = max(private, key=lambda r: r["ratio"])
        met = worst["ratio"] <= 1.3
        out.append(_target(name, "<= 1.3", round(worst["ratio"], 2), met, f"n={worst['n']}; memory "
                           f"{worst['memory_ratio']:.2f}x" if worst.get("memory_ratio") else f"n={worst['n']}",
                           "" if met else f"{_missed_by(worst['ratio'], 1.3, False)}: the norms pass, the second "
                           "walk down and the noise are extra kernels on a step that is launch-bound at this size"))
    return out


def _replica_why(results) -> str:
    if results.get("environment", {}).get("backend") == "cpu" and results["matmul"]["gflops"].get("float32"):
        return _replica_bound(results)  # on a CPU the arithmetic itself bounds it
    return "the vmapped step removes 15 of every 16 launches; what is left is the batched kernels' own time"


def step_table(results) -> tuple[list[str], list[list]]:
    """The accelerator step table: jaxbp, jax.grad and PyTorch (eager, TF32, compiled) with the roofline shares."""

    def ms(t):
        return "-" if t is None else f"{1e3 * t:.3g}"

    def x(v):
        return "-" if v is None else f"{v:.2f}"

    header = ["config", "dtype", "n", "jaxbp ms", "jax.grad ms", "jaxbp/grad", "torch ms", "torch/jaxbp",
              "torch TF32 ms", "torch compiled ms", "compiled/jaxbp", "jaxbp TFLOP/s", "share of peak", "grad share"]
    rows = []
    for r in results.get("steps", []):
        t, q, f = r["times"], r["ratios"], r["roofline"]
        rows.append([r["config"], r["dtype"], r["n"], ms(t.get("jaxbp")), ms(t.get("jax.grad")), x(q.get("jaxbp/jax.grad")),
                     ms(t.get("torch")), x(q.get("torch/jaxbp")), ms(t.get("torch-tf32")), ms(t.get("torch-compile")),
                     x(q.get("torch-compile/jaxbp")), f"{r['gflops']['jaxbp'] / 1e3:.1f}", f"{f['jaxbp']:.0%}",
                     f"{f.get('jax.grad', 0):.0%}"])
    return header, rows


def private_table(results) -> tuple[list[str], list[list]]:
    header = ["model", "n", "plain ms", "private ms", "private/plain", "temporary memory private/plain"]
    rows = [["-".join(map(str, r["sizes"])), r["n"], f"{1e3 * r['plain_s']:.3g}", f"{1e3 * r['private_s']:.3g}",
             f"{r['ratio']:.2f}", "-" if r.get("memory_ratio") is None else f"{r['memory_ratio']:.2f}"]
            for r in results.get("private") or []]
    return header, rows
