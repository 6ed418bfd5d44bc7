"""The data model: tenants, their CAs, groups, users, certificates, holds, CRLs, tokens, audit.

A certificate's effective state is derived, not stored: ``revoked`` when ``revoked_at`` is set,
else ``suspended`` while it has an unlifted hold, else ``expired`` past ``not_after``, else
``valid``. Holds carry their cause so that lifting one cause never lifts another.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ca.db.types import UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime()}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime]
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    key_type: Mapped[str] = mapped_column(String(16), default="ec-p256")
    default_validity: Mapped[str] = mapped_column(String(16), default="P1Y")
    p12_profile: Mapped[str] = mapped_column(String(16), default="compat")
    user_download: Mapped[bool] = mapped_column(Boolean, default=True)
    upn_suffix: Mapped[str | None] = mapped_column(String(253))
    ocsp_validity_seconds: Mapped[int] = mapped_column(Integer, default=300)
    crl_validity_seconds: Mapped[int] = mapped_column(Integer, default=7 * 86400)
    # subscription: "none" (perpetual), "trial" or "contract"; ends at the end of ends_on in zone
    subscription_kind: Mapped[str] = mapped_column(String(16), default="none")
    subscription_ends_on: Mapped[dt.date | None] = mapped_column(Date)
    subscription_zone: Mapped[str | None] = mapped_column(String(64))
    subscription_ends_at: Mapped[dt.datetime | None]
    grace_days: Mapped[int] = mapped_column(Integer, default=30)
    # when the subscription hold was published (the first lifecycle step past the end); the
    # grace period counts from here as well, so a late or mistyped end never revokes early
    subscription_suspended_at: Mapped[dt.datetime | None]
    # the next instant the lifecycle must look at the subscription (its end, then its grace
    # end); NULL when nothing is ever due (ca.service.lifecycle.next_due)
    lifecycle_due_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    ip_policy: Mapped[str] = mapped_column(String(16), default="cert_only")
    ip_networks: Mapped[str] = mapped_column(Text, default="")  # one CIDR per line

    authorities: Mapped[list[Authority]] = relationship(back_populates="tenant")


class Authority(Base):
    """A CA certificate with the id of its key: the root (no tenant), or a tenant's issuing CA."""

    __tablename__ = "authorities"
    __table_args__ = (
        # one CA per generation: two rollovers at once cannot both make generation n
        Index("ux_authorities_generation", "tenant_id", "kind", "generation", unique=True,
              sqlite_where=text("kind IN ('root', 'issuing')"),
              postgresql_where=text("kind IN ('root', 'issuing')")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    issuer_id: Mapped[int | None] = mapped_column(ForeignKey("authorities.id"))
    kind: Mapped[str] = mapped_column(String(16))  # root | issuing | ocsp
    # 1 for a tenant's first issuing CA (and the first root), one more at each rollover: the
    # newest not retired is the one that issues (ca.db.queries); 1 for an OCSP responder
    generation: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    # a root of generation 2 or later: its key certified by the root before it, and the key
    # of the root before it certified by it (link certificates, RFC 4210 5.3.1 key update)
    link_from_previous: Mapped[bytes | None] = mapped_column(LargeBinary)
    link_to_previous: Mapped[bytes | None] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(63), unique=True)
    subject: Mapped[str] = mapped_column(Text)
    serial: Mapped[str] = mapped_column(String(40))
    ski: Mapped[str] = mapped_column(String(128))
    der: Mapped[bytes] = mapped_column(LargeBinary)
    not_before: Mapped[dt.datetime]
    not_after: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime]
    retired_at: Mapped[dt.datetime | None]
    # the URL of the CA's CRL: the IDP of every CRL it signs and the CDP of every certificate
    # it signs, fixed when the CA is made (ca.service.crls.crl_url); NULL only for a CA made
    # before 0009 that had published nothing
    crl_url: Mapped[str | None] = mapped_column(Text)
    # when the CA's latest CRL is past half its validity and the lifecycle renews it; NULL
    # when it has none yet (due at once); set at every publication (CrlPublisher.publish)
    crl_renew_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    # where the key lives: 'file' (the key directory) or 'pkcs11' (the token labelled
    # key_token, in the module of TEGATA_PKCS11_MODULE); ca.service.plumbing.Keys reads it
    key_store: Mapped[str] = mapped_column(String(16), default="file", server_default="file")
    key_token: Mapped[str | None] = mapped_column(String(32))
    # an OCSP responder's key, sealed with the data-protection key (ca.service.ocsp): every
    # replica reads it here; NULL for a CA's key, and for a responder made before 0018 (a
    # key file)
    sealed_key: Mapped[bytes | None] = mapped_column(LargeBinary)

    tenant: Mapped[Tenant | None] = relationship(back_populates="authorities")


