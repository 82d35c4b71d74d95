"""Reading ``.npz`` archives without pickle: every way a file can fail to load is one clear error.

Bit flips in a zip's directory make ``zipfile`` raise NotImplementedError ("compression method"),
RuntimeError ("encrypted") or BadZipFile; a text file renamed ``.npz`` makes numpy suggest
``allow_pickle``. Here each becomes the caller's error class (CheckpointError, DataError) saying
what the file is. ``checksums`` gives each array a sha256 of its dtype, shape and bytes, which a
checkpoint stores in its metadata to catch what the zip CRC does not (a flipped array header).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

ZIP_MAGIC = b"PK\x03\x04"


def checksum(array: np.ndarray) -> str:
    array = np.asarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:32]


def checksums(arrays: dict) -> dict[str, str]:
    return {name: checksum(value) for name, value in arrays.items()}


def read_npz(path: str, error: type[Exception], fix: str, what: str = "an .npz archive") -> dict[str, np.ndarray]:
    """Every array of the archive at ``path``; any failure raises ``error`` naming the file and ``fix``."""
    try:
        with open(path, "rb") as file:
            head = file.read(256)
            if not head.startswith(ZIP_MAGIC):
                raise error(f"{path} is corrupt or not {what}: it {describe_bytes(head)}; {fix}")
            file.seek(0)
            with np.load(file, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
    except error:
        raise
    except OSError as reason:
        raise error(f"cannot read {path}: {reason.strerror or reason}; {fix}") from None
    except Exception as reason:  # a damaged zip raises many kinds (BadZipFile, NotImplementedError, RuntimeError...)
        raise error(f"{path} is corrupt or not {what} ({type(reason).__name__}: {reason}); {fix}") from None


def describe_bytes(head: bytes) -> str:
    """What a file starting with ``head`` looks like, for an error message."""
    if not head:
        return "is empty (0 bytes)"
    if head.startswith(b"\x93NUMPY"):
        return "is a single .npy array (np.save); an .npz archive is written by np.savez"
    if head[:1] == b"\x80":
        return "looks like a Python pickle, which jaxbp never loads"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"starts with the bytes {head[:8].hex(' ')} (not a zip archive)"
    shown = text.strip().splitlines()[0][:40] if text.strip() else ""
    return f"holds text ({shown!r}...), not a zip archive; was a text or CSV file renamed to {os.extsep}npz?"


def verify(path: str, arrays: dict, sums: dict, error: type[Exception], fix: str) -> None:
    """Raise ``error`` if a stored array's checksum differs from the one saved with it."""
    if not isinstance(sums, dict):
        raise error(f"{path} has damaged checksum metadata; {fix}")
    for name, value in arrays.items():
        if name in sums and checksum(value) != sums[name]:
            raise error(f"{path}: array {name!r} does not match its checksum (the file is corrupt); {fix}")
    missing = sorted(set(arrays) - set(sums))
    if missing:
        raise error(f"{path}: array(s) {', '.join(missing[:5])} have no checksum (the file is corrupt); {fix}")
