"""A replica (or a restore) starts only with the keys the database was made with.

Replicas share the database and the key directory. Given another deployment's key
directory, or one whose root key or data-protection key was replaced, a replica would sign
with a key no relying party trusts, or seal users' keys under a key the other replicas
cannot open: start-up (``Startup.load_signers``, what ``tegata serve`` runs) stops it,
naming the file and TEGATA_KEY_DIR.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp as x509_ocsp
from sqlalchemy import func, select, update

from ca.clock import FixedClock
from ca.db import queries
from ca.db.models import Authority, Certificate, Crl
from ca.errors import ConfigError
from ca.sealing import DATA_PROTECTION_FILE, create_data_protection_key
from ca.service import InitRequest, Service, build_service
from ca.settings import load_settings
from tests.served import serving
from tests.support.environment import PASSPHRASE
from tests.support.issuing import issue_one, issuing_certificate, ocsp_request


def replica(service: Service, key_dir: Path) -> Service:
    """Another process on the same database, with ``key_dir`` as its key directory."""
    settings = load_settings(data_dir=service.settings.data_dir.parent / "replica",
                             database_url=service.settings.effective_database_url,
                             key_dir=key_dir, key_passphrase=PASSPHRASE)
    return build_service(settings, clock=service.clock)


def copy_of_keys(service: Service, tmp_path: Path) -> Path:
    copy = tmp_path / "copied-keys"
    shutil.copytree(service.settings.effective_key_dir, copy)
    return copy


def test_a_replica_with_a_copy_of_the_key_directory_starts_and_opens_sealed_keys(
        service: Service, tmp_path: Path) -> None:
    _add(service, "alice")
    view = issue_one(service, "alice")
    other = replica(service, copy_of_keys(service, tmp_path))
    other.startup.load_signers()
    assert other.certificates.bundle(view.serial, tenant="default").content
    other.engine.dispose()


def test_a_replica_with_another_deployments_key_directory_does_not_start(
        service: Service, tmp_path: Path, clock: FixedClock) -> None:
    elsewhere = build_service(load_settings(
        data_dir=tmp_path / "elsewhere", key_passphrase=PASSPHRASE), clock=clock)
    elsewhere.database.upgrade()
    elsewhere.hierarchy.initialize(InitRequest(key_type="ec-p256"))
    elsewhere.engine.dispose()
    other = replica(service, elsewhere.settings.effective_key_dir)
    with pytest.raises(ConfigError, match=r"CA key file .* does not exist"):
        other.startup.load_signers()
    other.engine.dispose()


def test_a_replica_whose_root_key_file_holds_another_key_does_not_start(
        service: Service, tmp_path: Path) -> None:
    keys = copy_of_keys(service, tmp_path)
    with service.database.reading() as session:
        path = keys / service.keys.keystore.path_for(queries.require_root(session).key_id).name
    path.write_bytes(ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSPHRASE.encode())))
    other = replica(service, keys)
    with pytest.raises(ConfigError) as refused:
        other.startup.load_signers()
    assert refused.value.message == (
        f"CA key file {path} does not hold the key of the database's root CA "
        "(TEGATA_KEY_DIR names another deployment's key directory?)")
    assert refused.value.field == "TEGATA_KEY_DIR"
    other.engine.dispose()


def test_a_replica_with_another_data_protection_key_does_not_start(
        service: Service, tmp_path: Path) -> None:
    _add(service, "alice")
    view = issue_one(service, "alice")
    keys = copy_of_keys(service, tmp_path)
    (keys / DATA_PROTECTION_FILE).unlink()
    assert create_data_protection_key(keys, PASSPHRASE.encode())
    other = replica(service, keys)
    with pytest.raises(ConfigError) as refused:
        other.startup.load_signers()
    assert refused.value.message == (
        f"data-protection key {keys / DATA_PROTECTION_FILE} does not open the key material "
        f"sealed in the database (certificate {view.serial}): TEGATA_KEY_DIR names another "
        "deployment's key directory?")
    assert refused.value.field == "TEGATA_KEY_DIR"
    other.engine.dispose()


def _add(service: Service, login: str) -> None:
    service.users.add("default", login, email=f"{login}@example.jp", allow=True)


def _swap_issuing_key(service: Service, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the key directory whose default issuing CA key file holds another key under
    the same passphrase: (the copy, that file)."""
    keys = copy_of_keys(service, tmp_path)
    with service.database.reading() as session:
        issuing = queries.issuing(session, queries.tenant(session, "default"))
        path = keys / service.keys.keystore.path_for(issuing.key_id).name
    path.unlink()
    path.write_bytes(ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSPHRASE.encode())))
    path.chmod(0o600)
    return keys, path


def _counts(service: Service) -> tuple[int, int, int, int]:
    with service.database.reading() as session:
        return (session.scalar(select(func.count()).select_from(Certificate)) or 0,
                session.scalar(select(func.count()).select_from(Crl)) or 0,
                session.scalar(select(func.count()).select_from(Authority)) or 0,
                session.scalar(select(func.count()).select_from(Certificate).where(
                    Certificate.revoked_at.is_not(None))) or 0)


