"""Sums over per-example outer products, contracted by one matmul instead of stored n at a time.

The per-example rule vmaps ``dw = dz x^T`` and then sums over the batch. Written that way, XLA:CPU
may build all n outer products (n*k*d floats) before the sum. ``fold_batch_sums`` traces a function
and evaluates it again with every ``sum_i a_i (x) b_i`` computed as one contraction over i: XLA's own
Reduce(Dot) -> Dot rule, done before the backend can miss it. An outer product is found whether
it comes from ``dot_general`` (``jnp.tensordot``, ``jnp.einsum``) or from a product of broadcasts
(``jnp.outer``, ``a[:, None] * b``), and nested ``jit`` calls are inlined so that products inside
them are found too. Products and broadcasts are evaluated only when something other than a folded
sum reads them, so the n*k*d array is never even traced. Same numbers, summed in another order.
"""

from __future__ import annotations

import string
from typing import Any, Callable, NamedTuple

import jax
import jax.extend.core
import jax.numpy as jnp

from ..plugins.sharding import contraction_sharding
from ..boundary.validate import is_concrete

DEFERRED = ("dot_general", "mul", "broadcast_in_dim")  # evaluated only when read by something that is not a fold
STRETCHED = "."  # the label of a size-1 axis that a broadcast stretches: squeezed out before contracting


class _Pending(NamedTuple):
    """An equation not evaluated yet, with its operands (values or other _Pending)."""

    eqn: Any
    operands: list


class _Product(NamedTuple):
    """A product of ``a`` and ``b`` as einsum labels: ``a_labels,b_labels->out_labels``."""

    a: Any
    b: Any
    a_labels: str
    b_labels: str
    out_labels: str
    params: dict  # precision and preferred_element_type, for a dot_general


def _shape(x) -> tuple:
    return tuple(x.eqn.outvars[0].aval.shape) if isinstance(x, _Pending) else jnp.shape(x)


def _dot_product(a, b, params) -> _Product:
    """dot_general's output axes are its batch axes, then a's free axes, then b's."""
    (a_contract, b_contract), (a_batch, b_batch) = params["dimension_numbers"]
    letters = iter(string.ascii_letters)
    a_labels, b_labels, out = [""] * len(_shape(a)), [""] * len(_shape(b)), []
    for i, j in zip(a_batch, b_batch):
        a_labels[i] = b_labels[j] = next(letters)
        out.append(a_labels[i])
    for i, j in zip(a_contract, b_contract):
        a_labels[i] = b_labels[j] = next(letters)
    for labels in (a_labels, b_labels):
        for i, label in enumerate(labels):
            if not label:
                labels[i] = next(letters)
                out.append(labels[i])
    extra = {k: params[k] for k in ("precision", "preferred_element_type") if params.get(k) is not None}
    return _Product(a, b, "".join(a_labels), "".join(b_labels), "".join(out), extra)


def _source(v, labels: list) -> tuple[Any, str]:
    """``v`` traced back through a pending broadcast_in_dim; a size-1 axis that is stretched is STRETCHED."""
    if isinstance(v, _Pending) and v.eqn.primitive.name == "broadcast_in_dim":
        (operand,), shape = v.operands, _shape(v)
        dims = v.eqn.params["broadcast_dimensions"]
        labels = [labels[d] if _shape(operand)[j] == shape[d] else None for j, d in enumerate(dims)]
        v = operand
    return v, "".join(label or STRETCHED for label in labels)


def _outer_product(x, y, out_shape) -> _Product | None:
    """``x * y`` as a product of the arrays they were broadcast from, if it is an outer product."""
    if not len(_shape(x)) == len(_shape(y)) == len(out_shape) > 0:
        return None
    out = string.ascii_letters[: len(out_shape)]
    (a, a_labels), (b, b_labels) = (  # an axis of size 1 under a larger output axis is stretched by the mul
        _source(v, [label if size == full else None for label, size, full in zip(out, _shape(v), out_shape)])
        for v in (x, y))
    a_axes, b_axes = set(a_labels) - {STRETCHED}, set(b_labels) - {STRETCHED}
    if a_axes >= b_axes or b_axes >= a_axes:
        return None  # an elementwise product: summing it is no larger than its operands
    return _Product(a, b, a_labels, b_labels, out, {})


