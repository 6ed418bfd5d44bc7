"""The web console as people use it, in Debian's Chromium against a real server: an admin
signs in with their token, imports users from a CSV, issues to a group with a chosen expiry
and zone, downloads the zip and revokes a certificate; what a page must refuse (a form
without its CSRF value, another tenant's pages) and what it must never run (a display name
holding a script). A page's console error or CSP violation fails the test (the harness)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pytest

from ca.errors import CAError
from ca.reasons import REASONS
from ca.service import IssueRequest
from ca.validate import email as check_email
from tests.browser.steps import (
    BAD_CSV,
    BAD_EMAIL,
    BAD_LINE,
    FIXED_CSV,
    IMPORTED,
    IN_SALES,
    SALES,
    bulk_manifest,
    filter_users,
    fits_the_screen,
    import_rows,
    listed,
    open_bulk_zip,
    opened,
    serial_of,
    sign_in,
    tenant_path,
    user_path,
)
from tests.support.browser import Page, Site, expect, save_screenshot

PageOpener = Callable[..., Page]

# the end of 2027-03-31 in New York: daylight saving time (UTC-4) since 14 March, so
# 2027-04-01 00:00 EDT less one second (the tenant's own zone is UTC)
CHOSEN_DAY = "2027-03-31"
CHOSEN_ZONE = "America/New_York"
END_OF_CHOSEN_DAY = dt.datetime(2027, 4, 1, 3, 59, 59, tzinfo=dt.UTC)
JOB_DEADLINE_MS = 30_000  # three EC keys and a zip on a busy machine; the page polls each second



def lines_of(page: Page, selector: str) -> set[int]:
    """How many lines the text of each cell ``selector`` takes (the set of counts)."""
    return set(page.locator(selector).evaluate_all(
        """cells => cells.filter(c => c.textContent.trim()).map(c => {
               const range = document.createRange(); range.selectNodeContents(c);
               return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size; })"""))

def bad_email_reason() -> str:
    """The validator's own words for the bad row's e-mail: the page shows them as they are."""
    with pytest.raises(CAError) as refused:
        check_email(BAD_EMAIL)
    return refused.value.message


def imported(site: Site) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {user.login: (user.display_name, tuple(sorted(user.groups)))
            for user in site.service.users.list_users(site.tenant)}


def states(site: Site) -> dict[str, tuple[str, str | None]]:
    """login -> (state, revocation reason) of each certificate of the tenant (one a user)."""
    found = {}
    for cert in site.service.certificates.list_certificates(site.tenant):
        assert cert.login not in found, f"{cert.login} holds two certificates"
        found[cert.login] = (cert.state.value, cert.revocation_reason)
    return found


def no_dialog(page: Page) -> list[str]:
    """Every dialog the page opens (alert, confirm...), dismissed and recorded."""
    seen: list[str] = []

    def record(dialog: object) -> None:
        seen.append(f"{dialog.type}: {dialog.message}")  # type: ignore[attr-defined]
        dialog.dismiss()  # type: ignore[attr-defined]
    page.on("dialog", record)
    return seen


def test_an_admin_imports_a_csv_issues_to_a_group_downloads_the_zip_and_revokes_one(
        site: Site, page: PageOpener) -> None:
    admin = opened(page, "ja-JP")
    dialogs = no_dialog(admin)
    sign_in(admin, site, site.admin_token())
    assert admin.url == site.url + tenant_path(site, "users")

    # the CSV with one bad row: the check points at that row alone and writes nothing
    admin.goto(site.url + tenant_path(site, "import"))
    admin.fill("#csv-text", BAD_CSV)
    with admin.expect_navigation():
        admin.click("#check")
    assert import_rows(admin) == {2: "ok", BAD_LINE: "bad", 4: "ok", 5: "ok"}
    expect(admin.locator(f"tr.bad[data-line='{BAD_LINE}'] td.problem")).to_have_text(
        bad_email_reason())
    expect(admin.locator("tr.ok td.problem")).to_have_text(["", "", ""])
    assert imported(site) == {}
    # applied as it is, it is refused whole: the same table, nothing written
    with admin.expect_navigation():
        admin.click("#apply")
    assert import_rows(admin) == {2: "ok", BAD_LINE: "bad", 4: "ok", 5: "ok"}
    expect(admin.locator("#import-done")).to_have_count(0)
    assert imported(site) == {}

    # fixed and applied
    admin.fill("#csv-text", FIXED_CSV)
    with admin.expect_navigation():
        admin.click("#apply")
    expect(admin.locator("#import-done")).to_be_visible()
    assert imported(site) == {login: (name, tuple(sorted(groups)))
                              for login, (name, groups) in IMPORTED.items()}

    # the group, everyone in it ticked, a day and a zone that are not the defaults
    admin.goto(site.url + tenant_path(site, "users"))
    assert listed(admin) == set(IMPORTED)
    assert filter_users(admin, group=SALES) == IN_SALES
    admin.check("#select-all")
    ticked = admin.locator("input[name=login][form=issue]")
    expect(ticked).to_have_count(len(IN_SALES))
    assert all(ticked.nth(n).is_checked() for n in range(len(IN_SALES)))
    # by default a year from the server's today, in the tenant's zone (UTC, as it was made)
    expect(admin.locator("#expires")).to_have_value("2027-03-02")
    expect(admin.locator("#timezone")).to_have_value("UTC")
    admin.fill("#expires", CHOSEN_DAY)
    admin.select_option("#timezone", CHOSEN_ZONE)
    with admin.expect_navigation():
        admin.click("#issue-submit")
    assert re.fullmatch(re.escape(site.url + tenant_path(site, "jobs/")) + "[0-9a-f]{32}",
                        admin.url), admin.url

    # the job page follows the job to its end
    job = admin.locator("section#job")
    expect(job).to_have_attribute("data-job-status",
                                  admin.url.removeprefix(site.url) + "/status")
    expect(admin.locator("#job-status")).to_have_attribute(
        "data-status", "succeeded", timeout=JOB_DEADLINE_MS)
    progress = job.locator("progress")
    assert (progress.get_attribute("value"), progress.get_attribute("max")) == ("3", "3")
    expect(admin.locator("a#download")).to_have_attribute(
        "href", admin.url.removeprefix(site.url) + "/download")
    assert states(site) == dict.fromkeys(IN_SALES, ("valid", None))

    with admin.expect_download() as arriving:
        admin.click("a#download")
    archive = arriving.value.path().read_bytes()
    bundles = open_bulk_zip(archive)
    assert set(bundles) == IN_SALES
    issued = {cert.login: cert.serial
              for cert in site.service.certificates.list_certificates(site.tenant)}
    assert bulk_manifest(archive) == issued
    for login, bundle in bundles.items():
        assert serial_of(bundle.certificate) == issued[login]
        assert bundle.certificate.not_valid_after_utc == END_OF_CHOSEN_DAY, login

    # sato leaves the sales department: revoked from her page, with the reason
    with admin.expect_navigation():
        admin.click("tr[data-login=sato] a.user-link")
    assert admin.url == site.url + user_path(site, "sato")
    row = admin.locator(f"tr[data-serial='{issued['sato']}']")
    expect(admin.locator("tr[data-serial]")).to_have_count(1)
    expect(row.locator("span.badge")).to_have_class("badge valid")
    reason = row.locator("form.revoke select[name=reason]")
    offered = reason.locator("option").evaluate_all("options => options.map(o => o.value)")
    assert offered == list(REASONS)  # the API's; a hold is a suspension, not a reason
    reason.select_option("affiliationChanged")
    row.locator("form.revoke button.revoke-submit").click()  # unticked: the browser holds it
    assert states(site)["sato"] == ("valid", None)
    row.locator("form.revoke input[name=confirm]").check()
    with admin.expect_navigation():
        row.locator("form.revoke button.revoke-submit").click()
    expect(admin.locator("#notice")).to_be_visible()
    expect(row.locator("span.badge")).to_have_class("badge revoked")
    expect(row.locator("form.revoke")).to_have_count(0)
    assert states(site) == {"sato": ("revoked", "affiliationChanged"),
                            "tanaka": ("valid", None), "yamada": ("valid", None)}

    admin.goto(site.url + tenant_path(site, "users"))
    assert filter_users(admin, status="revoked") == {"sato"}
    assert filter_users(admin, status="valid") == {"tanaka", "yamada"}
    assert filter_users(admin, status="unissued") == {"suzuki"}
    assert dialogs == []


def test_a_display_name_holding_a_script_is_shown_as_text(site: Site,
                                                          page: PageOpener) -> None:
    name = "<script>alert(1)</script>山田 太郎"
    site.service.users.add(site.tenant, "yamada", email="yamada@example.jp",
                           display_name=name, allow=True)
    admin = opened(page, "ja-JP")
    dialogs = no_dialog(admin)
    sign_in(admin, site, site.admin_token())
    row = admin.locator("tr[data-login=yamada]")
    assert name in (row.text_content() or "")
    assert admin.locator("main script").count() == 0
    with admin.expect_navigation():
        row.locator("a.user-link").click()
    expect(admin.locator("h1")).to_contain_text(name)
    assert admin.locator("main script").count() == 0
    assert dialogs == []


def test_a_form_posted_without_its_csrf_value_is_refused_and_changes_nothing(
        site: Site, page: PageOpener) -> None:
    site.service.users.add(site.tenant, "yamada", email="yamada@example.jp",
                           display_name="山田 太郎", allow=True)
    (issued,) = site.service.certificates.issue(IssueRequest(tenant=site.tenant,
                                                             logins=("yamada",)))
    admin = opened(page, "ja-JP")
    sign_in(admin, site, site.admin_token())
    admin.goto(site.url + user_path(site, "yamada"))
    form = admin.locator(f"tr[data-serial='{issued.serial}'] form.revoke")
    expect(form.locator("input[name=csrf]")).to_have_count(1)
    form.evaluate("form => form.querySelector('input[name=csrf]').remove()")
    form.locator("input[name=confirm]").check()
    with admin.expect_navigation() as answered:
        form.locator("button.revoke-submit").click()
    response = answered.value
    assert response is not None and response.status == 403
    assert response.request.method == "POST"
    expect(admin.locator("form.revoke")).to_have_count(0)  # an error page, not the user's
    assert states(site) == {"yamada": ("valid", None)}
    assert site.service.certificates.get(issued.serial).state.value == "valid"


def test_an_admin_cannot_reach_another_tenant_s_pages(site: Site, page: PageOpener) -> None:
    site.service.hierarchy.create_tenant("kansai", display_name="関西商事株式会社",
                                         ca_key_type="ec-p256")
    site.service.users.add("kansai", "nishida", email="nishida@example.jp",
                           display_name="西田 次郎", allow=True)
    admin = opened(page, "ja-JP")
    sign_in(admin, site, site.admin_token())
    for path in (tenant_path(site, "users", "kansai"),
                 tenant_path(site, "users?group=&status=", "kansai"),
                 user_path(site, "nishida").replace(f"/t/{site.tenant}/", "/t/kansai/"),
                 tenant_path(site, "import", "kansai"),
                 tenant_path(site, "settings", "kansai"),
                 tenant_path(site, "audit", "kansai")):
        response = admin.goto(site.url + path)
        assert response is not None and response.status == 404, path
        text = admin.locator("body").inner_text()
        assert "nishida" not in text and "西田" not in text and "関西" not in text, path
        expect(admin.locator("tr[data-login]")).to_have_count(0)
    # their own pages still open; the operator's reach every tenant's, kansai's too
    response = admin.goto(site.url + tenant_path(site, "users"))
    assert response is not None and response.status == 200
    operator = opened(page, "ja-JP")
    sign_in(operator, site, site.operator_token())
    with operator.expect_navigation():
        operator.click("tr[data-tenant=kansai] a")
    assert operator.url == site.url + tenant_path(site, "users", "kansai")
    assert listed(operator) == {"nishida"}


# --- the screenshots the README shows -----------------------------------------------------------

LANGUAGES = ("ja", "en")
# a serial (uppercase hex) or a job's id (32 lowercase hex digits): new on every run
RANDOM_HEX = re.compile(r"[0-9A-F]{16,}|[0-9a-f]{32}")


STEADY = "0" * 40  # as wide as the longest serial


def steady(page: Page, css: str) -> None:
    """Each serial and job id in the elements ``css`` selects written as ``STEADY``, before
    the screenshot paints them over: a serial's length varies (no leading zeros), and with
    it the width of its column and the file's bytes."""
    page.locator(css).evaluate_all(
        """(cells, [pattern, steady]) => {
             const random = new RegExp(pattern, "g");
             for (const cell of cells) {
               const texts = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
               for (let text = texts.nextNode(); text; text = texts.nextNode()) {
                 text.nodeValue = text.nodeValue.replace(random, steady);
               }
             }
           }""", [RANDOM_HEX.pattern, STEADY])


