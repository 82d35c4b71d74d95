"""Float64 by default, so gradient checks can be tight; float32 tests cast explicitly.

The suite is compile-bound (hundreds of small programs), so two things keep it fast:

- XLA compiles with most optimizations off (``jax_disable_most_optimizations``; a third less time).
  An optimization changes how a program runs, not what it computes beyond rounding, and the tests
  check what it computes. A test about the compiled program itself (its temporary memory) asks for
  the ``optimized`` fixture. Subprocesses compile as users do, with every optimization.
- One persistent compilation cache serves the whole run: both pytest-xdist workers and every ``jaxbp``
  subprocess a test starts (they inherit the environment), so a program is compiled once between them.
  It lives in a fresh temporary folder, made by the first process that loads this file, removed at exit.
"""

import atexit
import copy
import os
import shutil
import tempfile

if "JAXBP_TEST_CACHE" not in os.environ:  # the controller; the workers inherit its folder
    os.environ["JAXBP_TEST_CACHE"] = os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxbp-jit-")
    atexit.register(shutil.rmtree, os.environ["JAXBP_TEST_CACHE"], ignore_errors=True)
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # the tests' programs compile in well under 1 s
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_num_cpu_devices", 4)  # host devices for the sharded tests (tests/test_scale.py); before any backend starts
jax.config.update("jax_disable_most_optimizations", True)

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


@pytest.fixture(scope="module")
def host_devices():
    """The 4 host devices, for a whole module that shards: JAX's default device is the CPU's on any machine (a GPU
    machine has one GPU), and ``jaxbp.train`` takes its devices from that platform."""
    with jax.default_device(jax.devices("cpu")[0]):
        yield jax.devices("cpu")


@pytest.fixture
def xla_cpu():
    """For a test of XLA:CPU's compiled program (YNNPACK, its temporary memory): skipped on other backends."""
    if jax.default_backend() != "cpu":
        pytest.skip(f"measures XLA:CPU's compiled program (YNNPACK, temporary memory), not {jax.default_backend()}'s")


@pytest.fixture
def copy_of(tmp_path):
    """``copy_of(run, name="run")``: a fresh copy of a shared finished run folder, for a test that damages it."""
    return lambda run, name="run": shutil.copytree(run, tmp_path / name)  # the copy's path


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def optimized():
    """Every XLA optimization, as users compile: for tests of the compiled program (temporary memory).

    jit's in-memory cache does not tell the two settings apart, so it is emptied on the way in and out.
    """
    jax.clear_caches()
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", True)
    jax.clear_caches()
