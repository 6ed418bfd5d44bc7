"""The CA hierarchy: a root, and an issuing CA per tenant; keys encrypted, 0600, nothing
created half-way."""

from __future__ import annotations

import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from ca import audit
from ca.db import queries
from ca.db.models import Authority, Tenant
from ca.errors import ConfigError, Conflict, InvalidInput, NotInitialized
from ca.service import InitRequest, IssueRequest, Service, build_service
from ca.settings import load_settings
from tests.support.environment import PASSPHRASE


def key_files(service: Service) -> list[str]:
    directory = service.settings.effective_key_dir
    return sorted(p.name for p in directory.glob("*.key.pem")) if directory.exists() else []


def test_init_creates_root_and_default_tenant_with_p384_by_default(bare_service: Service) -> None:
    root = bare_service.hierarchy.initialize(InitRequest())
    cert = x509.load_der_x509_certificate(root.der)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp384r1"
    assert cert.subject == cert.issuer
    assert bare_service.hierarchy.list_tenants() == ["default"]
    chain = bare_service.hierarchy.ca_certificates("default")
    issuing = x509.load_der_x509_certificate(chain[1].der)
    issuing.verify_directly_issued_by(cert)


@pytest.mark.parametrize("key_type", ["rsa-3072"])
def test_init_accepts_rsa_roots(bare_service: Service, key_type: str) -> None:
    root = bare_service.hierarchy.initialize(InitRequest(key_type=key_type, root_name="Acme Root",
                                               validity_years=10))
    cert = x509.load_der_x509_certificate(root.der)
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)
    assert cert.public_key().key_size == 3072
    assert cert.subject.rfc4514_string() == "CN=Acme Root,O=Tegata"
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days in range(3652, 3655)


def test_key_files_are_encrypted_pkcs8_mode_0600_in_a_0700_directory(service: Service) -> None:
    directory = service.settings.effective_key_dir
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = list(directory.iterdir())
    assert len(files) == 3  # root, default issuing CA, data-protection key
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in directory.glob("*.key.pem"):
        assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")


def test_init_twice_is_refused(service: Service) -> None:
    with pytest.raises(Conflict, match="already initialised"):
        service.hierarchy.initialize(InitRequest())


def test_tenants_get_their_own_issuing_ca(service: Service) -> None:
    service.hierarchy.create_tenant("acme", display_name="Acme Corp")
    default_ca, acme_ca = (
        x509.load_der_x509_certificate(service.hierarchy.ca_certificates(t)[1].der)
        for t in ("default", "acme"))
    assert default_ca.subject != acme_ca.subject
    assert default_ca.public_key() != acme_ca.public_key()
    service.users.add("acme", "alice", email="alice@acme.example", allow=True)
    leaf = x509.load_der_x509_certificate(
        service.certificates.issue(IssueRequest(tenant="acme", logins=("alice",)))[0].der)
    leaf.verify_directly_issued_by(acme_ca)
    with pytest.raises((ValueError, Exception)):
        leaf.verify_directly_issued_by(default_ca)


def test_duplicate_and_unsafe_tenant_names_are_refused(service: Service) -> None:
    with pytest.raises(Conflict):
        service.hierarchy.create_tenant("default")
    with pytest.raises(InvalidInput):
        service.hierarchy.create_tenant("../evil")
    assert service.hierarchy.list_tenants() == ["default"]


def test_the_longest_tenant_names_still_fit_the_ca_and_responder_common_names(
        service: Service) -> None:
    # a common name holds at most 64 characters (RFC 5280, appendix A: ub-common-name);
    # " Issuing CA" and " OCSP Responder" used to push a long name past it
    name, shown = "t" * 63, "D" * 64
    service.hierarchy.create_tenant(name, ca_key_type="ec-p256")
    service.hierarchy.create_tenant("named", display_name=shown, ca_key_type="ec-p256")
    for tenant, cn in ((name, "t" * 53 + " Issuing CA"), ("named", "D" * 53 + " Issuing CA")):
        issuing = x509.load_der_x509_certificate(service.hierarchy.ca_certificates(tenant)[1].der)
        assert issuing.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
    service.users.add(name, "alice", email="alice@example.com", allow=True)
    view = service.certificates.issue(IssueRequest(tenant=name, logins=("alice",)))[0]
    request = ocsp.OCSPRequestBuilder().add_certificate(
        x509.load_der_x509_certificate(view.der),
        x509.load_der_x509_certificate(service.hierarchy.ca_certificates(name)[1].der),
        hashes.SHA1())
    answer = ocsp.load_der_ocsp_response(service.ocsp.respond(
        request.build().public_bytes(serialization.Encoding.DER)).der)
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    responder = answer.certificates[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert responder[0].value == "t" * 49 + " OCSP Responder"


def test_tenant_before_init_is_refused(bare_service: Service) -> None:
    with pytest.raises(NotInitialized, match=r"^Tegata is not initialised$"):
        bare_service.hierarchy.create_tenant("acme")


def test_failed_init_leaves_no_key_files_and_no_rows(bare_service: Service,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit, "record", broken)
    with pytest.raises(RuntimeError):
        bare_service.hierarchy.initialize(InitRequest(key_type="ec-p256"))
    assert key_files(bare_service) == []
    assert not (bare_service.settings.effective_key_dir / "data-protection.key").exists()
    with bare_service.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Authority)) == 0
        assert session.scalar(select(func.count()).select_from(Tenant)) == 0
    monkeypatch.undo()
    bare_service.hierarchy.initialize(InitRequest(key_type="ec-p256"))  # and a retry then works


