"""The harness itself: what it lets through and what it stops. A page's error fails the test
(a script the CSP refuses, an exception, a resource that fails to load), Japanese text is
drawn in a Japanese font, the devices and languages are what the tests say, and a
screenshot is written only when it changed.

Most pages here are served by Playwright's router from memory (``http://harness.test``):
no server needed, nothing leaves the browser."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import browser, environment
from tests.support.browser import (
    DESKTOP,
    JAPANESE_FONT,
    Browser,
    Page,
    Site,
    expect,
    open_pages,
    page_errors,
)

HARNESS = "http://harness.test"
STRICT = "default-src 'none'; style-src 'unsafe-inline'"  # as the link page's, in short


def serve(page: Page, pages: dict[str, tuple[int, str, dict[str, str]]]) -> None:
    """``path -> (status, html, headers)``, answered by the browser's router."""
    def answer(route: object) -> None:
        path = route.request.url.removeprefix(HARNESS)  # type: ignore[attr-defined]
        status, body, headers = pages.get(path, (404, "", {}))
        route.fulfill(status=status, body=body, headers=headers,  # type: ignore[attr-defined]
                      content_type="text/html; charset=utf-8")
    page.route(f"{HARNESS}/**", answer)


def test_an_inline_script_the_csp_refuses_is_an_error(page: Callable[..., Page]) -> None:
    opened = page()
    serve(opened, {"/": (200, "<p>ok</p><script>document.title = 'ran'</script>",
                         {"Content-Security-Policy": STRICT})})
    opened.goto(HARNESS + "/")
    assert opened.title() == ""  # the script did not run
    (error,) = page_errors(opened)
    # Chromium's words change between versions ("Refused to execute inline script because
    # it violates...", then "Executing inline script violates..."): what they name stays
    assert re.fullmatch(r"console: .*inline script.* Content Security Policy directive "
                        r"'?default-src 'none''?.*\(http://harness\.test/\)", error), error
    page_errors(opened).clear()


def test_an_uncaught_exception_is_an_error(page: Callable[..., Page]) -> None:
    opened = page()
    serve(opened, {"/": (200, "<script>null.copy()</script>", {})})
    opened.goto(HARNESS + "/")
    assert page_errors(opened) == [
        "pageerror: Cannot read properties of null (reading 'copy')"]
    page_errors(opened).clear()


def test_a_missing_resource_is_an_error_and_the_page_own_status_is_the_test_s(
        page: Callable[..., Page]) -> None:
    opened = page()
    serve(opened, {"/gone": (410, "<h1>gone</h1>", {}),
                   "/": (200, '<img src="/missing.png" alt="">', {})})
    assert opened.goto(HARNESS + "/gone").status == 410  # type: ignore[union-attr]
    assert page_errors(opened) == []
    opened.goto(HARNESS + "/")
    opened.wait_for_load_state("load")
    assert page_errors(opened) == [
        "console: Failed to load resource: the server responded with a status of 404 (Not Found) "
        f"({HARNESS}/missing.png)"]
    page_errors(opened).clear()


def test_a_page_s_error_fails_the_test_when_it_ends(chromium: Browser) -> None:
    pages = open_pages(chromium, DESKTOP)
    opened = next(pages)()
    serve(opened, {"/": (200, "<script>null.copy()</script>", {})})
    opened.goto(HARNESS + "/")
    with pytest.raises(AssertionError, match=r"the page showed errors: http://harness\.test/"):
        next(pages)


def test_the_phone_and_the_desktop_are_what_they_say(
        page: Callable[..., Page], phone_page: Callable[..., Page]) -> None:
    seen: dict[str, str] = {}
    for name, opened in (("desktop en", page("en-US")), ("phone ja", phone_page("ja-JP"))):
        opened.on("request", lambda r, name=name: seen.setdefault(
            name, r.headers.get("accept-language", "")))
        serve(opened, {"/": (200, '<meta name="viewport" content="width=device-width">', {})})
        opened.goto(HARNESS + "/")
        seen[f"{name} screen"] = opened.evaluate(
            "`${innerWidth}x${innerHeight} ${navigator.language} "
            "${matchMedia('(pointer: coarse)').matches ? 'touch' : 'mouse'} "
            "${/iPhone/.test(navigator.userAgent) ? 'iPhone' : 'other'}`")
    assert seen == {"desktop en": "en-US", "desktop en screen": "1280x800 en-US mouse other",
                    "phone ja": "ja-JP", "phone ja screen": "390x844 ja-JP touch iPhone"}


