"""Float64 by default, so gradient checks can be tight; float32 tests cast explicitly."""

import copy

import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_num_cpu_devices", 4)  # host devices for the sharded tests (tests/test_scale.py); before any backend starts

from jaxbp.plugins.activations import ACTIVATIONS  # noqa: E402
from jaxbp.plugins.layers import LAYERS  # noqa: E402
from jaxbp.plugins.losses import LOSSES  # noqa: E402
from jaxbp.plugins.rules import RULES  # noqa: E402


@pytest.fixture
def restore_registries():
    """Undo any plugin registered inside a test."""
    saved = [(registry, copy.copy(registry._plugins)) for registry in (ACTIVATIONS, LOSSES, LAYERS, RULES)]
    yield
    for registry, plugins in saved:
        registry._plugins = plugins


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def fast_compile():
    """Smoke runs are compile-bound: skip most XLA optimizations (where the numbers are not checked tightly)."""
    previous = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)
