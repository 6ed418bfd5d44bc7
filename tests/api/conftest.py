from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import build_app
from ca.service import Service
from tests.support.http import bearer

__all__ = ["bearer"]


@pytest.fixture
def client(service: Service) -> TestClient:
    return TestClient(build_app(service.settings, service=service), raise_server_exceptions=False)


@pytest.fixture
def tokens(service: Service) -> dict[str, str]:
    service.hierarchy.create_tenant("acme")
    service.users.add("default", "alice", email="alice@example.com", allow=True)
    made = {
        "operator": service.tokens.create(role="operator")[0],
        "admin": service.tokens.create(role="admin", tenant="default")[0],
        "acme-admin": service.tokens.create(role="admin", tenant="acme")[0],
        "user": service.tokens.create(role="user", tenant="default", login="alice")[0],
        "gateway": service.tokens.create(role="gateway", tenant="default")[0],
    }
    return made
