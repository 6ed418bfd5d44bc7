"""CA keys in a PKCS#11 token (SoftHSM2): made inside it, never exported, and signing what
the file keys sign (certificates, CRLs, OCSP responses, a TBS the caller encoded); from
several threads at once; a lost session reopened, a lost token told at once; the PIN never
in a message. Each test has a token of its own (tests/support/softhsm.py)."""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from sqlalchemy import select

from api.app import build_app
from ca import parallel
from ca.clock import FixedClock
from ca.db import migrate, queries
from ca.db.models import Authority, Tenant
from ca.errors import ConfigError, InvalidInput, Unavailable
from ca.service import InitRequest, IssueRequest, Service, build_service, crls, hierarchy
from ca.service import certificates as certificate_use_cases
from ca.settings import Settings
from ca.signer import hash_for
from ca.token import TokenSigner, TokenStore, _Library, finalize_modules
from tests.moments import MOMENTS
from tests.support.databases import downgrade
from tests.support.softhsm import SoftToken, make_token

NOW = MOMENTS.start
NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Token Test CA")])


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SoftToken]:
    made = make_token(tmp_path / "hsm")
    monkeypatch.setenv("SOFTHSM2_CONF", str(made.conf))
    yield made
    finalize_modules()  # the next test's SoftHSM2 reads its own configuration


@pytest.fixture
def store(token: SoftToken) -> TokenStore:
    return TokenStore(token.access())


def verify(public_key: object, signature: bytes, data: bytes,
           algorithm: hashes.HashAlgorithm) -> None:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(algorithm))
    else:
        assert isinstance(public_key, rsa.RSAPublicKey)
        public_key.verify(signature, data, padding.PKCS1v15(), algorithm)


def self_signed(signer: TokenSigner) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(NAME).issuer_name(NAME)
               .public_key(signer.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True))
    return signer.sign_certificate(builder)


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "rsa-3072", "rsa-4096"])
def test_a_token_key_signs_certificates_crls_ocsp_and_tbs_that_verify(
        store: TokenStore, key_type: str) -> None:
    signer = store.generate("issuing-0123456789abcdef", key_type)
    public = signer.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey if key_type.startswith("ec")
                      else rsa.RSAPublicKey)
    assert public.key_size == int(key_type.removeprefix("ec-p").removeprefix("rsa-"))
    cert = self_signed(signer)
    cert.verify_directly_issued_by(cert)
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == hash_for(public).name
    crl = signer.sign_crl(x509.CertificateRevocationListBuilder().issuer_name(NAME)
                          .last_update(NOW).next_update(NOW + dt.timedelta(days=1)))
    assert crl.is_signature_valid(public)
    response = signer.sign_ocsp(
        ocsp.OCSPResponseBuilder().add_response(
            cert=cert, issuer=cert, algorithm=hashes.SHA256(),
            cert_status=ocsp.OCSPCertStatus.GOOD, this_update=NOW,
            next_update=NOW + dt.timedelta(hours=1), revocation_time=None,
            revocation_reason=None).responder_id(ocsp.OCSPResponderEncoding.HASH, cert))
    verify(public, response.signature, response.tbs_response_bytes, hash_for(public))
    tbs = b"a to-be-signed structure " * 40
    verify(public, signer.sign_tbs(tbs), tbs, hash_for(public))
    with pytest.raises(InvalidSignature):
        verify(public, signer.sign_tbs(tbs), tbs + b"!", hash_for(public))


