"""Several processes either agree or stop cleanly: the roll call before ``jax.distributed``, and a watch after it.

Process 0 listens on the coordinator's port; every other process reports its id and identity (the
config it loaded, key by key, and the jaxbp and jax versions). Process 0 answers all of them at
once: ``go``, or ``no`` with the reason (a duplicate id, the keys whose values differ), and every
process raises the same one-line ConfigError (exit 2) instead of hanging or aborting in XLA.

With ``go`` comes a second port: each process keeps one connection to process 0 open for the run
(the watch). A process killed by any means closes it; the others see that within a second, print
one line and exit 2 (``PEER_LOST_EXIT``) before a collective aborts them with gloo's stack trace. A
process that ends in order says so first (``leave``), and after an orderly end that is not a
success the others stop within ``LEAVE_GRACE_S`` unless they end by themselves.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import threading
import time

from ..errors import ConfigError

PEER_LOST_EXIT = 2
LEAVE_GRACE_S = 30.0  # after a peer's orderly failure: time for this process to reach the same end by itself
_channels: list[socket.socket] = []
_leaving = threading.Event()
_ending = threading.Lock()
_ended: list[threading.Event] = []
_gone: list[str] = []  # why a peer ended, as the watch words it (read by a failed collective)
LEAVE_WAIT_S = 10.0  # an orderly end waits this long for the other processes to end too
LOST_WAIT_S = 5.0  # after a failed collective: time for the watch to name the process that was lost


def _line(sock: socket.socket, deadline: float) -> str:
    data = b""
    while not data.endswith(b"\n"):
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def _id(sock: socket.socket, deadline: float) -> str:
    """The id a peer sends first on its watch connection, byte by byte: what follows ("done") is the watch's."""
    data = b""
    try:
        while not data.endswith(b"\n") and len(data) < 16:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = sock.recv(1)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data.decode(errors="replace").strip()


