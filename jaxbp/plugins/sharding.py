"""The one thing sharding asks of a hand-written backward: the output sharding of a contraction over a sharded axis.

A weight gradient ``dJ/dW = dZ^T X`` sums over the batch. When the batch is sharded over an
``Explicit`` mesh axis, JAX will not guess how that sum is laid out and raises ``ShardingTypeError``;
``contraction_sharding`` names it: the contracted axis is summed away (an all-reduce), every other
axis keeps its operand's sharding. It returns ``{}`` when nothing contracted is sharded (no mesh,
an ``Auto`` mesh, or a replicated batch), so the program of an unsharded step is unchanged. A layer
plugin whose backward sums over the batch with a contraction passes it on the same way.
"""

from __future__ import annotations

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P


def _spec(x) -> tuple:
    """The mesh axes of each of ``x``'s axes in its type (None: not sharded, or not on an Explicit axis)."""
    spec = tuple(getattr(jax.typeof(x).sharding, "spec", None) or ())
    return spec + (None,) * (jax.numpy.ndim(x) - len(spec))


def contraction_sharding(a_labels: str, b_labels: str, out_labels: str, a, b) -> dict:
    """``{"out_sharding": NamedSharding(mesh, P(...))}`` for the einsum ``a_labels,b_labels->out_labels`` when a summed axis is
    sharded in the operands' types, else ``{}``; pass it on as ``**kwargs`` to ``tensordot``/``einsum``."""
    specs: dict = {}
    for labels, x in ((a_labels, a), (b_labels, b)):
        for label, axis in zip(labels, _spec(x)):
            specs[label] = specs.get(label) or axis
    summed = set(a_labels + b_labels) - set(out_labels)
    if all(specs.get(label) is None for label in summed):
        return {}
    mesh = jax.typeof(a).sharding.mesh  # the operands' (abstract) mesh: no jax.set_mesh needed
    return {"out_sharding": NamedSharding(mesh, P(*(specs.get(label) for label in out_labels)))}