def _product(x) -> _Product | None:
    if not isinstance(x, _Pending):
        return None
    name, operands = x.eqn.primitive.name, x.operands
    if name == "dot_general":
        return _dot_product(*operands, x.eqn.params)
    return _outer_product(*operands, _shape(x)) if name == "mul" else None


class _Evaluator:
    """Evaluates jaxprs lazily where it pays: products wait to see whether a sum folds them."""

    def __init__(self):
        self.done = {}  # id(_Pending) -> (the _Pending, kept alive so its id is not reused; its value)

    def force(self, x):
        if not isinstance(x, _Pending):
            return x
        if id(x) not in self.done:
            self.done[id(x)] = (x, self.bind(x.eqn, [self.force(v) for v in x.operands])[0])
        return self.done[id(x)][1]

    @staticmethod
    def bind(eqn, values) -> list:
        with eqn.ctx.manager:
            outs = eqn.primitive.bind(*values, **eqn.primitive.get_bind_params(eqn.params))
        return outs if eqn.primitive.multiple_results else [outs]

    def fold(self, product: _Product, axes) -> jax.Array | None:
        """The sum of ``product`` over ``axes`` as one einsum; None if a summed axis is not in both operands."""
        summed = {product.out_labels[i] for i in axes}
        if not all(label in product.a_labels and label in product.b_labels for label in summed):
            return None
        kept = "".join(label for label in product.out_labels if label not in summed)
        operands, subscripts = [], []
        for x, labels in ((product.a, product.a_labels), (product.b, product.b_labels)):
            stretched = tuple(i for i, label in enumerate(labels) if label == STRETCHED)
            x = self.force(x)
            operands.append(jax.lax.squeeze(x, stretched) if stretched else x)
            subscripts.append(labels.replace(STRETCHED, ""))
        sharded = contraction_sharding(*subscripts, kept, *operands)  # a sum over a sharded batch (Explicit mesh)
        return jnp.einsum(f"{subscripts[0]},{subscripts[1]}->{kept}", *operands, **product.params, **sharded)

    def run(self, jaxpr, consts, args) -> list:
        env = dict(zip(jaxpr.constvars, consts)) | dict(zip(jaxpr.invars, args))
        read = lambda v: v.val if isinstance(v, jax.extend.core.Literal) else env[v]
        for eqn in jaxpr.eqns:
            values, name = [read(v) for v in eqn.invars], eqn.primitive.name
            product = _product(values[0]) if name == "reduce_sum" else None
            folded = self.fold(product, eqn.params["axes"]) if product is not None else None
            if folded is not None:
                outs = [folded]
            elif name in DEFERRED:
                outs = [_Pending(eqn, values)]
            elif name == "jit":  # inlined, so that its products meet the sums outside it
                outs = self.run(eqn.params["jaxpr"].jaxpr, eqn.params["jaxpr"].consts, values)
            else:
                outs = self.bind(eqn, [self.force(v) for v in values])
            env.update(zip(eqn.outvars, outs))
        return [read(v) for v in jaxpr.outvars]


def fold_batch_sums(fn: Callable) -> Callable:
    """``fn`` with its sums over outer products contracted by a matmul (same numbers, no n*k*d store).

    Under ``jit`` only: called on concrete arrays ``fn`` runs as written, with its value checks.
    """

    def folded(*args):
        leaves = jax.tree.leaves(args)
        if all(is_concrete(leaf) for leaf in leaves):
            return fn(*args)
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        evaluator = _Evaluator()
        outs = [evaluator.force(v) for v in evaluator.run(closed.jaxpr, closed.consts, leaves)]
        return jax.tree.unflatten(jax.tree.structure(out_shape), outs)

    return folded
