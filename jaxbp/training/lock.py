"""One run per folder: an exclusive lock held for the run's whole life, stale temporary files cleared.

The lock is ``flock`` on ``DIR/.jaxbp.lock``, which names the holder (pid, host, start time). The
kernel drops a flock when its process dies, however it dies, so a lock is never left held: a
file that still names a process while nobody holds it was left by a run that was killed, and the
next run takes it over (and says so). A clean exit deletes the file; a run that locked a file
deleted under it (by that exit) checks the inode and locks the new one instead.

OS errors while a run writes its folder (read-only, removed, full disk) become ``RunFolderError``
naming the path and the OS reason; what was saved before stays as it was (writes are atomic).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import stat
import time

from ..errors import JaxbpError, RunFolderError
from ..boundary.files import stale_temps

LOCK = ".jaxbp.lock"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_LOCK_TEXT = re.compile(rb"\d+ \S+ \S+\n?")  # what acquire writes: pid host start


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


class RunLock:
    """Held from ``acquire`` to ``release``; ``notes`` says what was taken over or cleaned up."""

    def __init__(self, run_dir: str, fd: int, notes: list[str]):
        self.run_dir, self.fd, self.notes = run_dir, fd, notes

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.remove(os.path.join(self.run_dir, LOCK))  # still locked: a newcomer sees the inode change and retries
        os.close(self.fd)  # closing drops the flock
        self.fd = None


def acquire(run_dir: str) -> RunLock:
    """Lock ``run_dir`` (created if missing) for this process; RunFolderError names the holder if taken."""
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunFolderError(f"{run_dir} is a file, not a folder; pick a folder path for the run (--out DIR)")
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, LOCK)
    while True:
        fd = _open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunFolderError(f"run folder {run_dir} is in use by {holder}; wait for that run to finish or stop "
                                 f"it (Ctrl-C or kill -TERM saves its epochs), or pick another --out") from None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)  # the holder deleted the file as we locked it: lock the new one
    notes = []
    previous = _holder(fd, None)
    if previous is not None:
        notes.append(f"took over the lock of {run_dir} left by {previous}, which no longer holds it (killed?)")
    os.ftruncate(fd, 0)  # a file jaxbp made: created here, or checked to be a lock jaxbp left
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode(), 0)
    notes += remove_stale_temps(run_dir)
    return RunLock(run_dir, fd, notes)


def _open_lock(path: str) -> int:
    """The lock file, created exclusively; one left by a killed run is reused only if it is a plain file with one
    name that reads as a jaxbp lock. A link, a folder or a foreign file is refused: nothing is followed or cut."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
    except FileExistsError:
        pass
    try:
        fd = os.open(path, os.O_RDWR | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return _open_lock(path)  # its holder removed it between the two calls
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.EMLINK):
            raise
        what = "a symbolic link" if os.path.islink(path) else "a folder" if os.path.isdir(path) else "not a plain file"
        raise _foreign(path, what) from None
    info = os.fstat(fd)
    text = os.pread(fd, 200, 0) if stat.S_ISREG(info.st_mode) else b""
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or (text and not _LOCK_TEXT.fullmatch(text)):
        os.close(fd)
        raise _foreign(path, "not a plain file" if not stat.S_ISREG(info.st_mode) else
                       "a hard link to another file" if info.st_nlink != 1 else "a file jaxbp did not write")
    return fd


def _foreign(path: str, what: str) -> RunFolderError:
    return RunFolderError(f"{path} is {what}, not a jaxbp lock; jaxbp never follows, truncates or removes it. "
                          f"Remove it yourself if it is not needed, or pick another run folder")


def _holder(fd: int, empty: str | None = "another process") -> str | None:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").split()
    except OSError:
        text = []
    if len(text) < 3 or not text[0].isdigit():
        return empty
    here = " (this process)" if int(text[0]) == os.getpid() else ""
    return f"process {text[0]}{here} on {text[1]}, started {text[2]}"


def remove_stale_temps(run_dir: str) -> list[str]:
    """Delete jaxbp's own temporary files whose writer is gone (a run killed mid-write); returns notes."""
    stale = stale_temps(run_dir, alive)
    for name in stale:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(run_dir, name))
    return [f"removed {len(stale)} temporary file(s) left in {run_dir} by killed runs: {', '.join(stale)}"] if stale else []


@contextlib.contextmanager
def holding(out_dir):
    """Lock ``out_dir`` for the block; OS write errors inside become RunFolderError. Yields the RunLock."""
    run_dir = os.fspath(out_dir)
    lock = None
    try:
        lock = acquire(run_dir)
        yield lock
    except OSError as error:
        if isinstance(error, JaxbpError):
            raise
        path = error.filename or run_dir  # any OS error: one line naming the path and the reason
        raise RunFolderError(f"cannot write {path}: {error.strerror or error} "
                             f"({errno.errorcode.get(error.errno, error.errno)}); the files saved before are kept. "
                             f"Free space or fix the permissions of {run_dir} (a run with a checkpoint there "
                             f"continues with jaxbp train --resume {run_dir})") from None
    finally:
        if lock is not None:
            lock.release()
