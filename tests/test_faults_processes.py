"""Fault battery, several processes: they agree (ids, configs, versions) or all stop with one line, exit 2.

The roll call's refusals run in-process, each process a thread on a fresh port. A peer killed in
the middle of a run takes real processes: the survivor must print one line and exit 2 within
seconds (the watch), with no gloo or XLA abort trace; the outer timeout turns a hang into a failure.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import jaxbp
from jaxbp.scale import rollcall

PEER_TIMEOUT_S = 120  # outer limit: a hang fails the test, not the suite
TINY = ["data.name=moons", "data.n=64", "model.hidden=[4]", "train.batch_size=16", "train.plots=false",
        "train.devices=2"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def roll(ids_and_identities, count=None, timeout=20.0):
    """Each (id, identity) as a thread of one roll call on a fresh port; returns each one's error text."""
    port, count, errors = free_port(), count or len(ids_and_identities), {}

    def one(slot, index, identity):
        try:
            rollcall.roll_call("127.0.0.1", port, count, index, identity, time.monotonic() + timeout, timeout)
            errors[slot] = None
        except jaxbp.ConfigError as error:
            errors[slot] = str(error)

    threads = [threading.Thread(target=one, args=(slot, index, identity))
               for slot, (index, identity) in enumerate(ids_and_identities)]
    for thread in threads:
        thread.start()
        time.sleep(0.05 if thread is threads[0] else 0)
    for thread in threads:
        thread.join(timeout + 5)
    return [errors.get(slot, "hung") for slot in range(len(threads))]


def identity(**config):
    return rollcall.flat({"config": {"train": {"epochs": 30, "seed": 0}, "model": {"hidden": [64]}, **config},
                          "version": {"jaxbp": "0.1.0", "jax": "0.10.0"}})


def test_processes_with_different_configs_all_stop_naming_the_keys():
    errors = roll([(0, identity()), (1, identity(train={"epochs": 20, "seed": 0}, model={"hidden": [32]}))])
    assert errors[0] == errors[1] and "train.epochs = 20 in process 1, 30 in process 0" in errors[0]
    assert "model.hidden = [32] in process 1, [64] in process 0" in errors[0]


def test_different_versions_are_named():
    other = {**identity(), "version.jax": '"0.9.0"'}
    errors = roll([(0, identity()), (1, other)])
    assert all('version.jax = "0.9.0" in process 1' in error for error in errors)


def test_a_duplicate_process_id_stops_every_process():
    errors = roll([(0, identity()), (1, identity()), (1, identity())])
    assert all("two or more processes were started with --process-id 1" in error for error in errors)


def test_a_taken_coordinator_port_is_one_line():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(jaxbp.ConfigError, match=f"coordinator port 127.0.0.1:{port} is already taken"):
            rollcall.roll_call("127.0.0.1", port, 2, 0, identity(), time.monotonic() + 5, 5)


def test_a_killed_peer_stops_the_others_in_seconds_with_one_line(tmp_path):
    port, env = free_port(), dict(os.environ, JAX_PLATFORMS="cpu")
    command = [sys.executable, "-m", "jaxbp", "train", "--quiet", "--out", str(tmp_path / "run"),
               "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--timeout", "60",
               *[a for s in TINY + ["train.epochs=1000000"] for a in ("--set", s)]]
    procs = [subprocess.Popen(command + ["--process-id", str(i)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        metrics = tmp_path / "run" / "metrics.jsonl"
        deadline = time.monotonic() + PEER_TIMEOUT_S
        while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
            assert procs[0].poll() is None and time.monotonic() < deadline, procs[0].communicate()
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        _, err = procs[0].communicate(timeout=PEER_TIMEOUT_S)
        assert procs[0].returncode == rollcall.PEER_LOST_EXIT and time.monotonic() - killed < 15
        lines = [line for line in err.splitlines() if not line.startswith("W")]  # JAX's notices, not errors
        assert len(lines) == 1 and "was lost" in lines[0], err
        assert "gloo" not in err.lower() and "Check failure" not in err
    finally:
        for process in procs:
            process.kill()


PEER = """
import sys, time
from jaxbp.scale import rollcall
index, port = int(sys.argv[1]), int(sys.argv[2])
rollcall.roll_call("127.0.0.1", port, 2, index, {}, time.monotonic() + 30, 30)
print("joined", flush=True)
sys.stdin.readline()  # the test's cue: a collective fails now, before or after the watch saw the peer go
rollcall.lost_in_collective(RuntimeError("gloo all-reduce failed: [external/gloo/pair.cc:538] read error"), 1.0)
"""


@pytest.mark.parametrize("kill", [True, False], ids=["a-peer-killed", "no-peer-gone"])
def test_a_failed_collective_names_the_lost_process_in_one_line_without_gloo_text(kill):
    """The race of the run above, both ways at once: process 0's collective fails as its peer is killed.
    Planted: quoting the collective's error (as before) puts gloo's text in the line."""
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-c", PEER, str(i), str(port)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        assert all(p.stdout.readline() == "joined\n" for p in procs)
        if kill:
            procs[1].send_signal(signal.SIGKILL)
        procs[0].stdin.write("fail\n")
        procs[0].stdin.flush()
        _, err = procs[0].communicate(timeout=PEER_TIMEOUT_S)
        assert procs[0].returncode == rollcall.PEER_LOST_EXIT and err.count("\n") == 1, err
        assert ("process 1 was lost" if kill else "no process was seen to go within 1 s") in err, err
        assert "gloo" not in err.lower() and "pair.cc" not in err and ("RuntimeError" in err or kill)
    finally:
        for process in procs:
            process.kill()
