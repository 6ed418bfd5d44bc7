"""The service's plumbing, handed to the use cases by name (``ca.service.root`` wires it): the
database, its units of work and its schema; the CA keys and the sealer; the CRL publisher."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPublicKeyTypes,
    CertificatePublicKeyTypes,
)
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from ca import renewal
from ca.clock import Clock
from ca.db import migrate
from ca.db.engine import check_reachable, make_sessionmaker, writer_turn
from ca.db.models import Authority, Crl
from ca.errors import ConfigError, Conflict, SchemaNotCurrent, StorageError
from ca.profiles import Urls
from ca.sealing import Sealer, load_sealer
from ca.service import crls
from ca.settings import Settings
from ca.signer import FileKeyStore, Signer, generate_ca_key
from ca.token import TokenSigner, TokenStore

PKCS11_STORE = "pkcs11"  # Authority.key_store of a key in a token ("file": a key file)


def token_of(authority: Authority) -> str | None:
    """The label of the PKCS#11 token that holds the CA's key; None: a key file. A CA's
    next key (a rollover) goes where its key is: ``keys.new_ca_key(key_id, key_type,
    token=token_of(old))``."""
    return authority.key_token if authority.key_store == PKCS11_STORE else None


def spki(key: CertificateIssuerPublicKeyTypes | CertificatePublicKeyTypes) -> bytes:
    """The DER SubjectPublicKeyInfo of ``key``: two keys are the same when these are."""
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


class Keys:
    """The CA keys behind their signers, and the data-protection sealer; each loaded on
    first use and kept. A CA's key is a file in the key directory, or lives in a PKCS#11
    token (``Authority.key_store`` says which, ``key_token`` names the token)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._keystore: FileKeyStore | None = None
        self._tokens: dict[str, TokenStore] = {}
        self._tokens_guard = threading.Lock()
        self._signers: dict[str, Signer] = {}
        self._signer_loading: dict[str, threading.Lock] = {}
        self._signers_guard = threading.Lock()
        self._sealer: Sealer | None = None
        # key id -> why the key loaded is not its CA certificate's (what /readyz reports)
        self.mismatched: dict[str, str] = {}
        self._matched: set[str] = set()

    @property
    def keystore(self) -> FileKeyStore:
        if self._keystore is None:
            self._keystore = FileKeyStore(
                self.settings.effective_key_dir, self.settings.passphrase(),
                passphrase_source=self.settings.passphrase_source())
        return self._keystore

    def token(self, label: str) -> TokenStore:
        """The PKCS#11 token labelled ``label`` (its session opened on first use)."""
        with self._tokens_guard:
            found = self._tokens.get(label)
            if found is None:
                found = self._tokens[label] = TokenStore(self.settings.token_access(label))
            return found

    def signer(self, authority: Authority) -> Signer:
        """The CA's key, loaded from its file on first use and kept: with thousands of
        tenants, start-up loads none of theirs (each costs a passphrase KDF). Threads asking
        for the same key at once load it once.

        The key loaded must be the one the CA's certificate names, checked once per key: a
        key file (or token object) holding another key is refused here (``ConfigError``,
        the unit of work that needed the signature rolls back) instead of signing
        certificates, CRLs or responder certificates nobody can verify, and is kept in
        ``mismatched`` for /readyz."""
        signer = self.signer_by_id(authority.key_id, token_of(authority),
                                   certificate=authority.der)
        if authority.key_id not in self._matched:
            self.check_matches(signer, authority)
        return signer

    def check_matches(self, signer: Signer, authority: Authority) -> None:
        """Refuse ``signer`` unless its public key is the one in ``authority``'s certificate."""
        key_id = authority.key_id
        if spki(signer.public_key()) == spki(
                x509.load_der_x509_certificate(authority.der).public_key()):
            self._matched.add(key_id)
            self.mismatched.pop(key_id, None)
            return
        self._signers.pop(key_id, None)  # read again next time: the file may be put right
        what = f"{authority.kind} CA {authority.subject!r}"
        if authority.key_store == PKCS11_STORE:
            message = (f"PKCS#11 token {authority.key_token!r} key {key_id!r} is not the key "
                       f"of the {what} certificate")
            field = "TEGATA_PKCS11_MODULE"
        else:
            message = (f"CA key file {self.keystore.path_for(key_id)} does not hold the key of "
                       f"the {what} certificate (TEGATA_KEY_DIR names another deployment's "
                       "key directory, or the file was replaced?)")
            field = "TEGATA_KEY_DIR"
        self.mismatched[key_id] = message
        raise ConfigError(message, field=field)

    def signer_by_id(self, key_id: str, token: str | None = None, *,
                     certificate: bytes | None = None) -> Signer:
        """The key ``key_id``: in the token labelled ``token``, or a file when None. A key
        in a token is checked, when first loaded, against ``certificate`` (its CA's, DER)
        when given."""
        found = self._signers.get(key_id)
        if found is not None:
            return found
        with self._signers_guard:
            loading = self._signer_loading.setdefault(key_id, threading.Lock())
        with loading:
            found = self._signers.get(key_id)
            if found is None:
                found = self._signers[key_id] = self.keystore.load(key_id) if token is None \
                    else self.token(token).load(key_id, certificate=certificate)
        with self._signers_guard:
            self._signer_loading.pop(key_id, None)
        return found

    def new_ca_key(self, key_id: str, key_type: str, *, token: str | None) -> Signer:
        """A new CA key of ``key_type`` in the store the CA uses: generated inside the token
        labelled ``token`` (never extractable), or here and written to its file when None.
        Kept, so its first signature loads nothing."""
        signer: Signer
        if token is None:
            signer = self.keystore.create(key_id, generate_ca_key(key_type))
        else:
            signer = self.token(token).generate(key_id, key_type)
        self.remember(key_id, signer)
        return signer

    def remove(self, key_id: str) -> None:
        """Remove a key made for a CA whose creation failed, from its file or its token."""
        made = self._signers.pop(key_id, None)
        self._matched.discard(key_id)
        if isinstance(made, TokenSigner):
            made.store.remove(key_id)
        else:
            self.keystore.remove(key_id)

    def forget(self, key_id: str) -> None:
        """A key whose file was removed again (a tenant whose creation failed)."""
        self._signers.pop(key_id, None)
        self._matched.discard(key_id)

    def remember(self, key_id: str, signer: Signer) -> None:
        """A key just generated: kept, so its first signature does not read its file."""
        self._signers[key_id] = signer
        self._matched.add(key_id)  # made here: its certificate is made from it

    @property
    def sealer(self) -> Sealer:
        if self._sealer is None:
            # unwrapped with the CA key passphrase: the key directory alone opens nothing
            self._sealer = load_sealer(self.settings.effective_key_dir,
                                       self.settings.passphrase(),
                                       passphrase_source=self.settings.passphrase_source())
        return self._sealer



