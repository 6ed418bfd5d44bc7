"""CPU-bound work on every core: RSA key generation and PKCS#12 building in bulk.

A process pool (spawned, not forked: the server has threads) serves batches so that memory
stays flat however many users a request names. Small jobs stay in-process, where a pool's
start-up would cost more than it saves.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from itertools import islice
from typing import TypeVar

A = TypeVar("A")
R = TypeVar("R")

BATCH = 128


def workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def pool(size: int, *, threshold: int) -> Executor | None:
    """A process pool when there is enough work for one, else None (work in-process)."""
    if size < threshold or workers() < 2:
        return None
    return ProcessPoolExecutor(max_workers=workers(),
                               mp_context=multiprocessing.get_context("spawn"))


def batched_map(fn: Callable[[A], R], items: Iterable[A], executor: Executor | None,
                *, batch: int = BATCH) -> Iterator[R]:
    """``map(fn, items)`` in order, a batch at a time, on the pool when there is one."""
    iterator = iter(items)
    while chunk := list(islice(iterator, batch)):
        if executor is None:
            yield from map(fn, chunk)
        else:
            yield from executor.map(fn, chunk, chunksize=max(1, len(chunk) // (2 * workers())))
