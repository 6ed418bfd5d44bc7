"""The OCSP responder: delegated responder certificates, and answers that cost almost nothing.

Each issuing CA has a short-lived responder certificate (id-kp-OCSPSigning, ocsp-nocheck),
replaced when half its life is gone. A response without a nonce is kept and served again
until half its validity has passed, as long as the certificate's status is unchanged: the
status is read from the database on every request (one indexed query, outside the ORM), so
a revocation is answered at once. A request with a nonce gets a fresh signature.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp as x509_ocsp
from sqlalchemy import bindparam, exists, select

from ca import serials
from ca.db.models import Authority, Certificate, Hold, Tenant
from ca.service.core import ServiceCore
from ca.signer import Signer
from ca.x509 import ocsp

RESPONDER_LIFETIME = dt.timedelta(days=7)
# a response is dated a little before it is made, for clients whose clocks run behind
BACKDATE = dt.timedelta(seconds=30)
MAX_REQUEST_BYTES = 16 * 1024


@dataclass(frozen=True, kw_only=True)
class OcspAnswer:
    der: bytes
    this_update: dt.datetime | None = None  # backdated (BACKDATE)
    next_update: dt.datetime | None = None
    cacheable: bool = False
    made_at: dt.datetime | None = None  # when it was really made: HTTP's Last-Modified


@dataclass(frozen=True, kw_only=True)
class _Responder:
    authority_id: int
    cert: x509.Certificate
    signer: Signer
    not_after: dt.datetime
    validity: dt.timedelta


Status = tuple[str, dt.datetime | None, str | None]


@dataclass
class _State:
    """This process's OCSP memory: issuer hashes, responders, and kept responses."""

    issuers: dict[tuple[str, bytes, bytes], int] = field(default_factory=dict)
    responders: dict[int, _Responder] = field(default_factory=dict)
    cache: dict[tuple[int, int, str], tuple[Status, OcspAnswer]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class OcspUseCases(ServiceCore):
    @property
    def _ocsp(self) -> _State:
        state = self.__dict__.get("_ocsp_state")
        if state is None:
            state = self.__dict__.setdefault("_ocsp_state", _State())
        assert isinstance(state, _State)
        return state

    def ocsp_respond(self, data: bytes) -> OcspAnswer:
        """Answer one DER OCSP request (RFC 6960); never raises for bad input."""
        if not data or len(data) > MAX_REQUEST_BYTES:
            return OcspAnswer(der=ocsp.unsuccessful(x509_ocsp.OCSPResponseStatus
                                                    .MALFORMED_REQUEST))
        try:
            request = x509_ocsp.load_der_ocsp_request(data)
            serial = request.serial_number
            algorithm = request.hash_algorithm.name
            name_hash, key_hash = request.issuer_name_hash, request.issuer_key_hash
            nonce = _nonce(request)
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except BaseException:
            return OcspAnswer(der=ocsp.unsuccessful(x509_ocsp.OCSPResponseStatus
                                                    .MALFORMED_REQUEST))
        if algorithm not in ocsp.HASHES:
            return OcspAnswer(der=ocsp.unsuccessful(x509_ocsp.OCSPResponseStatus
                                                    .MALFORMED_REQUEST))
        authority_id = self._issuer_of(algorithm, name_hash, key_hash)
        if authority_id is None:  # not one of our CAs (RFC 6960, 2.3)
            return OcspAnswer(der=ocsp.unsuccessful(x509_ocsp.OCSPResponseStatus.UNAUTHORIZED))
        now = self.now()
        status = self._status(authority_id, serial)
        cache = self._ocsp.cache
        key = (authority_id, serial, algorithm)
        if nonce is None and key in cache:
            known, answer = cache[key]
            assert answer.this_update is not None and answer.next_update is not None
            half = answer.this_update + (answer.next_update - answer.this_update) / 2
            if known == status and now < half:
                return answer
        responder = self._responder(authority_id, now=now)
        this_update = (now - BACKDATE).replace(microsecond=0)
        # the tenant's setting as it is now: a change applies from the next fresh answer
        next_update = this_update + self._validity(authority_id)
        kind, revoked_at, reason = status
        der = ocsp.build_response(ocsp.Answer(
            name_hash=name_hash, key_hash=key_hash, algorithm=algorithm, serial=serial,
            status=kind, revoked_at=revoked_at, reason=reason,
            this_update=this_update, next_update=next_update), responder.cert,
            responder.signer, nonce=nonce)
        answer = OcspAnswer(der=der, this_update=this_update, next_update=next_update,
                            cacheable=nonce is None, made_at=now)
        if nonce is None:
            cache[key] = (status, answer)
        return answer

    def _issuer_of(self, algorithm: str, name_hash: bytes, key_hash: bytes) -> int | None:
        issuers = self._ocsp.issuers
        found = issuers.get((algorithm, name_hash, key_hash))
        if found is None:  # a tenant made since, perhaps: look again
            with self.reading() as session:
                for authority in session.scalars(select(Authority).where(
                        Authority.kind == "issuing", Authority.retired_at.is_(None))):
                    keys = ocsp.issuer_keys(x509.load_der_x509_certificate(authority.der))
                    for name, (n, k) in keys.by_algorithm.items():
                        issuers[(name, n, k)] = authority.id
            found = issuers.get((algorithm, name_hash, key_hash))
        return found

    def _status(self, authority_id: int, serial: int) -> Status:
        """("good"|"revoked"|"unknown", revocation time, reason) from the database now."""
        try:
            text = serials.to_text(serial)
        except ValueError:
            return ("unknown", None, None)
        with self.engine.connect() as conn:
            row = conn.execute(_STATUS_QUERY, {"authority": authority_id,
                                               "serial": text}).first()
        if row is None:
            return ("unknown", None, None)  # never "good" for a serial Tegata did not issue
        revoked_at, reason, is_held, since = row
        if revoked_at is not None:
            return ("revoked", _aware(revoked_at), str(reason) if reason else None)
        if is_held:
            return ("revoked", _aware(since), "certificateHold")
        return ("good", None, None)

    def _validity(self, authority_id: int) -> dt.timedelta:
        with self.engine.connect() as conn:
            seconds = conn.execute(select(Tenant.ocsp_validity_seconds).join(
                Authority, Authority.tenant_id == Tenant.id).where(
                Authority.id == authority_id)).scalar_one()
        return dt.timedelta(seconds=seconds)

    def _responder(self, authority_id: int, *, now: dt.datetime) -> _Responder:
        responders = self._ocsp.responders
        current = responders.get(authority_id)
        if current is not None and now < current.not_after - RESPONDER_LIFETIME / 2:
            return current
        with self._ocsp.lock:
            current = responders.get(authority_id)
            if current is None or now >= current.not_after - RESPONDER_LIFETIME / 2:
                current = self._load_or_make_responder(authority_id, now=now)
                responders[authority_id] = current
            return current

    def _load_or_make_responder(self, authority_id: int, *, now: dt.datetime) -> _Responder:
        with self.transaction() as session:
            issuing = session.get(Authority, authority_id)
            assert issuing is not None
            tenant = session.get(Tenant, issuing.tenant_id)
            assert tenant is not None
            validity = dt.timedelta(seconds=tenant.ocsp_validity_seconds)
            row = session.scalar(select(Authority).where(
                Authority.issuer_id == authority_id, Authority.kind == "ocsp",
                Authority.retired_at.is_(None)).order_by(Authority.id.desc()).limit(1))
            if row is not None and now < row.not_after - RESPONDER_LIFETIME / 2:
                return _Responder(authority_id=authority_id,
                                  cert=x509.load_der_x509_certificate(row.der),
                                  signer=self.signer(row), not_after=row.not_after,
                                  validity=validity)
            if row is not None:
                row.retired_at = now  # rotated: the old key file stays until it expires
            key = ec.generate_private_key(ec.SECP256R1())
            key_id = f"ocsp-{secrets.token_hex(8)}"
            signer = self.keystore.create(key_id, key)
            try:
                cert = ocsp.build_responder(ocsp.ResponderRequest(
                    tenant=tenant.name, public_key=key.public_key(),
                    not_before=now - dt.timedelta(minutes=5),
                    not_after=now + RESPONDER_LIFETIME),
                    x509.load_der_x509_certificate(issuing.der), self.signer(issuing),
                    serial=x509.random_serial_number())
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
                session.add(Authority(
                    tenant_id=tenant.id, issuer_id=authority_id, kind="ocsp", key_id=key_id,
                    subject=cert.subject.rfc4514_string(),
                    serial=serials.to_text(cert.serial_number),
                    ski=ski.value.digest.hex().upper(),
                    der=cert.public_bytes(serialization.Encoding.DER),
                    not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                    created_at=now))
                session.flush()
            except BaseException:
                self.keystore.remove(key_id)
                raise
            return _Responder(authority_id=authority_id, cert=cert, signer=signer,
                              not_after=cert.not_valid_after_utc, validity=validity)


# built once: the hot path binds two values and runs it (no statement building per request)
_STATUS_QUERY = select(
    Certificate.revoked_at, Certificate.revocation_reason,
    exists().where(Hold.certificate_id == Certificate.id, Hold.lifted_at.is_(None)),
    select(Hold.placed_at).where(Hold.certificate_id == Certificate.id,
                                 Hold.lifted_at.is_(None))
    .order_by(Hold.placed_at).limit(1).scalar_subquery(),
).where(Certificate.authority_id == bindparam("authority"),
        Certificate.serial == bindparam("serial"))


def _nonce(request: x509_ocsp.OCSPRequest) -> bytes | None:
    try:
        return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


def _aware(value: object) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
