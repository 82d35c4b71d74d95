"""``jaxbp train`` on several devices (tests/conftest.py makes 4 host devices) and several processes
(2 local processes on 127.0.0.1, 2 host devices each): the float64 result of the one-device run,
resumed across process and device counts, and the errors for a split that does not fit or a peer that never comes."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import jaxbp
from jaxbp.errors import ConfigError
from jaxbp.training.checkpoint import read_meta

# Few steps (3 an epoch) and SGD with momentum: 2 processes sum the devices' gradients in another order than
# 1 process, and training carries rounding along (Adam, dividing by sqrt(v), would amplify it most). Measured:
# 2 x 2 devices, resumed from and to 1 device, ends 5.6e-17 from the one-device run; the tests hold 1e-10.
# A validation split (16 of the 160 training rows) is scored on the mesh too: val metrics, best.npz.
SMALL = ["data.name=moons", "data.n=200", "data.validation_fraction=0.1", "model.hidden=[12]", "optimizer.name=sgd",
         "optimizer.momentum=0.9",
         "optimizer.learning_rate=0.1", "train.batch_size=48", "train.plots=false", "train.checkpoint_every=2",
         "train.precision=float64"]
PEER_TIMEOUT_S = 240  # the outer limit on a multi-process run; a hang fails the test instead of the suite


pytestmark = pytest.mark.usefixtures("host_devices")  # in-process runs on 4 host devices, on a GPU machine too


def _leaves(path):
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files if name != "meta"}


def _close(a: dict, b: dict, tol=1e-10):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=tol, err_msg=name)


def _metrics(path):
    return [{k: v for k, v in json.loads(line).items() if k != "time_s"} for line in path.read_text().splitlines()]


def _same_metrics(a, b, tol=1e-10):
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b]
    for x, y in zip(a, b):
        for name in x:
            np.testing.assert_allclose(x[name], y[name], rtol=0, atol=tol, err_msg=name)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    """The reference: 3 epochs on one device, and the same run stopped after 1 and 2 (one compiled program)."""
    root = tmp_path_factory.mktemp("one")
    for name, epochs in (("straight", 3), ("stopped1", 1), ("stopped2", 2)):
        jaxbp.train(None, root / name, overrides=SMALL + [f"train.epochs={epochs}"], progress=False)
    return root


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The same three runs in a new process, as the multi-process runs are: the one-process reference."""
    root = tmp_path_factory.mktemp("one-process")
    script = ("import sys, jaxbp\n"
              f"for name, epochs in (('straight', 3), ('stopped1', 1), ('stopped2', 2)):\n"
              f"    jaxbp.train(None, sys.argv[1] + '/' + name, overrides={SMALL!r} + [f'train.epochs={{epochs}}'], "
              "progress=False)\n")
    subprocess.run([sys.executable, "-c", script, str(root)], check=True, timeout=PEER_TIMEOUT_S,
                   env=dict(os.environ, JAX_PLATFORMS="cpu"))
    return root


def test_four_devices_and_replica_split_give_the_one_device_run(one_device, tmp_path):
    result = jaxbp.train(None, tmp_path / "four", overrides=SMALL + ["train.epochs=3", "train.devices=4"],
                         progress=False)
    _close(_leaves(tmp_path / "four" / "checkpoint.npz"), _leaves(one_device / "straight" / "checkpoint.npz"))
    _same_metrics(_metrics(tmp_path / "four" / "metrics.jsonl"), _metrics(one_device / "straight" / "metrics.jsonl"))
    summary = result.summary
    assert summary["mesh"] == {"replica": 1, "data": 4} and summary["device_count"] == 4
    assert (summary["platform"], summary["process_count"], summary["precision"]) == ("cpu", 1, "float64")
    assert summary["device_kind"]
    assert "4 cpu device(s) (replica 1 x data 4)" in (tmp_path / "four" / "train.log").read_text()
    assert "val_loss" in _metrics(tmp_path / "four" / "metrics.jsonl")[-1] and summary["n_validation"] == 16
    _close(_leaves(tmp_path / "four" / "best.npz"), _leaves(one_device / "straight" / "best.npz"))
    assert summary["best_epoch"] == json.loads((one_device / "straight" / "summary.json").read_text())["best_epoch"]
    # 2 replicas (seeds) over 4 devices: replica 2 x data 2 by default; replica 0 is the one-replica run
    split = jaxbp.train(None, overrides=SMALL + ["train.epochs=3", "train.devices=4", "train.replicas=2"],
                        progress=False)
    assert split.summary["mesh"] == {"replica": 2, "data": 2}
    one = _leaves(one_device / "straight" / "params.npz")
    for (name, want), got in zip(sorted(one.items()), jax.tree.leaves(split.params)):
        np.testing.assert_allclose(np.asarray(got)[0], want, rtol=0, atol=1e-10, err_msg=name)


def test_early_stopping_on_four_devices_keeps_the_one_device_epoch(one_device, tmp_path):
    """No epoch after the first beats it by min_delta: patience 1 stops after epoch 2, best.npz holds epoch 1."""
    result = jaxbp.train(None, tmp_path / "stop", overrides=SMALL + [
        "train.epochs=3", "train.devices=4", "train.early_stopping.patience=1", "train.early_stopping.min_delta=1e9"],
        progress=False)
    assert (result.summary["best_epoch"], result.summary["stopped_early_at_epoch"]) == (1, 2)
    _close(_leaves(tmp_path / "stop" / "best.npz"), _leaves(one_device / "stopped1" / "params.npz"))


