"""The OCSP responder: delegated responder certificates, and answers from memory.

Each issuing CA has a short-lived responder certificate (id-kp-OCSPSigning, ocsp-nocheck),
replaced when half its life is gone. An answer without a nonce is kept in this process's
memory (``ca.service.ocsp_memory``) and served again, with no database read, until half its
life (from when it was made to its nextUpdate) has passed; from a third of it, it is made
afresh in the background, so a busy answer never waits for a signature. A status change
made by any process reaches every process's memory through the change feed
(``ca.service.ocsp_feed``) within a second. A request with a nonce gets a fresh signature.

``ocsp_from_memory`` answers on the event loop when memory alone can (a kept answer, or an
unsigned error); ``ocsp_respond`` answers anything, reading the database and signing: run
it in a thread. Neither raises: a failure inside is an OCSP ``internalError`` (``tryLater``
when the database is at fault), never an HTTP error.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
import time
from dataclasses import dataclass, replace

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp as x509_ocsp
from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ca import audit, holds, serials
from ca.audit import Actor, Event
from ca.clock import Clock
from ca.db import queries
from ca.db.models import Authority, Certificate, ReplayedRevocation, Tenant
from ca.errors import ConfigError, InvalidInput, StorageError
from ca.service import ocsp_feed, ocsp_memory
from ca.service.ocsp_memory import IssuerKey, Kept, Memory, OcspAnswer, Question, Status
from ca.service.plumbing import Database, Keys
from ca.signer import FileSigner, Signer
from ca.x509 import ocsp

__all__ = ["BACKDATE", "MAX_REQUEST_BYTES", "Ocsp", "OcspAnswer"]

log = logging.getLogger("tegata.ocsp")
RESPONDER_LIFETIME = dt.timedelta(days=7)
# a response is dated a little before it is made, for clients whose clocks run behind
BACKDATE = dt.timedelta(seconds=30)
MAX_REQUEST_BYTES = 16 * 1024
# RFC 5280, 4.1.2.2: a serial is a positive integer of at most 20 octets
MAX_SERIAL = 1 << 160


def _unsuccessful(status: x509_ocsp.OCSPResponseStatus) -> OcspAnswer:
    return OcspAnswer(der=ocsp.unsuccessful(status))


# unsigned (RFC 6960, 2.3), the same bytes every time: made once
MALFORMED = _unsuccessful(x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
UNAUTHORIZED = _unsuccessful(x509_ocsp.OCSPResponseStatus.UNAUTHORIZED)
INTERNAL_ERROR = _unsuccessful(x509_ocsp.OCSPResponseStatus.INTERNAL_ERROR)
TRY_LATER = _unsuccessful(x509_ocsp.OCSPResponseStatus.TRY_LATER)


@dataclass(frozen=True, kw_only=True)
class _Responder:
    authority_id: int
    cert: x509.Certificate
    signer: Signer
    not_after: dt.datetime
    # its notAfter is its CA's (capped): a new one would not outlast it, so none is made
    final: bool = False

    def due(self, now: dt.datetime) -> bool:
        """Whether a new responder certificate is to be made: half its life gone, unless
        it ends with its CA."""
        return not self.final and now >= self.not_after - RESPONDER_LIFETIME / 2


class Ocsp:
    """The OCSP responder (RFC 6960), and the answers' validity per tenant."""

    def __init__(self, *, database: Database, keys: Keys, clock: Clock) -> None:
        self.database = database
        self.keys = keys
        self.clock = clock
        self._memory: Memory | None = None
        self._memory_made = threading.Lock()
        self._responders: dict[int, _Responder] = {}

    @property
    def memory(self) -> Memory:
        """This process's memory of answers and issuers (read by metrics and tests too),
        made on first use."""
        memory = self._memory
        if memory is None:
            with self._memory_made:
                memory = self._memory
                if memory is None:
                    memory = self._memory = Memory(capacity=ocsp_memory.CAPACITY)
                    # this process's own changes: forgotten right after their commit
                    ocsp_feed.listen(self.database.engine, memory.forget)
        return memory

    def kept(self, raw: bytes) -> OcspAnswer | None:
        """The kept answer to exactly these request bytes, asked before (a GET's path, a
        POST's body), else None: one dictionary lookup, for the event loop."""
        memory = self.memory
        if memory.to_refresh or memory.poll_due():
            memory.kick(self._ocsp_background)
        key = memory.named(raw) if memory.trusted() else None
        kept = memory.fresh(key, self.clock.now().timestamp()) if key is not None else None
        return kept.answer if kept is not None else None

    def from_memory(self, data: bytes, *, raw: bytes | None = None) -> OcspAnswer | None:
        """The answer to a DER OCSP request when memory alone gives it, else None (then
        ``ocsp_respond`` in a thread). No database, no signature, no I/O: for the event loop.
        ``raw``: the request's bytes as they came (a GET's path), remembered to name the
        answer so that the same bytes again cost one dictionary lookup."""
        memory = self.memory
        decided = (self._decide(memory, data, data if raw is None else raw)
                   if memory.trusted() else None)
        if memory.to_refresh or memory.poll_due():
            memory.kick(self._ocsp_background)
        return decided if isinstance(decided, OcspAnswer) else None

    def respond(self, data: bytes, *, raw: bytes | None = None) -> OcspAnswer:
        """Answer one DER OCSP request (RFC 6960); never raises. Reads the database and
        signs when memory cannot answer: not on the event loop."""
        try:
            memory = self.memory
            self._ocsp_catch_up(memory, force=False)
            decided = self._decide(memory, data, data if raw is None else raw)
            if memory.to_refresh:
                memory.kick(self._ocsp_background)
            if isinstance(decided, OcspAnswer):
                return decided
            return self._answer_afresh(memory, decided, raw=data if raw is None else raw)
        except (StorageError, SQLAlchemyError):
            _failed("the database failed; answered tryLater")
            return TRY_LATER
        except Exception:
            _failed("internal error; answered internalError")
            return INTERNAL_ERROR

    def catch_up(self) -> None:
        """Read the change feed now (the background does so while answering)."""
        self._ocsp_catch_up(self.memory, force=True)

    # --- the answers' validity, per tenant -----------------------------------------------

    def set_validity(self, tenant: str, seconds: int, *,
                          actor: Actor = audit.CLI_ACTOR) -> int:
        """How long an OCSP answer is valid: nginx caches it that long, so it is the time a
        revocation takes to reach the gateway (60 s .. 7 days)."""
        if not 60 <= seconds <= 7 * 86400:
            raise InvalidInput("the OCSP validity must be 60 seconds to 7 days",
                               field="ocsp_validity")
        now = self.clock.now()
        with self.database.transaction() as session:
            owner = queries.tenant(session, tenant)
            previous = owner.ocsp_validity_seconds
            if previous != seconds:  # as every tenant setting: one event per change
                owner.ocsp_validity_seconds = seconds
                audit.record(session, actor, Event(
                    action="tenant.update", target=owner.name, tenant_id=owner.id,
                    details={"ocsp_validity_seconds": seconds,
                             "previous_ocsp_validity_seconds": previous}), now=now)
        return seconds

    def get_validity(self, tenant: str) -> int:
        with self.database.reading() as session:
            return queries.tenant(session, tenant).ocsp_validity_seconds

    def _decide(self, memory: Memory, data: bytes, raw: bytes) -> OcspAnswer | Question:
        """From memory: a kept answer or an unsigned error, else the question to answer."""
        now = self.clock.now().timestamp()
        known = memory.named(raw)
        if known is not None and (kept := memory.fresh(known, now)) is not None:
            return kept.answer
        question = _question(data)
        if isinstance(question, OcspAnswer):
            return question
        authority_id = memory.issuer((question.algorithm, question.name_hash,
                                      question.key_hash))
        if authority_id is None:  # not one of our CAs (RFC 6960, 2.3)
            return UNAUTHORIZED
        question = replace(question, authority_id=authority_id)
        if question.nonce is None and (kept := memory.fresh(question.key, now)) is not None:
            memory.remember(raw, question.key)
            return kept.answer
        return question

    def _answer_afresh(self, memory: Memory, question: Question, *,
                       raw: bytes | None) -> OcspAnswer:
        """Read the status (or take it from memory for a nonce), sign, keep if it may be."""
        now = self.clock.now()
        generation = memory.generation
        kept = memory.peek(question.key) if question.nonce is not None else None
        if kept is not None:  # memory follows every change: its status is current
            status, validity = kept.status, kept.validity
        else:
            status, validity = self._status(question.authority_id, question.serial)
        responder = self._responder(question.authority_id, now=now)
        this_update = (now - BACKDATE).replace(microsecond=0)
        # the tenant's setting as it is now: a change applies from the next fresh answer
        next_update = this_update + validity
        kind, revoked_at, reason = status
        der = ocsp.build_response(ocsp.Answer(
            name_hash=question.name_hash, key_hash=question.key_hash,
            algorithm=question.algorithm, serial=question.serial, status=kind,
            revoked_at=revoked_at, reason=reason, this_update=this_update,
            next_update=next_update), responder.cert, responder.signer, nonce=question.nonce)
        cacheable = question.nonce is None
        answer = OcspAnswer(der=der, this_update=this_update, next_update=next_update,
                            cacheable=cacheable, made_at=now)
        if cacheable and kind != "unknown":  # nothing is kept for a serial never issued
            made, life = now.timestamp(), (next_update - now).total_seconds()
            memory.keep(Kept(question=question, answer=answer, status=status,
                             validity=validity, refresh_at=made + life / 3,
                             stale_at=made + life / 2), generation=generation, raw=raw)
        return answer

    def _ocsp_background(self) -> None:
        """Read the change feed, then make afresh the kept answers past a third of their
        life that were asked for."""
        try:
            memory = self.memory
            self._ocsp_catch_up(memory, force=False)
            for kept in memory.take_refreshes():
                self._answer_afresh(memory, kept.question, raw=None)
        except Exception:
            _failed("background refresh failed")

    def _ocsp_catch_up(self, memory: Memory, *, force: bool) -> None:
        if not force and not memory.poll_due() and not memory.issuers_stale:
            return
        with memory.poll_lock:
            if not force and not memory.poll_due() and not memory.issuers_stale:
                return  # another thread read it meanwhile
            began = memory.ticks()
            with self.database.engine.connect() as conn:
                if memory.seq is None:
                    memory.seq = ocsp_feed.newest(conn)
                else:
                    memory.seq, changes = ocsp_feed.since(conn, memory.seq)
                    if changes != []:
                        memory.forget(changes)
                if memory.issuers_stale:
                    memory.set_issuers(_issuers(conn, memory.issuers_of))
            memory.polled_at = began

    def _status(self, authority_id: int, serial: int) -> tuple[Status, dt.timedelta]:
        """The certificate's status from the database now, and the tenant's OCSP validity."""
        with self.database.engine.connect() as conn:
            row = conn.execute(_STATUS_QUERY, {"authority": authority_id,
                                               "serial": serials.to_text(serial)}).first()
            seconds = conn.execute(select(Tenant.ocsp_validity_seconds).join(
                Authority, Authority.tenant_id == Tenant.id).where(
                Authority.id == authority_id)).scalar_one()
            # a revocation a restore replayed for a certificate issued after its backup
            replayed = None if row is not None else conn.execute(
                select(ReplayedRevocation.revoked_at, ReplayedRevocation.reason).where(
                    ReplayedRevocation.authority_id == authority_id,
                    ReplayedRevocation.serial == serials.to_text(serial))).first()
        validity = dt.timedelta(seconds=seconds)
        if replayed is not None:
            return ("revoked", _aware(replayed[0]), replayed[1]), validity
        if row is None:
            return ("unknown", None, None), validity  # never "good" for a serial not ours
        revoked_at, reason, is_held, since = row
        if revoked_at is not None:
            return ("revoked", _aware(revoked_at), str(reason) if reason else None), validity
        if is_held:
            return ("revoked", _aware(since), "certificateHold"), validity
        return ("good", None, None), validity

    def _responder(self, authority_id: int, *, now: dt.datetime) -> _Responder:
        responders = self._responders
        current = responders.get(authority_id)
        if current is not None and not current.due(now):
            return current
        with _RESPONDER_LOCK:
            current = responders.get(authority_id)
            if current is None or current.due(now):
                current = self._load_or_make_responder(authority_id, now=now)
                responders[authority_id] = current
            return current

    def _load_or_make_responder(self, authority_id: int, *, now: dt.datetime) -> _Responder:
        with self.database.reading() as session:  # the usual case: made already, by any process
            row = _newest_responder(session, authority_id)
            issuing = session.get(Authority, authority_id)
            assert issuing is not None
            if row is not None:
                found = self._usable(row, issuing)
                if found is not None and not found.due(now):
                    return found
        with self.database.transaction() as session:
            # the issuing CA's row locked first: a replica making its responder at the same
            # moment is waited for, and its responder read below, so each CA has one
            session.execute(update(Authority).where(Authority.id == authority_id)
                            .values(key_id=Authority.key_id))
            issuing = session.get(Authority, authority_id)
            assert issuing is not None
            tenant = session.get(Tenant, issuing.tenant_id)
            assert tenant is not None
            row = _newest_responder(session, authority_id)
            if row is not None:
                found = self._usable(row, issuing)
                if found is not None and not found.due(now):
                    return found
            if row is not None:
                # rotated, or its key unusable here (a pre-0018 key file this replica lacks):
                # a responder is delegated and cheap, so a new one replaces it
                row.retired_at = now
            key = ec.generate_private_key(ec.SECP256R1())
            key_id = f"ocsp-{secrets.token_hex(8)}"
            # sealed into its row, in the transaction that records its certificate: every
            # replica reads it from the database, whatever its key directory holds
            sealed = self.keys.sealer.seal(key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()), context=_sealing_context(key_id))
            signer = FileSigner(key_id, key)
            cert = ocsp.build_responder(ocsp.ResponderRequest(
                tenant=tenant.name, public_key=key.public_key(),
                not_before=now - dt.timedelta(minutes=5),
                # never past its CA's end: a responder certificate outliving the CA that
                # certified it would be refused by a relying party anyway
                not_after=min(now + RESPONDER_LIFETIME, issuing.not_after)),
                x509.load_der_x509_certificate(issuing.der), self.keys.signer(issuing),
                serial=x509.random_serial_number())
            ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            session.add(Authority(
                tenant_id=tenant.id, issuer_id=authority_id, kind="ocsp", key_id=key_id,
                subject=cert.subject.rfc4514_string(),
                serial=serials.to_text(cert.serial_number),
                ski=ski.value.digest.hex().upper(),
                der=cert.public_bytes(serialization.Encoding.DER),
                not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                created_at=now, sealed_key=sealed))
            session.flush()
            return _Responder(authority_id=authority_id, cert=cert, signer=signer,
                              not_after=cert.not_valid_after_utc,
                              final=cert.not_valid_after_utc >= issuing.not_after)

    def _usable(self, row: Authority, issuing: Authority) -> _Responder | None:
        """The responder of ``row`` with its key: sealed in the row, or (made before 0018) its
        key file. None when the key is not usable here (the file is missing from this
        replica's key directory, or holds another key): a new responder is made."""
        try:
            if row.sealed_key is not None:
                key = serialization.load_der_private_key(self.keys.sealer.open(
                    row.sealed_key, context=_sealing_context(row.key_id)), None)
                assert isinstance(key, ec.EllipticCurvePrivateKey)
                signer: Signer = FileSigner(row.key_id, key)
                self.keys.check_matches(signer, row)
            else:
                signer = self.keys.signer(row)
        except ConfigError as exc:
            log.warning("OCSP responder %s: its key is not usable (%s); a new responder "
                        "replaces it", row.key_id, exc.message)
            return None
        return _Responder(authority_id=issuing.id,
                          cert=x509.load_der_x509_certificate(row.der),
                          signer=signer, not_after=row.not_after,
                          final=row.not_after >= issuing.not_after)


