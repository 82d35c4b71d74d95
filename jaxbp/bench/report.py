"""The bench's results as markdown: targets, the step table, the other measurements, notes, environment."""

from __future__ import annotations


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{1e3 * seconds:.3g}"


def _x(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _pct(value) -> str:
    return "-" if value is None else f"{value:.0%}"


def _table(header, rows) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def markdown(results) -> str:
    """The results as markdown: targets, the step table, the other measurements, notes, environment."""
    env, s = results["environment"], results["settings"]
    lines = [f"# jaxbp bench: {results['suite']} suite", "",
             f"{env['date']}; {env['device']}; {env['cpu']} ({env['cpu_count']} cores); "
             f"jax {env['jax']}, jaxlib {env['jaxlib']}, numpy {env['numpy']}, optax {env['optax']}, "
             f"torch {env['torch'] or 'absent'}; XLA_FLAGS=`{env['XLA_FLAGS']}`; load average (1, 5, 15 min) "
             f"{env['load_average']} at the start, {results.get('load_average_end')} at the end; {s['rounds']} "
             f"interleaved rounds, medians; run took {results['elapsed_s']:.0f} s.",
             f"Command: `{results['command']}`", "", "## Targets", ""]
    met = {True: "met", False: "**missed**", None: "-"}
    if results.get("quick"):
        lines += ["Not judged: a quick run is a look, not a measurement (3 rounds, the smallest batch only); "
                  "`jaxbp bench` judges the targets."]
    lines += [] if results.get("quick") else _table(["target", "threshold", "measured", "", "detail", "why (where missed)"],
                    [[t["target"], t["threshold"], "-" if t["measured"] is None else t["measured"], met[t["met"]],
                      t["detail"], t["why"]] for t in results["targets"]])
    peaks = ", ".join(f"{g:.0f} GFLOP/s in {d}" for d, g in results["matmul"]["gflops"].items())
    lines += ["", f"## One training step (SGD), milliseconds; matmul roofline {peaks} "
              f"({results['matmul']['size']}^3 jitted jnp.dot)", ""]
    if results["suite"] == "accelerator":
        lines += _accelerator(results)
    else:
        lines += _steps(results)
    lines = _more(results, lines)
    notes = list(results.get("notes") or []) + [f"{t['target']}: {t['why']}" for t in results["targets"]
                                                if t["met"] is False and t["why"]]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _steps(results) -> list[str]:
    rows = []
    for r in results["steps"]:
        t, q, f = r["times"], r["ratios"], r["roofline"]
        rows.append([r["config"], r["dtype"], r["n"], _ms(t.get("jaxbp")), _ms(t.get("jax.grad")), _x(q.get("jaxbp/jax.grad")),
                     f"{_ms(t.get('torch'))} / {_ms(t.get('torch-1t'))}", _x(q.get("torch_best/jaxbp")),
                     f"{_ms(t.get('numpy'))} / {_ms(t.get('numpy-1t'))}", _x(q.get("numpy_best/jaxbp")),
                     f"{r['gflops']['jaxbp']:.0f}", _pct(f.get("jaxbp")), _pct(f.get("jax.grad")), _pct(f.get("torch_best"))])
    lines = _table(["config", "dtype", "n", "jaxbp", "jax.grad", "jaxbp/grad", "torch 2t / 1t", "torch/jaxbp",
                     "numpy 2t / 1t", "numpy/jaxbp", "jaxbp GFLOP/s", "roofline jaxbp", "roofline grad",
                     "roofline torch"], rows)
    return lines + ["", "Ratios are medians of same-round ratios; torch and numpy ratios use the faster of 2 threads and 1 "
                    "(\"best\"). Useful FLOPs: forward and weight gradient of every layer, input gradient of all but the "
                    "first."]


def _accelerator(results) -> list[str]:
    from .accelerator import private_table, step_table

    lines = _table(*step_table(results)) + ["", "Ratios are medians of same-round ratios. Useful FLOPs: forward and "
                                            "weight gradient of every layer, input gradient of all but the first."]
    if results.get("private"):
        lines += ["", "## The private step (DP-SGD: clipped per-example gradients, noise) against the ordinary one", ""]
        lines += _table(*private_table(results))
    return lines


def _more(results, lines) -> list[str]:
    if results.get("fused"):
        lines += ["", "## Toy throughput: K steps as K calls, or fused in one lax.scan (make_scan_step)", ""]
        lines += _table(["n", "K", "loop M ex/s", "fused M ex/s", "fused speedup"],
                        [[r["n"], r["steps"], f"{r['loop_examples_per_s'] / 1e6:.2f}",
                          f"{r['fused_examples_per_s'] / 1e6:.2f}", _x(r["fused_speedup"])] for r in results["fused"]])
    rep = results.get("replicas")
    if rep:
        lines += ["", f"## {rep['replicas']} toy replicas, {rep['steps']} steps of n={rep['n']}: vmapped vs one after another", ""]
        lines += _table(["mode", "sequential ms", "vmapped ms", "speedup"],
                        [["step by step", _ms(rep["sequential_s"]), _ms(rep["vmapped_s"]), _x(rep["speedup_per_step"])],
                         ["fused (lax.scan)", _ms(rep["sequential_fused_s"]), _ms(rep["vmapped_fused_s"]), _x(rep["speedup_fused"])]])
    if results.get("compile"):
        lines += ["", "## Compile time (trace + lower + XLA compile), 784-(256 x L)-10, n=128, seconds", ""]
        lines += _table(["hidden layers", "jaxbp", "jax.grad", "jaxbp/grad"],
                        [[r["hidden_layers"], f"{r['jaxbp_s']:.3f}", f"{r['jax.grad_s']:.3f}", f"{r['ratio']:.3f}"]
                         for r in results["compile"]])
    pe = results.get("per_example") or {}
    if pe.get("time") or pe.get("memory"):
        lines += ["", "## Per-example step (vmapped single-example rule, then the mean) vs batched step", ""]
        mem = {(r["config"], r["n"]): r for r in pe.get("memory") or []}
        off = {(r["config"], r["n"]): r for r in (pe.get("memory_no_ynn") if isinstance(pe.get("memory_no_ynn"), list) else [])}
        keys = [(r["config"], r["n"]) for r in pe.get("time") or []] or list(mem)
        times = {(r["config"], r["n"]): r for r in pe.get("time") or []}
        rows = []
        for k in keys:
            t, m, o = times.get(k, {}), mem.get(k), off.get(k)
            rows.append([k[0], k[1], _ms(t.get("batched_s")), _ms(t.get("per_example_s")), _x(t.get("ratio")) if t.get("ratio") else t.get("skipped", "-"),
                         f"{m['batched_bytes'] / 2**20:.1f} / {m['per_example_bytes'] / 2**20:.1f}" if m else "-",
                         _x(m["ratio"]) if m else "-",
                         f"{o['batched_bytes'] / 2**20:.1f} / {o['per_example_bytes'] / 2**20:.1f}" if o else "-",
                         _x(o["ratio"]) if o else "-"])
        lines += _table(["config", "n", "batched ms", "per-example ms", "time ratio", "temp MiB (YNN on)",
                         "memory ratio", "temp MiB (YNN off)", "memory ratio (off)"], rows)
    return lines

