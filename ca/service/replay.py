"""Replaying a gateway's CRL into a restored deployment: the revocations and suspensions made
after the backup was taken are in the last CRL each gateway fetched, not in the database.

Each CRL must be signed by one of the deployment's CAs. Every entry whose certificate the
database holds and does not already list is applied again, dated as the CRL dates it: a
revocation with its reason, a certificateHold as a manual hold; unless the certificate's
own history (its holds placed or lifted, its revocation) has something later than the CRL's
thisUpdate: then the CRL is stale for it, and the entry is listed as skipped. A revocation of a
certificate the database does not know (issued after the backup) is kept as a
``ReplayedRevocation``, which the CA's CRLs list from then on (for ever: its notAfter is not
known); a hold of such a certificate is only listed (nothing could lift it). Then each CA
replayed publishes a CRL numbered above the CRL replayed, whatever this host's clock says
(``crls.raise_floor``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca import audit, serials
from ca.audit import Actor, Event
from ca.clock import Clock
from ca.db.models import Authority, Certificate, Hold, ReplayedRevocation, Tenant, User
from ca.errors import InvalidInput
from ca.holds import HoldCause, on_hold
from ca.profiles import CLOCK_SKEW
from ca.reasons import REASONS
from ca.service import crls, ocsp_feed, transitions
from ca.service.plumbing import Database
from ca.x509 import crl as crl_builder

REPLAY_ACTOR = Actor(name="restore")
HOLD = "certificateHold"


@dataclass(frozen=True, kw_only=True)
class ReplayedEntry:
    """One entry of a replayed CRL the database did not list. ``known``: its certificate is
    in the database (else it was issued after the backup); ``applied``: it is listed again
    (False only for a hold of an unknown certificate)."""

    ca: str
    serial: str
    reason: str
    date: dt.datetime
    applied: bool
    known: bool = True
    login: str | None = None
    changed_after: bool = False  # not applied: the certificate changed after this CRL


@dataclass(frozen=True, kw_only=True)
class ReplayedCrl:
    name: str
    ca: str
    number: int
    entries: tuple[ReplayedEntry, ...]


_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.DOTALL)


def load_crls(data: bytes, *, name: str) -> list[x509.CertificateRevocationList]:
    """The CRLs of a file: one DER CRL, or one or more PEM CRLs (a gateway's chain file
    holds the tenant's and the root's)."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            found = [x509.load_pem_x509_crl(m.group()) for m in _PEM_CRL.finditer(data)]
            if found:
                return found
            raise ValueError("no CRL block")
        return [x509.load_der_x509_crl(data)]
    except ValueError:
        raise InvalidInput(f"{name} is not a CRL (PEM or DER)", field="replay_from") from None


class Replay:
    """Apply again what restored CRLs list and the database does not."""

    def __init__(self, *, database: Database, clock: Clock) -> None:
        self.database = database
        self.clock = clock

    def replay(self, files: dict[str, bytes], *, everyone: bool = False) -> list[ReplayedCrl]:
        """Replay CRL files (name -> content), all in one transaction: every file is checked
        before anything changes. With ``everyone`` (right after a restore) every active CA
        publishes anew, not only those replayed."""
        loaded = [(name, crl) for name, data in files.items()
                  for crl in load_crls(data, name=name)]
        replayed = []
        with self.database.transaction() as session:
            if everyone:
                crls.mark_all_dirty(session)
            for name, crl in loaded:
                authority = _signer_of(session, crl, name=name)
                number = _number_of(crl, name=name)
                crls.raise_floor(session, authority.id, number + 1)
                crls.mark_dirty(session, authority.id)  # republished at commit, above it
                entries = _apply(session, authority, crl, now=self.clock.now())
                replayed.append(ReplayedCrl(name=name, ca=authority.subject, number=number,
                                            entries=tuple(entries)))
        return replayed


def check_signed(files: dict[str, bytes], ca_ders: list[bytes]) -> None:
    """Before a restore writes anything: every CRL of ``files`` is signed by one of the
    backup's CAs (``ca_ders``: their certificates) and has a CRL Number, as the replay after
    the restore will require."""
    cas = [x509.load_der_x509_certificate(der) for der in ca_ders]
    for name, data in files.items():
        for crl in load_crls(data, name=name):
            if not any(_signed_by(crl, cert) for cert in cas):
                raise _unsigned(crl, name, whose="the backup")
            _number_of(crl, name=name)


def _signed_by(crl: x509.CertificateRevocationList, cert: x509.Certificate) -> bool:
    key = cert.public_key()
    return cert.subject == crl.issuer and isinstance(
        key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey) and crl.is_signature_valid(key)


def _unsigned(crl: x509.CertificateRevocationList, name: str, *, whose: str) -> InvalidInput:
    issuer = crl.issuer.rfc4514_string()
    return InvalidInput(f"{name}: no CA of {whose} signed it (issuer {issuer[:200]})",
                        field="replay_from")


