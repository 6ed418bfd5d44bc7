"""Which worker of this host runs the periodic lifecycle loop: one of them, never all.

Every worker of ``tegata serve`` builds the same app, lifespan included. Left alone, each
would call the lifecycle run every interval: the ``lifecycle`` lease keeps the runs from
overlapping (``Conflict``), but N workers would still make N runs an interval, one after
another, each logging the others' lease. An exclusive ``flock`` on a file in the data
directory picks the worker that ticks: the first worker that asks takes it and keeps it for
its life; the kernel drops it when that worker exits, a crash included, and the next worker
that asks takes over. Replicas on other hosts still meet at the lease.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # no flock (Windows): every worker ticks, the lease keeps runs single
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "lifecycle.lock"


class HostTurn:
    """The turn to run the lifecycle loop on this host, held by at most one process."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def mine(self) -> bool:
        """Whether this process holds the turn, taking it if it is free (file I/O: call it
        off the event loop)."""
        if self._fd is not None or fcntl is None:
            return True
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:  # no writable data directory: the lease alone keeps runs single
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another worker of this host has it
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops the flock
            self._fd = None
