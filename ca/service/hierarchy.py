"""The CA hierarchy: the root, and an issuing CA per tenant."""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from collections.abc import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca import audit, serials, validate
from ca.audit import Actor, Event
from ca.db import queries
from ca.db.models import Authority, Tenant
from ca.errors import Conflict, InvalidInput
from ca.profiles import CA_KEY_TYPES, ISSUING, ROOT, CAProfile
from ca.sealing import create_data_protection_key, remove_data_protection_key
from ca.service.core import ServiceCore
from ca.service.views import DEFAULT_TENANT, CAView, InitRequest, ca_view
from ca.signer import Signer, generate_ca_key
from ca.x509.certificate import CARequest, build_issuing, build_root, common_name

DATA_PROTECTION_MARK = "<data-protection>"


class HierarchyUseCases(ServiceCore):
    def initialize(self, request: InitRequest, *, actor: Actor = audit.CLI_ACTOR) -> CAView:
        """Create the root CA and the ``default`` tenant with its issuing CA."""
        now = self.now()
        with self.reading() as session:
            if queries.root(session) is not None:
                raise Conflict("Tegata is already initialised: the root CA exists")
        root_key = generate_ca_key(request.key_type)
        profile = CAProfile(path_length=ROOT.path_length, validity_years=request.validity_years)
        root_req = CARequest(common_name=request.root_name, organization=request.organization,
                             public_key=root_key.public_key(), profile=profile, now=now)
        key_id = _new_key_id("root")
        with self._writing_keys() as written:
            signer = self.keystore.create(key_id, root_key)
            written.append(key_id)
            if create_data_protection_key(self.settings.effective_key_dir,
                                          self.settings.passphrase()):
                written.append(DATA_PROTECTION_MARK)
            root_cert = build_root(root_req, signer, serial=x509.random_serial_number())
            with self.transaction() as session:
                root = _authority_row(root_cert, kind="root", key_id=key_id, tenant=None,
                                      issuer_id=None, now=now)
                session.add(root)
                session.flush()
                root.issuer_id = root.id
                tenant = self._add_tenant(session, DEFAULT_TENANT, "Default", root,
                                          root_cert, signer, request.key_type, written,
                                          now=now)
                audit.record(session, actor, Event(action="ca.init", target="root",
                                                   details={"subject": root.subject}), now=now)
                audit.record(session, actor, Event(action="tenant.create", target=tenant.name,
                                                   tenant_id=tenant.id), now=now)
            self._signers[key_id] = signer
        return ca_view(root, None)

    def create_tenant(self, name: str, *, display_name: str | None = None,
                      key_type: str = "ec-p384", actor: Actor = audit.CLI_ACTOR) -> CAView:
        """A new tenant with its own issuing CA, signed by the root."""
        validate.tenant_name(name)
        shown = validate.display_text(display_name or name, field="display_name", limit=64)
        if key_type not in CA_KEY_TYPES:
            raise InvalidInput(f"CA key type {key_type!r} is not one of "
                               f"{', '.join(CA_KEY_TYPES)}", field="key_type")
        now = self.now()
        with self._writing_keys() as written, self.transaction() as session:
            root = queries.require_root(session)
            if session.scalar(select(Tenant.id).where(Tenant.name == name)) is not None:
                raise Conflict(f"tenant {name!r} already exists", field="name")
            root_cert = x509.load_der_x509_certificate(root.der)
            tenant = self._add_tenant(session, name, shown, root, root_cert,
                                      self.signer(root), key_type, written, now=now)
            issuing = tenant.authorities[0]
            audit.record(session, actor, Event(action="tenant.create", target=name,
                                               tenant_id=tenant.id), now=now)
        return ca_view(issuing, name)

    def _add_tenant(self, session: Session, name: str, display_name: str, root: Authority,
                    root_cert: x509.Certificate, root_signer: Signer, key_type: str,
                    written: list[str], *, now: dt.datetime) -> Tenant:
        tenant = Tenant(name=name, display_name=display_name, created_at=now,
                        timezone=self.settings.timezone)
        session.add(tenant)
        key = generate_ca_key(key_type)
        key_id = _new_key_id("issuing")
        signer = self.keystore.create(key_id, key)
        written.append(key_id)
        orgs = root_cert.subject.get_attributes_for_oid(x509.oid.NameOID.ORGANIZATION_NAME)
        request = CARequest(common_name=common_name(display_name, " Issuing CA"),
                            organization=str(orgs[0].value) if orgs else None,
                            public_key=key.public_key(), profile=ISSUING, now=now)
        cert = build_issuing(request, root_cert, root_signer,
                             serial=x509.random_serial_number(), urls=self.urls)
        session.flush()
        issuing = _authority_row(cert, kind="issuing", key_id=key_id, tenant=tenant,
                                 issuer_id=root.id, now=now)
        session.add(issuing)
        session.flush()
        self._signers[key_id] = signer
        return tenant

    @contextlib.contextmanager
    def _writing_keys(self) -> Iterator[list[str]]:
        """Key files written inside are removed again if the block fails: nothing half-made."""
        written: list[str] = []
        try:
            yield written
        except BaseException:
            for key_id in written:
                if key_id == DATA_PROTECTION_MARK:
                    remove_data_protection_key(self.settings.effective_key_dir)
                    continue
                self.keystore.remove(key_id)
                self._signers.pop(key_id, None)
            raise

    def list_tenants(self) -> list[str]:
        with self.reading() as session:
            return list(session.scalars(select(Tenant.name).order_by(Tenant.name)))

    def ca_certificates(self, tenant: str | None = None) -> list[CAView]:
        """The root, then the tenant's issuing CA when a tenant is named."""
        with self.reading() as session:
            root = queries.require_root(session)
            views = [ca_view(root, None)]
            if tenant is not None:
                owner = queries.tenant(session, tenant)
                views.append(ca_view(queries.issuing(session, owner), tenant))
            return views


def _new_key_id(kind: str) -> str:
    return f"{kind}-{secrets.token_hex(8)}"


def _authority_row(cert: x509.Certificate, *, kind: str, key_id: str, tenant: Tenant | None,
                   issuer_id: int | None, now: dt.datetime) -> Authority:
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    return Authority(
        tenant=tenant, issuer_id=issuer_id, kind=kind, key_id=key_id,
        subject=cert.subject.rfc4514_string(), serial=serials.to_text(cert.serial_number),
        ski=ski.hex().upper(), der=cert.public_bytes(serialization.Encoding.DER),
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        created_at=now)