class CrlPublisher:
    """Makes a CA's CRL and says when it is due again."""

    def __init__(self, *, keys: Keys, urls: Urls) -> None:
        self.keys = keys
        self.urls = urls

    def publish(self, session: Session, authority: Authority | None, *,
                 now: dt.datetime) -> Crl:
        """Make the CA's CRL now, and say when the lifecycle renews it."""
        made = crls.publish(session, authority, now=now, urls=self.urls,
                            signer_of=self.keys.signer)
        assert authority is not None
        authority.crl_renew_at = renewal.renew_at(made)
        return made


class Database:
    """One database: its engine, the read sessions and the units of work. A unit of work
    republishes, before it commits, the CRL of every CA whose certificates changed."""

    def __init__(self, settings: Settings, engine: Engine, *, publisher: CrlPublisher,
                 clock: Clock) -> None:
        self.settings = settings
        self.engine = engine
        self.publisher = publisher
        self.clock = clock
        self._sessions = make_sessionmaker(engine)
        self._writes = make_sessionmaker(engine, write=True)

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
                    self.publisher.publish(session, session.get(Authority, authority_id),
                                           now=self.clock.now())
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

    # --- its schema ------------------------------------------------------------------------

    def check(self) -> None:
        """The schema is this release's (else: upgrade it first)."""
        check_reachable(self.engine)
        if not migrate.is_current(self.engine):
            raise SchemaNotCurrent("the database schema is not current")

    def upgrade(self) -> None:
        """Migrate the schema to this release's (alembic)."""
        if self.settings.database_url is None:  # the embedded default lives in the data dir
            self.settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        check_reachable(self.engine)
        migrate.upgrade(self.engine)

    def revisions(self) -> tuple[str | None, str | None]:
        """(the database's alembic revision, this release's)."""
        check_reachable(self.engine)
        return migrate.current_revision(self.engine), migrate.head_revision()
