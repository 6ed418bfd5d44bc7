"""``tegata serve``'s OCSP app as a uvicorn factory, for ``bench/ocsp.py`` to measure two worker
processes while ``tegata serve`` has no ``--workers`` option (the same app: the fast path
around the API, one service per worker, settings from the TEGATA_* environment). Bench only."""

from __future__ import annotations

from typing import Any


def app() -> Any:
    from api.app import build_app
    from api.fastpath import OcspFastPath
    from ca.service import Service
    from ca.settings import load_settings

    settings = load_settings()
    service = Service(settings)
    service.load_signers()
    return OcspFastPath(build_app(settings, service=service), service)
