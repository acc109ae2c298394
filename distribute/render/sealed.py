"""Files a run keeps for the next one (inlined HTML, compiled templates), sealed.

A kept file is used only when it is whole and is the one asked for: it starts with the
SHA-256 of its key and its content, so a file cut short, altered, or another entry put in
its place (copied, linked) reads as missing, and the caller computes the result again. Only
regular files are read (a FIFO in its place would block the run), and none over
``MAX_BYTES``. Writing goes through a file of its own name, renamed over the entry, so two
processes writing at once leave one whole file; a failure leaves no scratch file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path

_MAGIC = b"distribute-kept 1\n"
_DIGEST = 32
MAX_BYTES = 64 * 1024 * 1024


def _seal(key: str, data: bytes) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass") + b"\0" + data).digest()


def read_sealed(path: Path, key: str) -> bytes | None:
    """The content kept at ``path`` under ``key``, or None when there is none to trust."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BYTES:
                return None
            raw = file.read(MAX_BYTES + 1)
    except OSError:
        return None
    head = len(_MAGIC) + _DIGEST
    if len(raw) < head or not raw.startswith(_MAGIC):
        return None
    data = raw[head:]
    if raw[len(_MAGIC) : head] != _seal(key, data):
        return None
    return data


def write_sealed(path: Path, key: str, data: bytes) -> bool:
    """Keep ``data`` at ``path`` under ``key``; False when the folder cannot take it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(_MAGIC + _seal(key, data) + data)
        os.replace(scratch, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(scratch)
        return False
    return True
