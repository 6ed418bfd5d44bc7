"""HTTP helpers for tests of the API."""

from __future__ import annotations

from fastapi.testclient import TestClient


def bearer(token: str) -> dict[str, str]:
    """The headers that present ``token``."""
    return {"Authorization": f"Bearer {token}"}


def issue_over_api(client: TestClient, headers: dict[str, str], login: str,
                   tenant: str = "default") -> str:
    """``POST …/certificates`` for ``login``, answered 201; the serial of the certificate."""
    r = client.post(f"/api/v1/tenants/{tenant}/certificates", json={"login": login},
                    headers=headers)
    assert r.status_code == 201, r.text
    serial: str = r.json()["certificates"][0]["serial"]
    return serial