user_groups = Table(
    "user_groups",
    Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("group_id", ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
)


class Group(Base):
    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("tenant_id", "name_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # casefolded, for uniqueness; casefolding can lengthen a name ('ß' -> 'ss'), hence 400
    name_key: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[dt.datetime]

    users: Mapped[list[User]] = relationship(secondary=user_groups, back_populates="groups")


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "login_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    login: Mapped[str] = mapped_column(String(64))
    login_key: Mapped[str] = mapped_column(String(64))  # lowercased: unique ignoring case
    email: Mapped[str] = mapped_column(String(254))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(16), default="person")  # person | service
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | retired
    secure_access: Mapped[bool] = mapped_column(Boolean, default=False)
    timezone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    retired_at: Mapped[dt.datetime | None]

    tenant: Mapped[Tenant] = relationship()
    groups: Mapped[list[Group]] = relationship(secondary=user_groups, back_populates="users")


class Certificate(Base):
    __tablename__ = "certificates"
    __table_args__ = (
        UniqueConstraint("authority_id", "serial"),
        Index("ix_certificates_tenant_not_after", "tenant_id", "not_after"),
        # the lifecycle finds the certificates that expired since its last run by this
        Index("ix_certificates_not_after", "not_after"),
        # a CRL reads its kept entries from this index alone, never the rows (migration 0013)
        Index("ix_certificates_crl_entries", "authority_id", "not_after", "crl_entry",
              sqlite_where=text("crl_entry IS NOT NULL"),
              postgresql_where=text("crl_entry IS NOT NULL")),
        # revoked rows that kept no entry (none, but a CRL must look without a table scan)
        Index("ix_certificates_unkept_entries", "authority_id",
              sqlite_where=text("revoked_at IS NOT NULL AND crl_entry IS NULL"),
              postgresql_where=text("revoked_at IS NOT NULL AND crl_entry IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    authority_id: Mapped[int] = mapped_column(ForeignKey("authorities.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    serial: Mapped[str] = mapped_column(String(40))  # canonical: uppercase hex, no leading zeros
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(Text)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    key_type: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(8))  # server | csr
    p12_profile: Mapped[str | None] = mapped_column(String(16))  # chosen at issuance
    not_before: Mapped[dt.datetime]
    not_after: Mapped[dt.datetime]
    expiry_date: Mapped[dt.date] = mapped_column(Date)
    expiry_zone: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
    revocation_reason: Mapped[str | None] = mapped_column(String(32))
    # the CRL entry's DER, written when revoked: a CRL lays these end to end (ca/x509/crl.py)
    crl_entry: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)

    user: Mapped[User] = relationship()
    authority: Mapped[Authority] = relationship()
    holds: Mapped[list[Hold]] = relationship(back_populates="certificate",
                                             order_by="Hold.id")


class Hold(Base):
    """A suspension (certificateHold) and its cause: manual, subscription or permission."""

    __tablename__ = "holds"

    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"), index=True)
    cause: Mapped[str] = mapped_column(String(16))
    placed_at: Mapped[dt.datetime]
    lifted_at: Mapped[dt.datetime | None]

    certificate: Mapped[Certificate] = relationship(back_populates="holds")


class OcspSequence(Base):
    """One row: the number of the newest committed batch of ``ocsp_changes``. A transaction
    that changes a status takes it last (``UPDATE ... + 1``, so its row lock orders the
    batches): every process reads the changes past the number it has seen (ca.service.ocsp_feed)."""

    __tablename__ = "ocsp_sequence"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)


class OcspChange(Base):
    """A certificate whose OCSP answer changed (``serial`` NULL: the whole CA's, or the CA is
    new), in batch ``seq``; only the newest batches are kept."""

    __tablename__ = "ocsp_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, index=True)
    authority_id: Mapped[int] = mapped_column(Integer)
    serial: Mapped[str | None] = mapped_column(String(40))


class KeyMaterial(Base):
    """A server-generated key and its bundle password, sealed under the data-protection key."""

    __tablename__ = "key_material"

    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"), primary_key=True)
    sealed_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    sealed_password: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime]
    purged_at: Mapped[dt.datetime | None]


