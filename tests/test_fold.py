"""``fold_batch_sums``: a sum over per-example outer products becomes one contraction, never n stored products."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp.scale.fold import fold_batch_sums

N, K, D = 16, 5, 7


def _outer_products():
    """Per-example outer products k x d, written the ways a layer author might write them."""
    return {
        "tensordot": lambda a, b: jnp.tensordot(a, b, axes=0),
        "einsum": lambda a, b: jnp.einsum("k,d->kd", a, b),
        "outer": jnp.outer,
        "broadcast": lambda a, b: a[:, None] * b[None, :],
        "nested jit": jax.jit(lambda a, b: jnp.outer(2.0 * a, b)),
    }


def _largest_intermediate(fn, *args) -> int:
    sizes = []

    def visit(jaxpr):
        for eqn in jaxpr.eqns:
            sizes.extend(int(np.prod(v.aval.shape)) for v in eqn.outvars)
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                visit(sub)

    visit(jax.make_jaxpr(fn)(*args).jaxpr)
    return max(sizes)


@pytest.mark.parametrize("name", list(_outer_products()))
def test_a_mean_of_outer_products_is_one_contraction(name):
    outer = _outer_products()[name]
    per_example = lambda a, b: jnp.mean(jax.vmap(outer)(a, b), axis=0)
    a, b = jax.random.normal(jax.random.key(0), (N, K)), jax.random.normal(jax.random.key(1), (N, D))
    assert _largest_intermediate(per_example, a, b) == N * K * D  # as written: all n products
    folded = jax.jit(fold_batch_sums(per_example))
    assert _largest_intermediate(folded, a, b) < N * K * D
    np.testing.assert_allclose(folded(a, b), per_example(a, b), rtol=1e-12, atol=1e-14)


def test_a_sum_of_elementwise_products_is_left_alone():
    fn = lambda g, x: jnp.sum(g * x, axis=0)  # layer norm's dJ/dscale: summing it is no larger than g
    g, x = jnp.ones((N, D)), jnp.arange(N * D, dtype=float).reshape(N, D)
    folded = jax.make_jaxpr(jax.jit(fold_batch_sums(fn)))(g, x)
    assert "dot_general" not in str(folded)
    np.testing.assert_allclose(jax.jit(fold_batch_sums(fn))(g, x), fn(g, x))


def test_a_sum_over_a_free_axis_is_not_folded():
    fn = lambda a, b: jnp.sum(a[:, :, None] * b[:, None, :], axis=1)  # sums a's own axis: no contraction with b
    a, b = jnp.ones((N, K)), jnp.arange(N * D, dtype=float).reshape(N, D)
    np.testing.assert_allclose(jax.jit(fold_batch_sums(fn))(a, b), fn(a, b))


def test_concrete_arguments_run_the_function_as_written():
    calls = []
    fn = fold_batch_sums(lambda a: calls.append(type(a)) or a * 2)
    np.testing.assert_allclose(fn(jnp.ones(3)), 2.0)
    assert len(calls) == 1
