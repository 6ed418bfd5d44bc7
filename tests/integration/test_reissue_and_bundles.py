"""Reissue, CSR issuance, bundles and listing through the service, on a real database."""

from __future__ import annotations

import io
import zipfile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from ca import audit
from ca.db.models import AuditEvent, KeyMaterial
from ca.errors import InvalidInput, NotFound, NotPermitted
from ca.service import Service
from ca.states import State
from tests.support.issuing import issue


@pytest.fixture
def users(service: Service) -> Service:
    for login in ("alice", "bob"):
        service.users.add("default", login, email=f"{login}@example.com", allow=True)
    service.users.add("default", "carol", email="carol@example.com")
    return service


def test_several_users_are_issued_together(users: Service) -> None:
    views = issue(users, "alice", "bob")
    assert [v.login for v in views] == ["alice", "bob"]
    assert len({v.serial for v in views}) == 2


def test_one_refused_user_means_nobody_is_issued(users: Service) -> None:
    with pytest.raises(NotPermitted, match="carol: the user has no secure-access permission"):
        issue(users, "alice", "carol")
    assert users.certificates.list_certificates("default") == []


def test_reissue_keep_leaves_the_old_certificate_valid(users: Service) -> None:
    first = issue(users, "alice")[0]
    issue(users, "alice", reissue="keep")
    assert users.certificates.get(first.serial).state is State.VALID
    assert len(users.certificates.list_certificates("default", login="alice", state="valid")) == 2


def test_reissue_revoke_supersedes_and_purges_the_old_certificate(users: Service) -> None:
    first = issue(users, "alice")[0]
    second = issue(users, "alice", reissue="revoke")[0]
    old = users.certificates.get(first.serial)
    assert old.state is State.REVOKED and old.revocation_reason == "superseded"
    assert old.revoked_at == users.clock.now() and not old.has_key_material
    assert users.certificates.get(second.serial).state is State.VALID
    with users.database.transaction() as session:
        purged = session.scalars(select(KeyMaterial).where(
            KeyMaterial.sealed_key.is_(None))).all()
        assert len(purged) == 1 and purged[0].sealed_password is None


def test_reissue_revoke_is_one_transaction_with_the_new_issuance(
        users: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    first = issue(users, "alice")[0]
    original = audit.record_many

    def fail_on_issue(session, actor, events, *, now):  # type: ignore[no-untyped-def]
        events = list(events)
        if any(event.action == "cert.issue" for event in events):
            raise RuntimeError("crash between revoking the old and recording the new")
        return original(session, actor, events, now=now)

    monkeypatch.setattr(audit, "record_many", fail_on_issue)
    with pytest.raises(RuntimeError):
        issue(users, "alice", reissue="revoke")
    monkeypatch.undo()
    # the old certificate is still valid: never a moment with neither old nor new
    assert users.certificates.get(first.serial).state is State.VALID
    assert len(users.certificates.list_certificates("default")) == 1


def make_csr(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root"),
                                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil")]))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.SubjectAlternativeName([x509.DNSName("bank.example")]),
                              critical=False)
               .sign(key, hashes.SHA256()))
    return request.public_bytes(serialization.Encoding.PEM)


def test_csr_issuance_takes_only_the_public_key(users: Service) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    view = issue(users, "alice", csr=make_csr(key))[0]
    cert = x509.load_der_x509_certificate(view.der)
    assert cert.public_key() == key.public_key()
    assert cert.subject.rfc4514_string() == "CN=alice,O=Default"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == []
    assert (view.source, view.key_type, view.has_key_material) == ("csr", "ec-p384", False)
    with pytest.raises(NotPermitted, match="issued from a CSR: its key never left the device"):
        users.certificates.bundle(view.serial, tenant="default")


def test_a_csr_is_for_exactly_one_user(users: Service) -> None:
    with pytest.raises(InvalidInput, match="exactly one user"):
        issue(users, "alice", "bob", csr=make_csr(ec.generate_private_key(ec.SECP256R1())))


@pytest.mark.parametrize("key_type", ["rsa-2048", "ec-p256"])
def test_key_type_can_be_chosen_per_request(users: Service, key_type: str) -> None:
    view = issue(users, "alice", key_type=key_type)[0]
    public = x509.load_der_x509_certificate(view.der).public_key()
    if key_type == "rsa-2048":
        assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey)
    assert view.key_type == key_type


def open_bundle(content: bytes, login: str) -> tuple[crypto_pkcs12.PKCS12KeyAndCertificates, str]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.namelist() == [f"{login}.p12", f"{login}-password.txt"]
        password = archive.read(f"{login}-password.txt").decode().strip()
        loaded = crypto_pkcs12.load_pkcs12(archive.read(f"{login}.p12"), password.encode())
    return loaded, password


def test_the_bundle_holds_key_certificate_chain_and_a_stable_password(users: Service) -> None:
    view = issue(users, "alice")[0]
    first = users.certificates.bundle(view.serial, tenant="default")
    assert first.filename == "alice.zip"
    loaded, password = open_bundle(first.content, "alice")
    assert loaded.cert is not None
    assert loaded.cert.certificate == x509.load_der_x509_certificate(view.der)
    assert loaded.key is not None
    assert loaded.key.public_key() == loaded.cert.certificate.public_key()
    chain = [c.certificate.subject.rfc4514_string() for c in loaded.additional_certs]
    assert chain == ["CN=Default Issuing CA,OU=default,O=Tegata", "CN=Tegata Root CA,O=Tegata"]
    _, again = open_bundle(users.certificates.bundle(view.serial, tenant="default",
                                        profile="modern").content, "alice")
    assert again == password  # the user's password does not change between downloads


def test_every_download_of_key_material_is_audited(users: Service) -> None:
    view = issue(users, "alice")[0]
    users.certificates.bundle(view.serial, tenant="default")
    with users.database.transaction() as session:
        events = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "cert.download")).all()
    assert len(events) == 1 and view.serial in events[0].target


def test_no_bundle_for_revoked_or_foreign_certificates(users: Service) -> None:
    old = issue(users, "alice")[0]
    issue(users, "alice", reissue="revoke")
    with pytest.raises(NotPermitted, match="is revoked"):
        users.certificates.bundle(old.serial, tenant="default")
    users.hierarchy.create_tenant("acme")
    with pytest.raises(NotFound):
        users.certificates.bundle(old.serial, tenant="acme")


def test_listing_filters_by_state_and_user(users: Service) -> None:
    old = issue(users, "alice")[0]
    new = issue(users, "alice", reissue="revoke")[0]
    bob = issue(users, "bob")[0]
    serials = lambda **kw: [  # noqa: E731
        v.serial for v in users.certificates.list_certificates("default", **kw)]
    assert serials(state="revoked") == [old.serial]
    assert serials(state="valid") == [bob.serial, new.serial]
    assert serials(login="ALICE") == [new.serial, old.serial]
    assert serials(state="expired") == []
    with pytest.raises(InvalidInput, match="state 'gone'"):
        users.certificates.list_certificates("default", state="gone")


def test_upn_is_added_when_the_tenant_enables_it(users: Service) -> None:
    from ca.db.models import Tenant

    with users.database.transaction() as session:
        session.scalar(select(Tenant).where(Tenant.name == "default")).upn_suffix = "corp.example"
    cert = x509.load_der_x509_certificate(issue(users, "alice")[0].der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    others = san.get_values_for_type(x509.OtherName)
    assert [o.type_id.dotted_string for o in others] == ["1.3.6.1.4.1.311.20.2.3"]
    assert others[0].value == b"\x0c\x12alice@corp.example"  # UTF8String, 18 octets
