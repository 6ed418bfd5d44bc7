"""The CA hierarchy: the root, and an issuing CA per tenant."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import secrets
from collections.abc import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import NameOID
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from ca import audit, expiry, serials, states, validate
from ca.audit import Actor, Event
from ca.clock import Clock
from ca.db import queries
from ca.db.models import Authority, Certificate, Tenant
from ca.errors import Conflict, InvalidInput, NotFound
from ca.profiles import CA_KEY_TYPES, ISSUING, ROOT, CAProfile, Urls
from ca.sealing import create_data_protection_key, remove_data_protection_key
from ca.service import crls
from ca.service.plumbing import Database, Keys, token_of
from ca.service.requests import InitRequest
from ca.service.views import (
    DEFAULT_TENANT,
    CAView,
    GenerationView,
    TenantSettings,
    ca_view,
    generation_view,
    link_view,
)
from ca.settings import Settings
from ca.signer import Signer
from ca.x509.certificate import (
    MAX_COMMON_NAME,
    CARequest,
    build_issuing,
    build_link,
    build_root,
    common_name,
    fit,
)
from ca.x509.names import openssl_rfc2253
from ca.x509.pkcs12 import Profile

DATA_PROTECTION_MARK = "<data-protection>"


class Hierarchy:
    """The root and the tenants' issuing CAs."""

    def __init__(self, *, settings: Settings, database: Database, keys: Keys, clock: Clock,
                 urls: Urls) -> None:
        self.settings = settings
        self.database = database
        self.keys = keys
        self.clock = clock
        self.urls = urls

    def initialize(self, request: InitRequest, *, actor: Actor = audit.CLI_ACTOR) -> CAView:
        """Create the root CA and the ``default`` tenant with its issuing CA."""
        now = self.clock.now()
        with self.database.reading() as session:
            if queries.root(session) is not None:
                raise Conflict("Tegata is already initialised: the root CA exists")
        profile = CAProfile(path_length=ROOT.path_length, validity_years=request.validity_years)
        key_id = _new_key_id("root")
        token = request.pkcs11_token
        if token is not None:
            self._require_token_settings(token)
        # the data-protection key (and the OCSP responders' keys) are files even when the
        # CA keys are in a token
        self.keys.keystore.ensure_directory()
        with self._writing_keys() as written:
            signer = self.keys.new_ca_key(key_id, request.key_type, token=token)
            written.append(key_id)
            root_req = CARequest(common_name=request.root_name,
                                 organization=request.organization,
                                 public_key=signer.public_key(), profile=profile, now=now)
            if create_data_protection_key(self.settings.effective_key_dir,
                                          self.settings.passphrase()):
                written.append(DATA_PROTECTION_MARK)
            root_cert = build_root(root_req, signer, serial=x509.random_serial_number())
            with self.database.transaction() as session:
                root = _authority_row(root_cert, kind="root", key_id=key_id, tenant=None,
                                      issuer_id=None, now=now,
                                      crl_url=crls.new_crl_url(self.urls, None), token=token)
                session.add(root)
                session.flush()
                root.issuer_id = root.id
                tenant = self._add_tenant(session, DEFAULT_TENANT, "Default", root,
                                          root_cert, signer, request.key_type, written,
                                          now=now, token=token)
                audit.record(session, actor, Event(action="ca.init", target="root",
                                                   details={"subject": root.subject}), now=now)
                audit.record(session, actor, Event(action="tenant.create", target=tenant.name,
                                                   tenant_id=tenant.id), now=now)
        return ca_view(root, None)

    def create_tenant(self, name: str, *, display_name: str | None = None,
                      ca_key_type: str = "ec-p384", p12_profile: str | None = None,
                      pkcs11_token: str | None = None,
                      actor: Actor = audit.CLI_ACTOR) -> CAView:
        """A new tenant with its own issuing CA, signed by the root, whose key is of
        ``ca_key_type`` (the tenant's clients get keys of ``Tenant.key_type``), and whose
        default PKCS#12 profile is ``p12_profile`` (None: the model's default, compat). The
        CA's key is made in the PKCS#11 token labelled ``pkcs11_token``, or as a key file."""
        validate.tenant_name(name)
        if pkcs11_token is not None:
            self._require_token_settings(pkcs11_token)
        profile = None if p12_profile is None else Profile.parse(p12_profile)
        shown = validate.display_text(display_name or name, field="display_name", limit=64)
        if ca_key_type not in CA_KEY_TYPES:
            raise InvalidInput(f"CA key type {ca_key_type!r} is not one of "
                               f"{', '.join(CA_KEY_TYPES)}", field="key_type")
        now = self.clock.now()
        with self._writing_keys() as written, self.database.transaction() as session:
            root = queries.require_root(session)
            if session.scalar(select(Tenant.id).where(Tenant.name == name)) is not None:
                raise Conflict(f"tenant {name!r} already exists", field="name")
            root_cert = x509.load_der_x509_certificate(root.der)
            tenant = self._add_tenant(session, name, shown, root, root_cert,
                                      self.keys.signer(root), ca_key_type, written, now=now,
                                      token=pkcs11_token)
            issuing = tenant.authorities[0]
            if profile is not None:
                tenant.p12_profile = profile.value
            audit.record(session, actor, Event(
                action="tenant.create", target=name, tenant_id=tenant.id,
                details={} if profile is None else {"p12_profile": profile.value}), now=now)
        return ca_view(issuing, name)

    def _add_tenant(self, session: Session, name: str, display_name: str, root: Authority,
                    root_cert: x509.Certificate, root_signer: Signer, key_type: str,
                    written: list[str], *, now: dt.datetime, token: str | None) -> Tenant:
        tenant = Tenant(name=name, display_name=display_name, created_at=now,
                        timezone=self.settings.timezone)
        session.add(tenant)
        key_id = _new_key_id("issuing")
        signer = self.keys.new_ca_key(key_id, key_type, token=token)
        written.append(key_id)
        request = issuing_request(name, display_name, root_cert, signer.public_key(), now=now)
        # the CDP is the root's CRL URL as stored; the new CA's own is fixed here, for good
        cert = build_issuing(request, root_cert, root_signer,
                             serial=x509.random_serial_number(), urls=self.urls,
                             crl_url=crls.crl_url(session, root, self.urls),
                             root_generation=root.generation)
        # the tenant's row first: from here on no other transaction can take this tenant's
        # name (its unique index), and on SQLite this one holds the write lock
        session.flush()
        _require_unique_subject(session, cert.subject, tenant)
        issuing = _authority_row(cert, kind="issuing", key_id=key_id, tenant=tenant,
                                 issuer_id=root.id, now=now,
                                 crl_url=crls.new_crl_url(self.urls, name), token=token)
        session.add(issuing)
        session.flush()
        return tenant

    def _require_token_settings(self, label: str) -> None:
        """A CA key asked for in a token: a valid label, a module to find it in, and a
        token of that label there (a mistyped label is the caller's input, told before
        anything is made)."""
        validate.token_label(label)
        if self.settings.pkcs11_module is None or self.settings.pkcs11_pin_file is None:
            raise InvalidInput(f"a CA key in PKCS#11 token {label!r} was asked for, and no "
                               "PKCS#11 module and PIN file are configured",
                               field="pkcs11_token")
        if not self.keys.token(label).present():
            raise InvalidInput(f"PKCS#11 module {self.settings.pkcs11_module} has no token "
                               f"labelled {label!r}", field="pkcs11_token")

    @contextlib.contextmanager
    def _writing_keys(self) -> Iterator[list[str]]:
        """Keys made inside (files or token objects) are removed again if the block fails:
        nothing half-made."""
        written: list[str] = []
        try:
            yield written
        except BaseException:
            for key_id in written:
                if key_id == DATA_PROTECTION_MARK:
                    remove_data_protection_key(self.settings.effective_key_dir)
                    continue
                self.keys.remove(key_id)
            raise

    def gateway_issuer_dn(self, tenant: str) -> str:
        """The tenant's issuing CA as nginx prints ``$ssl_client_i_dn``, for a gateway to pin.

        Refused when a CA of another tenant has the same name (two CAs made before the
        tenant's name was put into the subject): such a pin would let the other tenant's
        certificates through.
        """
        with self.database.reading() as session:
            owner = queries.tenant(session, tenant)
            issuing = queries.issuing(session, owner)
            subject = x509.load_der_x509_certificate(issuing.der).subject
            others = _sharing_subject(session, subject, owner)
        if others:
            raise Conflict(
                f"tenant {tenant!r}: its issuing CA has the same name as the CA of "
                f"{', '.join(others)}, so a gateway cannot tell their certificates apart by "
                "issuer; use the auth variant (Tegata checks the serial in this tenant)",
                field="tenant")
        return openssl_rfc2253(subject)

    def list_tenants(self) -> list[str]:
        with self.database.reading() as session:
            return list(session.scalars(select(Tenant.name).order_by(Tenant.name)))

    def tenant_settings(self, tenant: str) -> TenantSettings:
        """What ``tenant set`` (and the API's ``PUT .../settings/...``) change, as they are."""
        with self.database.reading() as session:
            owner = queries.tenant(session, tenant)
            return TenantSettings(tenant=owner.name, display_name=owner.display_name,
                                  ocsp_validity_seconds=owner.ocsp_validity_seconds,
                                  upn_suffix=owner.upn_suffix, user_download=owner.user_download,
                                  p12_profile=owner.p12_profile,
                                  default_validity=owner.default_validity,
                                  timezone=owner.timezone)

    def set_default_validity(self, tenant: str, validity: str, *,
                             actor: Actor = audit.CLI_ACTOR) -> str:
        """How long a certificate issued without a chosen expiry lasts (``P1Y``, ``P90D``,
        ``P100Y``): the default expiry is today plus this in the issuing zone. A period that
        is not one, or that would run past year 9999 from today, is refused and nothing
        changes. One audit event per change."""
        period = expiry.Period.parse(validity)
        now = self.clock.now()
        period.after(now.date())  # InvalidInput beyond year 9999
        with self.database.transaction() as session:
            owner = queries.tenant(session, tenant)
            previous = owner.default_validity
            if previous != period.text:
                owner.default_validity = period.text
                audit.record(session, actor, Event(
                    action="tenant.update", target=owner.name, tenant_id=owner.id,
                    details={"default_validity": period.text,
                             "previous_default_validity": previous}), now=now)
            return period.text

    def set_timezone(self, tenant: str, zone: str, *, actor: Actor = audit.CLI_ACTOR) -> str:
        """The tenant's zone (an IANA name such as Asia/Tokyo): where its dates are whole
        days (expiry dates, audit filters) unless a viewer chose another. An unknown zone is
        refused and nothing changes. One audit event per change."""
        from ca import expiry

        name = zone.strip()
        expiry.zone(name)  # InvalidInput: not a zone
        with self.database.transaction() as session:
            owner = queries.tenant(session, tenant)
            previous = owner.timezone
            if previous != name:
                owner.timezone = name
                audit.record(session, actor, Event(
                    action="tenant.update", target=owner.name, tenant_id=owner.id,
                    details={"timezone": name, "previous_timezone": previous}),
                    now=self.clock.now())
            return name

    def ca_certificates(self, tenant: str | None = None) -> list[CAView]:
        """The root, then the tenant's issuing CAs when a tenant is named: the current one,
        then each older generation not retired (their certificates are still accepted, so
        a gateway's bundle carries them too)."""
        with self.database.reading() as session:
            if tenant is None:
                return [ca_view(queries.require_root(session), None)]
            queries.require_root(session)
            issuing = queries.generations(session, queries.tenant(session, tenant))
            # the roots that certified them (two after a root rollover, until the tenant's
            # issuing CAs under the old one are retired), the current one's first
            roots: dict[int, Authority] = {}
            for row in issuing:
                assert row.issuer_id is not None
                if row.issuer_id not in roots:
                    found = session.get(Authority, row.issuer_id)
                    assert found is not None
                    roots[row.issuer_id] = found
            return [*(ca_view(row, None) for row in roots.values()),
                    *(ca_view(row, tenant) for row in issuing)]

    def rollover(self, tenant: str, *, key_type: str | None = None,
                 actor: Actor = audit.CLI_ACTOR) -> CAView:
        """The tenant's next issuing CA: a new key (of ``key_type``, else of the current
        CA's type) under the same name, signed by the root, with its own CRL URL. It issues
        from now on; the older generations stay in service (CRLs, OCSP, the gateway's
        bundle) for the certificates they issued.

        The name is kept byte for byte: gateways pin the issuer's name
        (``$ssl_client_i_dn``) and chains are built by name then told apart by key
        identifier (RFC 5280, 4.2.1.1: the AKI of each certificate names its CA's key).
        """
        with self.database.reading() as session:
            owner = queries.tenant(session, tenant)
            current = queries.issuing(session, owner)
            chosen = key_type or key_type_of(x509.load_der_x509_certificate(current.der))
            token = token_of(current)  # the next key goes where the current one is
        if chosen not in CA_KEY_TYPES:
            raise InvalidInput(f"CA key type {chosen!r} is not one of "
                               f"{', '.join(CA_KEY_TYPES)}", field="key_type")
        now = self.clock.now()
        key_id = _new_key_id("issuing")
        with self._writing_keys() as written:
            signer = self.keys.new_ca_key(key_id, chosen, token=token)  # before any lock
            written.append(key_id)
            with self.database.transaction() as session:
                owner = queries.tenant(session, tenant)
                queries.lock_tenant(session, owner)  # one rollover of a tenant at a time
                current = queries.issuing(session, owner)
                root = queries.require_root(session)
                root_cert = x509.load_der_x509_certificate(root.der)
                previous = x509.load_der_x509_certificate(current.der)
                request = CARequest(common_name=current.subject, organization=None,
                                    public_key=signer.public_key(), profile=ISSUING, now=now,
                                    name=previous.subject)
                generation = current.generation + 1
                cert = build_issuing(request, root_cert, self.keys.signer(root),
                                     serial=x509.random_serial_number(), urls=self.urls,
                                     crl_url=crls.crl_url(session, root, self.urls),
                                     root_generation=root.generation)
                row = _authority_row(cert, kind="issuing", key_id=key_id, tenant=owner,
                                     issuer_id=root.id, now=now,
                                     crl_url=crls.new_crl_url(self.urls, owner.name, generation),
                                     token=token)
                row.generation = generation
                session.add(row)
                session.flush()
                audit.record(session, actor, Event(
                    action="ca.rollover", target=owner.name, tenant_id=owner.id,
                    details={"generation": generation, "serial": row.serial,
                             "previous_serial": current.serial, "key_type": chosen}), now=now)
        return ca_view(row, tenant)

    def rollover_root(self, *, key_type: str | None = None,
                      actor: Actor = audit.CLI_ACTOR) -> CAView:
        """The next root: a new key (of ``key_type``, else of the current root's type) and
        the root's name with " G<n>" (a trust anchor is installed and shown by name: two
        roots of one name would make each link certificate self-issued, which path
        builders treat apart, RFC 4158 2.4). Two link certificates are kept with it: its
        key certified by the previous root, and the previous root's key certified by it,
        so a gateway that trusts either root accepts the certificates under the other.

        The tenants' issuing CAs keep the root that certified them; each tenant's next
        ``rollover`` makes an issuing CA under the new root. The old root stays in service
        (its CRL, the bundles) while issuing CAs it certified are."""
        with self.database.reading() as session:
            current_root = queries.require_root(session)
            chosen = key_type or key_type_of(x509.load_der_x509_certificate(current_root.der))
            token = token_of(current_root)  # the next key goes where the current one is
        if chosen not in CA_KEY_TYPES:
            raise InvalidInput(f"CA key type {chosen!r} is not one of "
                               f"{', '.join(CA_KEY_TYPES)}", field="key_type")
        now = self.clock.now()
        key_id = _new_key_id("root")
        with self._writing_keys() as written:
            signer = self.keys.new_ca_key(key_id, chosen, token=token)  # before any lock
            written.append(key_id)
            with self.database.transaction() as session:
                old = queries.require_root(session)
                # one root rollover at a time: the old root's row is locked
                session.execute(update(Authority).where(Authority.id == old.id)
                                .values(key_id=Authority.key_id))
                session.refresh(old)
                if queries.root(session) is not old:
                    raise Conflict("another root rollover happened meanwhile")
                old_cert = x509.load_der_x509_certificate(old.der)
                generation = old.generation + 1
                name = generation_name(old_cert.subject, generation)
                new_cert = build_root(CARequest(
                    common_name=old.subject, organization=None, public_key=signer.public_key(),
                    profile=ROOT, now=now, name=name), signer,
                    serial=x509.random_serial_number())
                crl_url = crls.new_crl_url(self.urls, None, generation)
                row = _authority_row(new_cert, kind="root", key_id=key_id, tenant=None,
                                     issuer_id=None, now=now, crl_url=crl_url, token=token)
                row.generation = generation
                row.link_from_previous = build_link(
                    new_cert, old_cert, self.keys.signer(old),
                    serial=x509.random_serial_number(), now=now,
                    crl_url=crls.crl_url(session, old, self.urls)).public_bytes(
                        serialization.Encoding.DER)
                row.link_to_previous = build_link(
                    old_cert, new_cert, signer, serial=x509.random_serial_number(),
                    now=now, crl_url=crl_url).public_bytes(serialization.Encoding.DER)
                session.add(row)
                session.flush()
                row.issuer_id = row.id
                audit.record(session, actor, Event(
                    action="ca.root_rollover", target="root",
                    details={"generation": generation, "subject": row.subject,
                             "serial": row.serial, "previous_serial": old.serial,
                             "key_type": chosen}), now=now)
        return ca_view(row, None)

    def ca_certificate(self, tenant: str | None, generation: int = 1) -> CAView:
        """One CA certificate: the root of that generation (``tenant`` None) or the
        tenant's issuing CA of that generation, what its caIssuers URL names."""
        with self.database.reading() as session:
            if tenant is None:
                return ca_view(queries.root_of_generation(session, generation), None)
            owner = queries.tenant(session, tenant)
            return ca_view(queries.generation(session, owner, generation), tenant)

    def links(self) -> list[CAView]:
        """The link certificates of every later root in service, each pair in the order
        (its key certified by the previous root, the previous root's key certified by
        it), oldest rollover first."""
        with self.database.reading() as session:
            rows = session.scalars(select(Authority).where(
                Authority.kind == "root", Authority.retired_at.is_(None),
                Authority.link_from_previous.is_not(None)).order_by(Authority.generation))
            found = []
            for row in rows:
                for der in (row.link_from_previous, row.link_to_previous):
                    assert der is not None
                    found.append(link_view(x509.load_der_x509_certificate(der)))
            return found

    def generations(self) -> list[GenerationView]:
        """Every CA, root and issuing, of every generation (retired ones too): the root(s)
        first, then each tenant's by name and generation, each with its live certificates."""
        now = self.clock.now()
        with self.database.reading() as session:
            live = dict(session.execute(
                select(Certificate.authority_id, func.count()).where(
                    states.live_filter(now=now)).group_by(Certificate.authority_id)).all())
            rows = session.execute(
                select(Authority, Tenant.name).outerjoin(Tenant, Authority.tenant)
                .where(Authority.kind.in_(("root", "issuing")))
                .order_by(Authority.tenant_id.is_not(None), Tenant.name,
                          Authority.generation, Authority.id)).all()
            current = {row.id for row in _current_cas(session)}
            return [generation_view(row, name, current=row.id in current,
                                    live=live.get(row.id, 0)) for row, name in rows]


