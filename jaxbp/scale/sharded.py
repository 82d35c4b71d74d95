"""A training epoch on a (replica, data) mesh: each batch split over ``data``, the replicas over ``replica``.

The epoch's order is the single-device run's (``epoch_batches`` of the same key); each process
gathers only the examples of its own devices and ``jax.make_array_from_process_local_data``
assembles the global batch. Params and optimizer state are sharded over ``replica`` and
replicated over ``data``; metrics come back replicated, so every process can read them.
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ..errors import ConfigError


def check_batch_split(batch_size: int, mesh):
    """``mesh`` (None: one device) if its data axis divides the batch, else a ConfigError that names a size that fits."""
    if mesh is None:
        return None
    data = mesh.shape["data"]
    if batch_size % data:
        fit = max(data, batch_size // data * data)
        raise ConfigError(f"train.batch_size = {batch_size} does not split evenly over the {data} devices of the data "
                          f"axis; use a multiple of {data} (e.g. {fit}), or change train.devices / "
                          f"train.replica_devices")
    return mesh


def place(tree, sharding: NamedSharding):
    """Host or single-device arrays laid out as ``sharding`` (every process holds the same full values)."""
    def one(leaf):
        if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
            return leaf
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(one, tree)


def _local_rows(sharding: NamedSharding, shape: tuple) -> slice:
    """The batch rows (axis 1) this process's devices hold: one contiguous block."""
    rows = {(s[1].start or 0, s[1].stop or shape[1]) for s in sharding.addressable_devices_indices_map(shape).values()}
    start, stop = min(r[0] for r in rows), max(r[1] for r in rows)
    return slice(start, stop)


def sharded_epoch(one: Callable, batches: Callable, mesh) -> Callable:
    """``epoch(params, opt_state, shuffle_key, index, x, y, x_test, y_test)`` on ``mesh``, like the single-device
    one; ``one(params, opt_state, (xs, ys[, masks]), x, y, x_test, y_test)`` trains one replica and evaluates,
    ``batches(key, n) -> (order, [masks, dropped])`` draws the epoch's batches (masks: Poisson samples)."""
    stacked, full = NamedSharding(mesh, P("replica")), NamedSharding(mesh, P())
    batch = NamedSharding(mesh, P(None, "data"))
    run = jax.jit(jax.vmap(one, in_axes=(0, 0) + (None,) * 5, spmd_axis_name="replica"),
                  in_shardings=(stacked, stacked, batch, full, full, full, full),
                  out_shardings=(stacked, stacked, full))
    placed = {}

    def global_batch(rows, shape):
        """The global (steps, rows, ...) array from this process's own rows of it (``rows(local slice)``)."""
        return jax.make_array_from_process_local_data(batch, rows(_local_rows(batch, shape)), shape)

    def epoch(params, opt_state, shuffle_key, index, x, y, x_test, y_test):
        order, *masks = batches(jax.random.fold_in(shuffle_key, index), x.shape[0])
        order = np.asarray(order)
        columns = tuple(global_batch(lambda mine, a=np.asarray(a): a[order[:, mine]], (*order.shape, *a.shape[1:]))
                        for a in (x, y))  # only this process's examples are gathered
        if masks:
            columns += (global_batch(lambda mine, m=np.asarray(masks[0]): m[:, mine], order.shape),)
        arrays = (x, y, x_test, y_test)
        if placed.get("key") is not arrays[0]:  # the evaluation arrays move to the mesh once per run
            placed.update(key=arrays[0], arrays=place(arrays, full))
        params, opt_state, metrics = run(place(params, stacked), place(opt_state, stacked), columns, *placed["arrays"])
        return params, opt_state, {**metrics, "dropped": masks[1]} if masks else metrics

    return epoch
