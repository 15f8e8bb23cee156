"""Locks on shared cache directories (a build directory, the unpacked default tree).

Two harness processes on one cache (two terminals, two CI jobs on one
runner) must not run ``make`` in the same build directory at once: both
builds break. ``flock`` on a file beside the directory serialises them; the
kernel drops the lock when its holder dies, so a killed run never leaves a
stale lock. The second process says what it waits for and then finds the
work done (make has nothing left to compile).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.progress import say


def _holder(lock: Path) -> str:
    try:
        return lock.read_text().strip() or "another harness process"
    except OSError:
        return "another harness process"


@contextmanager
def hold(lock: Path, what: str, shared: bool = False) -> Iterator[None]:
    """Exclusive (or shared) lock on ``lock`` (created if missing) for the ``with`` body.

    Shared holders (runs reading a tree) exclude only exclusive ones (a series
    moving that tree between commits).
    """
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for {what}: locked by {_holder(lock)} ({lock})")
            started = time.monotonic()
            fcntl.flock(fd, mode)
            say(f"got {what} after {time.monotonic() - started:.0f} s")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} ({what})\n".encode())
        yield
    finally:
        os.close(fd)  # closing drops the flock
