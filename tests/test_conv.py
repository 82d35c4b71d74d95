"""Convolution, pooling and residual blocks in every mode the dense layer has: the notes' rule on patches,
per-example == batched, float64 and bfloat16, a sharded batch, the backward rules, and private training.
Tiny on purpose: 8x8 images of 2 channels."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxbp
from jaxbp.plugins.conv import patches
from jaxbp.plugins.layers import LAYERS
from jaxbp.privacy import clipped_sum

SHAPE = (8, 8, 2)


def convnet(rule="backprop"):
    """conv (T^2 >= k c_in c_out: per-example norms built), pool, a residual block whose strided conv takes the
    ghost norm (T = 4) and whose skip is a projection, then flatten and dense."""
    return jaxbp.network(SHAPE, [
        jaxbp.conv2d(3, 3, activation="tanh"), jaxbp.max_pool2d(2),
        jaxbp.residual(jaxbp.conv2d(3, 3, activation="tanh"), jaxbp.conv2d(4, 3, stride=2)),
        jaxbp.avg_pool2d(1), jaxbp.flatten(), jaxbp.dense(3)], "softmax_cross_entropy", rule=rule)


@pytest.fixture(scope="module")
def setup():
    model = convnet()
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda p: p + 0.2 * rng.standard_normal(p.shape), model.init(jax.random.key(0)))
    return model, params, jnp.asarray(rng.standard_normal((6, *SHAPE))), jnp.asarray(rng.integers(0, 3, 6))


def test_convnet_matches_jax_grad_finite_differences_and_per_example(setup):
    model, params, x, y = setup
    report = jaxbp.check_model(model, params=params, x=x, y=y)
    assert report.ok and len(report.rows) == 11, f"\n{report}"  # 10 leaves and the loss value


LAYER_NAMES = [name for name in LAYERS.names() if name in {"conv2d", "max_pool2d", "avg_pool2d", "flatten", "residual"}]


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_each_registered_image_layer_in_a_network_per_example_equals_batched(name):
    """Haiku-style: every registered layer with its checked example, then flatten and dense: jax.grad, finite
    differences and the mean of the vmapped per-example gradients (check_model's per-ex column)."""
    plugin = LAYERS.get(name)
    layers = [plugin.make(**plugin.example)] + ([] if name == "flatten" else [jaxbp.flatten()]) + [jaxbp.dense(2)]
    report = jaxbp.check_model(jaxbp.network(plugin.input_shape, layers, "mse"), smooth=plugin.smooth, n=4)
    assert report.ok, f"\n{report}"


def test_convolution_is_the_dense_rule_on_patches():
    """The kernel layout: w.reshape(features, -1) is the dense weight on each (kh, kw, c_in) patch, z = P W^T + b."""
    layer = jaxbp.conv2d(4, 3, stride=2, padding=1)
    out, params = layer.init(jax.random.key(0), (7, 6, 2))
    x = jax.random.normal(jax.random.key(1), (2, 7, 6, 2))
    z = layer.forward(params, x)[0]
    assert out == (4, 3, 4) and z.shape == (2, 4, 3, 4)
    cols = patches(x, 3, 2, ((1, 1), (1, 1)))
    np.testing.assert_allclose(z.reshape(2, -1, 4), cols @ params["w"].reshape(4, -1).T + params["b"], rtol=1e-12)


@pytest.mark.parametrize("padding,want", [("SAME", (3, 4)), ("VALID", (2, 3)), (2, (4, 5))])
def test_padding_gives_the_output_size_lax_gives(padding, want):
    layer = jaxbp.conv2d(2, 3, stride=2, padding=padding)
    assert layer.init(jax.random.key(0), (6, 7, 1))[0] == (*want, 2)


@pytest.mark.parametrize("options,message", [
    ({"features": 0, "kernel_size": 3}, "features must be a positive int"),
    ({"features": 2, "kernel_size": 3, "padding": "FULL"}, "padding must be 'SAME', 'VALID' or an int"),
    ({"features": 2, "kernel_size": 3, "stride": 1.5}, "stride must be a positive int"),
])
def test_bad_conv_options_are_config_errors(options, message):
    with pytest.raises(jaxbp.ConfigError, match=message):
        jaxbp.conv2d(**options)


def test_a_kernel_larger_than_the_image_is_a_build_time_error():
    with pytest.raises(jaxbp.ShapeError, match=r"layer 1 \(conv2d\) takes images of at least 5x5 after padding"):
        jaxbp.network((4, 4, 1), [jaxbp.conv2d(2, 3, padding="VALID"), jaxbp.conv2d(2, 5, padding="VALID")], "mse")
    with pytest.raises(jaxbp.ShapeError, match=r"layer 0 \(residual\) maps per-example shape \(6, 6, 1\) to \(4, 4, 2\)"):
        jaxbp.network((6, 6, 1), [jaxbp.residual(jaxbp.conv2d(2, 3, padding="VALID"))], "mse")


def _failed(name):
    report = jaxbp.check_plugin("layer", name)
    assert not report.ok, f"the planted bug went unnoticed:\n{report}"
    return {row.leaf for row in report.failures}


def _conv_with(backward_fix):
    def make(**options):
        good = jaxbp.conv2d(**options)
        return good._replace(backward=lambda p, c, g: backward_fix(good, p, c, g))
    return make


CONV_EXAMPLE = dict(example={"features": 3, "kernel_size": 3, "stride": 2, "activation": "tanh"}, input_shape=(6, 5, 2))


@pytest.mark.parametrize("bug,leaf", [
    ("kernel rows and columns swapped in dW", "[0]['w']"),
    ("dx without the flipped kernel", "[1]"),
    ("dx without the stride's dilation", "[1]"),
])
def test_planted_conv_bugs_are_caught(bug, leaf, restore_registries):
    def fix(good, params, cache, g):
        grads, dx = good.backward(params, cache, g)
        if bug.startswith("kernel"):
            return {**grads, "w": jnp.swapaxes(grads["w"], 1, 2)}, dx
        if bug.startswith("dx without the flipped"):
            return grads, good.backward({**params, "w": jnp.flip(params["w"], (1, 2))}, cache, g)[1]
        x, z, a = cache
        up = jnp.repeat(jnp.repeat(jaxbp.get_activation("tanh").backward(z, a, g), 2, 1), 2, 2)[:, :6, :5]
        return grads, jax.lax.conv_general_dilated(up, jnp.flip(params["w"], (1, 2)), (1, 1), "SAME",
                                                   dimension_numbers=("NHWC", "IHWO", "NHWC"))

    jaxbp.register_layer("bad_conv", _conv_with(fix), **CONV_EXAMPLE)
    assert leaf in _failed("bad_conv")


def test_planted_residual_bug_forgets_the_skip_path(restore_registries):
    def bad():
        good = jaxbp.residual(jaxbp.conv2d(3, 3, activation="tanh"), jaxbp.conv2d(3, 3))
        grads_and_dx = good.backward
        return good._replace(backward=lambda p, c, g: (grads_and_dx(p, c, g)[0], grads_and_dx(p, c, g)[1] - g))

    jaxbp.register_layer("bad_residual", bad, example={}, input_shape=(5, 5, 3))
    assert _failed("bad_residual") == {"[1]"}
