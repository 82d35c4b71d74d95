"""``jaxbp plugins``: every registered plugin, its kind and where it came from (built in, an entry point, --plugins)."""

from __future__ import annotations

from ..plugins.registry import REGISTRIES, load_entry_points
from ..plugins.user import load_plugins
from .options import add_plugins


def add_arguments(parser) -> None:
    add_plugins(parser)


def run(args) -> int:
    load_entry_points()
    load_plugins(args.plugins)
    rows = [(kind, name, registry.origins.get(name, "?")) for kind, registry in REGISTRIES.items()
            for name in registry.names()]
    widths = [max(len(row[i]) for row in rows + [("kind", "name", "from")]) for i in range(2)]
    print(f"{'kind':<{widths[0]}}  {'name':<{widths[1]}}  from")
    for kind, name, where in rows:
        print(f"{kind:<{widths[0]}}  {name:<{widths[1]}}  {where}")
    counts = ", ".join(f"{sum(row[0] == kind for row in rows)} {kind}{'es' if kind.endswith('s') else 's'}"
                       for kind in REGISTRIES)
    print(f"{len(rows)} plugins: {counts}")
    return 0
