"""The lifecycle renews CRLs a set of CAs at a time (ca.service.crls.prepare_renewals,
record_renewals): made and signed outside the write transaction, recorded only for a CA
that published nothing meanwhile, so CRL Numbers stay strictly increasing; the renewed
CRLs list what the one-by-one way lists.

The clock is the FixedClock; a publish "meanwhile" is made to happen between the two steps.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from sqlalchemy import select

from ca.clock import FixedClock
from ca.db import queries
from ca.db.models import Authority, Crl, Tenant
from ca.renewal import renew_at as crl_renew_at
from ca.service import IssueRequest, Service, crls
from tests.integration.test_crl_numbers import crl_numbers

TENANT, SHOWN = "kumamoto", "熊本支店"
PAST_HALF = dt.timedelta(days=4)  # a tenant's CRL is valid 7 days


def issued(service: Service, *logins: str) -> list[str]:
    for login in logins:
        service.users.add(TENANT, login, email=f"{login}@example.jp",
                         display_name=f"利用者 {login}", allow=True)
    return [cert.serial for cert in service.certificates.issue(IssueRequest(tenant=TENANT,
                                                                            logins=logins))]


def authority_of(service: Service, tenant: str) -> int:
    with service.database.reading() as session:
        found = session.scalar(select(Authority.id).join(Tenant).where(
            Tenant.name == tenant, Authority.kind == "issuing"))
        assert found is not None
        return found


def listed(der: bytes) -> dict[int, str]:
    """A CRL's entries: serial -> reason."""
    return {entry.serial_number: entry.extensions.get_extension_for_class(
        x509.CRLReason).value.reason.name for entry in x509.load_der_x509_crl(der)}


def newest_der(service: Service, authority_id: int) -> bytes:
    with service.database.reading() as session:
        der = session.scalar(select(Crl.der).where(Crl.authority_id == authority_id)
                             .order_by(Crl.number.desc()).limit(1))
        assert der is not None
        return der


def test_a_renewal_made_before_a_revocation_republished_its_ca_is_not_recorded(
        service: Service, clock: FixedClock) -> None:
    service.hierarchy.create_tenant(TENANT, display_name=SHOWN, ca_key_type="ec-p256")
    (serial,) = issued(service, "hanako")
    service.lifecycle.run()
    clock.advance(PAST_HALF)
    with service.database.reading() as session:
        due = queries.crls_due(session, now=clock.now())
        made = crls.prepare_renewals(session, due, now=clock.now(),
                                     signer_of=service.keys.signer_by_id)
    mine, default = authority_of(service, TENANT), authority_of(service, "default")
    assert {renewal.authority_id for renewal in made} == {mine, default}  # not the root's
    before = crl_numbers(service, TENANT)
    service.revocation.revoke(TENANT, serial, reason="keyCompromise")  # republishes, same instant
    with service.database.transaction() as session:
        recorded = crls.record_renewals(session, made, renew_at=crl_renew_at)
    assert recorded == {default}
    numbers = crl_numbers(service, TENANT)
    assert len(numbers) == len(before) + 1 and numbers == sorted(set(numbers))
    assert listed(newest_der(service, mine)) == {int(serial, 16): "key_compromise"}
    assert len(crl_numbers(service, "default")) == 2


def test_a_renewed_crl_lists_what_the_last_one_did_under_a_larger_number(
        service: Service, clock: FixedClock) -> None:
    service.hierarchy.create_tenant(TENANT, display_name=SHOWN, ca_key_type="ec-p256")
    revoked, held, _good = issued(service, "ichiro", "jiro", "saburo")
    service.revocation.revoke(TENANT, revoked, reason="keyCompromise")
    service.revocation.suspend(TENANT, held)
    service.lifecycle.run()  # the root's first CRL
    mine = authority_of(service, TENANT)
    last = newest_der(service, mine)
    clock.advance(PAST_HALF)
    assert service.lifecycle.run().crls == 2  # this tenant's and the default's
    renewed = newest_der(service, mine)
    assert listed(renewed) == listed(last) == {int(revoked, 16): "key_compromise",
                                               int(held, 16): "certificate_hold"}
    numbers = crl_numbers(service, TENANT)
    assert numbers == sorted(set(numbers))
    assert x509.load_der_x509_crl(renewed).last_update_utc > \
        x509.load_der_x509_crl(last).last_update_utc
    with service.database.reading() as session:
        authority = session.get(Authority, mine)
        assert authority is not None
        newest = session.scalar(select(Crl).where(Crl.authority_id == mine)
                                .order_by(Crl.number.desc()).limit(1))
        assert newest is not None and authority.crl_renew_at == crl_renew_at(newest)
