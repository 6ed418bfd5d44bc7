"""The counters of every worker of this host, for ``/metrics`` (with several
workers, what was per process must still hold).

Each worker counts in memory (``api.metrics.REGISTRY``: no I/O on the event loop) and
copies its counts into a file of its own, ``metrics/<pid>-<random>.json`` under the data
directory: written aside and renamed (a reader never sees half a file), by a thread, at
most once a second, and on every scrape and at a clean stop. A scrape sums every file.

Counters never go backwards: a file whose process is gone is folded into ``retired.json``
and removed, so a worker's counts outlive it and a replaced worker adds to them. The fold
holds an exclusive ``flock``, and ``retired.json`` names the files it holds, so a file is
counted once even if a scrape dies between writing ``retired.json`` and removing the file.
``tegata serve`` empties the directory when it starts: a new server counts from zero, as
any Prometheus target that restarts. A crashed worker loses at most its last second.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from api.metrics import REGISTRY, Registry, Totals

try:
    import fcntl
except ImportError:  # no flock (Windows): folds may race; counts stay per file
    fcntl = None  # type: ignore[assignment]

DIRECTORY = "metrics"
RETIRED = "retired.json"
LOCK = "fold.lock"
FLUSH_SECONDS = 1.0
log = logging.getLogger("tegata.metrics")


def reset(data_dir: Path) -> None:
    """A new server counts from zero (``tegata serve``, before its workers start)."""
    shutil.rmtree(data_dir / DIRECTORY, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _write(path: Path, data: object) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    aside = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    aside.write_text(json.dumps(data), encoding="utf-8")
    aside.replace(path)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:  # folded by another scrape meanwhile
        return None
    except ValueError:  # not ours (renames are atomic): skipped, not a failed scrape
        log.warning("metrics: %s is not a counters file; skipped", path.name)
        return None
    return data if isinstance(data, dict) else None


def _totals(path: Path, data: dict[str, Any]) -> Totals | None:
    try:
        return Totals.from_json(data)
    except (KeyError, TypeError, ValueError):  # another release's, or not ours
        log.warning("metrics: %s holds no counters this release reads; skipped", path.name)
        return None


class WorkerShare:
    """This worker's file among the host's, and the sum of them all."""

    def __init__(self, data_dir: Path, registry: Registry = REGISTRY) -> None:
        self.directory = data_dir / DIRECTORY
        self.registry = registry
        self._written = -1
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._path: Path | None = None

    @property
    def path(self) -> Path:
        """Named on first use, in the process that writes it (a worker, after the fork)."""
        if self._path is None or not self._path.name.startswith(f"{os.getpid()}-"):
            self._path = self.directory / f"{os.getpid()}-{secrets.token_hex(4)}.json"
        return self._path

    def flush(self) -> None:
        """Writes this worker's counts if they moved since the last write (file I/O: never
        on the event loop)."""
        with self._write_lock:
            changes, totals = self.registry.snapshot()
            if changes == self._written:
                return
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write(self.path, totals.to_json())
            self._written = changes

    def start(self) -> None:
        """The thread that writes at most every FLUSH_SECONDS."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="metrics-share", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._flush_quietly()

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            self._flush_quietly()

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except OSError as exc:  # a full or read-only disk must not end the worker
            log.warning("metrics: cannot write %s: %s", self.path, exc.strerror or exc)

    def totals(self) -> Totals:
        """Every worker's counts, retired ones included (file I/O: off the event loop).
        Without a writable directory, this worker's own."""
        try:
            self.flush()
            with self._folding():
                return self._fold_and_sum()
        except OSError as exc:
            log.warning("metrics: %s: %s; this worker's counts only", self.directory,
                        exc.strerror or exc)
            return self.registry.snapshot()[1]

    @contextlib.contextmanager
    def _folding(self) -> Iterator[None]:
        fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the file drops the flock

    def _fold_and_sum(self) -> Totals:
        retired_path = self.directory / RETIRED
        kept = _read(retired_path) or {}
        folded = {str(name) for name in kept.get("files", ())}
        retired = _totals(retired_path, kept.get("totals", {})) or Totals()
        live, dead = Totals(), []
        for path in sorted(self.directory.glob("*-*.json")):
            data = _read(path)
            pid = path.name.split("-", 1)[0]
            if data is None or path.name in folded or not pid.isdigit():
                continue
            counts = _totals(path, data)
            if counts is None:
                continue
            if _alive(int(pid)):
                live.add(counts)
            else:
                retired.add(counts)
                dead.append(path)
        if dead:
            present = {p.name for p in self.directory.glob("*-*.json")}
            names = sorted((folded & present) | {p.name for p in dead})
            _write(retired_path, {"files": names, "totals": retired.to_json()})
            for path in dead:
                path.unlink(missing_ok=True)
        live.add(retired)
        return live
