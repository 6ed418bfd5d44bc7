"""One bounded process pool per process, shared by every bulk download (and RSA key
generation), made on first use and gone after ``parallel.shutdown`` (the server's end):
three downloads at once run on ``parallel.workers()`` processes, not a pool each."""

from __future__ import annotations

import io
import multiprocessing
import os
import zipfile
from collections.abc import Iterator

import pytest

from ca import parallel
from ca.service import IssueRequest, Selection, Service, downloads
from ca.settings import Settings
from tests.processes import free_port
from tests.served import live_service

TENANT = "default"


@pytest.fixture
def pooled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(downloads, "PARALLEL_FROM", 1)  # the pool even for a few users
    monkeypatch.setattr(downloads, "BATCH", 4)
    parallel.shutdown()  # whatever an earlier test left running in this process
    yield
    parallel.shutdown()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_downloads_at_once_share_one_bounded_pool_that_stops_with_the_server(
        service: Service, pooled: None) -> None:
    logins = tuple(f"shain{n:02d}" for n in range(12))
    for login in logins:
        service.users.add(TENANT, login, email=f"{login}@example.jp", display_name="社員",
                         allow=True)
    service.certificates.issue(IssueRequest(tenant=TENANT, logins=logins))
    assert multiprocessing.active_children() == []  # made on first use, not before
    streams = [iter(service.downloads.bulk(TENANT, Selection(everyone=True)).chunks)
               for _ in range(3)]
    parts: list[list[bytes]] = [[next(s)] for s in streams]  # all three under way at once
    assert len(multiprocessing.active_children()) <= parallel.workers()
    for part, rest in zip(parts, streams, strict=True):
        part += list(rest)
    for part in parts:
        with zipfile.ZipFile(io.BytesIO(b"".join(part))) as archive:
            assert len(archive.namelist()) == len(logins) + 1  # and the manifest
    parallel.shutdown()
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_tegata_serve_tells_its_workers_how_many_share_the_cores(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli import server, supervise

    told: list[str | None] = []

    class Supervisor:  # what the workers are started under: this process's environment
        failure = None

        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def serve(self) -> None:
            told.append(os.environ.get(parallel.SERVER_WORKERS))

    monkeypatch.delenv(parallel.SERVER_WORKERS, raising=False)
    monkeypatch.setattr(supervise, "Supervisor", Supervisor)
    with live_service(settings, "kyushu", "九州支社") as service:
        server.run(service, "127.0.0.1", free_port(), workers=3)
    assert told == ["3"]
