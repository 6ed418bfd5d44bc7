"""The one-time link page in a phone's browser: a user opens the link from a mail, presses
the button, and the zip with the .p12 arrives. The proof that the harness drives a real
Chromium against a real server; it takes the screenshots of the page the README shows."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

from cryptography.hazmat.primitives.serialization import pkcs12

from ca.service import IssueRequest
from tests.support.browser import Page, Site, expect, save_screenshot


def link_for(site: Site, login: str, display_name: str) -> tuple[str, str]:
    """A new user of the site's tenant with a certificate, and a link for them: the page's
    path and the certificate's serial."""
    site.service.users.add(site.tenant, login, email=f"{login}@example.jp",
                           display_name=display_name, allow=True)
    (issued,) = site.service.certificates.issue(IssueRequest(tenant=site.tenant,
                                                             logins=(login,)))
    return f"/d/{site.service.links.create(site.tenant, login).token}", issued.serial


def test_a_phone_opens_the_link_and_saves_the_zip_with_its_p12(
        site: Site, phone_page: Callable[..., Page]) -> None:
    path, serial = link_for(site, "yamada", "山田太郎")
    page = phone_page("ja-JP")
    response = page.goto(site.url + path)
    assert response is not None and response.status == 200
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "証明書のダウンロード / Certificate download", use_inner_text=True)
    expect(page.locator("dl dd")).to_have_text(["yamada", "2027-03-02 23:59 UTC"])
    save_screenshot(page, "link-page-phone-ja")

    page.get_by_role("button", name="ダウンロード / Download").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("証明書 / Your certificate")
    password = page.locator(".password code").inner_text()
    with page.expect_download() as arriving:
        page.get_by_role("link", name="yamada.zip を保存 / Save yamada.zip").click()
    download = arriving.value
    assert download.suggested_filename == "yamada.zip"
    with zipfile.ZipFile(io.BytesIO(download.path().read_bytes())) as archive:
        assert sorted(archive.namelist()) == ["yamada-password.txt", "yamada.p12"]
        assert archive.read("yamada-password.txt").decode().strip() == password
        loaded = pkcs12.load_pkcs12(archive.read("yamada.p12"), password.encode())
    assert loaded.key is not None and loaded.cert is not None
    assert format(loaded.cert.certificate.serial_number, "X") == serial
    save_screenshot(page, "link-delivered-phone-ja", mask=(page.locator(".password"),))
