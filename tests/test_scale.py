"""The hand-written steps on sharded arrays (tests/conftest.py makes 4 host devices): Explicit and Auto
meshes, with and without ``jax.set_mesh``, inside ``jax.shard_map`` with ``pmean``; the unsharded program
unchanged; and mixed precision."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxbp
from jaxbp.plugins import layers as _layers
from jaxbp.scale.precision import get_policy, mixed_precision

pytestmark = pytest.mark.usefixtures("host_devices")  # on a GPU machine too: 4 host devices
MESHES = ["explicit", "explicit+set_mesh", "auto", "auto+set_mesh"]


@pytest.fixture(scope="module")
def setup():
    model = jaxbp.network(3, [jaxbp.dense(8, "tanh"), jaxbp.layer_norm(), jaxbp.dense(4)], "softmax_cross_entropy")
    params = model.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=(3, 16, 3)))  # 3 batches of 16 for the scan step
    ys = jnp.asarray(rng.integers(0, 4, (3, 16)), dtype=jnp.int32)
    return model, params, xs, ys


def _mesh(kind):
    axis_type = AxisType.Explicit if kind.startswith("explicit") else AxisType.Auto
    return jax.make_mesh((4,), ("data",), axis_types=(axis_type,), devices=jax.devices("cpu")[:4])


def _all_steps(model, params, xs, ys, names=None):
    """Every public step of the library (or those in ``names``) on (sharded or not) batches, as host arrays."""
    optimizer = optax.adam(0.05)
    state = optimizer.init(params)
    x, y = xs[0], ys[0]
    stacked = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), (params, state))
    steps = {
        "value_and_grad": lambda: jax.jit(model.value_and_grad)(params, x, y),
        "per_example_grads": lambda: jax.jit(model.per_example_grads)(params, x, y),
        "train_step": lambda: jaxbp.make_train_step(model, optimizer)(params, state, x, y),
        "per_example_step": lambda: jaxbp.make_train_step(model, optimizer, per_example=True)(params, state, x, y),
        "scan_step": lambda: jaxbp.make_scan_step(model, optimizer)(params, state, xs, ys),
        "replica_step": lambda: jaxbp.make_replica_step(model, optimizer)(*stacked, x, y),
    }
    return jax.device_get({name: step() for name, step in steps.items() if names is None or name in names})


@pytest.fixture(scope="module")
def single(setup):
    return _all_steps(*setup)


def _run_sharded(kind, setup, names=None):
    model, params, xs, ys = setup
    mesh = _mesh(kind)
    batch = NamedSharding(mesh, P("data")), NamedSharding(mesh, P(None, "data"))
    x0 = jax.device_put(xs, batch[1])
    y0 = jax.device_put(ys, batch[1])
    params = jax.device_put(params, NamedSharding(mesh, P()))
    if kind.endswith("set_mesh"):
        with jax.set_mesh(mesh):
            return _all_steps(model, params, x0, y0, names)
    return _all_steps(model, params, x0, y0, names)


@pytest.mark.parametrize("kind", MESHES)
def test_every_step_on_a_sharded_batch_is_the_single_device_step(kind, setup, single):
    """All steps on the Explicit mesh (the strict one); two of them on the others, to keep the suite short."""
    sharded = _run_sharded(kind, setup, None if kind == "explicit" else ("value_and_grad", "replica_step"))
    for name in sharded:
        for a, b in zip(jax.tree.leaves(sharded[name]), jax.tree.leaves(single[name])):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12, err_msg=f"{kind} {name}")


def test_explicit_mesh_needs_the_contraction_sharding(setup, monkeypatch):
    """Planted bug: without the named output sharding the weight gradient over a sharded batch fails to trace."""
    monkeypatch.setattr(_layers, "contraction_sharding", lambda *args: {})
    with pytest.raises(Exception, match="Contracting dimensions are sharded"):
        _run_sharded("explicit", setup)


def test_the_unsharded_program_is_unchanged(setup, monkeypatch):
    """The sharding hook adds nothing to an unsharded step: its lowered text equals the step without the hook."""
    model, params, xs, ys = setup
    optimizer = optax.sgd(0.1)
    state = optimizer.init(params)

    def lowered(x, y):
        return jaxbp.make_train_step(model, optimizer).lower(params, state, x, y).as_text()

    with_hook = lowered(xs[0], ys[0])
    sharded = lowered(*jax.device_put((xs[0], ys[0]), NamedSharding(_mesh("explicit"), P("data"))))
    monkeypatch.setattr(_layers, "contraction_sharding", lambda *args: {})
    assert lowered(xs[0], ys[0]) == with_hook
    assert sharded != with_hook  # the comparison can tell programs apart


def test_float32_sharded_step_within_reduction_order_tolerance(setup):
    """Splitting the batch sum over 4 devices reorders float32 additions: measured <= 5e-6 relative (3 seeds)."""
    model, params, xs, ys = setup
    params32, x32 = jax.tree.map(lambda a: a.astype(jnp.float32), (params, xs[0]))
    one = jax.jit(model.value_and_grad)(params32, x32, ys[0])
    mesh = _mesh("explicit")
    four = jax.jit(model.value_and_grad)(params32, jax.device_put(x32, NamedSharding(mesh, P("data"))),
                                         jax.device_put(ys[0], NamedSharding(mesh, P("data"))))
    for a, b in zip(jax.tree.leaves(four), jax.tree.leaves(one)):
        assert a.dtype == jnp.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_shard_map_value_and_grad_then_pmean_is_the_global_gradient(setup):
    """Hand-written gradients on a shard are that shard's mean gradient, not yet reduced: pmean gives the global one."""
    model, params, xs, ys = setup
    mesh = _mesh("explicit")

    def local(params, x, y):
        loss, grads = model.value_and_grad(params, x, y)
        return jax.lax.pmean((loss, grads), "data")

    def unreduced(params, x, y):
        return model.value_and_grad(params, x, y)[1]

    specs = dict(mesh=mesh, in_specs=(P(), P("data"), P("data")))
    x, y = jax.device_put((xs[0], ys[0]), NamedSharding(mesh, P("data")))
    value, grads = jax.jit(jax.shard_map(local, out_specs=P(), **specs))(params, x, y)
    want_value, want = jax.jit(model.value_and_grad)(params, xs[0], ys[0])
    np.testing.assert_allclose(value, want_value, rtol=0, atol=1e-12)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    # without pmean each shard holds only its own gradient (stacked here): it differs from the global one
    per_shard = jax.jit(jax.shard_map(unreduced, out_specs=P("data"), **specs))(params, x, y)
    first = np.asarray(jax.tree.leaves(per_shard)[0])
    assert first.shape[0] == 4 * jax.tree.leaves(want)[0].shape[0]
    assert not np.allclose(first[: first.shape[0] // 4], jax.tree.leaves(want)[0], atol=1e-6)


def _relative(a, b) -> float:
    flat = lambda t: jnp.concatenate([leaf.ravel().astype(jnp.float32) for leaf in jax.tree.leaves(t)])
    return float(jnp.linalg.norm(flat(a) - flat(b)) / jnp.linalg.norm(flat(b)))


def test_bfloat16_gradient_is_within_2e_2_of_float32_on_the_mnist_model():
    """The bench's mnist model at n=1024: measured 1.2e-2, the same distance as jax.grad's own bfloat16 gradient."""
    from jaxbp.bench.contenders import batch, start_params
    from jaxbp.bench.timing import CONFIGS

    model, params = start_params(CONFIGS["mnist"])
    x, y = map(jnp.asarray, batch(CONFIGS["mnist"], 1024))
    value, grads = jax.jit(model.value_and_grad)(params, x, y)
    low = mixed_precision(model, "bfloat16")
    low_value, low_grads = jax.jit(low.value_and_grad)(params, x, y)
    assert low_value.dtype == jnp.float32 and {g.dtype for g in jax.tree.leaves(low_grads)} == {jnp.dtype("float32")}
    assert _relative(low_grads, grads) < 2e-2
    assert abs(float(low_value) - float(value)) < 1e-2 * float(value)  # averaged in float32, not rounded to bf16
    autodiff = jax.jit(jax.grad(model.loss))(get_policy("bfloat16").cast_to_compute(params), x.astype(jnp.bfloat16), y)
    assert _relative(low_grads, grads) < 1.1 * _relative(autodiff, grads)


def test_a_policy_keeps_params_and_optimizer_state_in_float32(setup):
    model, params, xs, ys = setup
    params = get_policy("bfloat16").cast_to_param(params)
    optimizer = optax.adam(0.05)
    new, state, loss = jaxbp.make_train_step(mixed_precision(model, "bfloat16"), optimizer)(
        params, optimizer.init(params), xs[0].astype(jnp.float32), ys[0])
    floats = [a for a in jax.tree.leaves((new, state, loss)) if jnp.issubdtype(a.dtype, jnp.floating)]
    assert len(floats) > 3 * len(jax.tree.leaves(new)) and {a.dtype for a in floats} == {jnp.dtype("float32")}
    with pytest.raises(jaxbp.ConfigError, match="unknown precision 'fp8'; choose one of float32, bfloat16, float64"):
        get_policy("fp8")


def test_default_spiral_run_in_bfloat16_reaches_97_percent():
    result = jaxbp.train(None, overrides=["train.precision=bfloat16", "train.plots=false"], progress=False)
    assert result.summary["precision"] == "bfloat16" and result.summary["test_accuracy"] >= 0.97
    assert {leaf.dtype for leaf in jax.tree.leaves(result.params)} == {jnp.dtype("float32")}


def test_a_run_takes_its_devices_from_the_default_devices_platform(monkeypatch):
    """On a GPU machine ``with jax.default_device(cpu)`` trains on the host devices (how these tests shard)."""
    from jaxbp.scale import cluster

    real = jax.devices
    monkeypatch.setattr(jax, "devices", lambda backend=None: real(backend) if backend else ["gpu:0"])  # one GPU
    with jax.default_device(None):
        assert cluster.run_devices() == ["gpu:0"]
    for default in (real("cpu")[0], "cpu"):
        with jax.default_device(default):
            assert cluster.run_devices() == real("cpu") and len(real("cpu")) == 4


def test_a_mesh_that_leaves_a_process_without_a_device_is_a_one_line_error(monkeypatch):
    """Two processes of one device each, train.devices = 1: process 1 would hold no rows (it once crashed inside
    the batch placement); the mesh is refused before anything runs, naming the process and the fix."""
    from types import SimpleNamespace

    from jaxbp.scale import cluster

    fake = [SimpleNamespace(process_index=i, platform="cpu", id=i) for i in (0, 1)]
    monkeypatch.setattr(cluster, "run_devices", lambda: fake)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(jaxbp.ConfigError, match=r"none of process\(es\) 1: every process must hold one; with 2 "
                                                r"processes use train.devices = 0"):
        cluster.run_mesh(1, 1, 0)
    monkeypatch.setattr(jax, "process_count", lambda: 1)  # one process: the first device is a fine mesh of one
    assert cluster.run_mesh(1, 1, 0) is None
