"""Memory checked before it is spent: a run's footprint estimated from its sizes, against what the devices have.

The estimate counts what an MLP run keeps on the device at its peak: params, gradients and one
update in flight, the optimizer's slots (adam 2, momentum or rmsprop 1, plain sgd 0), the
activations of the largest call (a batch, or a whole split when the epoch evaluates it: every
hidden layer's z and a, the logits, probabilities and one-hot targets), per-example gradients when
they are made, and the data. It is a floor, not a bound: XLA adds workspace. A run whose floor
exceeds the memory the devices report (a GPU's ``bytes_limit``; on the CPU, MemAvailable) is a
one-line ConfigError giving the estimate, before anything is allocated or compiled; a
``model.hidden = [2000000000]`` no longer reaches XLA's "Out of memory allocating 104000001348 bytes".
``JAXBP_MEMORY_CHECK=0`` skips the check (a device that reports too little).
"""

from __future__ import annotations

import math
import os

import jax

from ..errors import ConfigError

SLOTS = {"sgd": 0, "adam": 2, "adamw": 2, "rmsprop": 1}  # optimizer state per param (momentum adds one)


def estimate(sizes, *, replicas: int, rows: int, batch: int, n: int, optimizer: dict, itemsize: int,
             per_example: bool = False, network: tuple[int, int] | None = None) -> dict[str, int]:
    """Bytes by part: ``sizes`` [d, h1, ..., k]; ``rows`` the largest call (a batch or a whole split);
    ``network``: (params, activations per row) counted from a built network's shapes (``counts``),
    for layers other than an MLP's dense ones (a convolution's activations outweigh its kernel)."""
    params = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    per_row = 2 * sum(sizes[1:-1]) + 3 * sizes[-1]
    if network is not None:
        params, per_row = network
    slots = SLOTS.get(optimizer.get("name", "sgd"), 2) + (1 if optimizer.get("momentum") else 0)
    parts = {"params, gradients and update": 3 * params, "optimizer state": slots * params,
             "activations": rows * per_row, "per-example gradients": batch * params if per_example else 0}
    parts = {name: count * replicas * itemsize for name, count in parts.items()}
    parts["data"] = n * sizes[0] * itemsize
    return parts


def counts(model) -> tuple[int, int]:
    """(params, activations per row) of a built network, from its shapes alone (nothing is allocated):
    the params as ``init`` would make them, each layer's output twice (z and a), the output three times."""
    params = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(jax.eval_shape(model.init, jax.random.key(0))))
    outputs = [math.prod(shape) for shape in model.shapes[1:]]
    return params, 2 * sum(outputs[:-1]) + 3 * outputs[-1]


def available(devices: int = 1) -> tuple[int | None, str]:
    """(bytes the run's devices can hold, what they are); None when nothing reports it."""
    device = jax.devices()[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:  # a backend without memory statistics
        stats = {}
    if "bytes_limit" in stats:
        free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
        return free * devices, f"{devices} {device.platform} device(s) ({device.device_kind})"
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            info = dict(line.split(":", 1) for line in file)
        return int(info["MemAvailable"].split()[0]) * 1024, f"this machine's available memory ({device.platform})"
    except (OSError, KeyError, ValueError):
        return None, device.platform


def check(sizes, **options) -> None:
    """A ConfigError giving the estimate when it exceeds what the devices have."""
    if os.environ.get("JAXBP_MEMORY_CHECK", "1") == "0":
        return
    devices = options.pop("devices", 1)
    have, where = available(devices)
    parts = estimate(sizes, **options)
    need = sum(parts.values())
    if have is None or need <= have:
        return
    shown = ", ".join(f"{name} {gigabytes(size)}" for name, size in parts.items() if size)
    model = (f"{options['network'][0]:,} params" if options.get("network") else f"sizes {'-'.join(map(str, sizes))}")
    smaller = "the layers of model.layers" if options.get("network") else "model.hidden"
    raise ConfigError(f"this run needs at least {gigabytes(need)} of memory ({shown}; {model}) but {where} has "
                      f"{gigabytes(have)}; make {smaller} or "
                      f"train.batch_size smaller (or data.n), or spread it over more devices (train.devices)")


def gigabytes(size: int) -> str:
    return f"{size / 1e9:.3g} GB" if size >= 1e8 else f"{size / 1e6:.3g} MB"
