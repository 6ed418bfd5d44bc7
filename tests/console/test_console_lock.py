"""A held SQLite write lock stops no console page that only reads: signed in before the lock,
the admin's users list and the sign-in page answer while another connection holds it, as the
API's reads do (tests/api/test_event_loop.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from ca.settings import Settings
from tests.clocked_server import CLOCKED
from tests.console.conftest import form_csrf
from tests.served import live_service, serving


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_held_write_lock_stops_no_console_read(settings: Settings, tmp_path: Path) -> None:
    with live_service(settings, "tohoku", "東北電機株式会社") as service:
        service.users.add("tohoku", "yamada", email="yamada@example.jp",
                          display_name="山田 太郎", allow=True)
        token, _ = service.tokens.create(role="admin", tenant="tohoku")
        now = service.clock.now()
        with serving(settings, tmp_path / "serve.log", module=CLOCKED,
                     TEGATA_TEST_NOW=now.isoformat()) as server, \
                httpx.Client(base_url=server.url, timeout=60,
                             follow_redirects=True) as browser:
            page = browser.get("/console/sign-in")
            signed = browser.post("/console/sign-in", data={
                "csrf": form_csrf(page.text), "token": token})
            assert signed.status_code == 200 and "山田 太郎" in signed.text
            lock = sqlite3.connect(tmp_path / "tegata.db", isolation_level=None)
            try:
                lock.execute("BEGIN IMMEDIATE")
                for _ in range(3):
                    users = browser.get("/console/t/tohoku/users")
                    assert users.status_code == 200 and "山田 太郎" in users.text
                    assert browser.get("/console/sign-in").status_code == 200
            finally:
                lock.rollback()
                lock.close()
