"""CPU-bound work on every core: certificates, RSA keys and PKCS#12 files in bulk.

One bounded process pool per process (a server's, or one CLI run's), made on first use and
shut down with the server (``shutdown``): six downloads share its workers instead of starting
a pool each. Work is handed to it a window at a time (``stream``), so that memory stays flat
however many users a request names, and a consumer that stops (a client gone) leaves nothing
queued: what was not started is cancelled. Small jobs stay in-process, where handing work
over would cost more than it saves.

Workers are spawned, not forked (the server has threads), and import only what their tasks
name (``ca.making``, ``ca.x509.bundle``: about 30 MB each), not the program that started
them: multiprocessing's spawn would run the parent's ``__main__`` in every worker, which for
``tegata`` is the whole CLI and service (about 150 MB). They start without
TEGATA_KEY_PASSPHRASE in their environment (nor does multiprocessing's resource tracker): the
passphrase reaches a worker only over its pipe (``ca.making.KeyAccess``), never its
/proc/<pid>/environ.

A server's workers share the cores: each one's pool has its share of them
(``TEGATA_SERVER_WORKERS``, set by ``tegata serve``), and a pool idle for ``IDLE_SECONDS`` is
shut down (the next use makes a new one).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import CancelledError, Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from multiprocessing import context, popen_spawn_posix, resource_tracker, spawn
from typing import Any, TypeVar

A = TypeVar("A")
R = TypeVar("R")

BATCH = 128
PER_TASK = 16  # items per task handed to a worker: amortises the hand-over, keeps order cheap


IDLE_SECONDS = 60.0
SERVER_WORKERS = "TEGATA_SERVER_WORKERS"  # set by ``tegata serve`` for its workers
PASSPHRASE_VARIABLE = "TEGATA_KEY_PASSPHRASE"  # noqa: S105  # a name: never in a child's env


def share(cores: int, server_workers: int) -> int:
    """Processes in one server worker's pool: its share of the cores, at most 8, and never
    fewer than two where there are two cores: a bulk download or job that one worker takes
    must still spread over every core of a small host (two workers on two cores would
    otherwise each work in-process, on one core). Pools start on first use and stop when
    idle, so at rest there are none; at most ``server_workers`` pools run at once."""
    if cores < 2:
        return 1
    return max(2, min(cores // max(1, server_workers), 8))


def workers() -> int:
    return share(os.cpu_count() or 1, int(os.environ.get(SERVER_WORKERS) or 1))


_LAUNCH = threading.Lock()


@contextlib.contextmanager
def _without_passphrase() -> Iterator[None]:
    """The environment a child is started under: this one's, without the passphrase.
    Callers hold ``_LAUNCH``."""
    saved = os.environ.pop(PASSPHRASE_VARIABLE, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[PASSPHRASE_VARIABLE] = saved


class _LightPopen(popen_spawn_posix.Popen):
    """A spawned worker told nothing of the parent's ``__main__``, so it does not import it."""

    def _launch(self, process_obj: Any) -> None:
        with _LAUNCH, _without_passphrase():
            full = spawn.get_preparation_data

            def light(name: str) -> dict[str, Any]:
                data = full(name)
                data.pop("init_main_from_name", None)
                data.pop("init_main_from_path", None)
                return data

            spawn.get_preparation_data = light  # while this process is launched, only
            try:
                super()._launch(process_obj)  # type: ignore[misc]  # not in the stubs
            finally:
                spawn.get_preparation_data = full


