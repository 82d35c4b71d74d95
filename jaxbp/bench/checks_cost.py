"""What ``make_train_step(..., checks=True)`` costs: the checked step against the plain one, per step.

The checked step adds a reduction over the batch per check (NaN/Inf in x and y, the label range)
and reads the error back after every call, a host sync the plain step does not make. Run:
``python -m jaxbp.bench.checks_cost`` (the ratio is from one interleaved run; load on the
machine moves it, so the spread across rounds is printed too).
"""

from __future__ import annotations

import jax
import optax

from ..networks import mlp
from ..training.steps import make_train_step
from .timing import CONFIGS, interleave, paired_ratio, paired_spread, step_runner


def checks_cost(configs=("toy", "mnist"), batches=(128, 1024), *, rounds: int = 7, block_s: float = 0.1) -> list[dict]:
    """Seconds per step without and with checks, and their same-round ratio, per config and batch size."""
    rows = []
    for name in configs:
        sizes = CONFIGS[name]
        model, optimizer = mlp(sizes), optax.sgd(0.01)
        params = model.init(jax.random.key(0))
        state = optimizer.init(params)
        plain, checked = make_train_step(model, optimizer), make_train_step(model, optimizer, checks=True)
        for n in batches:
            kx, ky = jax.random.split(jax.random.key(n))
            x, y = jax.random.normal(kx, (n, sizes[0])), jax.random.randint(ky, (n,), 0, sizes[-1])

            t = interleave({"plain": step_runner(plain, params, state, x, y),
                            "checked": step_runner(checked, params, state, x, y)}, rounds, block_s)
            rows.append({"config": name, "n": n, "plain_ms": 1e3 * min(t["plain"]),
                         "checked_ms": 1e3 * min(t["checked"]), "ratio": paired_ratio(t["checked"], t["plain"]),
                         "spread": paired_spread(t["checked"], t["plain"])})
    return rows


if __name__ == "__main__":
    print(f"{'config':<8} {'n':>6} {'plain ms':>9} {'checked ms':>11} {'ratio':>6} {'spread':>7}")
    for row in checks_cost():
        print(f"{row['config']:<8} {row['n']:>6} {row['plain_ms']:>9.3f} {row['checked_ms']:>11.3f} "
              f"{row['ratio']:>6.2f} {row['spread']:>7.1%}")
