"""Every registered plugin is checked with no new test (haiku-style), and registration behaves."""

import inspect
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

import jaxbp
from jaxbp import checking
from jaxbp.plugins import layers as _layers
from jaxbp.plugins.activations import ACTIVATIONS
from jaxbp.plugins.layers import LAYERS
from jaxbp.plugins.losses import LOSSES

PUBLIC_ACTIVATIONS = {"identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "gelu", "softmax"}
PUBLIC_LOSSES = {"binary_cross_entropy", "softmax_cross_entropy", "mse", "multiclass_hinge", "binary_hinge", "huber"}
REGISTERED = [(kind, name) for kind, names in checking.plugin_names().items() for name in names]


@pytest.mark.parametrize("kind,name", REGISTERED, ids=[f"{k}:{n}" for k, n in REGISTERED])
def test_registered_plugin_matches_jax_grad_and_finite_differences(kind, name):
    report = jaxbp.check_plugin(kind, name)
    assert report.rows, "a check must compare at least one leaf"
    assert report.ok, f"\n{report}"


def test_coverage_every_public_plugin_is_registered():
    assert PUBLIC_ACTIVATIONS <= set(ACTIVATIONS.names())
    assert PUBLIC_LOSSES <= set(LOSSES.names())
    factories = [f for _, f in inspect.getmembers(_layers, inspect.isfunction)
                 if inspect.signature(f).return_annotation in ("Layer", _layers.Layer) and f is not jaxbp.layer]
    registered = {plugin.make for plugin in (LAYERS.get(n) for n in LAYERS.names())}
    assert factories, "the layer factories should be discoverable"
    missing = [f.__name__ for f in factories if f not in registered]
    assert not missing, f"public layer factories not registered: {missing}"


@pytest.mark.parametrize("kind", ["activation", "loss", "layer"])
def test_unknown_name_lists_the_known_ones(kind):
    with pytest.raises(jaxbp.UnknownPluginError) as error:
        jaxbp.check_plugin(kind, "no_such_plugin")
    for name in checking.plugin_names()[kind]:
        assert name in str(error.value)


def test_unknown_kind_is_an_error():
    with pytest.raises(jaxbp.JaxbpError, match="known kinds"):
        jaxbp.check_plugin("optimizer", "sgd")


def test_mlp_with_unknown_activation_lists_known():
    with pytest.raises(jaxbp.UnknownPluginError, match="tanh"):
        jaxbp.mlp([2, 3, 1], activation="tanhh", loss="mse")
    with pytest.raises(jaxbp.UnknownPluginError, match="softmax_cross_entropy"):
        jaxbp.mlp([2, 3, 1], activation="tanh", loss="cross_entropy")


def test_duplicate_registration_is_refused(restore_registries):
    with pytest.raises(jaxbp.JaxbpError, match="already registered"):
        jaxbp.register_activation("tanh", forward=jnp.tanh, backward=lambda z, a, g: g)
    jaxbp.register_activation("tanh", forward=jnp.tanh, backward=lambda z, a, g: g * (1 - a**2), replace=True)


def test_user_activation_is_checked_and_usable_by_name(restore_registries):
    jaxbp.register_activation(
        "my_swish",
        forward=lambda z: z * jax.nn.sigmoid(z),
        backward=lambda z, a, g: g * (jax.nn.sigmoid(z) + a * (1 - jax.nn.sigmoid(z))),
    )
    assert jaxbp.check_plugin("activation", "my_swish").ok
    model = jaxbp.mlp([3, 5, 2], activation="my_swish", loss="mse")
    assert jaxbp.check_model(model, smooth=True).ok
    assert any("my_swish" in name for name, _, _ in checking.network_suite())


def test_user_loss_joins_the_checks(restore_registries):
    jaxbp.register_loss("half_l2", value=lambda z, y: 0.25 * jnp.sum((z - y) ** 2), backward=lambda z, y: 0.5 * (z - y),
                        encode=jaxbp.plugins.value_targets)
    assert jaxbp.check_plugin("loss", "half_l2").ok
    assert any(name.endswith("half_l2") for name, _, _ in checking.network_suite())


def test_third_party_plugin_from_entry_point(tmp_path, monkeypatch, restore_registries):
    """An installed package's ``jaxbp.plugins`` entry point is loaded and checked by ``jaxbp check``."""
    (tmp_path / "cube_plugin.py").write_text(textwrap.dedent("""
        import jaxbp
        def register():
            jaxbp.register_activation("cube", forward=lambda z: z ** 3, backward=lambda z, a, g: 3 * z ** 2 * g)
    """))
    dist = tmp_path / "cube_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cube-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[jaxbp.plugins]\ncube = cube_plugin:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(jaxbp.plugins.registry, "_loaded_entry_points", set())
    assert "cube" in ACTIVATIONS.names()
    assert jaxbp.check_plugin("activation", "cube").ok
    sys.modules.pop("cube_plugin", None)


def test_kinked_loss_with_exact_zero_gradients_is_checked_in_the_kink_band(restore_registries):
    jaxbp.register_loss("hinge", value=lambda z, y: jnp.sum(jax.nn.relu(1 - y * z)),
                        backward=lambda z, y: jnp.where(y * z < 1, -y, 0.0), smooth=False,
                        encode=jaxbp.plugins.class_targets)
    report = jaxbp.check_plugin("loss", "hinge")
    assert report.ok and {row.fd_band for row in report.rows} == {checking.FD_BAND_KINK}, f"\n{report}"
    jaxbp.register_loss("hinge", value=lambda z, y: jnp.sum(jax.nn.relu(1 - y * z)),
                        backward=lambda z, y: jnp.where(y * z < 1, y, 0.0), smooth=False, replace=True)
    assert not jaxbp.check_plugin("loss", "hinge").ok