def generation_name(name: x509.Name, generation: int) -> x509.Name:
    """``name`` with " G<generation>" at the end of its common name (any earlier " G<n>"
    replaced): the name of a later root."""
    attrs = []
    for attr in name:
        if attr.oid == NameOID.COMMON_NAME:
            base = re.sub(r" G[0-9]+$", "", str(attr.value))
            suffix = f" G{generation}"
            attr = x509.NameAttribute(NameOID.COMMON_NAME,
                                      fit(base, MAX_COMMON_NAME - len(suffix)) + suffix)
        attrs.append(attr)
    return x509.Name(attrs)


def key_type_of(cert: x509.Certificate) -> str:
    """The CA key type (``CA_KEY_TYPES``) of a CA certificate's key."""
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp384r1": "ec-p384", "secp256r1": "ec-p256"}.get(key.curve.name,
                                                                    key.curve.name)
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    return type(key).__name__


def _current_cas(session: Session) -> list[Authority]:
    """The root in service and each tenant's issuing CA that issues now."""
    root = queries.root(session)
    tenants = session.scalars(select(Tenant)).all()
    found = [] if root is None else [root]
    for owner in tenants:
        with contextlib.suppress(NotFound):
            found.append(queries.issuing(session, owner))
    return found


def issuing_request(tenant: str, display_name: str, root_cert: x509.Certificate,
                    public_key: CertificateIssuerPublicKeyTypes, *,
                    now: dt.datetime) -> CARequest:
    """The one rule for an issuing CA's subject, for this and every later CA of the tenant:
    O = the root's organization, OU = the tenant's name, CN = its display name (cut to fit)
    and " Issuing CA".

    Gateways tell tenants apart by the issuer's name (nginx pins ``$ssl_client_i_dn``), so
    it must be unique across the deployment. Display names are not unique, and are cut to
    53 characters: the tenant's name is (the database's unique key; 1-63 of a-z 0-9 -, so
    it fits ub-organizational-unit-name and prints the same in every form). A tenant's later
    CA has the same subject, so a gateway's pin survives the rollover; another tenant's
    never can.
    """
    orgs = root_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return CARequest(common_name=common_name(display_name, " Issuing CA"),
                     organization=str(orgs[0].value) if orgs else None,
                     organizational_unit=tenant, public_key=public_key, profile=ISSUING,
                     now=now)