class Crl(Base):
    __tablename__ = "crls"
    __table_args__ = (UniqueConstraint("authority_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("authorities.id"))
    number: Mapped[int] = mapped_column(BigInteger)
    this_update: Mapped[dt.datetime]
    next_update: Mapped[dt.datetime]
    der: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime]


class ReplayedRevocation(Base):
    """A revocation a restore replayed from a gateway's CRL for a certificate the database
    does not hold (issued after the backup): its CA's CRLs list it from then on, for ever
    (its notAfter is not known), so that a restore never takes a revocation back."""

    __tablename__ = "replayed_revocations"
    __table_args__ = (UniqueConstraint("authority_id", "serial"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("authorities.id"))
    serial: Mapped[str] = mapped_column(String(40))  # canonical
    revoked_at: Mapped[dt.datetime]
    reason: Mapped[str] = mapped_column(String(32))
    crl_entry: Mapped[bytes] = mapped_column(LargeBinary)  # the entry's DER, as replayed
    created_at: Mapped[dt.datetime]


class ApiToken(Base):
    """An API token: only its SHA-256 is kept; ``prefix`` lets people tell tokens apart."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))  # operator | admin | user | gateway
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    timezone: Mapped[str | None] = mapped_column(String(64))  # an admin's preferred zone
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]

    tenant: Mapped[Tenant | None] = relationship()
    user: Mapped[User | None] = relationship()


class ConsoleSession(Base):
    """A web console session: an admin or operator token exchanged once for it at sign-in.
    Only the SHA-256 of the session's secret (the cookie) is kept; it ends on sign-out, after
    ``ca.service.sessions.IDLE`` without a request, and when its token stops working."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"), index=True)
    created_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]
    ended_at: Mapped[dt.datetime | None]
    source_ip: Mapped[str | None] = mapped_column(String(64))


class DownloadLink(Base):
    """A one-time self-download link; only the SHA-256 of its token is kept."""

    __tablename__ = "download_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    spent_at: Mapped[dt.datetime | None]
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)


class Job(Base):
    """A long bulk operation run in the background; its progress is polled."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # running | succeeded | failed
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[str | None] = mapped_column(Text)  # JSON
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]
    # renewed by the running process; lapsed while running: its worker died (ca.service.jobs)
    lease_expires_at: Mapped[dt.datetime | None]


class Lease(Base):
    """Work that one process at a time may do (``lifecycle``), whatever the replicas: taken
    by a conditional UPDATE while lapsed, renewed by its holder, lapsing if the holder dies."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(100))
    taken_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime | None]
    # the instant up to which the holder's time-driven work is done (the lifecycle: keys of
    # certificates that expired before it are purged); NULL: none done yet
    done_until: Mapped[dt.datetime | None]


class AuditEvent(Base):
    """One audited action; ``hash`` chains each event to the one before it in its chain:
    ``chain`` is the tenant's id, or 0 for the operator's chain (which also holds every event
    from before revision 0006, when one chain held all)."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_chain_id", "chain", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    source_ip: Mapped[str | None] = mapped_column(String(45))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[str] = mapped_column(Text, default="{}")
    chain: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditAnchor(Base):
    """Where a chain's kept events start once retention has removed its oldest events.

    One row per chain: the hash of the last removed event, which the first kept event must
    name as its ``prev_hash``. The ``audit.prune`` event that removed them carries the same
    values, so a forged anchor contradicts the chain.
    """

    __tablename__ = "audit_anchor"

    id: Mapped[int] = mapped_column(primary_key=True)
    chain: Mapped[int] = mapped_column(Integer, server_default=text("0"), index=True,
                                       unique=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    first_id: Mapped[int] = mapped_column(BigInteger)
    removed: Mapped[int] = mapped_column(BigInteger)  # events removed over all time
    pruned_at: Mapped[dt.datetime]


class RateBucket(Base):
    """A leaky bucket of one rate limit (``kind``) for one caller, shared by every worker and
    replica (``ca.service.limits``). ``key`` is a hash of the caller (an address, a token's
    id): no address or token is stored. ``level`` is what the bucket held at ``at`` (seconds
    since the epoch); ``admitted`` says whether the last request counted in."""

    __tablename__ = "rate_buckets"
    __table_args__ = (Index("ix_rate_buckets_kind_at", "kind", "at"),)

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    level: Mapped[float] = mapped_column(Float)
    at: Mapped[float] = mapped_column(Float)
    admitted: Mapped[bool] = mapped_column(Boolean)
