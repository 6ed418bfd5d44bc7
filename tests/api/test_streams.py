"""A streamed bulk download whose client goes away: the generator's closing step (it audits
which keys left) runs in a worker thread, never on the event loop, and it does run."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from sqlalchemy import select

from api.streams import in_threads
from ca.db.models import AuditEvent
from ca.service import IssueRequest, Selection, Service, downloads
from ca.settings import Settings
from tests.served import live_service, serving


def on_an_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_a_stream_broken_off_is_closed_in_a_worker_thread() -> None:
    seen: dict[str, bool] = {}

    def produce() -> Iterator[bytes]:
        try:
            seen["first step on the loop"] = on_an_event_loop()
            yield b"first"
            yield b"second"
        finally:
            seen["closed on the loop"] = on_an_event_loop()

    async def client_goes_away() -> None:
        stream = in_threads(produce())
        with anyio.CancelScope() as scope:
            async for _chunk in stream:
                scope.cancel()  # the client is gone after the first chunk
                await anyio.sleep(0)
        await stream.aclose()  # what the loop's finaliser does with an abandoned stream

    anyio.run(client_goes_away)
    assert seen == {"first step on the loop": False, "closed on the loop": False}


def broken_off_download(service: Service, settings: Settings, tmp_path: Path,
                        token: str) -> list[AuditEvent]:
    """The bulk download through a real server, its client gone after 64 KiB: the
    ``cert.download.end`` events recorded (a bounded wait for the first)."""
    with serving(settings, tmp_path / "serve.log") as server, httpx.stream(
            "GET", f"{server.url}/api/v1/tenants/acme/certificates/download?all=true",
            headers={"Authorization": f"Bearer {token}"}, timeout=60) as answer:
        assert answer.status_code == 200
        next(answer.iter_raw(64 * 1024))
        answer.close()
        deadline = time.monotonic() + 60
        ends: list[AuditEvent] = []
        while not ends and time.monotonic() < deadline:
            with service.database.reading() as session:
                ends = list(session.scalars(select(AuditEvent).where(
                    AuditEvent.action == "cert.download.end")))
            time.sleep(0.05)
    return ends


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_bulk_download_the_client_breaks_off_is_audited_with_what_left(
        settings: Settings, tmp_path: Path) -> None:
    count = 600  # many batches (downloads.BATCH): the stream is far from done at its start
    with live_service(settings, "acme", "株式会社アクメ", users=count) as service:
        service.certificates.issue_bulk(IssueRequest(tenant="acme",
                                                     selection=Selection(everyone=True)))
        token = service.tokens.create(role="admin", tenant="acme")[0]
        ends = broken_off_download(service, settings, tmp_path, token)
    assert len(ends) == 1
    details = json.loads(ends[0].details)
    assert (ends[0].outcome, details["complete"]) == ("failure", False)
    assert len(details["serials"]) + len(details["withheld"]) == count
    assert len(details["withheld"]) > 0
    # counted, not timed: the pool built what left and at most the window handed to it
    # ahead (the rest was never submitted, or cancelled), and was waited for before the end
    assert len(details["serials"]) <= details["built"] <= (
        len(details["serials"]) + downloads.AHEAD * downloads.BATCH) < count
