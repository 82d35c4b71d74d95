"""Every file jaxbp writes goes through here: nothing outside the run is touched, no link is followed.

``write_atomic`` creates its temporary file with ``O_CREAT | O_EXCL | O_NOFOLLOW`` under a name only
jaxbp makes (``.NAME.jaxbp-tmp-PID-RANDOM`` beside the target), fsyncs it, then ``os.replace`` s the
target: a reader sees the old file or the new one, never half of one, and a target that is a symbolic
link is replaced as a link (the file it points to is left alone). ``open_append`` opens a log for
appending without following a link. ``stale_temps`` finds the temporaries of killed writers, and only
those: a user's ``notes.txt.tmp-88888`` is not jaxbp's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat

MARK = ".jaxbp-tmp-"
_TEMP = re.compile(r"\..+\.jaxbp-tmp-(\d+)-[0-9a-f]{8}")  # what temp_path makes, and nothing else
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def temp_path(path: str) -> str:
    """A fresh temporary name beside ``path`` that only jaxbp makes: ``.NAME.jaxbp-tmp-PID-RANDOM``."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, f".{name}{MARK}{os.getpid()}-{secrets.token_hex(4)}")


def write_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` all or nothing: an exclusive new temporary, fsync, ``os.replace``.

    A ``path`` that is a folder raises IsADirectoryError before anything is written.
    """
    path = os.fspath(path)
    if os.path.isdir(path) and not os.path.islink(path):
        raise IsADirectoryError(21, "Is a directory (a file of that name is wanted here)", path)
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)  # the temporary this call created, and only it
        raise


def open_append(path):
    """``path`` opened for appending text (created if missing); a link or a non-file is an OSError."""
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IsADirectoryError(21, "not a regular file", os.fspath(path))
    return os.fdopen(fd, "a", encoding="utf-8")


def stale_temps(folder: str, alive) -> list[str]:
    """The names in ``folder`` of jaxbp temporaries (regular files) whose writer ``alive(pid)`` says is gone."""
    names = []
    for name in sorted(os.listdir(folder)):
        match = _TEMP.fullmatch(name)
        if match and not alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                if stat.S_ISREG(os.lstat(os.path.join(folder, name)).st_mode):
                    names.append(name)
    return names


def describe_error(error: OSError) -> str:
    """``cannot write PATH: No space left on device (ENOSPC)``: one line for any OS error."""
    code = errno.errorcode.get(error.errno, error.errno)
    path = error.filename if error.filename is not None else "a file"
    also = f" -> {error.filename2}" if getattr(error, "filename2", None) else ""
    return f"cannot use {path}{also}: {error.strerror or error}" + (f" ({code})" if code else "")