def with_lang(url: str, lang: str) -> str:
    return url + ("&" if "?" in url else "?") + f"lang={lang}"


def test_screenshots_of_the_console_pages_in_japanese_and_english(
        site: Site, page: PageOpener, phone_page: PageOpener) -> None:
    """Each page the README shows, as an admin, the operator and a user's phone see it, in
    both languages (``?lang=``, which the console remembers). Serials, job ids and
    passwords are painted over; every date comes from the server's fixed clock."""
    service = site.service
    service.users.import_users(site.tenant, FIXED_CSV.encode())
    service.users.add(site.tenant, "kato", email="kato@example.jp", display_name="加藤 恵",
                      groups=("総務部",))  # not yet allowed a certificate
    service.certificates.issue(IssueRequest(tenant=site.tenant, logins=("suzuki",)))
    service.hierarchy.create_tenant("kansai", display_name="関西商事株式会社",
                                    ca_key_type="ec-p256")
    admin = opened(page, "ja-JP")

    def shoot(path: str, name: str, *, mask: tuple[str, ...] = ()) -> None:
        for lang in LANGUAGES:
            admin.goto(with_lang(site.url + path, lang))
            assert admin.locator("html").get_attribute("lang") == lang
            for css in mask:
                steady(admin, css)
            save_screenshot(admin, f"{name}-{lang}",
                            mask=tuple(admin.locator(css) for css in mask))

    shoot("/console/sign-in", "console-sign-in")
    sign_in(admin, site, site.admin_token(), lang="ja")

    for lang in LANGUAGES:  # a check with a bad row: the answer to a post, in each language
        admin.goto(with_lang(site.url + tenant_path(site, "import"), lang))
        admin.fill("#csv-text", BAD_CSV.replace("sato", "ito").replace("佐藤 花子", "伊藤 陽子"))
        with admin.expect_navigation():
            admin.click("#check")
        expect(admin.locator(f"tr.bad[data-line='{BAD_LINE}']")).to_have_count(1)
        save_screenshot(admin, f"console-import-check-{lang}")

    for lang in LANGUAGES:  # the group chosen and its users ticked, the issue form below
        admin.goto(with_lang(site.url + tenant_path(site, f"users?group={SALES}"), lang))
        admin.check("#select-all")
        save_screenshot(admin, f"console-users-{lang}")
    with admin.expect_navigation():
        admin.click("#issue-submit")
    job = admin.url.removeprefix(site.url)
    expect(admin.locator("#job-status")).to_have_attribute("data-status", "succeeded",
                                                           timeout=JOB_DEADLINE_MS)
    shoot(job, "console-job", mask=("#job-issued td:nth-child(2)",))
    shoot(user_path(site, "yamada"), "console-user", mask=("tr[data-serial] td:nth-child(2)",))
    shoot(tenant_path(site, "settings"), "console-settings")

    for lang in LANGUAGES:
        admin.goto(with_lang(site.url + tenant_path(site, "audit"), lang))
        steady(admin, "#audit td")
        cells = admin.locator("#audit td").filter(has_text=STEADY)
        # the time and the address on one line each, the actor broken only between words
        assert lines_of(admin, "#audit td.at") == lines_of(admin, "#audit td.source-ip") == {1}
        assert lines_of(admin, "#audit td.actor") <= {1, 2}
        save_screenshot(admin, f"console-audit-{lang}", mask=(cells,))

    operator = opened(page, "ja-JP")
    sign_in(operator, site, site.operator_token(), lang="ja")
    assert operator.url == site.url + "/console/tenants"
    for lang in LANGUAGES:
        operator.goto(with_lang(site.url + "/console/tenants", lang))
        shown = operator.locator("tr[data-tenant]").evaluate_all(
            "rows => rows.map(row => row.dataset.tenant)")
        assert sorted(shown) == sorted(service.hierarchy.list_tenants())
        assert {"kansai", site.tenant} <= set(shown)
        save_screenshot(operator, f"console-tenants-{lang}")

    phone = opened(phone_page, "ja-JP")
    sign_in(phone, site, site.admin_token(name="山田のスマートフォン"))
    for path in (tenant_path(site, "users"), job, user_path(site, "yamada"),
                 tenant_path(site, "import"), tenant_path(site, "settings"),
                 tenant_path(site, "audit")):
        phone.goto(site.url + path)
        assert fits_the_screen(phone), path  # a wide table scrolls in its own box

    phone.goto(site.url + tenant_path(site, "audit"))
    steady(phone, "#audit td")
    # a card an event: each cell on its line under the card's width, named by its column
    assert phone.locator("#audit thead").is_hidden()
    assert phone.locator("#audit tr[data-id] td.details:not(:empty)").first.is_visible()
    assert phone.locator("#audit tr[data-id]").first.evaluate(
        "row => getComputedStyle(row).display") == "block"
    save_screenshot(phone, "console-audit-phone-ja",
                    mask=(phone.locator("#audit td").filter(has_text=STEADY),))

    for lang in LANGUAGES:  # a link each: the page that hands the password over is shown once
        link = service.links.create(site.tenant, "yamada")
        phone.goto(with_lang(f"{site.url}/d/{link.token}", lang))
        save_screenshot(phone, f"link-page-phone-{lang}")
        with phone.expect_navigation():
            phone.click("#download-button")
        save_screenshot(phone, f"link-delivered-phone-{lang}", mask=(phone.locator("#password"),))
