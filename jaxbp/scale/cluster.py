"""Devices, hosts and the (replica, data) mesh of a training run.

``start`` makes N host devices on a CPU before JAX's backend starts (on GPU/TPU the real ones
are used) and joins several processes with ``jax.distributed`` (gloo collectives on CPU), after
a plain-socket roll call on the coordinator's port (``rollcall``: ids, configs and versions agree, or every
process stops with one line; a peer that never arrives is a ``ConfigError`` after ``timeout`` seconds); ``run_mesh`` lays
the devices out as ``replica x data``; ``describe`` is what a run's summary records.
"""

from __future__ import annotations

import math
import socket
import time

import jax
import numpy as np
from jax.sharding import AxisType

from ..errors import ConfigError
from . import rollcall

AXES = ("replica", "data")


def _backend_started() -> bool:
    from jax._src import xla_bridge  # no public way to ask without starting it

    return xla_bridge.backends_are_initialized()


def use_devices(devices: int, num_processes: int = 1) -> None:
    """Ask for ``devices`` in all (``devices // num_processes`` per process) host devices, before the backend starts."""
    if devices > 1 and not _backend_started():
        jax.config.update("jax_num_cpu_devices", max(1, devices // num_processes))


def detected_cluster(timeout: float = 300) -> tuple[str, int, int] | None:
    """(coordinator address, process count, process id) of a cluster that ``jax.distributed`` detects by
    itself (SLURM under srun, TPU pods, Open MPI, Kubernetes), or None when there is none."""
    from jax._src.clusters import ClusterEnv

    if not any(env.is_env_present() for env in ClusterEnv._cluster_types if not env.opt_in_only_method):
        return None
    address, count, index, _ = ClusterEnv.auto_detect_unset_distributed_params(None, None, None, None, None,
                                                                                 int(timeout))
    return address, count, index


def start(devices: int, coordinator: str | None = None, num_processes: int | None = None,
          process_id: int | None = None, timeout: float = 300, identity: dict | None = None) -> bool:
    """Before JAX's backend starts: join the processes of a run (with no arguments, a cluster JAX detects), and
    on a CPU make ``devices`` host devices among them. False when there is just one process."""
    given = (coordinator, num_processes, process_id)
    if all(v is None for v in given):
        detected = detected_cluster(timeout)
        if detected is None:
            use_devices(devices)
            return False
        coordinator, num_processes, process_id = detected
    elif any(v is None for v in given):
        raise ConfigError("--coordinator HOST:PORT, --num-processes P and --process-id I go together; give all three "
                          "(or none, inside a SLURM job step or a TPU pod, to let JAX find them)")
    if not 0 <= process_id < num_processes:
        raise ConfigError(f"--process-id {process_id} must be in 0..{num_processes - 1} for --num-processes "
                          f"{num_processes}")
    use_devices(devices, num_processes)
    if num_processes == 1:
        return False
    if _backend_started():
        raise ConfigError("jax.distributed must start before anything uses a JAX device; call jaxbp.scale.cluster.start() first")
    host, port = _address(coordinator)
    deadline = time.monotonic() + timeout
    identity = rollcall.flat({**(identity or {}), "version": {**(identity or {}).get("version", {}),
                                                               "jax": jax.__version__}})
    rollcall.roll_call(host, port, num_processes, process_id, identity, deadline, timeout)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # a lost peer is rollcall's to report in one line: the coordination service must not abort this process first
    jax.config.update("jax_enable_recoverability", True)
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id,
                               initialization_timeout=max(5, math.ceil(deadline - time.monotonic())))
    return True


def _address(coordinator: str) -> tuple[str, int]:
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--coordinator takes HOST:PORT (e.g. 10.0.0.1:4321), got {coordinator!r}")
    return host, int(port)


def run_devices() -> list:
    """The devices a run uses: those of ``jax.default_device``'s platform where one is set (``with
    jax.default_device(jax.devices("cpu")[0])`` trains on host devices on a GPU machine), else the default backend's."""
    default = jax.config.jax_default_device
    if default is None:
        return jax.devices()
    return jax.devices(default if isinstance(default, str) else default.platform)


def run_mesh(devices: int, replicas: int, replica_devices: int) -> jax.sharding.Mesh | None:
    """``replica x data`` over the first ``devices`` devices (0: all); replica_devices 0 picks gcd(replicas, devices).
    None for one device in one process: the single-device program."""
    if devices == 1 and jax.process_count() == 1:
        return None
    available = run_devices()
    count = devices or len(available)
    if count > len(available):
        hint = (f", or make host devices with jax.config.update('jax_num_cpu_devices', {count}) before JAX starts "
                f"(jaxbp train does that)" if available[0].platform == "cpu" else "")
        raise ConfigError(f"train.devices = {count} but JAX sees {len(available)} {available[0].platform} device(s); "
                          f"lower train.devices (0 uses all of them){hint}")
    idle = sorted(set(range(jax.process_count())) - {d.process_index for d in available[:count]})
    if idle:  # such a process would hold no rows of any batch, and could neither train nor wait for the others
        raise ConfigError(f"train.devices = {count} takes the first {count} of the {len(available)} devices, none of "
                          f"process(es) {', '.join(map(str, idle))}: every process must hold one; with "
                          f"{jax.process_count()} processes use train.devices = 0 (all of them)")
    split = replica_devices or math.gcd(replicas, count)
    if count % split or replicas % split:
        raise ConfigError(f"train.replica_devices = {split} must divide both train.devices ({count}) and the "
                          f"{replicas} replica(s); try {math.gcd(replicas, count)}")
    grid = np.array(available[:count]).reshape(split, count // split)
    return jax.sharding.Mesh(grid, AXES, axis_types=(AxisType.Auto,) * 2)


def describe(mesh: jax.sharding.Mesh | None, precision: str) -> dict:
    """What the summary records about where a run ran (``mesh`` None: one device, one process)."""
    device = run_devices()[0] if mesh is None else mesh.devices.flat[0]
    shape = {"replica": 1, "data": 1} if mesh is None else dict(mesh.shape)
    return {"platform": device.platform, "device_kind": device.device_kind, "device_count": math.prod(shape.values()),
            "process_count": jax.process_count(), "mesh": shape, "precision": precision}


def is_writer() -> bool:
    """Only process 0 writes the run folder."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def stop_together(pending: BaseException | None) -> None:
    """Several processes: raise ``pending`` (a signal this process got) in every process once any has one, at
    the same point of every process's loop (one small all-gather); one process: nothing to agree on."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    if bool(np.any(multihost_utils.process_allgather(np.asarray(pending is not None)))):
        raise pending or KeyboardInterrupt("another process was interrupted")


def to_host(tree):
    """Host (numpy) copies of ``tree``'s arrays; an array spread over several processes is gathered first."""
    from jax.experimental import multihost_utils

    def one(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return multihost_utils.process_allgather(leaf, tiled=True)
        return jax.device_get(leaf)

    return jax.tree.map(one, tree)


def where_text(where: dict) -> str:
    """``describe``'s record as the run's first progress line shows it."""
    processes = f", {where['process_count']} processes" if where["process_count"] > 1 else ""
    return (f"{where['device_count']} {where['platform']} device(s) (replica {where['mesh']['replica']} x data "
            f"{where['mesh']['data']}{processes}) in {where['precision']}")


def save_everywhere(save, path: str, state, *args) -> None:
    """Every process gathers the state; process 0 ``save``s it between two barriers, so no process reads it half-written."""
    host = state._replace(params=to_host(state.params), opt_state=to_host(state.opt_state))
    barrier("before checkpoint")
    if is_writer():
        save(path, host, *args)
    barrier("checkpoint written")


def host_state(state):
    """``state`` (a Checkpoint) with params and optimizer state gathered to arrays on this process's default device."""
    return state._replace(params=jax.tree.map(jax.numpy.asarray, to_host(state.params)),
                          opt_state=jax.tree.map(jax.numpy.asarray, to_host(state.opt_state)))

