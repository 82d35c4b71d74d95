"""Fault battery, processes: SIGTERM, SIGKILL at random moments, two runs started into one folder.

These need real processes, so they are the battery's slow part: a few subprocesses, each a tiny run,
sharing one persistent compilation cache (a cached subprocess costs about half the CPU time).
"""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

import jaxbp
from jaxbp.boundary import files
from jaxbp.training import lock
from jaxbp.training.checkpoint import read_meta

TINY = ["data.name=moons", "data.n=64", "model.hidden=[4]", "train.batch_size=16", "train.plots=false"]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_ENABLE_X64": "1",  # float64, as this process
       "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    ENV["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax-cache"))


def start(*args) -> subprocess.Popen:
    sets = [] if "--resume" in args else [arg for item in TINY for arg in ("--set", item)]
    return subprocess.Popen([sys.executable, "-m", "jaxbp", "train", *args, *sets], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(condition, process, timeout=120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended early: {process.communicate()}"
        assert time.monotonic() < deadline, "the run did not get going"
        time.sleep(0.02)


def metric_rows(run) -> int:
    path = run / "metrics.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def test_sigterm_saves_the_finished_epochs_and_exits_143(tmp_path):
    run = tmp_path / "run"
    process = start("--out", str(run), "--set", "train.epochs=1000000", "--set", "train.checkpoint_every=0")
    wait_for(lambda: metric_rows(run) >= 3, process)  # no periodic checkpoint: only the signal saves
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "interrupted after epoch" in out and "--resume" in out and "jaxbp: terminated" in err
    epoch, rows = read_meta(str(run / "checkpoint.npz"))["epoch"], metric_rows(run)
    assert rows - 1 <= epoch <= rows and epoch >= 3  # a row past the checkpoint is dropped on resume
    assert not (run / lock.LOCK).exists()


def test_sigkill_at_random_moments_leaves_a_loadable_checkpoint_and_no_temporaries(tmp_path):
    run, rng, epochs = tmp_path / "run", random.Random(), []
    for attempt in range(3):
        args = ("--resume", str(run)) if attempt else ("--out", str(run), "--set", "train.checkpoint_every=1")
        process = start(*args[:2], "--set", "train.epochs=1000000", "--quiet", *args[2:])
        seen = metric_rows(run)
        wait_for(lambda: metric_rows(run) > seen + 1, process)  # training; a checkpoint every epoch
        time.sleep(rng.uniform(0.0, 0.5))
        process.kill()
        process.communicate()
        epochs.append(read_meta(str(run / "checkpoint.npz"))["epoch"])  # the checksums verify every array
    assert epochs == sorted(epochs) and epochs[-1] > 0
    result = jaxbp.resume(run, overrides=[f"train.epochs={epochs[-1] + 1}"], progress=False)  # loads every leaf
    assert result.summary["epochs"] == epochs[-1] + 1
    assert not [name for name in os.listdir(run) if files.MARK in name or name == lock.LOCK]


def test_two_runs_into_one_folder_one_wins_the_other_is_refused(tmp_path):
    run = tmp_path / "run"
    first = start("--out", str(run), "--set", "train.epochs=30", "--set", "train.seed=1", "--quiet")
    second = start("--out", str(run), "--set", "train.epochs=30", "--set", "train.seed=2", "--quiet")
    (_, err1), (_, err2) = first.communicate(timeout=180), second.communicate(timeout=180)
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 2], (err1, err2)
    loser = err1 if first.returncode else err2
    assert "is in use by process" in loser or "already exists and is not empty" in loser
    seed = 1 if first.returncode == 0 else 2
    config = jaxbp.load_config(run / "config.toml")
    assert config.train.seed == seed and read_meta(str(run / "checkpoint.npz"))["config"]["train"]["seed"] == seed
    log = (run / "train.log").read_text()
    assert log.count("training ") == 1  # one run's log, not two interleaved


def test_two_quick_ctrl_cs_print_one_line_and_keep_the_checkpoint(tmp_path):
    """The second Ctrl-C lands while the process exits (JAX's atexit shutdown): no 'Exception ignored' trace."""
    run, err = tmp_path / "run", tmp_path / "err"
    with open(err, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "jaxbp", "train", "--out", str(run), "--quiet",
                                    *[a for s in TINY for a in ("--set", s)], "--set", "train.epochs=1000000"],
                                   env=ENV, stdout=subprocess.DEVNULL, stderr=stderr)
        wait_for(lambda: metric_rows(run) >= 2, process)
        process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 60
        while "interrupted" not in err.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        process.send_signal(signal.SIGINT) if process.poll() is None else None
        assert process.wait(timeout=60) == 130
    assert err.read_text() == "jaxbp: interrupted\n"
    assert read_meta(str(run / "checkpoint.npz"))["epoch"] >= 2


WATCHED = """
import importlib, signal, sys, threading, time
importlib.import_module("jaxbp.cli.main")._watch_signals()
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit("handled: the main thread was not busy"))
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})  # as if inside XLA: no handler runs here
main = threading.get_native_id()

def announce():  # "busy" only once the main thread sleeps in the kernel: running bytecode it would handle the signal
    while not open(f"/proc/self/task/{main}/syscall").read().startswith(SLEEPING):
        time.sleep(0.01)
    print("busy", flush=True)

SLEEPING = {"x86_64": "230 ", "aarch64": "115 "}[__import__("platform").machine()]  # clock_nanosleep
threading.Thread(target=announce, daemon=True).start()
time.sleep(60)
"""


def test_a_signal_ends_the_program_within_seconds_while_the_main_thread_is_busy(signum=signal.SIGTERM, code=143):
    """Planted: without the watcher the program sleeps its 60 s and the 30 s timeout fails the test."""
    process = subprocess.Popen([sys.executable, "-c", WATCHED], env={**ENV, "JAXBP_STOP_GRACE_S": "1"}, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline() == "busy\n"
    sent = time.monotonic()
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    assert process.returncode == code and time.monotonic() - sent < 10
    assert err.count("\n") == 1 and "while busy in a compile or device transfer" in err
