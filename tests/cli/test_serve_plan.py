"""How ``tegata serve`` runs: one worker per core unless told, a header timeout, connections
shared among the workers and never past the open files limit, and granian set up for it."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import pytest

from ca.errors import ConfigError, StorageError
from ca.settings import load_settings
from cli.server import WORKER_FACTORY, Plan, plan
from tests.support.cli import Cli, Env


@pytest.mark.parametrize(
    ("option", "variable", "cores", "expected"),
    [(None, None, 7, 7), (None, 3, 7, 3), (2, 3, 7, 2), (None, None, None, 1)],
    ids=["one-per-core", "TEGATA_WORKERS", "option-wins", "cores-unknown"])
def test_workers_default_to_one_per_core(monkeypatch: pytest.MonkeyPatch, option: int | None,
                                         variable: int | None, cores: int | None,
                                         expected: int) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    settings = load_settings(workers=variable)
    assert plan(settings, workers=option, open_files=20_000).workers == expected


@pytest.mark.parametrize(
    ("max_connections", "open_files", "expected"),
    [(None, 20_000, 15_000), (1000, 20_000, 250), (1001, 20_000, 251), (100_000, 1024, 768),
     (2, 20_000, 1)],
    ids=["open-files", "shared", "rounded-up", "open-files-first", "at-least-one"])
def test_connections_are_shared_among_workers_within_the_open_files(
        max_connections: int | None, open_files: int, expected: int) -> None:
    settings = load_settings(max_connections=max_connections, header_timeout_seconds=7)
    assert plan(settings, workers=4, open_files=open_files) == Plan(
        workers=4, connections_per_worker=expected, header_timeout_ms=7000)


class FakeGranian:
    made: dict[str, Any] = {}
    failure = None  # as cli.supervise.Supervisor's when every worker started

    def __init__(self, target: str, **kwargs: Any) -> None:
        FakeGranian.made = {"target": target, **kwargs}

    def serve(self) -> None:
        pass


def test_serve_without_options_runs_granian_on_every_core(
        ready_sqlite: Env, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from granian.constants import HTTPModes

    from cli import supervise

    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    monkeypatch.setattr(supervise, "Supervisor", FakeGranian)
    root = logging.getLogger()  # serve sets its log handler up: put the test's back after
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setenv("TEGATA_HEADER_TIMEOUT_SECONDS", "4")
    monkeypatch.setenv("TEGATA_MAX_CONNECTIONS", "700")

    cli.ok("serve")

    made = FakeGranian.made
    assert (made["target"], made["factory"], made["workers"]) == (WORKER_FACTORY, True, 7)
    assert made["backpressure"] == 100
    assert made["http1_settings"].header_read_timeout == 4000
    # HTTP/1 only: granian's HTTP/2 detection reads a first byte with no timeout at all
    assert made["http"] == HTTPModes.http1


def test_serve_refuses_zero_workers_in_one_line(ready_sqlite: Env, cli: Cli) -> None:
    result = cli("serve", "--workers", "0")
    assert result.code == 2
    assert "--workers" in result.error()


def test_serve_refuses_a_port_in_use_in_one_line(ready_sqlite: Env, cli: Cli) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = cli("serve", "--port", str(port), "--workers", "1")
    assert result.code == 78
    assert result.error().startswith(f"TEGATA_HOST/TEGATA_PORT: cannot listen on "
                                     f"127.0.0.1:{port}: ")


@pytest.mark.parametrize(("error", "code", "reason"), [
    (ConfigError("TEGATA_KEY_PASSPHRASE_FILE: 鍵 does not exist"), 78,
     "TEGATA_KEY_PASSPHRASE_FILE: 鍵 does not exist"),
    (StorageError("the database cannot be reached"), 69, "the database cannot be reached"),
    (ValueError("passphrase=秘密の合言葉"), 70,
     "a worker could not start: internal error (ValueError)"),
], ids=["configuration", "database", "unexpected"])
def test_a_worker_that_cannot_start_tells_the_server_why_in_its_exit_code_and_one_line(
        error: Exception, code: int, reason: str) -> None:
    from cli import supervise

    supervise.prepare_reasons()
    assert supervise.start_failed(error).code == code
    assert supervise.Supervisor._reason(code) == reason  # an unexpected error's text untold