def flat(tree: dict, prefix: str = "") -> dict[str, str]:
    """Dotted key -> the value as JSON, for a nested dict (a config's sections and tables)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value, sort_keys=True, default=str)
    return out


def differences(mine: dict, theirs: dict, index: int) -> list[str]:
    keys = sorted(set(mine) | set(theirs))
    return [f"{key} = {theirs.get(key, 'absent')} in process {index}, {mine.get(key, 'absent')} in process 0"
            for key in keys if mine.get(key) != theirs.get(key)]


def roll_call(host: str, port: int, count: int, index: int, identity: dict, deadline: float, timeout: float) -> None:
    """Gather all ``count`` processes; raise ConfigError everywhere unless their ids and ``identity`` agree."""
    fix = (f"start all {count} processes with the same --coordinator {host}:{port} and --num-processes {count} "
           f"(ids 0..{count - 1}), or raise --timeout (now {timeout:g} s)")
    if index == 0:
        return _gather(host, port, count, identity, deadline, timeout, fix)
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0) as conn:
                conn.sendall((json.dumps({"id": index, "identity": identity}) + "\n").encode())
                answer = _line(conn, deadline)
                if answer.startswith("go "):
                    watch = socket.create_connection((host, int(answer.split()[1])), timeout=10.0)
                    watch.sendall(f"{index}\n".encode())  # process 0 names this process when it is lost
                    return _watch(watch, "process 0")
                if answer.startswith("no "):
                    raise ConfigError(answer[3:])
        except (ConnectionError, TimeoutError, OSError):  # process 0 is not listening yet
            pass
        if time.monotonic() > deadline:
            raise ConfigError(f"process 0 (the coordinator at {host}:{port}) did not gather all {count} processes "
                              f"within {timeout:g} s; {fix}")
        time.sleep(0.2)


def _gather(host, port, count, identity, deadline, timeout, fix) -> None:
    try:
        server = socket.create_server((host, port), reuse_port=False)
    except OSError as error:
        taken = error.errno == errno.EADDRINUSE
        raise ConfigError(f"the coordinator port {host}:{port} is {'already taken' if taken else 'unusable'} "
                          f"({error.strerror}): another program, or a second process 0 of this run, holds it; pick "
                          f"a free port for --coordinator (the same for every process)") from None
    peers, problems = {}, []
    with server:
        server.settimeout(1.0)
        while len(peers) < count - 1 and not problems:
            if time.monotonic() > deadline:
                missing = sorted(set(range(1, count)) - set(peers))
                raise ConfigError(f"process(es) {missing} never arrived at {host}:{port} within {timeout:g} s; {fix}")
            try:
                peer, _ = server.accept()
                report = json.loads(_line(peer, deadline) or "null")
                peer_id = int(report["id"])
            except TimeoutError:
                continue
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not one of ours (a port scanner, a stray client)
            if peer_id in peers or not 0 < peer_id < count:
                why = "twice" if peer_id in peers else f"outside 1..{count - 1} (0 is the coordinator)"
                problems.append(f"two or more processes were started with --process-id {peer_id}" if peer_id in peers
                                else f"--process-id {peer_id} is {why}")
            else:
                problems += differences(identity, report.get("identity", {}), peer_id)
            peers.setdefault(peer_id, []).append(peer)
        message = ("the processes of this run disagree: " + "; ".join(problems[:8])
                   + ". Every process must get the same config (--config, --set, the same files), a distinct "
                     "--process-id, and the same jaxbp and jax versions") if problems else None
        watch = None if message else socket.create_server((host, 0))
        for peer in (p for group in peers.values() for p in group):
            peer.sendall((f"no {message}\n" if message else f"go {watch.getsockname()[1]}\n").encode())
            peer.close()
        if message:
            raise ConfigError(message)
    with watch:
        watch.settimeout(max(1.0, deadline - time.monotonic()))
        for _ in range(count - 1):
            conn = watch.accept()[0]
            said = _id(conn, time.monotonic() + 10.0)
            _watch(conn, f"process {said}" if said.isdigit() else "a process of this run")


def _watch(conn: socket.socket, who: str) -> None:
    """Keep ``conn`` for the run; a thread ends this process when it closes without an orderly ``leave``."""
    conn.settimeout(None)
    _channels.append(conn)
    ended = threading.Event()  # the peer said "done", or its end of the connection closed
    _ended.append(ended)

    def watch():
        try:
            said = conn.recv(64).decode(errors="replace").strip()
        except OSError:
            said = ""
        ended.set()
        if _leaving.is_set():
            return
        if said == "done 0":
            return
        if said.startswith("done"):
            _gone.append(f"{who} ended with exit status {said[5:]}")
            if _leaving.wait(LEAVE_GRACE_S):
                return
            abandon(_gone[-1])
        abandon(f"{who} was lost (killed, or its host or network went away)")

    threading.Thread(target=watch, name="jaxbp-peer-watch", daemon=True).start()


def joined() -> bool:
    """Whether this process runs with others (it passed a roll call)."""
    return bool(_channels)


def abandon(why: str) -> None:
    """One line, then exit ``PEER_LOST_EXIT`` at once: neither a collective's failure nor JAX's shutdown (which
    aborts with a stack trace when a peer is gone) gets to print anything more."""
    with _ending:  # the watcher and the main thread may both get here: one line only
        os.write(2, f"jaxbp: error: {why}; stopping this process too (the checkpoint keeps the epochs saved "
                    f"before; resume with the same processes)\n".encode())
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        os._exit(PEER_LOST_EXIT)


def lost_in_collective(error: BaseException, wait_s: float = LOST_WAIT_S) -> None:
    """A step across processes failed (gloo's all-reduce, a cross-process transfer): nearly always a peer that
    is gone. The watch names it (its connection closes at once) and ends this process; give it ``wait_s``,
    then stop with one line in the project's words: the collective's own text speaks of gloo and C++ files."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:  # the watcher's abandon() ends this process meanwhile when a peer was lost
        if _gone:  # a peer that ended in order with a failure: its watcher waits out LEAVE_GRACE_S, this does not
            abandon(_gone[0])
        time.sleep(0.05)
    abandon(f"a step across the processes of this run failed and no process was seen to go within {wait_s:g} s "
            f"(one may hang, or its network went away; {type(error).__name__}, JAXBP_DEBUG=1 shows it)")


def leave(code: int) -> None:
    """Tell the other processes this one ends in order, with exit status ``code``; with several, wait (up to
    ``LEAVE_WAIT_S``) until they end too, then exit at once: JAX's own shutdown would race the coordinator's
    (recoverable tasks have no shutdown barrier) and could abort a process that already finished."""
    if not _channels:
        return
    _leaving.set()
    for conn in _channels:
        try:
            conn.sendall(f"done {code}\n".encode())
        except OSError:
            pass
    deadline = time.monotonic() + LEAVE_WAIT_S
    for ended in _ended:
        ended.wait(max(0.0, deadline - time.monotonic()))
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
