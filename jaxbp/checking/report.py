"""The proof's report: one row per parameter leaf, its errors against the references, and a table.

A row passes when it is within the bands: ``GRAD_TOL`` against ``jax.grad``, its own finite-difference
band (smooth or kink), and ``PER_EXAMPLE_TOL`` between per-example and batched gradients.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

GRAD_TOL = 1e-10  # vs jax.grad, float64
PER_EXAMPLE_TOL = 1e-12  # mean of per-example grads vs the batched matrix form


class CheckRow(NamedTuple):
    subject: str  # e.g. "activation:tanh"
    leaf: str  # e.g. "[0]['w']"
    vs_grad: float  # relative error against jax.grad
    vs_fd: float  # worst relative error over the sampled finite-difference coordinates
    fd_band: float
    vs_per_example: float = math.nan  # networks: mean(per-example) vs batched; plugins [vmap]: vmap vs a loop

    @property
    def ok(self) -> bool:
        return self.passes()

    def passes(self, grad_tol: float = GRAD_TOL, fd_band: float | None = None,
               per_example_tol: float = PER_EXAMPLE_TOL) -> bool:
        """Within the bands; ``fd_band=None`` keeps the row's own (smooth or kink) band."""
        per_example_ok = math.isnan(self.vs_per_example) or self.vs_per_example <= per_example_tol
        band = self.fd_band if fd_band is None else fd_band
        return self.vs_grad <= grad_tol and self.vs_fd <= band and per_example_ok


class CheckReport(NamedTuple):
    rows: tuple[CheckRow, ...]

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    @property
    def failures(self) -> tuple[CheckRow, ...]:
        return tuple(row for row in self.rows if not row.ok)

    def __str__(self) -> str:
        return self.table()

    def table(self, shown=None) -> str:
        """The rows as a table; ``shown``: only these rows (the failures), the footer counting them out of all.
        A check that raised shows ``(raised)`` in its row and the exception on the line below it."""
        subset, shown = shown is not None, self.rows if shown is None else tuple(shown)
        width = max([len(r.subject) for r in shown] + [7])
        lines = [f"{'subject':<{width}}  {'leaf':<16} {'vs jax.grad':>11} {'vs fin.diff':>11} {'band':>7} {'per-ex':>8}  ok"]
        for r in shown:
            per_example = "" if math.isnan(r.vs_per_example) else f"{r.vs_per_example:.1e}"
            raised = r.leaf.startswith("raised ")
            lines.append(
                f"{r.subject:<{width}}  {'(raised)' if raised else r.leaf:<16} {r.vs_grad:>11.1e} {r.vs_fd:>11.1e} "
                f"{r.fd_band:>7.0e} {per_example:>8}  {'ok' if r.ok else 'FAIL'}"
            )
            if raised:
                lines.append(f"    {r.leaf}")
        if not subset:
            lines.append(f"{len(self.rows)} leaves checked, {len(self.failures)} failed")
        else:
            lines.append(f"{len(shown)} of {len(self.rows)} leaves shown: those outside the bands")
        return "\n".join(lines)


def merge(reports) -> CheckReport:
    return CheckReport(tuple(itertools.chain.from_iterable(r.rows for r in reports)))
