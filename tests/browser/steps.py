"""Steps the console's browser tests share: signing in as a person does (the token pasted
into the form), reading which users a list shows, and opening what a download hands over.

The pages are read by the ids, classes and addresses the console's page contract names
(``form#issue``, ``tr[data-login]``, ``#job-status[data-status]``...), never by their
wording, which changes with the language."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.support.browser import Page, Site, expect

SIGN_IN = "/console/sign-in"

# one row (line 3: sato's e-mail has no "@") that the check must point at, and nothing else
IMPORT_HEADER = "login,email,name,groups,secure_access\n"
GOOD_ROWS = {
    "yamada": "yamada,yamada@example.jp,山田 太郎,営業部,yes\n",
    "sato": "sato,sato@example.jp,佐藤 花子,営業部,yes\n",
    "tanaka": "tanaka,tanaka@example.jp,田中 美咲,営業部;開発部,yes\n",
    "suzuki": "suzuki,suzuki@example.jp,鈴木 一郎,開発部,yes\n",
}
BAD_EMAIL = "sato.example.jp"
FIXED_CSV = IMPORT_HEADER + "".join(GOOD_ROWS.values())
BAD_CSV = FIXED_CSV.replace("sato@example.jp", BAD_EMAIL)
BAD_LINE = 3  # the header is line 1
# what the import makes of FIXED_CSV: login -> (display name, groups)
IMPORTED = {
    "yamada": ("山田 太郎", ("営業部",)),
    "sato": ("佐藤 花子", ("営業部",)),
    "tanaka": ("田中 美咲", ("営業部", "開発部")),
    "suzuki": ("鈴木 一郎", ("開発部",)),
}
SALES = "営業部"
IN_SALES = {"sato", "tanaka", "yamada"}


def opened(pages: Callable[..., Page], locale: str = "ja-JP") -> Page:
    """A new page from the harness's factory (``page`` or ``phone_page``), in ``locale``."""
    return pages(locale)


def sign_in(page: Page, site: Site, token: str, *, lang: str | None = None) -> None:
    """The sign-in page, the token pasted into ``#token`` and the form's button pressed;
    the console's front door then leads an admin to their users, the operator to the
    tenants."""
    query = f"?{urlencode({'lang': lang})}" if lang else ""
    response = page.goto(site.url + SIGN_IN + query)
    assert response is not None and response.status == 200
    page.fill("#token", token)
    with page.expect_navigation():
        page.locator("form:has(#token) [type=submit]").click()
    assert not page.url.startswith(site.url + SIGN_IN), "the sign-in was refused"


def sign_out(page: Page) -> None:
    with page.expect_navigation():
        page.locator("form[action='/console/sign-out'] [type=submit]").click()


def tenant_path(site: Site, rest: str, tenant: str | None = None) -> str:
    return f"/console/t/{tenant or site.tenant}/{rest}"


def user_path(site: Site, login: str) -> str:
    return tenant_path(site, f"users/{quote(login, safe='')}")


def listed(page: Page) -> set[str]:
    """The logins of the rows the users list shows."""
    logins: list[str] = page.locator("tr[data-login]").evaluate_all(
        "rows => rows.map(row => row.dataset.login)")
    assert len(logins) == len(set(logins)), f"a user listed twice: {logins}"
    return set(logins)


def filter_users(page: Page, *, group: str = "", status: str = "") -> set[str]:
    """The users list's filter form, as an admin sets it: the group and the certificate
    status chosen, then "apply"; the logins listed."""
    page.select_option("#group", group)
    page.select_option("#status", status)
    with page.expect_navigation():
        page.click("#apply-filter")
    shown = listed(page)
    expect(page.locator("#user-count")).to_have_text(str(len(shown)))
    return shown


def import_rows(page: Page) -> dict[int, str]:
    """The import check's table: line -> "ok" or "bad"."""
    rows: list[list[str]] = page.locator("#import-rows tbody tr").evaluate_all(
        "rows => rows.map(row => [row.dataset.line, row.className])")
    return {int(line): classes for line, classes in rows}


# --- what a download hands over ---------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    """One user's ``<login>.zip``: the PKCS#12 opened with the password beside it."""

    login: str
    password: str
    certificate: x509.Certificate


def open_user_zip(login: str, data: bytes) -> Bundle:
    """``<login>.zip`` holds exactly ``<login>.p12`` and ``<login>-password.txt``, and the
    password opens the PKCS#12, which holds the key and the certificate."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == [f"{login}-password.txt", f"{login}.p12"]
        password = archive.read(f"{login}-password.txt").decode().strip()
        loaded = pkcs12.load_pkcs12(archive.read(f"{login}.p12"), password.encode())
    assert loaded.key is not None and loaded.cert is not None
    return Bundle(login=login, password=password, certificate=loaded.cert.certificate)


def open_bulk_zip(data: bytes) -> dict[str, Bundle]:
    """The job's zip: ``<login>.zip`` per user and ``manifest.csv``, nothing else."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        assert "manifest.csv" in names, names
        logins = {name.removesuffix(".zip") for name in names - {"manifest.csv"}}
        assert names == {f"{login}.zip" for login in logins} | {"manifest.csv"}, names
        return {login: open_user_zip(login, archive.read(f"{login}.zip"))
                for login in logins}


def bulk_manifest(data: bytes) -> dict[str, str]:
    """The job zip's ``manifest.csv``: login -> serial of each bundle in it."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        text = archive.read("manifest.csv").decode("utf-8-sig")
    header, *rows = csv.reader(io.StringIO(text))
    assert header == ["login", "serial", "not_after", "sha256_fingerprint"], header
    return {row[0]: row[1] for row in rows}


def serial_of(certificate: x509.Certificate) -> str:
    return format(certificate.serial_number, "X")



def fits_the_screen(page: Page) -> bool:
    """Nothing wider than the screen: no sideways scrolling of the whole page (a phone's
    browser would otherwise zoom out until the words are too small to read)."""
    return bool(page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"))