def _sharing_subject(session: Session, subject: x509.Name, owner: Tenant) -> list[str]:
    """The other tenants (or "the root") whose CA has ``subject``, sorted.

    Compared as the stored RFC 4514 text: two names that nginx prints alike hold the same
    attributes and values (its escaping loses nothing), so their stored text is alike too.
    """
    rows = session.execute(
        select(Authority.tenant_id, Tenant.name).outerjoin(Tenant, Authority.tenant)
        .where(Authority.subject == subject.rfc4514_string(),
               or_(Authority.tenant_id.is_(None), Authority.tenant_id != owner.id)))
    return sorted({f"tenant {name!r}" if tenant_id is not None else "the root"
                   for tenant_id, name in rows})


def _require_unique_subject(session: Session, subject: x509.Name, owner: Tenant) -> None:
    """Refuse a CA whose name a CA of another tenant (or the root) already has.

    With the tenant's name in the subject this cannot happen between CAs made by this rule
    (tenant names are unique); it guards against the CAs made before it (which had no OU,
    and keep their names) and against any later change of the rule.
    """
    others = _sharing_subject(session, subject, owner)
    if others:
        raise Conflict(f"an issuing CA named {subject.rfc4514_string()[:120]!r} exists "
                       f"already ({', '.join(others)}): CA names must be unique",
                       field="name")


def _new_key_id(kind: str) -> str:
    return f"{kind}-{secrets.token_hex(8)}"


def _authority_row(cert: x509.Certificate, *, kind: str, key_id: str, tenant: Tenant | None,
                   issuer_id: int | None, now: dt.datetime, crl_url: str,
                   token: str | None = None) -> Authority:
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    return Authority(
        tenant=tenant, issuer_id=issuer_id, kind=kind, key_id=key_id,
        subject=cert.subject.rfc4514_string(), serial=serials.to_text(cert.serial_number),
        ski=ski.hex().upper(), der=cert.public_bytes(serialization.Encoding.DER),
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        created_at=now, crl_url=crl_url, key_store="file" if token is None else "pkcs11",
        key_token=token)


