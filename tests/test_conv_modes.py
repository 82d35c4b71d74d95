"""A convnet in the dense layer's other modes: bfloat16, a sharded batch, the backward rules, private training."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxbp
from jaxbp.checking import relative_error
from jaxbp.plugins.conv import conv2d, patches
from jaxbp.plugins.rules import layer_params
from jaxbp.privacy import clipped_sum
from test_conv import SHAPE, convnet, setup  # noqa: F401  (the module-scoped fixture is shared)


def test_bfloat16_step_is_finite_and_near_float32(setup):
    model, params, x, y = setup
    vg = jax.jit(model.value_and_grad)
    cast = lambda tree, dtype: jax.tree.map(lambda a: a.astype(dtype), tree)
    value16, grads16 = vg(cast(params, jnp.bfloat16), x.astype(jnp.bfloat16), y)
    value32, grads32 = vg(cast(params, jnp.float32), x.astype(jnp.float32), y)
    assert {g.dtype for g in jax.tree.leaves(grads16)} == {jnp.dtype(jnp.bfloat16)}
    assert abs(float(value16) - float(value32)) < 0.05 * abs(float(value32))
    for a, b in zip(jax.tree.leaves(grads16), jax.tree.leaves(grads32)):
        assert relative_error(a, b) < 0.1


def test_a_sharded_batch_gives_the_one_device_step(setup, host_devices):
    model, params, x, y = setup
    mesh = jax.make_mesh((2,), ("data",), axis_types=(AxisType.Explicit,), devices=host_devices[:2])
    xs, ys = jax.device_put(x, NamedSharding(mesh, P("data"))), jax.device_put(y, NamedSharding(mesh, P("data")))
    ps = jax.device_put(params, NamedSharding(mesh, P()))
    optimizer = optax.sgd(0.1)
    step = jaxbp.make_train_step(model, optimizer)
    one = jax.device_get(step(params, optimizer.init(params), x, y))
    sharded = jax.device_get(step(ps, optimizer.init(ps), xs, ys))
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(sharded)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


RULES = ["direct_feedback_alignment", "kolen_pollack"]  # FA: the next test; sign symmetry keeps no feedback


@pytest.mark.parametrize("rule", RULES)
def test_each_rule_gives_a_conv_layer_feedback_shaped_like_its_kernel(rule, setup):
    _, params, x, y = setup
    model = convnet(rule)
    ruled = model.init(jax.random.key(0))
    feedback = getattr(ruled, "feedback", None)
    if rule == "direct_feedback_alignment":  # B maps the 3 output errors to all of the layer's (H, W, C) inputs
        assert feedback[2] is None and feedback[5].shape == (3, 2 * 2 * 4)  # the residual block backprops inside
    else:
        assert feedback[0] is None and feedback[5].shape == (3, 16)
    vg = jax.jit(model.value_and_grad)
    grads = layer_params(vg(ruled, x, y)[1])
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert grads[0]["w"].shape == (3, 3, 3, 2)


def test_feedback_alignment_with_b_equal_to_the_kernels_is_backprop(setup):
    """FA sends back(B): with every B set to its layer's own weight, the whole backward is backprop's, to 1e-12;
    a conv's B is the kernel in the transposed convolution."""
    _, _, x, y = setup
    conv_fa = jaxbp.network(SHAPE, [conv2d(3, 3, activation="tanh"), conv2d(2, 3, stride=2), jaxbp.flatten(),
                                    jaxbp.dense(3)], "softmax_cross_entropy", rule="feedback_alignment")
    small = conv_fa.init(jax.random.key(1))
    small = small._replace(feedback=[None if b is None else p["w"] for b, p in zip(small.feedback, small.layers)])
    both = jax.jit(lambda p: (conv_fa.value_and_grad(p, x, y)[1], jax.grad(conv_fa.loss)(p, x, y).layers))
    got, reference = both(small)
    assert small.feedback[1].shape == (2, 3, 3, 3)  # the second conv's B: its kernel's shape
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(reference)):
        assert relative_error(a, b) <= 1e-12
    # B = 2 W at the second conv: what it sends doubles, so the first conv's gradient doubles and nothing else
    # moves (a conv that sent W^T dz whatever B is would leave it alone)
    doubled, _ = both(small._replace(feedback=[None, 2 * small.layers[1]["w"], *small.feedback[2:]]))
    assert relative_error(doubled[0]["w"], 2 * reference[0]["w"]) <= 1e-12
    assert relative_error(doubled[1]["w"], reference[1]["w"]) <= 1e-12


def _reference_clipped_sum(model, params, x, y, clip):
    """Each example's gradient by jax.grad of its own loss (vmapped), clipped to the global norm C, summed."""
    grads = jax.vmap(jax.grad(lambda p, xi, yi: model.loss(p, xi[None], yi[None])), in_axes=(None, 0, 0))(params, x, y)
    sq = sum(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1) for g in jax.tree.leaves(grads))
    c = clip / jnp.maximum(jnp.sqrt(sq), clip)
    return jax.tree.map(lambda g: jnp.tensordot(c, g, axes=1), grads), jnp.sqrt(sq)


def _assert_private_sum_right(model, params, x, y):
    @jax.jit
    def both(params, x, y):
        norms = _reference_clipped_sum(model, params, x, y, 1.0)[1]
        clip = jnp.median(norms)  # some clipped, some not
        return clipped_sum(model, clip)(params, x, y)[1:], _reference_clipped_sum(model, params, x, y, clip)

    (got, got_norms), (want, want_norms) = both(params, x, y)
    np.testing.assert_allclose(got_norms, want_norms, rtol=1e-12)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_private_conv_sum_equals_clipped_vmapped_jax_grad(setup):
    """The first conv builds its per-example gradients (T^2 = 4096 > 54); the residual's strided conv takes the
    ghost norm (T^2 = 16 < 108): both choices, pooling, the projection and the dense layer, to 1e-12."""
    _assert_private_sum_right(*setup)


def test_planted_bug_norms_summed_per_position_are_caught(setup):
    """The dense rule ||dz_t||^2 (||p_t||^2 + 1) summed over positions t drops the cross terms between positions."""
    model, params, x, y = setup

    def per_position(p, cache, g):
        xin, z, a = cache
        d = ((1 - a**2) * g).reshape(g.shape[0], -1, 3)  # tanh's dJ/dz
        cols = patches(xin, 3, 1, ((1, 1), (1, 1)))
        return jnp.sum(jnp.sum(d * d, -1) * (jnp.sum(cols * cols, -1) + 1), -1)

    bad = model._replace(layers=(model.layers[0]._replace(per_example_sq_norms=per_position),) + model.layers[1:])
    with pytest.raises(AssertionError):
        _assert_private_sum_right(bad, params, x, y)