@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-3072"])
def test_the_token_refuses_to_export_the_key(token: SoftToken, store: TokenStore,
                                              key_type: str) -> None:
    store.generate("root-0123456789abcdef", key_type)
    with TokenStore(token.access())._open() as session:
        (key,) = session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                      Attribute.LABEL: "root-0123456789abcdef"})
        assert key[Attribute.ID] == b"root-0123456789abcdef"
        assert {name: key[name] for name in (
            Attribute.TOKEN, Attribute.SENSITIVE, Attribute.EXTRACTABLE,
            Attribute.ALWAYS_SENSITIVE, Attribute.NEVER_EXTRACTABLE, Attribute.LOCAL)} == {
            Attribute.TOKEN: True, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
            Attribute.ALWAYS_SENSITIVE: True, Attribute.NEVER_EXTRACTABLE: True,
            Attribute.LOCAL: True}
        secret = Attribute.VALUE if key_type.startswith("ec") else Attribute.PRIVATE_EXPONENT
        with pytest.raises(p11.AttributeSensitive):
            key[secret]
        # nor may it leave wrapped under a key of the caller's choosing
        wrapping = session.generate_key(KeyType.AES, 256, label="wrapper", store=False,
                                        template={Attribute.WRAP: True})
        with pytest.raises(p11.KeyUnextractable):
            wrapping.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        # and it cannot be made extractable afterwards (PKCS#11: only true -> false)
        with pytest.raises(p11.PKCS11Error):
            key[Attribute.EXTRACTABLE] = True
        assert key[Attribute.EXTRACTABLE] is False


