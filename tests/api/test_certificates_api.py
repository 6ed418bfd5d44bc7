"""Certificates over HTTP: issue (key or CSR), list, bundle download."""

from __future__ import annotations

import io
import random
import zipfile

from fastapi.testclient import TestClient

from ca.service import Service
from tests.support.http import bearer
from tests.support.issuing import csr_pem

URL = "/api/v1/tenants/default/certificates"


def test_admin_downloads_the_users_zip(client: TestClient, tokens: dict[str, str]) -> None:
    h = bearer(tokens["admin"])
    serial = client.post(URL, json={"login": "alice", "p12_profile": "modern"},
                         headers=h).json()["certificates"][0]["serial"]
    r = client.get(f"{URL}/{serial}/bundle", headers=h)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == 'attachment; filename="alice.zip"'
    assert r.headers["cache-control"] == "no-store"
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        assert archive.namelist() == ["alice.p12", "alice-password.txt"]


def test_users_and_gateways_cannot_download_bundles(client: TestClient,
                                                    tokens: dict[str, str]) -> None:
    serial = client.post(URL, json={"login": "alice"}, headers=bearer(tokens["admin"])
                         ).json()["certificates"][0]["serial"]
    for role in ("user", "gateway"):
        r = client.get(f"{URL}/{serial}/bundle", headers=bearer(tokens[role]))
        assert r.status_code == 403
        assert b"PRIVATE" not in r.content and b".p12" not in r.content


def test_csr_issuance_over_http(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.post(URL, json={"login": "alice", "csr": csr_pem().decode()},
                    headers=bearer(tokens["admin"]))
    assert r.status_code == 201, r.text
    body = r.json()["certificates"][0]
    assert body["source"] == "csr" and body["has_key_material"] is False
    r = client.get(f"{URL}/{body['serial']}/bundle", headers=bearer(tokens["admin"]))
    assert r.status_code == 422 and "never left the device" in r.json()["detail"]


def test_mutated_csrs_never_cause_a_server_error(client: TestClient, service: Service,
                                                 tokens: dict[str, str]) -> None:
    rng = random.Random(20261122)  # fixed seed: the same 150 mutations on every run
    pem = csr_pem().decode()
    h = bearer(tokens["admin"])
    statuses = set()
    for _ in range(150):
        chars = list(pem)
        for _ in range(rng.randint(1, 6)):
            chars[rng.randrange(len(chars))] = chr(rng.randrange(0x20, 0x7F))
        r = client.post(URL, json={"login": "alice", "csr": "".join(chars)}, headers=h)
        statuses.add(r.status_code)
        assert r.status_code in (201, 400), r.text
        if r.status_code == 400:
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["field"] == "csr"
    assert 400 in statuses


def test_list_filters_by_state(client: TestClient, tokens: dict[str, str]) -> None:
    h = bearer(tokens["admin"])
    client.post(URL, json={"login": "alice"}, headers=h)
    client.post(URL, json={"login": "alice", "reissue": "revoke"}, headers=h)
    assert [c["state"] for c in client.get(URL, headers=h).json()] == ["valid", "revoked"]
    revoked = client.get(URL, params={"state": "revoked"}, headers=h).json()
    assert len(revoked) == 1 and revoked[0]["revocation_reason"] == "superseded"
    assert client.get(URL, params={"state": "bogus"}, headers=h).status_code == 400


def test_naming_users_twice_or_both_ways_is_refused(client: TestClient,
                                                    tokens: dict[str, str]) -> None:
    h = bearer(tokens["admin"])
    for body in ({"login": "alice", "logins": ["alice"]}, {}, {"logins": []},
                 {"logins": ["alice", "ALICE"]}):
        r = client.post(URL, json=body, headers=h)
        assert r.status_code == 400, (body, r.text)
