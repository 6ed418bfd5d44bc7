"""Fixtures of the browser tests: Debian's Chromium (one per run of this package on a worker),
a real server with its own database for each test, and pages on a desktop or a phone in
Japanese or English whose errors fail the test.

Every test here carries the ``browser`` marker (``dev.py test --fast`` leaves them out).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ca.clock import FixedClock
from ca.settings import Settings
from tests.clocked_server import CLOCKED, NOW_VARIABLE
from tests.moments import MOMENTS
from tests.served import live_service, serving
from tests.support.browser import DESKTOP, PHONE, Browser, PageFactory, Site, launch, open_pages


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="package")
def chromium() -> Iterator[Browser]:
    """One headless Chromium for the tests of this package that run one after another on a
    worker. Package scope, not session: while Playwright's sync API runs, it marks its event
    loop as running in this thread, and a later test's ``asyncio.run`` would refuse."""
    driver, browser = launch()
    try:
        yield browser
    finally:
        browser.close()
        driver.stop()


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite only: a page reads what the service gives it, and the service's tests cover
    both databases; a second server per test would double the slowest tests of the suite."""
    return f"sqlite:///{tmp_path / 'tegata.db'}"


@pytest.fixture
def site(settings: Settings, tmp_path: Path) -> Iterator[Site]:
    """A server of this test's own (database, data directory, port): nothing one test does
    shows in another's pages. The server and the service stand at ``MOMENTS.start``, so
    every date a page shows is the same on each run, and so are the screenshots."""
    clock = FixedClock(MOMENTS.start)
    with live_service(settings, "tohoku", "東北電機株式会社", clock=clock) as service, \
            serving(settings, tmp_path / "serve.log", module=CLOCKED,
                    **{NOW_VARIABLE: MOMENTS.start.isoformat()}) as server:
        yield Site(server=server, service=service)


@pytest.fixture
def page(chromium: Browser) -> Iterator[PageFactory]:
    """``page(locale="ja-JP")``: a page on a desktop screen (1280x800)."""
    yield from open_pages(chromium, DESKTOP)


@pytest.fixture
def phone_page(chromium: Browser) -> Iterator[PageFactory]:
    """``phone_page(locale="ja-JP")``: a page on a phone (an iPhone 12's 390x844, touch)."""
    yield from open_pages(chromium, PHONE)