def test_a_replica_whose_issuing_key_file_holds_another_key_signs_nothing(
        service: Service, tmp_path: Path) -> None:
    _add(service, "alice")
    _add(service, "bob")
    good = issue_one(service, "alice")
    service.revocation.revoke("default", issue_one(service, "bob").serial)  # a CRL made
    keys, path = _swap_issuing_key(service, tmp_path)
    other = replica(service, keys)
    other.startup.load_signers()  # only the root's key is loaded at start-up
    before = _counts(service)
    message = (f"CA key file {path} does not hold the key of the issuing CA "
               f"{issuing_certificate(service).subject.rfc4514_string()!r} certificate "
               "(TEGATA_KEY_DIR names another deployment's key directory, or the file was "
               "replaced?)")
    with pytest.raises(ConfigError) as refused:
        issue_one(other, "alice")
    assert (refused.value.message, refused.value.field) == (message, "TEGATA_KEY_DIR")
    with pytest.raises(ConfigError) as refused:  # the CRL it would publish: rolled back
        other.revocation.revoke("default", good.serial)
    assert refused.value.message == message
    answer = other.ocsp.respond(ocsp_request(other, good))  # its responder is not made
    assert x509_ocsp.load_der_ocsp_response(answer.der).response_status == \
        x509_ocsp.OCSPResponseStatus.INTERNAL_ERROR
    assert _counts(service) == before
    # /readyz of that replica reports it now
    with pytest.raises(ConfigError) as refused:
        other.startup.load_signers()
    assert refused.value.message == message
    # every CRL in the database is signed by the issuing CA's key
    issuing_key = issuing_certificate(service).public_key()
    with service.database.reading() as session:
        ders = session.scalars(select(Crl.der).join(Authority).where(
            Authority.kind == "issuing")).all()
    assert ders
    assert all(x509.load_der_x509_crl(der).is_signature_valid(issuing_key) for der in ders)
    # the file put right: /readyz is ready again at once, no request needed first
    shutil.copy2(service.keys.keystore.path_for(path.name.removesuffix(".key.pem")), path)
    other.startup.load_signers()
    assert other.keys.mismatched == {}
    x509.load_der_x509_certificate(issue_one(other, "alice").der).verify_directly_issued_by(
        issuing_certificate(service))
    other.engine.dispose()


def _responder(answer_der: bytes) -> x509.Certificate:
    response = x509_ocsp.load_der_ocsp_response(answer_der)
    assert response.response_status == x509_ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status == x509_ocsp.OCSPCertStatus.GOOD
    (responder,) = response.certificates
    return responder


def test_replicas_with_their_own_key_directory_copies_share_the_ocsp_responder(
        service: Service, tmp_path: Path) -> None:
    _add(service, "alice")
    view = issue_one(service, "alice")
    one = replica(service, copy_of_keys(service, tmp_path / "one"))
    two = replica(service, copy_of_keys(service, tmp_path / "two"))
    made = _responder(one.ocsp.respond(ocsp_request(one, view)).der)  # made by replica one
    assert list((tmp_path / "one" / "copied-keys").glob("ocsp-*")) == []  # in the database
    assert _responder(two.ocsp.respond(ocsp_request(two, view)).der) == made
    assert _responder(service.ocsp.respond(ocsp_request(service, view)).der) == made
    two.startup.load_signers()  # /readyz of every replica stays ready
    service.startup.load_signers()
    with service.database.reading() as session:
        sealed = session.scalars(select(Authority.sealed_key).where(
            Authority.kind == "ocsp")).all()
    assert len(sealed) == 1 and sealed[0] is not None and b"PRIVATE" not in sealed[0]
    for each in (one, two):
        each.engine.dispose()


def test_a_responder_whose_key_is_not_here_is_replaced_not_fatal(
        service: Service, tmp_path: Path) -> None:
    """A responder made before its key was sealed in the database has a key file, which a
    replica with its own copy of the key directory may lack: that replica makes a new
    responder, and its /readyz stays ready."""
    _add(service, "alice")
    view = issue_one(service, "alice")
    first = _responder(service.ocsp.respond(ocsp_request(service, view)).der)
    with service.database.transaction() as session:  # as if made before 0018, elsewhere
        session.execute(update(Authority).where(Authority.kind == "ocsp")
                        .values(sealed_key=None))
    other = replica(service, copy_of_keys(service, tmp_path))
    other.startup.load_signers()
    second = _responder(other.ocsp.respond(ocsp_request(other, view)).der)
    assert second != first
    with service.database.reading() as session:
        rows = session.execute(select(Authority.key_id, Authority.retired_at.is_(None)).where(
            Authority.kind == "ocsp").order_by(Authority.id)).all()
    assert [active for _, active in rows] == [False, True]
    other.engine.dispose()


def test_a_replica_with_another_public_base_url_is_warned_of_it(
        service: Service, tmp_path: Path) -> None:
    assert service.startup.public_base_url_drift() is None
    settings = load_settings(data_dir=tmp_path / "elsewhere",
                             database_url=service.settings.effective_database_url,
                             key_dir=service.settings.effective_key_dir,
                             key_passphrase=PASSPHRASE,
                             public_base_url="https://other.example.jp")
    other = build_service(settings, clock=service.clock)
    other.startup.load_signers()  # not refused: moving the base URL is allowed
    assert other.startup.public_base_url_drift() == (
        "TEGATA_PUBLIC_BASE_URL is https://other.example.jp but the newest CA was made with "
        f"{service.settings.public_base_url}: certificates issued here point their OCSP and "
        "caIssuers URLs at the former")
    other.engine.dispose()
    # tegata serve logs it once, as a WARNING record of its own log, and serves
    with serving(settings, tmp_path / "server.log",
                 TEGATA_KEY_DIR=str(settings.effective_key_dir)) as server:
        assert httpx.get(f"{server.url}/readyz").json()["warnings"] == [
            other.startup.public_base_url_drift()]
    warned = [line for line in (tmp_path / "server.log").read_text().splitlines()
              if "TEGATA_PUBLIC_BASE_URL is https://other.example.jp" in line]
    assert len(warned) == 1 and "WARNING" in warned[0] and "tegata.startup" in warned[0]
