"""``jaxbp check``: every registered plugin and a suite of networks, against jax.grad and finite differences."""

from __future__ import annotations

import time

from .. import checking
from ..checking import guarded  # a network whose plugin raises is a failed row, not a crash
from ..plugins.rules import RULES
from ..plugins.registry import load_entry_points
from ..plugins.user import load_plugins
from .options import add_plugins


def add_arguments(parser) -> None:
    parser.add_argument("--kind", choices=checking.KINDS + ("network", "rule"), action="append",
                        help="check only this kind (repeatable); default: all kinds, the network suite and the "
                             "backward rules (for which the angle to jax.grad is reported, not judged)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random test points (default 0)")
    parser.add_argument("--failures-only", action="store_true", help="print only the rows that fail")
    add_plugins(parser)


def run(args) -> int:
    start = time.perf_counter()
    third_party = load_entry_points() + load_plugins(args.plugins)
    kinds = args.kind or list(checking.KINDS) + ["network", "rule"]
    reports = [
        checking.check_plugin(kind, name, seed=args.seed)
        for kind, names in checking.plugin_names().items() if kind in kinds for name in names
    ]
    if "network" in kinds:
        reports += [guarded(name, checking.check_model, model, smooth=smooth, seed=args.seed, name=name)
                    for name, model, smooth in checking.network_suite()]
    if "rule" in kinds:
        print(checking.format_angles(a for rule in RULES.names() for a in checking.rule_angles(rule)))
        print("backward rules: the angle of each layer's update to the true gradient (0 is backprop, 90 orthogonal); "
              "backprop itself is proven by the network suite\n")
    if not reports:  # --kind rule alone: angles are measured and reported, nothing is judged
        print(f"{len(RULES.names())} backward rules measured, none judged, in {time.perf_counter() - start:.1f} s")
        return 0
    report = checking.merge(reports)
    print(report.table(report.failures) if args.failures_only else report)
    print(f"third-party plugins (entry points, --plugins): {', '.join(third_party) or 'none'}")
    print(f"tolerances: vs jax.grad <= {checking.GRAD_TOL:.0e}; finite differences <= band "
          f"(1e-7 smooth, 1e-4 near a kink); mean(per-example) vs batched <= {checking.PER_EXAMPLE_TOL:.0e}")
    print(f"{'PASS' if report.ok else 'FAIL'}: {len(report.rows)} leaves, {len(report.failures)} failed "
          f"in {time.perf_counter() - start:.1f} s")
    return 0 if report.ok else 1
