"""How ``tegata serve`` keeps its workers: a worker that dies is replaced however soon it died,
a worker that cannot start ends the server with the reason in one line, and a worker never
outlives the server.

Granian's own rule ends the whole server when a replaced worker dies again within 5.5 s, live
workers included, and a worker whose start raised leaves a traceback and exit code 1. Here a
death is told from a failed start by the worker's exit code: a failed start exits with
Tegata's code for the error (78 configuration, 69 database unreachable; ``cli.main``; 70 for
anything else) and sends its one-line reason to the parent first; a killed or crashed
worker exits by a signal (or with 1). A failed start is tried ``START_ATTEMPTS`` times,
waiting longer each time (a database back within seconds is no reason to stop); after that
the reason is the server's error. A death is always answered with a new worker: the others
keep serving.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from typing import Any

from granian.server.mp import MPServer

from ca.errors import CAError, ConfigError, StorageError

START_ATTEMPTS = 3  # starts of a worker in a row that fail before the server stops
START_BACKOFF_SECONDS = 1.0  # the wait before the 2nd start; doubled before each next one
ORPHAN_POLL_SECONDS = 1.0  # how often a worker checks its parent where prctl is not there
PR_SET_PDEATHSIG = 1  # linux/prctl.h
INTERNAL = 70  # EX_SOFTWARE: a start that raised something Tegata does not raise on purpose
# a failed start's exit code, back to the error it was (as cli.errors maps errors to codes;
# an internal error ends `tegata serve` with 1, as any other command's)
FAILED_START = {78: ConfigError, 69: StorageError, INTERNAL: CAError}

# the failed starts' reasons, worker to parent: made before granian forks the workers
_reasons: Any = None


def prepare_reasons() -> None:
    global _reasons
    _reasons = multiprocessing.SimpleQueue()


def start_failed(exc: Exception) -> SystemExit:
    """In a worker whose start raised ``exc``: the reason to the parent, and the exit that
    tells it this was a failed start (no traceback: multiprocessing takes the code). The
    message of an unexpected error may hold anything: only its type is told, as cli.main
    does."""
    from cli.errors import exit_code, message

    if isinstance(exc, CAError) and exit_code(exc) in FAILED_START:
        code, reason = exit_code(exc), message(exc)
    else:
        code, reason = INTERNAL, f"a worker could not start: internal error ({type(exc).__name__})"
    if _reasons is not None:
        _reasons.put((code, reason))
    return SystemExit(code)


def die_with_parent() -> None:
    """In a worker, first thing: it ends (SIGTERM, a graceful stop) when the server process
    does, rather than serve on unsupervised and hold the port. Linux: the kernel sends it;
    then the parent is checked once, as it may have died before the request was made.
    Elsewhere: a thread polls the parent."""
    parent = multiprocessing.parent_process()
    if parent is None:  # not a worker process
        return
    expected = parent.pid
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0:
            if os.getppid() != expected:
                os.kill(os.getpid(), signal.SIGTERM)
            return
    threading.Thread(target=_watch_parent, args=(expected,), daemon=True,
                     name="tegata-parent-watch").start()


def _watch_parent(expected: int) -> None:
    while os.getppid() == expected:
        threading.Event().wait(ORPHAN_POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)


class Supervisor(MPServer):  # worker processes: each has an exit code
    """Granian, with the replacement rules of this module: ``failure`` is set when a worker
    could not start ``START_ATTEMPTS`` times in a row, and the server then stops."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failed_starts: dict[int, int] = {}
        self.failure: CAError | None = None

    def _respawn_workers(self, workers: list[int], spawn_target: Any, target_loader: Any,
                         delay: float = 0) -> None:
        for idx in workers:
            # None: a live worker replaced (reload, lifetime); negative: killed by a signal
            code = self.wrks[idx].inner.exitcode
            if code not in FAILED_START:
                self.failed_starts.pop(idx, None)
                super()._respawn_workers([idx], spawn_target, target_loader, delay)
                continue
            failed = self.failed_starts[idx] = self.failed_starts.get(idx, 0) + 1
            if failed >= START_ATTEMPTS:
                self.failure = FAILED_START[code](self._reason(code))
                self.interrupt_signal = True  # granian's loop stops at its next turn
                self.main_loop_interrupt.set()
                return
            # a stop signal during the wait ends it (the handler sets the event)
            self.main_loop_interrupt.wait(START_BACKOFF_SECONDS * 2 ** (failed - 1))
            if self.interrupt_signal:
                return
            super()._respawn_workers([idx], spawn_target, target_loader, delay)
        # granian ends the server when a replaced worker dies within 5.5 s: the rules above
        # decide instead, so it is never told when a worker was replaced
        self.respawned_wrks.clear()

    def shutdown(self, exit_code: int = 0) -> None:
        if self.failure is not None:  # reported by ``run`` in one line, not as granian's 1
            self.interrupt_children.clear()
        super().shutdown(exit_code)  # type: ignore[no-untyped-call]

    @staticmethod
    def _reason(code: int) -> str:
        """The last reason a worker sent (the queue holds one per failed start)."""
        reason = f"a worker could not start (exit {code})"
        while _reasons is not None and not _reasons.empty():
            _, reason = _reasons.get()
        return reason
