"""No secret reaches a log: tokens, link tokens, bundle passwords, keys, the passphrase."""

from __future__ import annotations

import io
import logging
import re
import zipfile

import pytest
from fastapi.testclient import TestClient

from ca.service import Service
from cli import logs
from tests.support.environment import PASSPHRASE
from tests.support.http import bearer


def test_logs_during_issuance_download_and_link_use_hold_no_secret(
        client: TestClient, service: Service, tokens: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    h = bearer(tokens["admin"])
    serial = client.post("/api/v1/tenants/default/certificates", json={"login": "alice"},
                         headers=h).json()["certificates"][0]["serial"]
    bundle = client.get(f"/api/v1/tenants/default/certificates/{serial}/bundle", headers=h)
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        password = archive.read("alice-password.txt").decode().strip()
    link = client.post("/api/v1/tenants/default/users/alice/links", json={"send": False},
                       headers=h).json()
    link_token = link["url"].rsplit("/", 1)[1]
    assert client.get(f"/d/{link_token}").status_code == 200
    assert client.post(f"/d/{link_token}").status_code == 200
    client.get("/api/v1/whoami", headers=bearer("tgt_" + "A" * 43))  # a failed login too
    client.get("/readyz")
    # everything the service logged (httpx's records are the test client's own)
    text = "\n".join(r.getMessage() + " " + str(r.__dict__) for r in caplog.records
                     if not r.name.startswith(("httpx", "httpcore")))
    secrets_seen = [name for name, secret in (
        ("bundle password", password), ("link token", link_token),
        ("passphrase", PASSPHRASE), *((f"{role} token", t) for role, t in tokens.items()))
        if secret in text]
    assert secrets_seen == []
    assert "PRIVATE KEY" not in text


def test_the_access_log_filter_blanks_one_time_link_paths() -> None:
    from ca.logfilters import RedactLinkTokens

    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0,
                               '%s - "%s %s HTTP/%s" %d', ("127.0.0.1", "GET",
                                                           "/d/tdl_SECRETSECRET", "1.1", 200),
                               None)
    assert RedactLinkTokens().filter(record)
    assert "SECRETSECRET" not in record.getMessage()
    assert re.search(r"/d/\S+", record.getMessage())
    assert logs  # the filter is installed by cli.logs.configure
