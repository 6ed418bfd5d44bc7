"""The service's plumbing: one database, one key store, one clock; transactions."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from ca import renewal
from ca.clock import Clock, SystemClock
from ca.db import migrate, queries
from ca.db.engine import check_reachable, make_engine, make_sessionmaker, writer_turn
from ca.db.models import Authority, Crl
from ca.errors import Conflict, NotPermitted, StorageError
from ca.profiles import Urls
from ca.sealing import Sealer, load_sealer
from ca.service import crls
from ca.settings import Settings
from ca.signer import FileKeyStore, Signer, check_private_file


class ServiceCore:
    """What every use case stands on."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 engine: Engine | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.engine = engine or make_engine(settings.effective_database_url)
        self._sessions = make_sessionmaker(self.engine)
        self._writes = make_sessionmaker(self.engine, write=True)
        self.urls = Urls(base=settings.public_base_url)
        self._keystore: FileKeyStore | None = None
        self._signers: dict[str, Signer] = {}
        self._signer_loading: dict[str, threading.Lock] = {}
        self._signers_guard = threading.Lock()
        self._sealer: Sealer | None = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commits on success, rolls back on any error. On SQLite it holds
        the write lock from its first statement (``BEGIN IMMEDIATE``), after waiting its turn
        behind this process's other writers (``writer_turn``): keep it short, and do the
        costly work (keys, signatures, bundles, validation) before it begins."""
        try:
            with writer_turn(self.engine), self._writes.begin() as session:
                yield session
                # every certificate whose status changed: its CA's CRL is made again in the
                # same transaction, so what gateways fetch is never behind the database
                for authority_id in sorted(session.info.pop(crls.DIRTY, set())):
                    self._publish(session, session.get(Authority, authority_id), now=self.now())
        except SQLAlchemyError as exc:
            if isinstance(exc, IntegrityError):
                raise Conflict("the change conflicts with existing data") from None
            if isinstance(exc, OperationalError) and "database is locked" in str(exc.orig):
                raise StorageError("the database is busy: another process held its write "
                                   "lock for longer than the busy timeout") from exc
            raise StorageError(f"database error: {type(exc).__name__}") from exc

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only session (a deferred transaction: it never takes or waits for the write
        lock); a database failure is a ``StorageError`` here too."""
        try:
            with self._sessions() as session:
                yield session
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {type(exc).__name__}") from exc

    def _publish(self, session: Session, authority: Authority | None, *,
                 now: dt.datetime) -> Crl:
        """Make the CA's CRL now, and say when the lifecycle renews it."""
        made = crls.publish(session, authority, now=now, urls=self.urls,
                            signer_of=self.signer)
        assert authority is not None
        authority.crl_renew_at = renewal.renew_at(made)
        return made

    def now(self) -> dt.datetime:
        return self.clock.now()

    @property
    def keystore(self) -> FileKeyStore:
        if self._keystore is None:
            self._keystore = FileKeyStore(
                self.settings.effective_key_dir, self.settings.passphrase(),
                passphrase_source=self.settings.passphrase_source())
        return self._keystore

    def signer(self, authority: Authority) -> Signer:
        """The CA's key, loaded from its file on first use and kept: with thousands of
        tenants, start-up loads none of theirs (each costs a passphrase KDF). Threads asking
        for the same key at once load it once."""
        return self._signer(authority.key_id)

    def _signer(self, key_id: str) -> Signer:
        found = self._signers.get(key_id)
        if found is not None:
            return found
        with self._signers_guard:
            loading = self._signer_loading.setdefault(key_id, threading.Lock())
        with loading:
            found = self._signers.get(key_id)
            if found is None:
                found = self._signers[key_id] = self.keystore.load(key_id)
        with self._signers_guard:
            self._signer_loading.pop(key_id, None)
        return found

    @property
    def sealer(self) -> Sealer:
        if self._sealer is None:
            # unwrapped with the CA key passphrase: the key directory alone opens nothing
            self._sealer = load_sealer(self.settings.effective_key_dir,
                                       self.settings.passphrase(),
                                       passphrase_source=self.settings.passphrase_source())
        return self._sealer

    def check_initialized(self) -> None:
        """For commands that need a CA: say `tegata init` when there is none yet, and touch
        nothing (an absent SQLite file is not created by asking)."""
        not_yet = NotPermitted("Tegata is not initialised: run `tegata init` first")
        if self.settings.database_url is None:
            path = self.settings.data_dir / "tegata.db"
            if not path.exists():
                raise not_yet
        check_reachable(self.engine)
        if migrate.current_revision(self.engine) is None:
            raise not_yet
        self.check_database()
        if not self.is_initialized():
            raise not_yet

    def check_database(self) -> None:
        check_reachable(self.engine)
        if not migrate.is_current(self.engine):
            raise StorageError("the database schema is not current: run `tegata db upgrade` "
                               "(or start with TEGATA_MIGRATE_ON_START=true)")

    def upgrade_database(self) -> None:
        if self.settings.database_url is None:  # the embedded default lives in the data dir
            self.settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        check_reachable(self.engine)
        migrate.upgrade(self.engine)

    def schema_revisions(self) -> tuple[str | None, str | None]:
        """(the database's alembic revision, this release's)."""
        check_reachable(self.engine)
        return migrate.current_revision(self.engine), migrate.head_revision()

    def load_signers(self) -> None:
        """Check the CA keys at start-up, in time that does not grow with the tenants: the
        root's key and the data-protection key are loaded (so a wrong passphrase stops
        start-up), and every other active CA's key file must be there, private (a missing or
        world-readable file stops start-up, not a request). Those keys load on first use."""
        with self.reading() as session:
            keys = session.execute(select(Authority.key_id, Authority.kind).where(
                Authority.retired_at.is_(None))).all()
        for key_id, kind in keys:
            if kind == "root":
                self._signer(key_id)
            else:
                check_private_file(self.keystore.path_for(key_id), what="CA key file")
        if keys:
            _ = self.sealer

    def is_initialized(self) -> bool:
        with self.reading() as session:
            return queries.root(session) is not None
