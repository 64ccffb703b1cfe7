"""File locks between mkbench processes: one builder per artifact, one run per id, one run per device.

The kernel drops an flock when its holder dies (kill -9 included), so a lock never outlives a
killed process and nothing has to be cleaned up by hand.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")


class Busy(RuntimeError):
    """Another process holds the lock (the message says which work, and its pid)."""


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Wait for an exclusive lock on `path`, so two processes never build the same thing at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def built_once(lock_path: Path, ready: Callable[[], T | None], build: Callable[[], T]) -> T:
    """What `ready()` finds (None: not there yet), else `build()` under an exclusive lock, looking
    once more inside it: another process may have just finished the same build."""
    found = ready()
    if found is not None:
        return found
    with locked(lock_path):
        found = ready()
        return found if found is not None else build()


@contextmanager
def held_or_busy(path: Path, busy_message: str) -> Iterator[None]:
    """Take an exclusive lock at once or raise Busy: a run or a device another process is using.
    The holder's pid is written into the lock file, for the message of the next one to try."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise Busy(f"{busy_message} (pid {handle.read().strip() or '?'})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()
