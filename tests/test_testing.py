"""jaxbp.testing: the assertions, the jit / nojit / vmap variants, and the pytest plugin on a user's package."""

import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import jax
import jax.numpy as jnp
import optax
import pytest

import jaxbp
import jaxbp.testing
from jaxbp import checking

# jaxbp's own registry under the variants (test_plugins.py checks the default, jit): a new plugin or kind joins here
test_jaxbp_plugins = jaxbp.testing.plugin_tests(package="jaxbp", variants=("nojit", "vmap"))

USER_EP = '''
import jax
import jaxbp

def register():
    jaxbp.register_activation("good_swish", forward=lambda z: z * jax.nn.sigmoid(z),
                              backward=lambda z, a, g: g * (jax.nn.sigmoid(z) + a * (1 - jax.nn.sigmoid(z))))
    jaxbp.register_activation("bad_swish", forward=lambda z: z * jax.nn.sigmoid(z),
                              backward=lambda z, a, g: g * jax.nn.sigmoid(z))  # drops the a(1 - s) term
'''
USER_MOD = '''
import jax
import jax.numpy as jnp
import jaxbp

def prelu(slope=0.1):
    def init(key, d_in):
        return d_in, {"slope": jnp.full((), slope)}

    def forward(params, x):
        return jnp.where(x > 0, x, params["slope"] * x), x

    def backward(params, x, g):
        slope = float(params["slope"])  # a Python float from a parameter: fine eagerly and under vmap, not jit
        return {"slope": jnp.sum(jnp.where(x > 0, 0.0, g * x))}, jnp.where(x > 0, g, slope * g)

    return jaxbp.Layer(init, forward, backward)

jaxbp.register_layer("jit_only_prelu", prelu, example={}, smooth=False)

def _softmax(z):
    return jax.nn.softmax(z, axis=1)  # assumes a batch axis: under vmap each call sees one example

jaxbp.register_activation("vmap_only_softmax", forward=lambda z: jax.nn.softmax(z, axis=-1),
                          backward=lambda z, a, g: _softmax(z) * (g - jnp.sum(g * _softmax(z), axis=1, keepdims=True)))
'''
USER_TESTS = '''
import jax.numpy as jnp
import jaxbp.testing

test_mod_plugins = jaxbp.testing.plugin_tests(package="user_mod")

def test_retrace_caught():
    grow = lambda w, x: (w + jnp.sum(x), jnp.concatenate([x, x]))  # x doubles: a new shape every call
    jaxbp.testing.assert_no_retrace(grow, jnp.ones(()), jnp.ones(2), n=3, carry=2)

def test_no_retrace_ok():
    jaxbp.testing.assert_no_retrace(lambda w, x: (w + jnp.sum(x), x), jnp.ones(()), jnp.ones(2), n=3, carry=2)
'''


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    """One pytest subprocess on a throwaway user package: ``{test name: (outcome, failure text)}``."""
    root = tmp_path_factory.mktemp("user")
    for package, source in (("user_ep", USER_EP), ("user_mod", USER_MOD)):
        (root / package).mkdir()
        (root / package / "__init__.py").write_text(textwrap.dedent(source))
    dist = root / "user_ep-1.0.dist-info"  # user_ep registers through its jaxbp.plugins entry point
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: user-ep\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[jaxbp.plugins]\nuser_ep = user_ep:register\n")
    (root / "test_user.py").write_text(textwrap.dedent(USER_TESTS))
    env = dict(os.environ, PYTHONPATH=str(root), JAX_ENABLE_X64="0")
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--junitxml", "out.xml",
               "--jaxbp-plugins", "user_ep", "test_user.py"]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr  # 1: some tests failed, as planted
    results = {}
    for case in ET.parse(root / "out.xml").getroot().iter("testcase"):
        failure = case.find("failure")
        text = "" if failure is None else f"{failure.get('message')}\n{failure.text}"
        results[case.get("name")] = ("passed" if failure is None else "failed", text)
    return results


def outcomes(results, plugin):
    return {name.rsplit("[", 1)[-1].rstrip("]"): outcome for name, (outcome, _) in results.items() if plugin in name}


def test_pytest_plugin_is_registered_and_light():
    assert "jaxbp_pytest" in {ep.value for ep in importlib.metadata.entry_points(group="pytest11")}, (
        "reinstall jaxbp (pip install -e .) so its pytest11 entry point is registered")
    code = "import sys, jaxbp_pytest; assert not any(m.split('.')[0] in ('jax', 'jaxbp') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_correct_plugin_passes_every_variant_with_readable_ids(user_run):
    ids = {"activation:good_swish[jit]", "activation:good_swish[nojit]", "activation:good_swish[vmap]"}
    assert ids <= set(user_run), sorted(user_run)
    assert outcomes(user_run, "good_swish") == {"jit": "passed", "nojit": "passed", "vmap": "passed"}


def test_wrong_backward_fails_naming_plugin_leaf_and_error(user_run):
    assert outcomes(user_run, "bad_swish") == {"jit": "failed", "nojit": "failed", "vmap": "failed"}
    message = user_run["activation:bad_swish[nojit]"][1]
    row = re.search(r"activation:bad_swish\s+\(input\)\s+(\S+)\s+(\S+)\s+(\S+)\s.*FAIL", message)
    assert row, message
    vs_grad, vs_fd, band = map(float, row.groups())
    assert vs_grad > 1e-3 and vs_fd > band == checking.FD_BAND_SMOOTH and "seed 0" in message