def _sealing_context(key_id: str) -> str:
    # the AAD binds a sealed responder key to its row's key id
    return f"ocsp-responder-key:{key_id}"


_RESPONDER_LOCK = threading.Lock()  # one responder certificate made at a time
# built once: the hot path binds two values and runs it (no statement building per request)
_STATUS_QUERY = select(
    Certificate.revoked_at, Certificate.revocation_reason,
    holds.hold_filter(), holds.held_since_column(),
).where(Certificate.authority_id == bindparam("authority"),
        Certificate.serial == bindparam("serial"))


_LOG_EVERY = 10.0  # seconds: a failure repeated by every request is logged once per this
_logged: dict[str, float] = {}


def _failed(what: str) -> None:
    """Log a failure with its traceback, at most once per ``_LOG_EVERY`` for each kind: a
    flood of requests meeting a broken database must not become a flood of tracebacks."""
    now = time.monotonic()
    if now - _logged.get(what, -_LOG_EVERY) >= _LOG_EVERY:
        _logged[what] = now
        log.error("OCSP: %s", what, exc_info=True)


def _newest_responder(session: Session, authority_id: int) -> Authority | None:
    return session.scalar(select(Authority).where(
        Authority.issuer_id == authority_id, Authority.kind == "ocsp",
        Authority.retired_at.is_(None)).order_by(Authority.id.desc()).limit(1))