@pytest.mark.parametrize("overrides, message", [
    (["train.devices=4", "train.batch_size=30"], r"batch_size = 30 does not split evenly over the 4 devices .* "
                                                  r"multiple of 4 \(e.g. 28\)"),
    (["train.devices=8"], r"train.devices = 8 but JAX sees 4 cpu device\(s\); lower train.devices"),
    (["train.devices=4", "train.replicas=2", "train.replica_devices=3"], r"replica_devices = 3 must divide both"),
    (["train.precision=float16"], r"unknown train.precision 'float16'; known: float32, bfloat16, float64"),
])
def test_a_split_that_does_not_fit_is_a_config_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        jaxbp.train(None, overrides=SMALL + overrides, progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(processes: int, *args, timeout_s: float = 60):
    """``jaxbp train ARGS`` as ``processes`` local processes with 2 host devices each; returns their outputs."""
    port, env = _free_port(), dict(os.environ, JAX_PLATFORMS="cpu")
    command = [sys.executable, "-m", "jaxbp", "train", "--quiet", *args]
    if processes > 1:
        command += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes),
                    "--timeout", str(timeout_s)]
    procs = [subprocess.Popen(command + (["--process-id", str(i)] if processes > 1 else []), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(processes)]
    try:
        outs = [p.communicate(timeout=PEER_TIMEOUT_S)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    return [(p.returncode, out) for p, out in zip(procs, outs)]


def _sets(*extra):
    return [word for item in SMALL + list(extra) for word in ("--set", item)]


def test_two_processes_give_the_one_process_run_and_resume_across_counts(one_process, tmp_path):
    """1 process x 1 device (epoch 1) -> 2 processes x 2 devices (epoch 2) -> 1 x 1 (epoch 3): the one-device run."""
    shutil.copytree(one_process / "stopped1", tmp_path / "run")
    results = _cli(2, "--resume", str(tmp_path / "run"), "--set", "train.epochs=2", "--set", "train.devices=4")
    assert [code for code, _ in results] == [0, 0], results
    assert "final:" in results[0][1] and "final:" not in results[1][1]  # only process 0 reports
    _close(_leaves(tmp_path / "run" / "checkpoint.npz"), _leaves(one_process / "stopped2" / "checkpoint.npz"))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["process_count"], summary["device_count"], summary["mesh"]) == (2, 4, {"replica": 1, "data": 4})
    _close(_leaves(tmp_path / "run" / "best.npz"), _leaves(one_process / "stopped2" / "best.npz"))  # kept by 2 processes
    [(code, out)] = _cli(1, "--resume", str(tmp_path / "run"), "--set", "train.epochs=3", "--set", "train.devices=1")
    assert code == 0, out
    _close(_leaves(tmp_path / "run" / "checkpoint.npz"), _leaves(one_process / "straight" / "checkpoint.npz"))
    _same_metrics(_metrics(tmp_path / "run" / "metrics.jsonl"), _metrics(one_process / "straight" / "metrics.jsonl"))


def test_ctrl_c_to_one_of_two_processes_stops_both_and_saves(tmp_path):
    """SIGINT reaches process 1 only: both stop at the same epoch's end, the checkpoint is saved behind the
    barrier, and neither is left waiting in a collective for the other (that hang ran into the timeout)."""
    run, port = tmp_path / "run", _free_port()
    command = [sys.executable, "-m", "jaxbp", "train", "--quiet", "--out", str(run), *_sets(
        "train.epochs=1000000", "train.checkpoint_every=0", "train.devices=4"), "--coordinator",
        f"127.0.0.1:{port}", "--num-processes", "2", "--timeout", "60"]
    procs = [subprocess.Popen(command + ["--process-id", str(i)], env=dict(os.environ, JAX_PLATFORMS="cpu"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    try:
        deadline = time.monotonic() + PEER_TIMEOUT_S
        while not (run / "metrics.jsonl").exists() or len((run / "metrics.jsonl").read_text().splitlines()) < 2:
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "the run did not get going"
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGINT)
        outs = [p.communicate(timeout=60)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [130, 130], outs
    log = (run / "train.log").read_text()
    assert "interrupted after epoch" in log and "--resume" in log and "jaxbp: interrupted" in outs[0], outs[0]
    assert read_meta(str(run / "checkpoint.npz"))["epoch"] >= 2


def test_a_peer_that_never_comes_is_a_clear_error_after_the_timeout(tmp_path):
    port = _free_port()
    proc = subprocess.run([sys.executable, "-m", "jaxbp", "train", "--out", str(tmp_path / "run"), "--coordinator",
                           f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", "0", "--timeout", "2"],
                          capture_output=True, text=True, timeout=PEER_TIMEOUT_S, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 2, proc.stderr
    assert "process(es) [1] never arrived at 127.0.0.1" in proc.stderr and "raise --timeout (now 2 s)" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


def test_no_flags_picks_up_a_slurm_job_step_and_nothing_else(monkeypatch):
    from jaxbp.scale.cluster import detected_cluster, start

    for name in [k for k in os.environ if k.startswith(("SLURM_", "OMPI_", "JAX_COORDINATOR", "TPU_", "CLOUD_TPU"))]:
        monkeypatch.delenv(name)
    assert detected_cluster() is None and start(1) is False  # a plain machine: one process, nothing to join
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node[3-4]")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_LOCALID", "0")
    address, count, index = detected_cluster()
    assert address.startswith("node3:") and (count, index) == (2, 1)
    with pytest.raises(ConfigError, match="--coordinator HOST:PORT, --num-processes P and --process-id I go together"):
        start(1, "127.0.0.1:1234", 2, None)
