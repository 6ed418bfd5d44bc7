"""What a status change reports when it changes nothing (mutation pass: lifting a
hold that is not there could answer "lifted"; the lifecycle adds these answers up into its
report's ``reinstated``; a keyCompromise over an earlier reason could purge the purged key
material again, with a new date; the view after a change could claim a key that is not
kept)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ca import audit
from ca.clock import FixedClock
from ca.db import queries
from ca.db.models import KeyMaterial
from ca.holds import HoldCause
from ca.service import IssueRequest, Service, transitions
from ca.states import State
from tests.support.auditing import actions


@pytest.fixture
def sakura(service: Service) -> Service:
    service.hierarchy.create_tenant("sakura", display_name="さくら商事")
    for login in ("tanaka", "suzuki"):
        service.users.add("sakura", login, email=f"{login}@sakura.example.jp", allow=True)
        service.certificates.issue(IssueRequest(tenant="sakura", logins=(login,)))
    return service


@pytest.mark.parametrize("cause", list(HoldCause), ids=[c.value for c in HoldCause])
def test_lifting_a_hold_that_is_not_there_changes_nothing(sakura: Service,
                                                          cause: HoldCause) -> None:
    (view, _other) = sakura.certificates.list_certificates("sakura")
    before = actions(sakura)
    with sakura.database.transaction() as session:
        cert = queries.certificate(session, queries.tenant(session, "sakura"), view.serial)
        lifted = transitions.lift_hold(session, cert, cause, audit.CLI_ACTOR, tenant="sakura",
                                       login=view.login, now=sakura.clock.now())
    assert lifted is False
    assert actions(sakura) == before



def test_a_later_key_compromise_keeps_the_first_purge_date(sakura: Service) -> None:
    (view, _other) = sakura.certificates.list_certificates("sakura")
    first = sakura.clock.now()
    sakura.revocation.revoke("sakura", view.serial, reason="superseded")
    clock = sakura.clock
    assert isinstance(clock, FixedClock)
    clock.advance(dt.timedelta(hours=1))

    sakura.revocation.revoke("sakura", view.serial, reason="keyCompromise")

    with sakura.database.reading() as session:
        cert = queries.certificate(session, queries.tenant(session, "sakura"), view.serial)
        material = session.get(KeyMaterial, cert.id)
        assert material is not None
        assert (material.sealed_key, material.sealed_password) == (None, None)
        assert material.purged_at == first


def test_a_manual_hold_is_its_own_whatever_other_holds_came_and_went(sakura: Service) -> None:
    (view, _other) = sakura.certificates.list_certificates("sakura")
    sakura.revocation.suspend("sakura", view.serial)
    sakura.revocation.reinstate("sakura", view.serial)
    sakura.users.set_permission("sakura", (view.login,), allow=False)  # a permission hold

    assert sakura.revocation.suspend("sakura", view.serial).state is State.SUSPENDED
    sakura.users.set_permission("sakura", (view.login,), allow=True)

    assert sakura.certificates.get(view.serial).state is State.SUSPENDED  # still held by hand
    assert [a for a in actions(sakura) if a in ("cert.suspend", "cert.reinstate")] == [
        "cert.suspend", "cert.reinstate", "cert.suspend", "cert.suspend", "cert.reinstate"]
    assert sakura.revocation.reinstate("sakura", view.serial).state is State.VALID


def test_the_view_after_a_change_says_whether_the_key_is_still_kept(sakura: Service) -> None:
    (view, _other) = sakura.certificates.list_certificates("sakura")
    assert view.has_key_material is True

    assert sakura.revocation.suspend("sakura", view.serial).has_key_material is True
    assert sakura.revocation.revoke("sakura", view.serial).has_key_material is False


def test_a_certificate_issued_to_a_csr_has_no_key_to_show_after_a_change(
        sakura: Service) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "tanaka")])).sign(key, hashes.SHA256()))
    (view,) = sakura.certificates.issue(IssueRequest(
        tenant="sakura", logins=("tanaka",), csr=csr.public_bytes(serialization.Encoding.PEM)))
    assert view.has_key_material is False

    assert sakura.revocation.suspend("sakura", view.serial).has_key_material is False
    assert sakura.revocation.reinstate("sakura", view.serial).has_key_material is False
