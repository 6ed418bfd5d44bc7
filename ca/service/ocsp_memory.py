"""This process's OCSP memory: issuer hashes, kept answers, and the request bytes naming them.

Pure memory, safe to read on the event loop: every method holds ``lock`` only for a few
dictionary operations, never across a database read or a signature. Bounded whatever is
asked: kept answers and remembered request bytes are least-recently-used maps with a cap,
only answers for certificates Tegata issued are kept, and only short request bytes are
remembered (a longer request is parsed each time).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property

from ca.x509 import ocsp

CAPACITY = 50_000  # kept answers, about 1 KB each
RAW_LIMIT = 512  # request bytes remembered up to this length (SHA-512 GET: about 300)
POLL_EVERY = 0.2  # seconds between two reads of the change feed while answering
TRUST_FOR = 0.8  # a kept answer is served only this long after a read of the feed began

Status = tuple[str, dt.datetime | None, str | None]  # good|revoked|unknown, time, reason
CertKey = tuple[int, int, str]  # issuing CA's id, serial, CertID hash
IssuerKey = tuple[str, bytes, bytes]  # CertID hash, issuerNameHash, issuerKeyHash


@dataclass(frozen=True, kw_only=True)
class OcspAnswer:
    der: bytes
    this_update: dt.datetime | None = None  # backdated (ca.service.ocsp.BACKDATE)
    next_update: dt.datetime | None = None
    cacheable: bool = False
    made_at: dt.datetime | None = None  # when it was really made: HTTP's Last-Modified

    @cached_property
    def etag(self) -> str:
        return '"' + hashlib.sha1(self.der, usedforsecurity=False).hexdigest() + '"'


@dataclass(frozen=True, kw_only=True)
class Question:
    """One CertID asked about (RFC 6960, 4.1.1), and the request's nonce."""

    algorithm: str
    name_hash: bytes
    key_hash: bytes
    serial: int
    nonce: bytes | None
    authority_id: int = 0

    @property
    def key(self) -> CertKey:
        return (self.authority_id, self.serial, self.algorithm)


@dataclass(frozen=True, kw_only=True)
class Kept:
    question: Question
    answer: OcspAnswer
    status: Status
    validity: dt.timedelta
    refresh_at: float  # timestamps: made afresh in the background from here
    stale_at: float  # and never served from memory from here: half its life


@dataclass
class Memory:
    capacity: int = CAPACITY
    ticks: Callable[[], float] = time.monotonic  # for the feed's pace, not the CA's time
    lock: threading.Lock = field(default_factory=threading.Lock)
    poll_lock: threading.Lock = field(default_factory=threading.Lock)
    issuers: dict[IssuerKey, int] = field(default_factory=dict)
    issuers_of: dict[int, list[IssuerKey]] = field(default_factory=dict)
    issuers_stale: bool = True
    entries: OrderedDict[CertKey, Kept] = field(default_factory=OrderedDict)
    raw: OrderedDict[bytes, CertKey] = field(default_factory=OrderedDict)
    generation: int = 0  # moves on every change: a fill read before it is not kept
    seq: int | None = None  # the newest batch of the change feed applied
    polled_at: float = -math.inf
    to_refresh: set[CertKey] = field(default_factory=set)
    busy: bool = False  # background work submitted and not finished

    # --- read on the event loop ------------------------------------------------------------

    def trusted(self) -> bool:
        """Whether memory may answer: issuers loaded and the feed read recently enough."""
        return (not self.issuers_stale and self.seq is not None
                and self.ticks() - self.polled_at < TRUST_FOR)

    def poll_due(self) -> bool:
        return self.ticks() - self.polled_at >= POLL_EVERY

    def issuer(self, key: IssuerKey) -> int | None:
        return self.issuers.get(key)

    def named(self, raw: bytes) -> CertKey | None:
        return self.raw.get(raw)

    def fresh(self, key: CertKey, now: float) -> Kept | None:
        """The kept answer for ``key`` if it is before half its life; a kept answer past a
        third of it is queued to be made afresh in the background."""
        with self.lock:
            kept = self.entries.get(key)
            if kept is None:
                return None
            self.entries.move_to_end(key)
            if now >= kept.refresh_at:
                self.to_refresh.add(key)
        return kept if now < kept.stale_at else None

    def peek(self, key: CertKey) -> Kept | None:
        return self.entries.get(key)

    def remember(self, raw: bytes, key: CertKey) -> None:
        if len(raw) > RAW_LIMIT:
            return
        with self.lock:
            self.raw[raw] = key
            self.raw.move_to_end(raw)
            while len(self.raw) > self.capacity:
                self.raw.popitem(last=False)

    # --- written from threads --------------------------------------------------------------

    def keep(self, kept: Kept, *, generation: int, raw: bytes | None) -> bool:
        """Keep an answer made from a status read at ``generation``; refused if a change
        arrived since (the status read may predate it)."""
        key = kept.question.key
        with self.lock:
            if generation != self.generation:
                return False
            self.entries[key] = kept
            self.entries.move_to_end(key)
            while len(self.entries) > self.capacity:
                self.entries.popitem(last=False)
        if raw is not None:
            self.remember(raw, key)
        return True

    def forget(self, changes: list[tuple[int, str | None]] | None) -> None:
        """Forget the answers the changes name (``None``: every answer and every issuer)."""
        with self.lock:
            self.generation += 1
            if changes is None:
                self.entries.clear()
                self.raw.clear()
                self.issuers_stale = True
                return
            whole = {authority for authority, serial in changes if serial is None}
            for authority, serial in changes:
                if serial is not None:
                    number = int(serial, 16)
                    for algorithm in ocsp.HASHES:
                        self.entries.pop((authority, number, algorithm), None)
            if whole:
                for key in [k for k in self.entries if k[0] in whole]:
                    del self.entries[key]
                self.issuers_stale = True

    def set_issuers(self, found: dict[int, list[IssuerKey]]) -> None:
        """The issuing CAs now: ``found`` maps each CA's id to its CertID hashes."""
        with self.lock:
            self.issuers_of = found
            self.issuers = {key: authority for authority, keys in found.items()
                            for key in keys}
            self.issuers_stale = False

    def take_refreshes(self) -> list[Kept]:
        with self.lock:
            found = [self.entries[k] for k in self.to_refresh if k in self.entries]
            self.to_refresh.clear()
        return found

    def kick(self, work: Callable[[], None]) -> None:
        """Run ``work`` in the background unless it runs already (one at a time)."""
        with self.lock:
            if self.busy:
                return
            self.busy = True

        def run() -> None:
            try:
                work()
            finally:
                self.busy = False
        _background().submit(run)


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _background() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tegata-ocsp")
        return _executor
