"""HTTP helpers for tests of the API."""

from __future__ import annotations


def bearer(token: str) -> dict[str, str]:
    """The headers that present ``token``."""
    return {"Authorization": f"Bearer {token}"}