def test_signatures_from_several_threads_at_once_all_verify(store: TokenStore) -> None:
    signer = store.generate("issuing-threads", "ec-p384")
    public = signer.public_key()
    results: list[tuple[bytes, bytes]] = []
    failures: list[BaseException] = []
    start = threading.Barrier(8)

    def sign(worker: int) -> None:
        start.wait()
        try:
            for n in range(25):
                data = f"thread {worker} signature {n}".encode()
                results.append((data, signer.sign_tbs(data)))
        except BaseException as exc:  # reported below, with the others
            failures.append(exc)

    threads = [threading.Thread(target=sign, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert len(results) == 200
    for data, signature in results:
        verify(public, signature, data, hashes.SHA384())


def test_a_session_that_went_away_is_reopened(store: TokenStore) -> None:
    signer = store.generate("issuing-session", "ec-p256")
    signer.sign_tbs(b"first")
    store._session.close()  # the token closed it (a reset, an idle timeout)
    data = b"after the session was lost"
    verify(signer.public_key(), signer.sign_tbs(data), data, hashes.SHA256())
    finalize_modules()  # the module itself finalised under the store
    verify(signer.public_key(), signer.sign_tbs(data), data, hashes.SHA256())


def test_a_token_that_went_away_fails_at_once_with_unavailable(
        token: SoftToken, store: TokenStore) -> None:
    signer = store.generate("issuing-gone", "ec-p256")
    signer.sign_tbs(b"first")
    for path in (token.conf.parent / "tokens").iterdir():  # the token is pulled out
        for file in sorted(path.rglob("*"), reverse=True):
            file.unlink() if file.is_file() else file.rmdir()
        path.rmdir()
    finalize_modules()
    with pytest.raises(Unavailable) as caught:
        signer.sign_tbs(b"second")
    assert caught.value.message == (
        f"PKCS#11 token {token.label!r} went away and could not be reopened: PKCS#11 token "
        f"{token.label!r} is not present in {token.module}")


def test_a_wrong_pin_or_an_absent_token_is_a_configuration_error_without_the_pin(
        token: SoftToken, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("99999999\n")
    wrong.chmod(0o600)
    access = token.access()
    bad_pin = TokenStore(type(access)(module=access.module, label=access.label,
                                      pin_file=wrong, pin="99999999"))
    with pytest.raises(ConfigError) as caught:
        bad_pin.check()
    assert caught.value.message == (
        f"PKCS#11 token {token.label!r}: the PIN in {wrong} does not open it (all tokens are "
        "opened with the PIN of TEGATA_PKCS11_PIN_FILE); it is not tried again until a restart")
    absent = TokenStore(type(access)(module=access.module, label="no-such-token",
                                     pin_file=access.pin_file, pin=access.pin))
    with pytest.raises(ConfigError) as caught:
        absent.check()
    assert caught.value.message == (f"PKCS#11 token 'no-such-token' is not present in "
                                    f"{token.module}")
    assert token.pin not in caught.value.message and token.pin not in repr(access)


def test_a_module_that_is_not_there_or_not_pkcs11_is_a_configuration_error(
        token: SoftToken, tmp_path: Path) -> None:
    access = token.access()
    not_a_module = tmp_path / "not-a-module.so"
    not_a_module.write_bytes(b"not a shared library")
    told = {}
    for module in (tmp_path / "absent.so", not_a_module):
        with pytest.raises(ConfigError) as caught:
            TokenStore(type(access)(module=module, label=access.label, pin_file=access.pin_file,
                                    pin=access.pin)).check()
        told[module.name] = caught.value.message
    assert told == {
        "absent.so": f"PKCS#11 module {tmp_path / 'absent.so'} does not exist",
        "not-a-module.so": f"PKCS#11 module {not_a_module} could not be loaded (PKCS11Error)"}


def test_a_pin_file_others_can_read_is_refused(token: SoftToken, tmp_path: Path) -> None:
    token.pin_file.chmod(0o644)
    settings = Settings(data_dir=tmp_path, pkcs11_module=token.module,
                        pkcs11_pin_file=token.pin_file)
    with pytest.raises(ConfigError) as caught:
        settings.token_access(token.label)
    assert caught.value.message == (
        f"TEGATA_PKCS11_PIN_FILE: {token.pin_file} is readable by others (mode 0644); "
        f"run chmod 600 {token.pin_file}")


# --- the service: CAs whose keys are in the token ---------------------------------------------


@pytest.fixture
def token_service(bare_service: Service, token: SoftToken) -> Iterator[Service]:
    settings = bare_service.settings.model_copy(update={
        "pkcs11_module": token.module, "pkcs11_pin_file": token.pin_file})
    service = build_service(settings, clock=bare_service.clock, engine=bare_service.engine)
    service.hierarchy.initialize(InitRequest(key_type="ec-p256", pkcs11_token=token.label))
    yield service


def token_objects(token: SoftToken) -> set[tuple[str, str]]:
    with TokenStore(token.access())._open() as session:
        return {(str(o[Attribute.CLASS].name), str(o[Attribute.LABEL]))
                for o in session.get_objects({})}


def test_init_and_tenant_create_make_the_ca_keys_in_the_token_and_no_key_file(
        token_service: Service, token: SoftToken) -> None:
    token_service.hierarchy.create_tenant("kansai", ca_key_type="rsa-3072",
                                          pkcs11_token=token.label)
    with token_service.database.reading() as session:
        rows = session.execute(select(Authority.kind, Authority.key_id, Authority.key_store,
                                      Authority.key_token).order_by(Authority.id)).all()
    assert [(kind, store, label) for kind, _, store, label in rows] == [
        ("root", "pkcs11", token.label), ("issuing", "pkcs11", token.label),
        ("issuing", "pkcs11", token.label)]
    assert token_objects(token) == {(kind, key_id) for _, key_id, _, _ in rows
                                    for kind in ("PUBLIC_KEY", "PRIVATE_KEY")}
    key_dir = token_service.settings.effective_key_dir
    assert sorted(p.name for p in key_dir.iterdir()) == ["data-protection.key"]
    # a fresh service (a restart) finds every key by the rows alone
    again = build_service(token_service.settings, clock=token_service.clock,
                          engine=token_service.engine)
    again.startup.load_signers()
    for _, key_id, _, label in rows:
        assert isinstance(again.keys.signer_by_id(key_id, label), TokenSigner)


def test_a_tenant_whose_creation_fails_leaves_no_key_in_the_token(
        token_service: Service, token: SoftToken, monkeypatch: pytest.MonkeyPatch) -> None:
    before = token_objects(token)

    def fails(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the certificate could not be made")

    # after the key pair was made in the token, before the transaction commits
    monkeypatch.setattr(hierarchy, "build_issuing", fails)
    with pytest.raises(RuntimeError, match="could not be made"):
        token_service.hierarchy.create_tenant("kansai", pkcs11_token=token.label)
    assert token_objects(token) == before
    assert token_service.hierarchy.list_tenants() == ["default"]


def test_start_up_stops_when_a_ca_key_is_missing_from_the_token(
        token_service: Service, token: SoftToken) -> None:
    with token_service.database.reading() as session:
        key_id = session.scalar(select(Authority.key_id).where(Authority.kind == "issuing"))
    assert key_id is not None
    TokenStore(token.access()).remove(key_id)
    again = build_service(token_service.settings, clock=token_service.clock,
                          engine=token_service.engine)
    with pytest.raises(ConfigError) as caught:
        again.startup.load_signers()
    assert caught.value.message == f"PKCS#11 token {token.label!r} has no CA key {key_id!r}"


def test_start_up_needs_the_module_and_pin_file_settings(
        token_service: Service, token: SoftToken) -> None:
    settings = token_service.settings.model_copy(update={"pkcs11_pin_file": None})
    again = build_service(settings, clock=token_service.clock, engine=token_service.engine)
    with pytest.raises(ConfigError) as caught:
        again.startup.load_signers()
    assert caught.value.message == (f"a CA key is in PKCS#11 token {token.label!r}, and "
                                    "TEGATA_PKCS11_PIN_FILE is not set")


def test_the_api_makes_a_tenant_whose_ca_key_is_in_the_token(
        token_service: Service, token: SoftToken) -> None:
    text, _ = token_service.tokens.create(role="operator", tenant=None)
    client = TestClient(build_app(token_service.settings, service=token_service),
                        raise_server_exceptions=False)
    headers = {"Authorization": f"Bearer {text}"}
    made = client.post("/api/v1/tenants", headers=headers,
                       json={"name": "kyushu", "key_type": "ec-p256", "pkcs11_token": token.label})
    assert made.status_code == 201, made.text
    with token_service.database.reading() as session:
        row = session.execute(select(Authority.key_id, Authority.key_store, Authority.key_token)
                              .join(Tenant).where(Tenant.name == "kyushu")).one()
    assert (row.key_store, row.key_token) == ("pkcs11", token.label)
    assert ("PRIVATE_KEY", row.key_id) in token_objects(token)
    refused = client.post("/api/v1/tenants", headers=headers,
                          json={"name": "tohoku", "pkcs11_token": " padded"})
    assert refused.status_code == 400, refused.text
    assert refused.json()["detail"] == ("token label ' padded' must be 1-32 bytes of UTF-8 "
                                        "without control characters, not starting or ending "
                                        "with a space")


def test_a_token_is_refused_where_no_module_is_configured(service: Service) -> None:
    before = service.hierarchy.list_tenants()
    with pytest.raises(InvalidInput) as caught:
        service.hierarchy.create_tenant("kyushu", pkcs11_token="tegata-ca")
    assert caught.value.message == ("a CA key in PKCS#11 token 'tegata-ca' was asked for, and "
                                    "no PKCS#11 module and PIN file are configured")
    assert service.hierarchy.list_tenants() == before


def test_bulk_issuance_in_worker_processes_signs_through_each_workers_own_session(
        token_service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    if parallel.workers() < 2:
        pytest.skip("one core: issuance never uses the pool here")
    monkeypatch.setattr(certificate_use_cases, "PARALLEL_FROM", 1)  # the pool for three users
    parallel.shutdown()
    try:
        logins = ("yamada", "suzuki", "tanaka")
        for login in logins:
            token_service.users.add("default", login, email=f"{login}@example.com", allow=True)
        views = token_service.certificates.issue(IssueRequest(tenant="default", logins=logins))
    finally:
        parallel.shutdown()
    with token_service.database.reading() as session:
        issuing_der = session.scalar(select(Authority.der).where(Authority.kind == "issuing"))
    assert issuing_der is not None
    issuing = x509.load_der_x509_certificate(issuing_der)
    assert sorted(v.login for v in views) == sorted(logins)
    for view in views:
        x509.load_der_x509_certificate(view.der).verify_directly_issued_by(issuing)


def test_a_forked_child_never_uses_its_parents_session_or_module_state(
        store: TokenStore) -> None:
    """granian forks its workers after start-up opened the token: the child initialises the
    module for itself and opens a session of its own (PKCS#11 sessions never cross a fork)."""
    signer = store.generate("issuing-fork", "ec-p256")
    signer.sign_tbs(b"the parent signs first")
    parents = store.run(lambda session: session)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's clean-up
        try:
            data = b"the child signs"
            verify(signer.public_key(), signer.sign_tbs(data), data, hashes.SHA256())
            own = store.run(lambda session: session)
            loaded_here = [p for p, _ in _Library._loaded.values()] == [os.getpid()]
            os.write(write, b"%d%d" % (own is not parents, loaded_here))
        except BaseException as exc:
            os.write(write, type(exc).__name__.encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as answer:
        assert (status, answer.read()) == (0, b"11")
    assert store.run(lambda session: session) is parents  # the parent's is untouched
    signer.sign_tbs(b"the parent signs again")


def test_the_lifecycle_renews_the_crl_of_a_ca_whose_key_is_in_the_token(
        token_service: Service, clock: FixedClock) -> None:
    token_service.lifecycle.run()
    clock.advance(dt.timedelta(days=4))  # past half of a tenant CRL's 7 days
    fresh = build_service(token_service.settings, clock=clock, engine=token_service.engine)
    with fresh.database.reading() as session:
        due = queries.crls_due(session, now=clock.now())
        made = crls.prepare_renewals(session, due, now=clock.now(),
                                     signer_of=fresh.keys.signer_by_id)
        issuing = session.execute(select(Authority.id, Authority.der)
                                  .where(Authority.kind == "issuing")).one()
    assert [renewal.authority_id for renewal in made] == [issuing.id]  # signed, not skipped
    renewed = x509.load_der_x509_crl(made[0].row["der"])
    assert renewed.is_signature_valid(x509.load_der_x509_certificate(issuing.der).public_key())


def test_a_rollover_makes_the_next_key_where_the_current_one_is(
        token_service: Service, token: SoftToken) -> None:
    """The tenant's next issuing CA and the next root keep their keys in the token the
    current ones use; the next certificate is signed through it and chains to the new CA."""
    issuing = token_service.hierarchy.rollover("default")
    root = token_service.hierarchy.rollover_root()
    with token_service.database.reading() as session:
        rows = session.execute(select(Authority.kind, Authority.generation, Authority.key_id,
                                      Authority.key_store, Authority.key_token)
                               .where(Authority.kind.in_(("root", "issuing")))
                               .order_by(Authority.id)).all()
    assert [(kind, generation, store, label) for kind, generation, _, store, label in rows] == [
        ("root", 1, "pkcs11", token.label), ("issuing", 1, "pkcs11", token.label),
        ("issuing", 2, "pkcs11", token.label), ("root", 2, "pkcs11", token.label)]
    assert token_objects(token) == {(kind, key_id) for _, _, key_id, _, _ in rows
                                    for kind in ("PUBLIC_KEY", "PRIVATE_KEY")}
    key_dir = token_service.settings.effective_key_dir
    assert sorted(p.name for p in key_dir.iterdir()) == ["data-protection.key"]
    assert issuing.serial != root.serial
    token_service.users.add("default", "hanako", email="hanako@example.com", allow=True)
    (made,) = token_service.certificates.issue(IssueRequest(tenant="default",
                                                            logins=("hanako",)))
    leaf = x509.load_der_x509_certificate(made.der)
    with token_service.database.reading() as session:
        newest = session.scalar(select(Authority).where(Authority.kind == "issuing",
                                                        Authority.generation == 2))
        assert newest is not None
        ca_cert = x509.load_der_x509_certificate(newest.der)
    leaf.verify_directly_issued_by(ca_cert)


def test_a_downgrade_below_0015_with_keys_in_a_token_is_refused_and_changes_nothing(
        token_service: Service) -> None:
    """The schema of before knows key files only: the downgrade says so rather than turning
    every token CA into a file CA whose file does not exist."""
    with pytest.raises(RuntimeError, match="cannot downgrade below 0015: 2 CA"):
        downgrade(token_service.engine, "0014")
    assert migrate.current_revision(token_service.engine) == migrate.head_revision()
    with token_service.database.reading() as session:
        assert set(session.scalars(select(Authority.key_store).where(
            Authority.kind != "ocsp"))) == {"pkcs11"}
