"""Backups taken while a real ``tegata serve`` issues and revokes over HTTP: each restores
into a deployment whose rows agree with one another (every certificate has its issuance
event and its key material, every revocation its event and its CRL entry, the audit chains
verify), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
from cryptography import x509
from sqlalchemy import func, select

from ca import backupfile
from ca.db.models import AuditEvent, Certificate, KeyMaterial
from ca.service import Service, build_service
from ca.settings import Settings, load_settings
from tests.served import live_service, serving
from tests.support.environment import BASE_URL, PASSPHRASE
from tests.support.issuing import crl_reasons

TENANT = "acme"
USERS = 20
KEY = backupfile.new_key()


def traffic(url: str, token: str, stop: threading.Event, errors: list[str]) -> None:
    """Issue to a user and revoke what was issued, round and round, until told to stop."""
    headers = {"Authorization": f"Bearer {token}"}
    base = f"{url}/api/v1/tenants/{TENANT}/certificates"
    with httpx.Client(timeout=30, headers=headers) as client:
        try:
            _rounds(client, base, stop, errors)
        except Exception as exc:  # told to the test, not lost with the thread
            errors.append(f"{type(exc).__name__}: {exc}")


def _rounds(client: httpx.Client, base: str, stop: threading.Event,
            errors: list[str]) -> None:
    n = 0
    while not stop.is_set():
        answer = client.post(base, json={"logins": [f"user{n % USERS:04d}"]})
        if answer.status_code != 201:
            errors.append(f"issue {answer.status_code}: {answer.text[:200]}")
            return
        serial = answer.json()["certificates"][0]["serial"]
        if n % 2:
            revoked = client.post(f"{base}/{serial}/revoke", json={"reason": "superseded"})
            if revoked.status_code != 200:
                errors.append(f"revoke {revoked.status_code}: {revoked.text[:200]}")
                return
        n += 1


def counts(service: Service) -> dict[str, int]:
    with service.database.reading() as session:
        def count(query: object) -> int:
            return int(session.scalar(query) or 0)  # type: ignore[call-overload]
        return {
            "certificates": count(select(func.count()).select_from(Certificate)),
            "issue events": count(select(func.count()).where(AuditEvent.action == "cert.issue")),
            "key material": count(select(func.count()).select_from(KeyMaterial)),
            "revoked": count(select(func.count()).where(Certificate.revoked_at.is_not(None))),
            "revoke events": count(select(func.count()).where(
                AuditEvent.action == "cert.revoke")),
        }


def test_backups_taken_while_a_server_writes_restore_consistent(settings: Settings,
                                                                 tmp_path: Path) -> None:
    with live_service(settings, TENANT, "Acme", users=USERS) as service:
        token = service.tokens.create(role="admin", tenant=TENANT)[0]
        stop, errors = threading.Event(), []  # type: ignore[var-annotated]
        with serving(settings, tmp_path / "server.log") as server:
            thread = threading.Thread(target=traffic, args=(server.url, token, stop, errors))
            thread.start()
            try:
                taken = []
                last = 0  # the previous backup's certificates: each backup waits for more
                for n in range(3):
                    while counts(service)["certificates"] < max(4, last + 1) and not errors \
                            and thread.is_alive():
                        stop.wait(0.05)
                    path = tmp_path / f"{n}.tgbk"
                    with path.open("wb") as out:
                        taken.append((path, service.backups.take(out, KEY)))
                    last = taken[-1][1].rows["certificates"]
            finally:
                stop.set()
                thread.join(timeout=60)
        assert errors == []
    # the backups differ: each caught the server at another moment
    assert len({contents.rows["certificates"] for _, contents in taken}) == 3

    for n, (path, contents) in enumerate(taken):
        restored = build_service(load_settings(
            data_dir=tmp_path / f"restored-{n}", database_url=f"sqlite:///{tmp_path}/r{n}.db",
            key_passphrase=PASSPHRASE, public_base_url=BASE_URL))
        try:
            restored.backups.restore(path, KEY)
            found = counts(restored)
            assert found["certificates"] == contents.rows["certificates"]
            assert found["issue events"] == found["key material"] == found["certificates"]
            assert found["revoke events"] == found["revoked"]
            check = restored.audit.verify()
            # the backup's events and the restore's own, one chain
            assert check.broken is None and check.events == contents.rows["audit_events"] + 1
            listed = crl_reasons(x509.load_der_x509_crl(restored.crls.current(TENANT).der))
            assert len(listed) == found["revoked"]
        finally:
            restored.engine.dispose()
