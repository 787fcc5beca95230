"""Staged part files, written only through the descriptor that created them.

A part is staged under a new random name, created exclusively and never through a
link. Reopening it by that name later (to write it, hash it, publish it) would follow
whatever was swapped in meanwhile: a symbolic link there would redirect the write to
a file of someone else's choosing. So the creating descriptor stays open until the
part is published or removed, every open goes through ``/proc/self/fd/N`` (the same
file, whatever its name points at now), and at publication the name must still hold
that very file. Where the system has no such path, the name is used as before.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

_FD_DIR = Path("/proc/self/fd")
_lock = threading.Lock()
# a staged file's name -> the descriptor that created it
_open: dict[str, int] = {}


class StagingError(OSError):
    """A staged file's name no longer holds the file that was written."""


def create(path: Path) -> Path:
    """Create ``path`` exclusively (never through a link) and keep its descriptor; ``path``."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    if not _FD_DIR.is_dir():
        os.close(fd)
        return path
    with _lock:
        _open[str(path)] = fd
    return path


def handle(path: Path) -> str:
    """What to open the staged file ``path`` by: its descriptor's path, never its name."""
    with _lock:
        fd = _open.get(str(path))
    return str(path) if fd is None else f"{_FD_DIR}/{fd}"


def release(path: Path) -> Path:
    """Close the file's descriptor; ``path``, which must still hold that file (to rename it)."""
    with _lock:
        fd = _open.pop(str(path), None)
    if fd is None:
        return path
    try:
        held, named = os.fstat(fd), os.lstat(path)
        if not stat.S_ISREG(named.st_mode) or (held.st_dev, held.st_ino) != (named.st_dev, named.st_ino):
            raise StagingError(f"the staged file {path} was replaced by another; it is not published")
    finally:
        os.close(fd)
    return path


def remove(path: Path) -> None:
    """Delete a staged file and close its descriptor (a no-op when it is gone)."""
    with _lock:
        fd = _open.pop(str(path), None)
    if fd is not None:
        os.close(fd)
    path.unlink(missing_ok=True)
