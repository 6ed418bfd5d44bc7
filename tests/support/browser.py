"""The browser tests' harness: Debian's Chromium driven through Playwright, the devices and
languages a page is opened in, the errors a page must not show, and the screenshots the
README links.

Playwright is imported here without failing: where the package is missing, the ``chromium``
fixture (tests/browser/conftest.py) reports it through ``unavailable`` (a skip on a laptop,
a failure in CI) before any test touches the names below.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ca.service import Service
from tests.served import Server
from tests.support.environment import unavailable

try:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Page,
        expect,
        sync_playwright,
    )
    from playwright.sync_api import Error as PlaywrightError
    MISSING: str | None = None
except ImportError:  # pragma: no cover - a laptop without the dev extras
    MISSING = "the Python package playwright (pip install -e '.[dev]')"
    if not TYPE_CHECKING:
        Browser = BrowserContext = ConsoleMessage = Page = PlaywrightError = None
        expect = sync_playwright = None

__all__ = ["CHROMIUM", "DESKTOP", "LOCALES", "PHONE", "SCREENSHOTS", "Browser",
           "BrowserContext", "Page", "PageFactory", "PlaywrightError", "Site", "expect", "launch",
           "open_pages", "page_errors", "save_screenshot"]

ROOT = Path(__file__).resolve().parents[2]
# Debian's package (.ci/run installs it); Playwright never downloads a browser of its own
CHROMIUM = Path("/usr/bin/chromium")
# the screenshots the README links: committed, and written again by the tests that take them
SCREENSHOTS = ROOT / "docs" / "screenshots"
# Debian's fonts-noto-cjk (.ci/run installs it): without a CJK font Chromium draws Japanese
# text as empty boxes, and a screenshot would show nothing of the page's words
JAPANESE_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")

# as root (the CI machine, the developers' containers) Chromium refuses to start with its
# sandbox; the pages it opens are our own, on loopback. Its shared memory in /tmp, not
# /dev/shm: a container's 64 MB /dev/shm crashes it on a full-page screenshot (Debian's
# launcher means to add this flag where /dev/shm is small, but its test breaks where
# /dev/shm is mounted twice)
LAUNCH_ARGS = ("--no-sandbox", "--disable-dev-shm-usage")

# fixed sizes, so that a screenshot changes only when the page does
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 800},
                           "device_scale_factor": 1}
PHONE: dict[str, Any] = {  # an iPhone 12's screen, as Safari on iOS 17 says who it is
    "viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
    "is_mobile": True, "has_touch": True,
    "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
                  "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"}
LOCALES = ("ja-JP", "en-US")

SCREENSHOT_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def launch() -> tuple[Any, Browser]:
    """Playwright and Debian's Chromium, headless; a missing package or browser is
    ``unavailable`` (a skip on a laptop, a failure in CI)."""
    if MISSING is not None:
        unavailable(MISSING)
    if not CHROMIUM.is_file():
        unavailable(f"Debian's Chromium ({CHROMIUM}; apt-get install chromium)")
    driver = sync_playwright().start()
    try:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=list(LAUNCH_ARGS))
    except BaseException:
        driver.stop()
        raise
    return driver, browser


@dataclass(frozen=True)
class Site:
    """A real server on its own database and data directory (a fixed clock), the service on
    that database for setting a test up, and the tenant 東北電機株式会社 (``tohoku``)."""

    server: Server
    service: Service
    tenant: str = "tohoku"
    tenant_display_name: str = "東北電機株式会社"

    @property
    def url(self) -> str:
        return self.server.url

    def admin_token(self, tenant: str | None = None, *, name: str = "山田の管理画面") -> str:
        """A new admin token of ``tenant`` (the site's own by default)."""
        text, _ = self.service.tokens.create(role="admin", tenant=tenant or self.tenant,
                                             name=name)
        return text

    def operator_token(self, *, name: str = "運用担当 佐藤") -> str:
        """A new operator token (all tenants)."""
        text, _ = self.service.tokens.create(role="operator", name=name)
        return text


# --- what a page must not show ----------------------------------------------------------------


@dataclass
class Errors:
    """What went wrong in a page: its console's errors, where Chromium reports a CSP
    violation and a resource that failed to load, and its uncaught exceptions. The document
    of a navigation may answer with an error status: a test asserts that status itself.
    Playwright's ``requestfailed`` is not watched: it fires for every download (Chromium
    aborts the navigation that became one) and adds nothing the console does not say."""

    found: list[str] = field(default_factory=list)
    documents: set[str] = field(default_factory=set)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        where = message.location.get("url", "")
        # Chromium says this of every response with an error status, the page itself too
        if message.text.startswith("Failed to load resource") and where in self.documents:
            return
        self.found.append(f"console: {message.text} ({where})")

    def watch(self, page: Page) -> None:
        page.on("console", self.on_console)
        page.on("pageerror", lambda error: self.found.append(f"pageerror: {error}"))
        page.on("response", lambda response: self._document(page, response))

    def _document(self, page: Page, response: Any) -> None:
        request = response.request
        if request.is_navigation_request() and request.frame == page.main_frame:
            self.documents.add(response.url)


ERRORS_OF: weakref.WeakKeyDictionary[Page, Errors] = weakref.WeakKeyDictionary()


def page_errors(page: Page) -> list[str]:
    """The errors collected from ``page`` so far. The page fixtures assert it empty when the
    test ends; a test that provokes one on purpose asserts it, then clears the list."""
    return ERRORS_OF[page].found


def watch(page: Page) -> Errors:
    errors = ERRORS_OF[page] = Errors()
    errors.watch(page)
    return errors


# --- pages ----------------------------------------------------------------------------------


PageFactory = Callable[..., Page]


def open_pages(browser: Browser, device: dict[str, Any]) -> Iterator[PageFactory]:
    """A factory of pages on ``device`` (``DESKTOP`` or ``PHONE``) while the generator runs;
    when it resumes, every page's errors are asserted empty and the contexts closed."""
    contexts: list[BrowserContext] = []

    def open_page(locale: str = "ja-JP") -> Page:
        """A new page in a context of its own: ``locale`` is navigator.language and the
        Accept-Language header; clipboard granted (a copy button), downloads accepted."""
        if locale not in LOCALES:
            raise ValueError(f"locale {locale!r} is not one of {', '.join(LOCALES)}")
        context = browser.new_context(**device, locale=locale, accept_downloads=True,
                                      timezone_id="Asia/Tokyo", color_scheme="light",
                                      reduced_motion="reduce")
        # for any origin; the page must still be a secure context (loopback is)
        context.grant_permissions(["clipboard-read", "clipboard-write"])
        contexts.append(context)
        page = context.new_page()
        watch(page)
        return page

    yield open_page
    try:
        for context in contexts:
            for opened in context.pages:
                assert page_errors(opened) == [], f"the page showed errors: {opened.url}"
    finally:
        for context in contexts:
            context.close()


# --- screenshots ------------------------------------------------------------------------------


def save_screenshot(page: Page, name: str, *, mask: tuple[Any, ...] = (),
                    full_page: bool = True) -> Path:
    """``docs/screenshots/<name>.png`` of the page as it is now, once the fonts are loaded;
    ``mask`` paints over what differs on every run (a password, a serial) so that the file
    changes only when the page does. Refused while the page has shown an error; the file is
    rewritten only when its bytes differ, so a run leaves git clean."""
    if not SCREENSHOT_NAME.fullmatch(name):
        raise ValueError(f"screenshot name {name!r}: lowercase words joined by hyphens")
    if not JAPANESE_FONT.is_file():
        unavailable(f"the Japanese font of the screenshots ({JAPANESE_FONT}; "
                    "apt-get install fonts-noto-cjk)")
    assert page_errors(page) == [], f"{name}: the page showed errors; no screenshot"
    page.evaluate("document.fonts.ready.then(() => true)")
    png = page.screenshot(full_page=full_page, animations="disabled", caret="hide",
                          mask=list(mask), mask_color="#888888")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    if not path.exists() or path.read_bytes() != png:
        path.write_bytes(png)
    return path
