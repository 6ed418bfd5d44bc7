"""The one-time link as its two people meet it: the admin makes it on the user's console
page, and the user opens it in a phone's browser, presses the button, copies the password
with the copy button and saves the zip, whose .p12 that password opens. The screenshots of
the link pages are taken with the console's (test_console_flow.py)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from ca.service import IssueRequest
from tests.browser.steps import (
    fits_the_screen,
    open_user_zip,
    opened,
    serial_of,
    sign_in,
    user_path,
)
from tests.support.browser import Page, Site, expect


def test_a_phone_opens_the_link_copies_the_password_and_saves_the_zip_with_its_p12(
        site: Site, page: Callable[..., Page], phone_page: Callable[..., Page]) -> None:
    site.service.users.add(site.tenant, "yamada", email="yamada@example.jp",
                           display_name="山田 太郎", allow=True)
    (issued,) = site.service.certificates.issue(IssueRequest(tenant=site.tenant,
                                                             logins=("yamada",)))
    admin = opened(page, "ja-JP")
    sign_in(admin, site, site.admin_token())
    admin.goto(site.url + user_path(site, "yamada"))
    expect(admin.locator("#link-url")).to_have_count(0)
    with admin.expect_navigation():
        admin.click("form#link #link-submit")
    link = urlsplit(admin.locator("#link-url").inner_text().strip())
    assert link.path.startswith("/d/") and not link.query, link
    admin.goto(site.url + user_path(site, "yamada"))  # the link is shown once
    expect(admin.locator("#link-url")).to_have_count(0)

    phone = opened(phone_page, "ja-JP")
    response = phone.goto(site.url + link.path)
    assert response is not None and response.status == 200
    expect(phone.locator("#password")).to_have_count(0)  # nothing secret before the button
    assert fits_the_screen(phone)
    with phone.expect_navigation():
        phone.click("#download-button")
    password = phone.locator("#password").inner_text().strip()
    assert len(password) >= 16, password
    assert fits_the_screen(phone)

    copy = phone.locator("button[data-copy=password]")
    expect(copy).to_be_visible()
    copy.tap()
    expect(copy).to_have_attribute("data-copied", "true")
    assert phone.evaluate("navigator.clipboard.readText()") == password

    with phone.expect_download() as arriving:
        phone.tap("a#download-zip")
    download = arriving.value
    assert download.suggested_filename == "yamada.zip"
    bundle = open_user_zip("yamada", download.path().read_bytes())
    assert bundle.password == password
    assert serial_of(bundle.certificate) == issued.serial