MAX_NONCE_BYTES = 32


def _question(data: bytes) -> Question | OcspAnswer:
    """What a DER request asks, or the unsigned answer it gets at once: malformedRequest
    for anything that is not one request with one CertID of a hash we answer in, with at
    most a nonce of 1 to 32 octets."""
    if not data or len(data) > MAX_REQUEST_BYTES:
        return MALFORMED
    try:
        request = x509_ocsp.load_der_ocsp_request(data)
        question = Question(algorithm=request.hash_algorithm.name,
                            name_hash=request.issuer_name_hash,
                            key_hash=request.issuer_key_hash,
                            serial=request.serial_number, nonce=_nonce(request))
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException:
        return MALFORMED
    if question.algorithm not in ocsp.HASHES:
        return MALFORMED
    if question.nonce is not None and not 1 <= len(question.nonce) <= MAX_NONCE_BYTES:
        # RFC 8954, 2.1: a nonce is 1 to 32 octets; anything else is not echoed and signed
        return MALFORMED
    if not 0 < question.serial < MAX_SERIAL:
        # no conforming certificate has this serial (RFC 5280, 4.1.2.2), so no CA's
        # status can be asked with it: malformed, answered unsigned and at once, not an
        # "unknown" that would cost a database read and a signature per request
        return MALFORMED
    return question


def _issuers(conn: Connection, known: dict[int, list[IssuerKey]]
             ) -> dict[int, list[IssuerKey]]:
    """Every issuing CA in service and the CertID hashes naming it; the hashes of a CA in
    ``known`` are taken from there, so a new tenant costs one certificate's hashes."""
    ids = set(conn.scalars(select(Authority.id).where(
        Authority.kind == "issuing", Authority.retired_at.is_(None))))
    found = {authority: known[authority] for authority in ids & known.keys()}
    missing = sorted(ids - found.keys())
    for start in range(0, len(missing), 500):
        for authority, der in conn.execute(select(Authority.id, Authority.der).where(
                Authority.id.in_(missing[start:start + 500]))):
            keys = ocsp.issuer_keys(x509.load_der_x509_certificate(der))
            found[authority] = [(name, n, k) for name, (n, k) in keys.by_algorithm.items()]
    return found


def _nonce(request: x509_ocsp.OCSPRequest) -> bytes | None:
    try:
        return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


def _aware(value: object) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