class _LightProcess(context.SpawnProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> _LightPopen:
        return _LightPopen(process_obj)


class _LightContext(context.SpawnContext):
    Process = _LightProcess


class Pool:
    """A process pool of ``workers()`` processes, made on first use, shut down once idle for
    ``idle_seconds`` by ``clock`` (a watcher thread looks every quarter of that)."""

    def __init__(self, *, idle_seconds: float = IDLE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._used = clock()
        self._watching = threading.Event()

    def executor(self) -> Executor:
        with self._lock:
            self._used = self._clock()
            # a worker that died (killed, out of memory) breaks its pool for good: a new one
            if self._executor is None or getattr(self._executor, "_broken", False):
                with _LAUNCH, _without_passphrase():
                    resource_tracker.ensure_running()
                self._executor = ProcessPoolExecutor(max_workers=workers(),
                                                     mp_context=_LightContext())
                self._watch()
            return self._executor

    def _watch(self) -> None:
        if self._watching.is_set():
            return
        self._watching.set()
        threading.Thread(target=self._watcher, name="tegata-pool-idle", daemon=True).start()

    def _watcher(self) -> None:
        while True:
            time.sleep(self._idle_seconds / 4)
            self.reap()
            with self._lock:
                if self._executor is None:  # until the next pool, nothing to watch
                    self._watching.clear()
                    return

    def reap(self) -> bool:
        """Shut the pool down if it has had no work for ``idle_seconds``; True if it did.
        Work in the workers' hands counts as use."""
        with self._lock:
            executor = self._executor
            if executor is None:
                return False
            if getattr(executor, "_pending_work_items", None):
                self._used = self._clock()
            if self._clock() - self._used < self._idle_seconds:
                return False
            self._executor = None
        executor.shutdown(wait=True, cancel_futures=True)
        return True

    def shutdown(self) -> None:
        """Stop the workers (queued work is cancelled); the next use makes new ones."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


SHARED = Pool()


def pool(size: int, *, threshold: int) -> Executor | None:
    """The process's pool when there is enough work for one, else None (work in-process)."""
    if size < threshold or workers() < 2:
        return None
    return SHARED.executor()


def shutdown() -> None:
    """The server stops: so do its workers."""
    SHARED.shutdown()


@dataclass
class Tally:
    """Items a ``stream`` had built, whether or not its consumer took them."""

    built: int = 0


def stream(fn: Callable[[list[A]], list[R]], groups: Iterable[list[A]],
           executor: Executor | None, *, ahead: int, tally: Tally | None = None
           ) -> Generator[list[R], None, None]:
    """``fn`` over each group, a group's results at a time, in order. On the pool, up to
    ``ahead`` groups are in the workers' hands (in tasks of ``PER_TASK`` items) while the
    consumer works on the one before: the cores stay busy, and no more is asked of them.
    When the consumer stops early (closes this generator), nothing more is read from
    ``groups``, work not started is cancelled, and work already running is waited for, so
    that when this returns the pool holds nothing of it."""
    tally = tally if tally is not None else Tally()
    if executor is None:
        for items in groups:
            results = fn(items)
            tally.built += len(results)
            yield results
        return
    pending: deque[list[Future[list[R]]]] = deque()
    source = iter(groups)
    try:
        while True:
            while len(pending) < ahead and (group := _next(source)) is not None:
                pending.append([executor.submit(fn, group[start:start + PER_TASK])
                                for start in range(0, len(group), PER_TASK)])
            if not pending:
                return
            results = [r for future in pending.popleft() for r in future.result()]
            tally.built += len(results)
            yield results
    finally:
        for futures in pending:
            for future in futures:
                future.cancel()
        for futures in pending:
            for future in futures:
                with contextlib.suppress(CancelledError):  # the pool shut down meanwhile
                    if future.exception() is None:
                        tally.built += len(future.result())


def _next(source: Iterator[list[A]]) -> list[A] | None:
    return next(source, None)


def batched_map(fn: Callable[[A], R], items: Iterable[A], executor: Executor | None,
                *, batch: int = BATCH) -> Iterator[R]:
    """``map(fn, items)`` in order, a batch at a time, on the pool when there is one."""
    iterator = iter(items)
    while chunk := list(islice(iterator, batch)):
        if executor is None:
            yield from map(fn, chunk)
        else:
            yield from executor.map(fn, chunk, chunksize=max(1, len(chunk) // (2 * workers())))