def _signer_of(session: Session, crl: x509.CertificateRevocationList, *,
               name: str) -> Authority:
    for authority in session.scalars(select(Authority).where(
            Authority.kind.in_(("root", "issuing"))).order_by(Authority.id)):
        if _signed_by(crl, x509.load_der_x509_certificate(authority.der)):
            return authority
    raise _unsigned(crl, name, whose="this deployment")


def _number_of(crl: x509.CertificateRevocationList, *, name: str) -> int:
    try:
        number: int = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        raise InvalidInput(f"{name}: the CRL has no CRL Number", field="replay_from") from None
    return number


def _reason_of(entry: x509.RevokedCertificate) -> str:
    try:
        flag = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return "unspecified"
    return {x509.ReasonFlags.key_compromise: "keyCompromise",
            x509.ReasonFlags.affiliation_changed: "affiliationChanged",
            x509.ReasonFlags.superseded: "superseded",
            x509.ReasonFlags.cessation_of_operation: "cessationOfOperation",
            x509.ReasonFlags.privilege_withdrawn: "privilegeWithdrawn",
            x509.ReasonFlags.certificate_hold: HOLD}.get(flag, "unspecified")


def _apply(session: Session, authority: Authority, crl: x509.CertificateRevocationList, *,
           now: dt.datetime) -> list[ReplayedEntry]:
    if authority.kind == "root":
        return []  # its entries are retired issuing CAs: the floor is what matters
    tenant = session.get(Tenant, authority.tenant_id)
    assert tenant is not None
    done = []
    for entry in crl:
        serial = serials.to_text(entry.serial_number)
        reason, date = _reason_of(entry), entry.revocation_date_utc
        cert = session.scalar(select(Certificate).where(
            Certificate.authority_id == authority.id, Certificate.serial == serial))
        if cert is None:
            applied = reason != HOLD and _keep_unknown(session, authority, entry, reason,
                                                        tenant=tenant.name, now=now)
            if applied or reason == HOLD:
                done.append(ReplayedEntry(ca=authority.subject, serial=serial, reason=reason,
                                          date=date, applied=applied, known=False))
            continue
        user = session.get(User, cert.user_id)
        assert user is not None
        transitions.lock(session, cert)
        if reason == HOLD:
            if cert.revoked_at is not None or on_hold(cert, None):
                continue
            # a hold is undone by a reinstatement: one after this CRL was made wins over it
            if _changed_after(session, cert, crl.last_update_utc + CLOCK_SKEW):
                done.append(ReplayedEntry(ca=authority.subject, serial=serial, reason=reason,
                                          date=date, applied=False, login=user.login,
                                          changed_after=True))
                continue
            transitions.place_hold(session, cert, HoldCause.MANUAL, REPLAY_ACTOR,
                                   tenant=tenant.name, login=user.login, now=date)
        else:  # a revocation is for good: nothing done after it (a hold) can undo it
            if cert.revoked_at is not None:
                continue
            assert reason in REASONS
            transitions.revoke(session, cert, reason, REPLAY_ACTOR, tenant=tenant.name,
                               login=user.login, now=date)
        done.append(ReplayedEntry(ca=authority.subject, serial=serial, reason=reason,
                                  date=date, applied=True, login=user.login))
    return done


def _changed_after(session: Session, cert: Certificate, moment: dt.datetime) -> bool:
    """The certificate's own history holds something later than ``moment`` (when a CRL was
    made: its thisUpdate is set back by the clock skew allowed): a hold placed or lifted, a
    revocation. What happened after a CRL was made wins over a hold it lists (a stale CRL
    must not put back a hold lifted since); a revocation it lists is applied whatever came
    after."""
    later = [cert.revoked_at] + [t for hold in session.scalars(select(Hold).where(
        Hold.certificate_id == cert.id)) for t in (hold.placed_at, hold.lifted_at)]
    return any(t is not None and _aware(t) > moment for t in later)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _keep_unknown(session: Session, authority: Authority, entry: x509.RevokedCertificate,
                  reason: str, *, tenant: str, now: dt.datetime) -> bool:
    """Keep the revocation of a certificate the database does not hold, audited (at
    ``now``, dated as the CRL dates it in its details); False when it is kept already
    (replayed before)."""
    serial = serials.to_text(entry.serial_number)
    if session.scalar(select(ReplayedRevocation.id).where(
            ReplayedRevocation.authority_id == authority.id,
            ReplayedRevocation.serial == serial)) is not None:
        return False
    date = entry.revocation_date_utc
    session.add(ReplayedRevocation(
        authority_id=authority.id, serial=serial, revoked_at=date, reason=reason,
        crl_entry=crl_builder.entry_der(crl_builder.Entry(
            serial=entry.serial_number, revoked_at=date, reason=reason)),
        created_at=date))
    ocsp_feed.mark(session, authority.id, serial)
    audit.record(session, REPLAY_ACTOR, Event(
        action="cert.revoke.replayed", target=f"{tenant}/{serial}", tenant_id=authority.tenant_id,
        details={"reason": reason, "revoked_at": date.isoformat(), "known": False}), now=now)
    return True