def test_a_page_may_write_and_read_the_clipboard(site: Site,
                                                 page: Callable[..., Page]) -> None:
    opened = page()
    opened.goto(site.url + "/healthz")  # an origin of the server's: loopback is secure
    copied = opened.evaluate("navigator.clipboard.writeText('山田太郎 tgt_例')"
                             ".then(() => navigator.clipboard.readText())")
    assert copied == "山田太郎 tgt_例"


def test_japanese_text_is_drawn_in_a_japanese_font(page: Callable[..., Page]) -> None:
    if not JAPANESE_FONT.is_file():
        environment.unavailable(f"the font {JAPANESE_FONT} (apt-get install fonts-noto-cjk)")
    opened = page()
    serve(opened, {"/": (200, '<h1 lang="ja">東北電機株式会社</h1>', {})})
    opened.goto(HARNESS + "/")
    session = opened.context.new_cdp_session(opened)
    session.send("DOM.enable")
    session.send("CSS.enable")
    root = session.send("DOM.getDocument")["root"]["nodeId"]
    heading = session.send("DOM.querySelector", {"nodeId": root, "selector": "h1"})
    fonts = session.send("CSS.getPlatformFontsForNode", {"nodeId": heading["nodeId"]})
    drawn = {font["familyName"]: font["glyphCount"] for font in fonts["fonts"]}
    assert drawn == {"Noto Sans CJK JP": 8}  # every character, none left as an empty box


@pytest.fixture
def screenshots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(browser, "SCREENSHOTS", tmp_path / "screenshots")
    return tmp_path / "screenshots"


def test_a_screenshot_is_written_again_only_when_the_page_changed(
        page: Callable[..., Page], screenshots: Path) -> None:
    opened = page()
    serve(opened, {"/": (200, "<h1>山田太郎</h1>", {}), "/2": (200, "<h1>佐藤花子</h1>", {})})
    opened.goto(HARNESS + "/")
    path = browser.save_screenshot(opened, "harness-page")
    assert path == screenshots / "harness-page.png"
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    os.utime(path, ns=(0, 0))
    browser.save_screenshot(opened, "harness-page")
    assert path.stat().st_mtime_ns == 0  # the same picture: the file is left alone
    first = path.read_bytes()
    opened.goto(HARNESS + "/2")
    browser.save_screenshot(opened, "harness-page")
    assert path.stat().st_mtime_ns != 0 and path.read_bytes() != first


def test_no_screenshot_of_a_page_that_showed_an_error(page: Callable[..., Page],
                                                     screenshots: Path) -> None:
    opened = page()
    serve(opened, {"/": (200, "<h1>x</h1><script>null.copy()</script>", {})})
    opened.goto(HARNESS + "/")
    expect(opened.get_by_role("heading")).to_have_text("x")
    with pytest.raises(AssertionError, match="bad-page: the page showed errors"):
        browser.save_screenshot(opened, "bad-page")
    with pytest.raises(ValueError, match="'Bad Name': lowercase words joined by hyphens"):
        browser.save_screenshot(opened, "Bad Name")
    assert not screenshots.exists()
    page_errors(opened).clear()


@pytest.mark.parametrize("in_ci", [False, True], ids=["laptop", "ci"])
def test_a_missing_chromium_is_a_skip_on_a_laptop_and_a_failure_in_ci(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, in_ci: bool) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setattr(environment, "IN_CI", in_ci)
    outcome = pytest.fail.Exception if in_ci else pytest.skip.Exception
    with pytest.raises(outcome, match=f"Debian's Chromium \\({tmp_path}/no-chromium; "):
        browser.launch()


@pytest.mark.parametrize("in_ci", [False, True], ids=["laptop", "ci"])
def test_no_screenshot_without_the_japanese_font(
        page: Callable[..., Page], screenshots: Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path, in_ci: bool) -> None:
    opened = page()
    serve(opened, {"/": (200, "<h1>山田太郎</h1>", {})})
    opened.goto(HARNESS + "/")
    monkeypatch.setattr(browser, "JAPANESE_FONT", tmp_path / "no-font.ttc")
    monkeypatch.setattr(environment, "IN_CI", in_ci)
    outcome = pytest.fail.Exception if in_ci else pytest.skip.Exception
    with pytest.raises(outcome, match="the Japanese font of the screenshots"):
        browser.save_screenshot(opened, "no-font")
    assert not screenshots.exists()