def test_failed_tenant_creation_leaves_no_key_file(service: Service,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    before = key_files(service)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("lost connection")

    monkeypatch.setattr(audit, "record", broken)
    with pytest.raises(RuntimeError):
        service.hierarchy.create_tenant("acme")
    assert key_files(service) == before
    assert service.hierarchy.list_tenants() == ["default"]


def fresh_service(service: Service, **overrides: object) -> Service:
    settings = load_settings(**{
        "data_dir": service.settings.data_dir, "database_url": service.settings.database_url,
        "key_passphrase": PASSPHRASE, **overrides})
    return build_service(settings, clock=service.clock)


def test_a_key_file_readable_by_others_stops_start_up_naming_it(service: Service) -> None:
    victim = sorted(service.settings.effective_key_dir.glob("issuing-*.key.pem"))[0]
    victim.chmod(0o644)
    with pytest.raises(ConfigError, match=f"CA key file {victim} is readable by others"):
        fresh_service(service).startup.load_signers()


def test_a_wrong_passphrase_stops_start_up_naming_file_and_variable(service: Service) -> None:
    with pytest.raises(ConfigError, match=r"CA key file .*: wrong passphrase "
                                          r"\(TEGATA_KEY_PASSPHRASE\)") as caught:
        fresh_service(service, key_passphrase="another-long-passphrase").startup.load_signers()
    assert PASSPHRASE not in str(caught.value)


def test_a_missing_passphrase_stops_start_up(service: Service) -> None:
    with pytest.raises(ConfigError, match="TEGATA_KEY_PASSPHRASE"):
        fresh_service(service, key_passphrase=None).startup.load_signers()


def test_a_data_protection_key_readable_by_others_is_refused(service: Service) -> None:
    (service.settings.effective_key_dir / "data-protection.key").chmod(0o640)
    with pytest.raises(ConfigError, match=r"data-protection key .* readable by others"):
        fresh_service(service).startup.load_signers()


def key_id(service: Service, tenant: str | None) -> str:
    with service.database.reading() as session:
        if tenant is None:
            return queries.require_root(session).key_id
        return queries.issuing(session, queries.tenant(session, tenant)).key_id


def test_a_restart_loads_the_root_key_only_and_a_tenants_key_on_first_use(
        service: Service) -> None:
    service.hierarchy.create_tenant("acme", display_name="アクメ株式会社")
    again = fresh_service(service)
    again.startup.load_signers()
    assert set(again.keys._signers) == {key_id(service, None)}
    again.crls.publish("acme")
    assert set(again.keys._signers) == {key_id(service, None), key_id(service, "acme")}


def test_a_missing_tenant_key_file_stops_start_up_naming_it(service: Service) -> None:
    victim = service.keys.keystore.path_for(key_id(service, "default"))
    victim.unlink()
    with pytest.raises(ConfigError, match=f"CA key file {victim} does not exist"):
        fresh_service(service).startup.load_signers()


def test_threads_asking_for_one_key_at_once_load_it_once(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    again = fresh_service(service)
    loads: list[str] = []
    first_in, release = threading.Event(), threading.Event()
    real_load = again.keys.keystore.load

    def slow_load(wanted: str) -> Any:
        loads.append(wanted)
        first_in.set()
        assert release.wait(timeout=60)
        return real_load(wanted)

    monkeypatch.setattr(again.keys.keystore, "load", slow_load)
    with again.database.reading() as session:
        issuing = queries.issuing(session, queries.tenant(session, "default"))
    with ThreadPoolExecutor(max_workers=8) as pool:
        asked = [pool.submit(again.keys.signer, issuing) for _ in range(8)]
        assert first_in.wait(timeout=60)
        release.set()
        signers = {id(f.result(timeout=60)) for f in asked}
    assert loads == [issuing.key_id] and len(signers) == 1
