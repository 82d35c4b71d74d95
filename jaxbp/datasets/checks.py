"""Checks made before a dataset is generated: the memory it needs exists."""

from __future__ import annotations

import os

from ..errors import ConfigError

BYTES_PER_VALUE = 8 * 8  # float64, times the copies made while generating, shuffling and standardizing


def available_memory() -> int | None:
    """Bytes of memory available now (MemAvailable on Linux; total memory elsewhere; None if unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(name: str, n: int, d: int) -> None:
    """Refuse, with the figure, a dataset of ``n`` examples of ``d`` features that cannot fit in memory."""
    need, have = n * (d + 1) * BYTES_PER_VALUE, available_memory()
    if have is not None and need > have:
        raise ConfigError(f"data.n = {n} for {name!r} needs about {need / 1e9:.1f} GB while it is generated "
                          f"({n} x {d} features in float64, and the copies made to shuffle and standardize), but "
                          f"only {have / 1e9:.1f} GB are available; use a smaller data.n")
