"""Inputs of any shape: per-example shapes flow through the layers, and a wrong one is a one-line error
at build time naming the layer, its index, the shape it got and the shape it wants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp


@pytest.mark.parametrize("layers,message", [
    ([jaxbp.dense(3)], r"layer 0 \(dense\) takes flat vectors, got per-example shape \(4, 4, 2\): put jaxbp.flatten"),
    ([jaxbp.flatten(), jaxbp.max_pool2d(2)], r"layer 1 \(max_pool2d\) takes images \(H, W, C\) per example, got "
                                             r"per-example shape \(32,\)"),
    ([jaxbp.avg_pool2d(2)], r"layer 0 \(avg_pool2d\) gives per-example shape \(2, 2, 2\), but the loss takes flat"),
    ([jaxbp.max_pool2d(5)], r"layer 0 \(max_pool2d\) takes images of at least 5x5 \(its window\), got per-example "
                            r"shape \(4, 4, 2\)"),
])
def test_a_wrong_shape_is_a_one_line_error_at_build_time(layers, message):
    with pytest.raises(jaxbp.ShapeError, match=message) as error:
        jaxbp.network((4, 4, 2), layers, "mse")
    assert "\n" not in str(error.value)


def test_input_shape_is_an_int_or_a_tuple_of_positive_ints():
    assert jaxbp.mlp([3, 4, 2]).input_shape == (3,) and jaxbp.mlp([3, 4, 2]).d_in == 3
    model = jaxbp.network((4, 4, 2), [jaxbp.flatten(), jaxbp.dense(3)], "mse")
    assert (model.input_shape, model.d_in, model.d_out) == ((4, 4, 2), 32, 3)
    for bad in [(4, 0, 2), (), "28x28", (2.5,), True]:
        with pytest.raises(jaxbp.ShapeError, match="input_shape must be a positive int width or a tuple"):
            jaxbp.network(bad, [jaxbp.dense(3)], "mse")


def test_batches_of_images_go_through_apply_and_a_wrong_batch_is_named():
    model = jaxbp.network((4, 4, 2), [jaxbp.max_pool2d(2), jaxbp.flatten(), jaxbp.dense(3)], "softmax_cross_entropy")
    params = model.init(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 4, 4, 2)))
    assert model.apply(params, x).shape == (5, 3)
    with pytest.raises(jaxbp.ShapeError, match=r"x must have shape \(n, 4, 4, 2\) \(n examples of shape \(4, 4, 2\)\)"):
        model.apply(params, x.reshape(5, 32))


def test_flatten_is_row_major_and_one_layer_object_keeps_its_shape():
    layer = jaxbp.flatten()
    assert layer.init(None, (2, 3, 2))[0] == (12,)
    x = jnp.arange(24.0).reshape(2, 2, 3, 2)
    y, cache = layer.forward({}, x)
    np.testing.assert_array_equal(y, x.reshape(2, 12))
    np.testing.assert_array_equal(layer.forward({}, x[0])[0], x[0].reshape(12))  # one example
    np.testing.assert_array_equal(layer.backward({}, cache, y)[1], x)
    with pytest.raises(jaxbp.ShapeError, match=r"was built for per-example shape \(2, 3, 2\), got \(3, 2, 2\)"):
        jaxbp.network((3, 2, 2), [jaxbp.max_pool2d(1), layer, jaxbp.dense(2)], "mse")


def test_max_pool_splits_the_gradient_between_tied_maxima_as_jax_grad_does():
    """The tie rule: m tied maxima get 1/m of the gradient each, JAX's convention (jax.grad agrees)."""
    pool = jaxbp.max_pool2d(2)
    x = jnp.asarray([[1.0, 3.0], [3.0, 3.0], [0.0, 0.0], [0.0, 0.0]]).reshape(1, 4, 2, 1)  # 3 tied, then 4 tied
    dx, reference = jax.jit(lambda x: (pool.backward({}, pool.forward({}, x)[1], jnp.full((1, 2, 1, 1), 6.0))[1],
                                       jax.grad(lambda x: jnp.sum(6.0 * pool.forward({}, x)[0]))(x)))(x)
    np.testing.assert_allclose(dx[0, ..., 0], [[0.0, 2.0], [2.0, 2.0], [1.5, 1.5], [1.5, 1.5]])
    np.testing.assert_allclose(dx, reference)
    overlap = jaxbp.max_pool2d(2, stride=1)  # overlapping windows add their gradients at a shared maximum
    x = jnp.asarray([[0.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 0.0]]).reshape(3, 3, 1)
    y, cache = overlap.forward({}, x)
    np.testing.assert_array_equal(overlap.backward({}, cache, jnp.ones_like(y))[1][..., 0], [[0, 0, 0], [0, 4, 0], [0, 0, 0]])


@pytest.mark.parametrize("make", [lambda: jaxbp.max_pool2d(0), lambda: jaxbp.avg_pool2d(2, stride=True)])
def test_bad_pool_options_are_config_errors(make):
    with pytest.raises(jaxbp.ConfigError, match="must be a positive int"):
        make()


def _failed(name):
    report = jaxbp.check_plugin("layer", name)
    assert not report.ok, f"the planted bug went unnoticed:\n{report}"
    return {row.leaf for row in report.failures}


def _with_backward(good, backward):
    return jaxbp.Layer(good.init, good.forward, backward, good.per_example_sq_norms, shaped=True)


def test_planted_bug_flatten_unflattens_in_the_wrong_order(restore_registries):
    def bad():
        good = jaxbp.flatten()
        return _with_backward(good, lambda p, c, g: ({}, jnp.swapaxes(  # column-major: axes reversed, then back
            g.reshape(g.shape[:-1] + (2, 2, 3)), -1, -3)))

    jaxbp.register_layer("bad_flatten", bad, example={}, input_shape=(3, 2, 2))
    assert _failed("bad_flatten") == {"[1]"}


def test_planted_bug_max_pool_gradient_to_the_window_corner(restore_registries):
    def bad():
        good = jaxbp.max_pool2d(2)

        def backward(params, cache, g):
            shape, argmax = cache
            return good.backward(params, (shape, jnp.ones_like(argmax)), g)  # the whole window, not its maximum

        return _with_backward(good, backward)

    jaxbp.register_layer("bad_max_pool", bad, example={}, smooth=False, input_shape=(4, 4, 2))
    assert _failed("bad_max_pool") == {"[1]"}


def test_planted_bug_avg_pool_without_one_over_k_squared(restore_registries):
    def bad():
        good = jaxbp.avg_pool2d(3, stride=2)
        return _with_backward(good, lambda p, c, g: ({}, 9 * good.backward(p, c, g)[1]))  # forgets the mean's 1/9

    jaxbp.register_layer("bad_avg_pool", bad, example={}, input_shape=(5, 5, 2))
    assert _failed("bad_avg_pool") == {"[1]"}
