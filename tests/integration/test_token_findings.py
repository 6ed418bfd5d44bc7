"""CA keys in a PKCS#11 token (SoftHSM2), what an outside test found: a token pulled and put
back is reopened (at most once a second) and a refused PIN is never tried again; a key pair
replaced under the same label, a key that could leave the token or whose CKA_ID changed is
refused; a mistyped token label is the caller's input; a key is generated outside the lock
signatures take. Each test has a token of its own (tests/support/softhsm.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from fastapi.testclient import TestClient

import ca.token as token_module
from api.app import build_app
from ca.errors import ConfigError, Unavailable
from ca.service import InitRequest, Service, build_service
from ca.token import TokenStore, finalize_modules
from tests.integration.test_token_keys import verify
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