def test_jit_only_break_fails_only_its_jit_case(user_run):
    assert outcomes(user_run, "jit_only_prelu") == {"jit": "failed", "nojit": "passed", "vmap": "passed"}
    message = user_run["test_mod_plugins[layer:jit_only_prelu[jit]]"][1]
    assert "layer:jit_only_prelu [jit], run under jax.jit" in message and "ConcretizationTypeError" in message


def test_vmap_only_break_fails_only_its_vmap_case(user_run):
    assert outcomes(user_run, "vmap_only_softmax") == {"jit": "passed", "nojit": "passed", "vmap": "failed"}
    message = user_run["test_mod_plugins[activation:vmap_only_softmax[vmap]]"][1]
    assert "activation:vmap_only_softmax [vmap], run under jax.vmap" in message and "axis 1" in message


def test_no_retrace_fails_on_a_step_whose_shapes_change(user_run):
    assert user_run["test_no_retrace_ok"][0] == "passed"
    outcome, message = user_run["test_retrace_caught"]
    assert outcome == "failed" and "compiled again on call 2 of 3" in message and "float32[2] -> float32[4]" in message


def test_no_retrace_passes_on_a_jaxbp_training_step():
    model = jaxbp.mlp([3, 4, 2], "tanh", "softmax_cross_entropy")
    optimizer = optax.sgd(0.1)
    params = model.init(jax.random.key(0))
    x, y = jnp.ones((5, 3)), jnp.array([0, 1, 0, 1, 1])
    step = jaxbp.make_train_step(model, optimizer)
    jaxbp.testing.assert_no_retrace(step, params, optimizer.init(params), x, y, n=3, carry=2)


def test_backward_matches_runs_in_float64_and_restores_x64():
    forward = lambda w, x: jnp.tanh(x @ w)
    backward = lambda w, x, g: (x.T @ (g * (1 - jnp.tanh(x @ w) ** 2)), (g * (1 - jnp.tanh(x @ w) ** 2)) @ w.T)
    with jax.enable_x64(False):
        w, x = jnp.ones((3, 2)) * 0.3, jnp.arange(12.0).reshape(4, 3) / 10  # float32 in, cast to float64 inside
        jaxbp.testing.assert_backward_matches(forward, backward, (w, x))  # 1e-10 passes only in float64
        assert not jax.config.jax_enable_x64
    wrong = lambda w, x, g: (x.T @ g, (g * (1 - jnp.tanh(x @ w) ** 2)) @ w.T)  # forgot tanh' in dw
    with pytest.raises(AssertionError, match=r"backward \[jit\]: 1 of 2 leaves(.|\n)*\[0\] .* FAIL"):
        jaxbp.testing.assert_backward_matches(forward, wrong, (w, x))


def test_model_correct_and_a_planted_bug_names_the_leaf():
    model = jaxbp.mlp([3, 2], "tanh", "mse")  # one dense layer: the assertion's plumbing, not the network
    x = jnp.ones((6, 3), jnp.float32)
    jaxbp.testing.assert_model_correct(model, x=x, smooth=True)

    def half_bias_grad(params, x, y):
        value, grads = model.value_and_grad(params, x, y)
        return value, [{**grads[0], "b": 0.5 * grads[0]["b"]}]

    with pytest.raises(AssertionError, match=r"1 of 3 leaves(.|\n)*\[0\]\['b'\] .* FAIL"):
        jaxbp.testing.assert_model_correct(model._replace(value_and_grad=half_bias_grad), smooth=True)


def test_bad_input_is_a_clear_error_not_an_assertion():
    with pytest.raises(jaxbp.UnknownPluginError, match="known activations"):
        jaxbp.testing.assert_plugin_correct("activation", "no_such_plugin")
    with pytest.raises(jaxbp.JaxbpError, match="known kinds: activation, loss, layer"):
        jaxbp.testing.assert_plugin_correct("optimizer", "sgd")
    with pytest.raises(jaxbp.JaxbpError, match="PYTHONPATH"):
        jaxbp.testing.plugin_cases("no_such_package_xyz")
    with pytest.raises(jaxbp.JaxbpError, match="registers no jaxbp plugins"):
        jaxbp.testing.plugin_cases("textwrap")


def test_tolerances_and_variants_are_arguments(restore_registries):
    jaxbp.register_activation("half_tanh_grad", forward=jnp.tanh, backward=lambda z, a, g: 0.5 * g * (1 - a**2))
    with pytest.raises(AssertionError, match=r"half_tanh_grad \[nojit\], run eagerly(.|\n)*\(input\) +5\.0e-01"):
        jaxbp.testing.assert_plugin_correct("activation", "half_tanh_grad", variants=("nojit",))
    jaxbp.testing.assert_plugin_correct("activation", "half_tanh_grad", variants=("nojit",), grad_tol=0.6, fd_band=0.6)
    with pytest.raises(jaxbp.JaxbpError, match="not 'pmap'"):
        jaxbp.testing.assert_plugin_correct("activation", "tanh", variants=("pmap",))
