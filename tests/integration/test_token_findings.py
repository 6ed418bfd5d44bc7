"""CA keys in a PKCS#11 token (SoftHSM2), what an outside test found: a token pulled and put
back is reopened (at most once a second) and a refused PIN is never tried again; a key pair
replaced under the same label, a key that could leave the token or whose CKA_ID changed is
refused; a mistyped token label is the caller's input; a key is generated outside the lock
signatures take. Each test has a token of its own (tests/support/softhsm.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from fastapi.testclient import TestClient
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11 import exceptions as p11
from sqlalchemy import select

import ca.token as token_module
from api.app import build_app
from ca.db.models import Authority
from ca.errors import ConfigError, Unavailable
from ca.service import InitRequest, Service, build_service
from ca.token import TokenSigner, TokenStore, finalize_modules
from tests.integration.test_token_keys import self_signed, verify
from tests.support.softhsm import SoftToken, make_token


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SoftToken]:
    made = make_token(tmp_path / "hsm")
    monkeypatch.setenv("SOFTHSM2_CONF", str(made.conf))
    yield made
    finalize_modules()  # the next test's SoftHSM2 reads its own configuration


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- 1. a token that goes away and comes back ----------------------------------------------


def test_a_token_pulled_and_put_back_is_reopened_once_the_retry_window_passed(
        token: SoftToken, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Monotonic()
    store = TokenStore(token.access(), monotonic=clock)
    signer = store.generate("issuing-pulled", "ec-p256")
    signer.sign_tbs(b"the token is there")
    (slot,) = (token.conf.parent / "tokens").iterdir()
    pulled = token.conf.parent / "pulled"
    slot.rename(pulled)  # the token is pulled out: the module sees it at its next start
    finalize_modules()
    absent = f"PKCS#11 token {token.label!r} is not present in {token.module}"
    with pytest.raises(Unavailable) as caught:
        signer.sign_tbs(b"pulled")
    assert type(caught.value) is Unavailable
    assert caught.value.message == (f"PKCS#11 token {token.label!r} went away and could not "
                                    f"be reopened: {absent}")
    # within the second, the module is not asked again: the same answer, at once
    opened = []
    real_get = token_module._Library.get
    monkeypatch.setattr(token_module._Library, "get",
                        lambda module: opened.append(module) or real_get(module))
    clock.now += 0.5
    with pytest.raises(Unavailable) as caught:
        signer.sign_tbs(b"still pulled")
    assert type(caught.value) is Unavailable
    assert caught.value.message == (f"PKCS#11 token {token.label!r} is unavailable ({absent}); "
                                    "it is looked for again at most once a second")
    assert opened == []
    pulled.rename(slot)  # put back
    clock.now += 0.5
    data = b"the token is back"
    signature = signer.sign_tbs(data)
    assert opened == [token.module]  # the module initialised afresh, once
    verify(signer.public_key(), signature, data, hashes.SHA256())


def test_a_refused_pin_is_never_tried_again_until_a_restart(
        token: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("99999999\n")
    wrong.chmod(0o600)
    access = token.access()
    store = TokenStore(type(access)(module=access.module, label=access.label, pin_file=wrong,
                                    pin="99999999"))
    told = (f"PKCS#11 token {token.label!r}: the PIN in {wrong} does not open it (all tokens "
            "are opened with the PIN of TEGATA_PKCS11_PIN_FILE); it is not tried again until "
            "a restart")
    with pytest.raises(ConfigError) as caught:
        store.check()
    assert caught.value.message == told

    def never(module: Path) -> None:
        raise AssertionError("the module was asked to log in again")

    monkeypatch.setattr(token_module._Library, "get", never)
    for _ in range(3):
        with pytest.raises(ConfigError) as caught:
            store.run(lambda session: None)
        assert caught.value.message == told
    assert "99999999" not in told


def test_the_api_answers_unavailable_while_the_token_is_pulled_then_signs_again(
        token: SoftToken, bare_service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = bare_service.settings.model_copy(update={
        "pkcs11_module": token.module, "pkcs11_pin_file": token.pin_file})
    service = build_service(settings, clock=bare_service.clock, engine=bare_service.engine)
    service.hierarchy.initialize(InitRequest(key_type="ec-p256", pkcs11_token=token.label))
    clock = Monotonic()
    store = service.keys.token(token.label)
    monkeypatch.setattr(store, "_monotonic", clock)
    service.users.add("default", "hanako", email="hanako@example.com", allow=True)
    text, _ = service.tokens.create(role="operator", tenant=None)
    client = TestClient(build_app(settings, service=service), raise_server_exceptions=False)
    headers = {"Authorization": f"Bearer {text}"}

    def issue() -> tuple[int, str]:
        answer = client.post("/api/v1/tenants/default/certificates", headers=headers,
                             json={"login": "hanako", "reissue": "keep"})
        kind = answer.json().get("type", "") if answer.status_code != 201 else ""
        return answer.status_code, kind.rsplit(":", 1)[-1]

    assert issue()[0] == 201
    (slot,) = (token.conf.parent / "tokens").iterdir()
    slot.rename(token.conf.parent / "pulled")
    finalize_modules()
    first, second = issue(), issue()
    assert first == second == (503, "unavailable")
    (token.conf.parent / "pulled").rename(slot)
    clock.now += 1.0
    assert issue()[0] == 201


# --- 2. the key is the one its certificate names, and never leaves the token --------------


@pytest.fixture
def token_service(bare_service: Service, token: SoftToken) -> Service:
    settings = bare_service.settings.model_copy(update={
        "pkcs11_module": token.module, "pkcs11_pin_file": token.pin_file})
    service = build_service(settings, clock=bare_service.clock, engine=bare_service.engine)
    service.hierarchy.initialize(InitRequest(key_type="ec-p256", pkcs11_token=token.label))
    return service


def restarted(service: Service) -> Service:
    return build_service(service.settings, clock=service.clock, engine=service.engine)


def issuing_key_id(service: Service) -> str:
    with service.database.reading() as session:
        key_id = session.scalar(select(Authority.key_id).where(Authority.kind == "issuing"))
    assert key_id is not None
    return key_id


def test_start_up_stops_when_a_tenant_key_pair_was_replaced_under_the_same_label(
        token_service: Service, token: SoftToken) -> None:
    key_id = issuing_key_id(token_service)
    other = TokenStore(token.access())
    other.remove(key_id)
    other.generate(key_id, "ec-p256")  # same label and CKA_ID, another key pair
    with pytest.raises(ConfigError) as caught:
        restarted(token_service).startup.load_signers()
    assert caught.value.message == (
        f"PKCS#11 token {token.label!r} key {key_id!r} is not the key of the database's "
        "issuing CA (the token holds another deployment's keys, or the key pair was "
        "replaced?)")


def test_a_token_signer_is_checked_against_its_certificate_when_first_loaded(
        token: SoftToken) -> None:
    store = TokenStore(token.access())
    der = self_signed(store.generate("issuing-swapped", "ec-p256")).public_bytes(
        serialization.Encoding.DER)
    assert isinstance(TokenStore(token.access()).load("issuing-swapped", certificate=der),
                      TokenSigner)
    store.remove("issuing-swapped")
    store.generate("issuing-swapped", "ec-p256")
    with pytest.raises(ConfigError) as caught:
        TokenStore(token.access()).load("issuing-swapped", certificate=der)
    assert caught.value.message == (
        f"PKCS#11 token {token.label!r} key 'issuing-swapped' is not the key of its CA "
        "certificate (the key pair was replaced?)")


@pytest.mark.parametrize("flags", [{Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: True},
                                   {Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: False}])
def test_a_key_that_could_leave_the_token_is_refused(
        token: SoftToken, flags: dict[Attribute, bool]) -> None:
    key_id = "issuing-leaky"
    with TokenStore(token.access())._open() as session:
        session.generate_keypair(KeyType.RSA, 2048, store=True, label=key_id,
                                 id=key_id.encode(), private_template=flags)
    with pytest.raises(ConfigError) as caught:
        TokenStore(token.access()).load(key_id)
    assert caught.value.message == (
        f"PKCS#11 token {token.label!r} key {key_id!r} is extractable or not sensitive: a "
        "CA key must never leave the token")


# --- 3. one lookup (label and CKA_ID); keys made unmodifiable and uncopyable --------------


def test_start_up_looks_keys_up_by_label_and_id_as_signatures_do(
        token_service: Service, token: SoftToken) -> None:
    key_id = issuing_key_id(token_service)
    TokenStore(token.access()).remove(key_id)
    with TokenStore(token.access())._open() as session:
        # the key pair under its label, with a CKA_ID another tool changed
        session.generate_keypair(KeyType.RSA, 2048, store=True,
                                 label=key_id, id=b"changed")
    assert key_id not in TokenStore(token.access()).key_ids()
    with pytest.raises(ConfigError) as caught:
        restarted(token_service).startup.load_signers()
    assert caught.value.message == f"PKCS#11 token {token.label!r} has no CA key {key_id!r}"


def test_generated_keys_are_neither_modifiable_nor_copyable(token: SoftToken) -> None:
    TokenStore(token.access()).generate("issuing-fixed", "ec-p256")
    with TokenStore(token.access())._open() as session:
        made = [*session.get_objects({Attribute.LABEL: "issuing-fixed"})]
        assert sorted((o[Attribute.CLASS].name, o[Attribute.MODIFIABLE], o[Attribute.COPYABLE])
                      for o in made) == [("PRIVATE_KEY", False, False),
                                         ("PUBLIC_KEY", False, False)]
        for found in made:
            with pytest.raises(p11.PKCS11Error):
                found[Attribute.ID] = b"changed"
            with pytest.raises(p11.PKCS11Error):
                found.copy({Attribute.ID: b"copy"})
        assert {bytes(o[Attribute.ID]) for o in made} == {b"issuing-fixed"}


# --- 5. a mistyped token label through the API --------------------------------------------


def test_the_api_refuses_a_token_label_the_module_does_not_list_and_makes_nothing(
        token_service: Service, token: SoftToken) -> None:
    text, _ = token_service.tokens.create(role="operator", tenant=None)
    client = TestClient(build_app(token_service.settings, service=token_service),
                        raise_server_exceptions=False)
    before = {str(o) for o in TokenStore(token.access()).key_ids()}
    refused = client.post("/api/v1/tenants", headers={"Authorization": f"Bearer {text}"},
                          json={"name": "kyushu", "pkcs11_token": "tegata-ca-typo"})
    assert refused.status_code == 400, refused.text
    body = refused.json()
    assert (body["type"], body["field"], body["detail"]) == (
        "urn:tegata:problem:invalid-input", "pkcs11_token",
        f"PKCS#11 module {token.module} has no token labelled 'tegata-ca-typo'")
    assert token_service.hierarchy.list_tenants() == ["default"]
    assert TokenStore(token.access()).key_ids() == before


# --- 6. a key is generated outside the signing lock -----------------------------------------


def test_a_signature_completes_while_a_key_is_being_generated(
        token: SoftToken, monkeypatch: pytest.MonkeyPatch) -> None:
    store = TokenStore(token.access())
    signer = store.generate("issuing-busy", "ec-p256")
    signer.sign_tbs(b"warm")
    generating, signed = threading.Event(), threading.Event()
    real_find = token_module._find
    held: list[bool] = []  # whether the signature came while the generation was held

    def slow_find(session: object, kind: ObjectClass, key_id: str) -> object:
        if key_id == "issuing-new" and not held:  # generating: held till a signature
            generating.set()
            held.append(signed.wait(timeout=10))
        return real_find(session, kind, key_id)

    monkeypatch.setattr(token_module, "_find", slow_find)
    made: list[object] = []
    generation = threading.Thread(
        target=lambda: made.append(store.generate("issuing-new", "rsa-3072")))
    generation.start()
    assert generating.wait(timeout=20)
    signature = signer.sign_tbs(b"while generating")  # would wait for the lock
    signed.set()
    generation.join(timeout=60)
    verify(signer.public_key(), signature, b"while generating", hashes.SHA256())
    assert [type(m) for m in made] == [TokenSigner]
    assert held == [True]
