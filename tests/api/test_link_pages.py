"""The one-time link's pages as a person reads them: every page in Japanese and in English,
dates in the tenant's zone, a password of its own for each link, the password kept on one
line, and the installation steps with the visitor's platform first."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.console import i18n
from api.routes.linkpage import platforms_for
from ca.db.models import Tenant
from ca.service import IssueRequest, Service
from tests.support.linkpages import (
    alert,
    assert_page,
    by_id,
    download,
    heading,
    install_order,
    lang,
    password_of,
    reason,
)

TENANT, DISPLAY = "tohoku", "東北電機株式会社"
LOGIN, NAME = "yamada", "山田太郎"
JA = {"accept-language": "ja,en;q=0.5"}
EN = {"accept-language": "en-US,en;q=0.9,ja;q=0.3"}


@pytest.fixture
def tohoku(service: Service) -> Service:
    """A tenant in Tokyo, and 山田太郎 with a certificate that ends on 2027-03-31 there."""
    service.hierarchy.create_tenant(TENANT, display_name=DISPLAY)
    with service.database.transaction() as session:
        session.execute(update(Tenant).where(Tenant.name == TENANT)
                        .values(timezone="Asia/Tokyo"))
    service.users.add(TENANT, LOGIN, email="yamada@example.com", display_name=NAME, allow=True)
    service.certificates.issue(IssueRequest(tenant=TENANT, logins=(LOGIN,),
                                            expires=dt.date(2027, 3, 31)))
    return service


def new_path(service: Service, login: str = LOGIN) -> str:
    return "/d/" + service.links.create(TENANT, login).token


# --- each page, in each language -----------------------------------------------------------

# reason: (status, Japanese heading and text, English heading and text)
REFUSALS: dict[str, tuple[int, tuple[str, str], tuple[str, str]]] = {
    "used": (410, ("このリンクは使用済みです",
                   "ダウンロード用のリンクは一度しか使えません。もう一度必要なときは、管理者に"
                   "新しいリンクを依頼してください。"),
             ("This link has already been used",
              "A download link works only once. If you need your certificate again, ask your "
              "administrator for a new link.")),
    "expired": (410, ("このリンクは有効期限が切れています",
                      "リンクの有効期限が過ぎたか、管理者が取り消しました。管理者に新しいリンクを"
                      "依頼してください。"),
                ("This link has expired",
                 "The link is past its end, or your administrator withdrew it. Ask your "
                 "administrator for a new link.")),
    "replaced": (410, ("このリンクは取り消されました",
                       "あなた宛てに新しいリンクが作られたため、このリンクは使えなくなりました。"
                       "届いた中でいちばん新しいリンクを使ってください。"),
                 ("This link was withdrawn",
                  "A newer link was made for you, so this one no longer works. Use the newest "
                  "link you received.")),
    "retired": (410, ("このリンクは使えません",
                      "このリンクの利用者は無効になっています。管理者にお問い合わせください。"),
                ("This link no longer works",
                 "The user this link was made for is no longer active. Ask your "
                 "administrator.")),
    "nothing": (410, ("ダウンロードできる証明書がありません",
                      "有効な証明書がなくなりました (失効、一時停止、または期限切れ)。管理者に"
                      "お問い合わせください。"),
                ("There is no certificate to download",
                 "Your certificate is no longer valid (revoked, suspended or expired). Ask "
                 "your administrator.")),
    "off": (403, ("ダウンロードは停止されています",
                  "あなたの組織では、利用者が自分で証明書をダウンロードすることを停止しています。"
                  "管理者にお問い合わせください。"),
            ("Downloading is turned off",
             "Your organisation has turned off downloading your own certificate. Ask your "
             "administrator.")),
    "unknown": (404, ("リンクが見つかりません",
                      "アドレスが途中で切れていないか確かめてください。メールのリンクは、全体を"
                      "コピーして開いてください。"),
                ("This link is not known",
                 "Check that the whole address was copied: a link cut short is not found.")),
    "too_many": (429, ("しばらく待ってからお試しください",
                       "短い間にリクエストが多すぎました。3 秒ほど待ってから、もう一度お試し"
                       "ください。"),
                 ("Too many requests",
                  "There were too many requests from your address. Wait 3 seconds, then try "
                  "again.")),
}


def _used(service: Service, client: TestClient) -> str:
    path = new_path(service)
    assert client.post(path).status_code == 200
    return path


def _expired(service: Service, client: TestClient) -> str:
    path = new_path(service)
    service.clock.advance(dt.timedelta(days=7))  # type: ignore[attr-defined]
    return path


def _replaced(service: Service, client: TestClient) -> str:
    path = new_path(service)
    new_path(service)
    return path


def _retired(service: Service, client: TestClient) -> str:
    path = new_path(service)
    service.users.retire(TENANT, LOGIN)
    return path


def _nothing(service: Service, client: TestClient) -> str:
    path = new_path(service)
    service.users.set_permission(TENANT, (LOGIN,), allow=False)  # suspends the certificate
    return path


def _off(service: Service, client: TestClient) -> str:
    path = new_path(service)
    service.links.set_user_download(TENANT, False)
    return path


def _unknown(service: Service, client: TestClient) -> str:
    return "/d/tdl_" + "Q" * 43


def _too_many(service: Service, client: TestClient) -> str:
    for _ in range(20):
        client.get("/d/tdl_nope")
    return "/d/tdl_nope"


MAKE: dict[str, Callable[[Service, TestClient], str]] = {
    "used": _used, "expired": _expired, "replaced": _replaced, "retired": _retired,
    "nothing": _nothing, "off": _off, "unknown": _unknown, "too_many": _too_many}


def only_english(page: str) -> None:
    """No Japanese on an English page but the switch's own name and the user's data."""
    rest = page.replace(">日本語<", "><").replace(NAME, "").replace(DISPLAY, "")
    assert re.findall(r"[\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]+", rest) == []


def only_japanese(page: str) -> None:
    """None of the link pages' English sentences on a Japanese page."""
    english = [text.split("{")[0] for key, text in i18n._MESSAGES["en"].items()
               if key.startswith("link.")]
    assert [text for text in english if len(text) > 12 and text in page] == []


@pytest.mark.parametrize("language", ["ja", "en"])
@pytest.mark.parametrize("case", list(REFUSALS))
def test_every_refusal_is_explained_in_the_readers_language(
        tohoku: Service, client: TestClient, case: str, language: str) -> None:
    path = MAKE[case](tohoku, client)
    status, ja, en = REFUSALS[case]
    for method in ("GET", "POST"):
        client.cookies.clear()
        page = assert_page(client.request(method, path, headers=JA if language == "ja" else EN),
                           status)
        assert (lang(page), reason(page), heading(page), alert(page)) == (
            language, case, *(ja if language == "ja" else en))
        only_english(page) if language == "en" else only_japanese(page)
        if case == "too_many":
            tohoku.clock.advance(dt.timedelta(seconds=3))  # type: ignore[attr-defined]
            for _ in range(19):  # back to the limit for the POST
                client.get("/d/tdl_nope")


@pytest.mark.parametrize("language", ["ja", "en"])
def test_the_landing_and_delivered_pages_in_each_language(
        tohoku: Service, client: TestClient, language: str) -> None:
    path = new_path(tohoku)
    headers = JA if language == "ja" else EN
    landing = assert_page(client.get(path, headers=headers), 200)
    delivered = assert_page(client.post(path, headers=headers), 200)
    if language == "ja":
        expected = ("証明書のダウンロード", "山田太郎 さんのクライアント証明書 (東北電機株式会社)",
                    "証明書を受け取りました", "ダウンロード", "コピー", "コピーしました")
    else:
        expected = ("Download your certificate",
                    "Client certificate of 山田太郎 (東北電機株式会社)", "Your certificate",
                    "Download", "Copy", "Copied")
    button = re.search(r'<button type="button" data-copy="password" data-copied-label="([^"]+)"'
                       r" hidden>([^<]+)</button>", delivered)
    assert button is not None
    assert (heading(landing), _who(landing), heading(delivered), by_id(landing, "download-button"),
            button.group(2), button.group(1)) == expected
    for page in (landing, delivered):
        assert lang(page) == language
        only_english(page) if language == "en" else only_japanese(page)


def _who(page: str) -> str | None:
    found = re.search(r'<p class="who">([^<]*)</p>', page)
    return None if found is None else found.group(1)


def test_lang_in_the_address_chooses_and_the_form_keeps_it(
        tohoku: Service, client: TestClient) -> None:
    path = new_path(tohoku)
    landing = assert_page(client.get(path + "?lang=en", headers=JA), 200)
    assert (lang(landing), heading(landing)) == ("en", "Download your certificate")
    assert client.cookies.get("tegata_lang") == "en"
    # the switch is on the landing page; the form has no action, so it posts to this very
    # address, ?lang= and all
    assert ('<a href="?lang=ja" lang="ja" >日本語</a>' in landing
            and '<form method="post">' in landing)
    client.cookies.clear()
    delivered = assert_page(client.post(path + "?lang=en", headers=JA), 200)
    assert (lang(delivered), heading(delivered)) == ("en", "Your certificate")
    # no switch once the password is shown: following it would only find the link spent
    assert "?lang=" not in delivered


# --- the tenant's zone ---------------------------------------------------------------------


def test_dates_are_in_the_tenants_zone_with_the_zone_named(tohoku: Service,
                                                          client: TestClient) -> None:
    path = new_path(tohoku)
    landing = assert_page(client.get(path, headers=EN), 200)
    assert (by_id(landing, "login"), by_id(landing, "not-after"), by_id(landing, "link-until")) == (
        LOGIN, "2027-03-31 23:59 JST", "2026-03-09 18:00 JST")
    delivered = assert_page(client.post(path, headers=JA), 200)
    assert (by_id(delivered, "not-after"), by_id(delivered, "link-until")) == (
        "2027-03-31 23:59 JST", None)


# --- a password of its own for each link ---------------------------------------------------


def _delivered(client: TestClient, path: str) -> tuple[str, bytes, str]:
    page = assert_page(client.post(path), 200)
    password = password_of(page)
    _, _, archive = download(page, "download-zip")
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        written = opened.read(f"{LOGIN}-password.txt").decode().strip()
    return password, download(page, "download-p12")[2], written


def test_each_link_shows_a_password_of_its_own(tohoku: Service, client: TestClient) -> None:
    first, first_p12, first_written = _delivered(client, new_path(tohoku))
    second, second_p12, second_written = _delivered(client, new_path(tohoku))
    assert first != second
    assert (first_written, second_written) == (first, second)
    for password, p12 in ((first, first_p12), (second, second_p12)):
        loaded = pkcs12.load_pkcs12(p12, password.encode())
        assert loaded.key is not None and loaded.cert is not None
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(second_p12, first.encode())
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(first_p12, second.encode())
    assert re.fullmatch(r"([2-9A-Za-z]{4}-){5}[2-9A-Za-z]{4}", first)


# --- the password on one line --------------------------------------------------------------


def _rule(css: str, selector: str) -> dict[str, str]:
    found = re.search(re.escape(selector) + r"\s*\{([^}]*)\}", css)
    assert found is not None, selector
    body = re.sub(r"/\*.*?\*/", "", found.group(1), flags=re.S)
    return dict((name.strip(), value.strip()) for name, _, value in
                (part.partition(":") for part in body.split(";") if part.strip()))


def test_the_password_never_wraps_and_has_a_copy_button(tohoku: Service,
                                                        client: TestClient) -> None:
    page = assert_page(client.post(new_path(tohoku)), 200)
    assert '<body class="link-page">' in page
    assert re.search(r'<code id="password" class="secret">[^<]+</code>', page)
    assert '<script src="/console/static/console.js" defer></script>' in page
    css = client.get("/console/static/console.css")
    assert css.status_code == 200
    rule = _rule(css.text, ".link-page #password")
    assert {name: rule[name] for name in ("white-space", "overflow-wrap", "word-break",
                                          "overflow-x", "max-width")} == {
        "white-space": "nowrap", "overflow-wrap": "normal", "word-break": "keep-all",
        "overflow-x": "auto", "max-width": "100%"}
    # console.js shows the copy buttons it wires up (they are hidden without it)
    script = client.get("/console/static/console.js").text
    assert 'document.querySelectorAll("button[data-copy]")' in script
    assert "button.hidden = false;" in script


def test_a_hostile_japanese_display_name_is_escaped(tohoku: Service,
                                                   client: TestClient) -> None:
    tohoku.users.add(TENANT, "akiko", email="akiko@example.com",
                     display_name="山田<script>alert(1)</script>花子", allow=True)
    tohoku.certificates.issue(IssueRequest(tenant=TENANT, logins=("akiko",)))
    path = new_path(tohoku, "akiko")
    for response in (client.get(path, headers=JA), client.post(path, headers=EN)):
        page = assert_page(response, 200)
        assert "<script>alert" not in page
        assert "山田&lt;script&gt;alert(1)&lt;/script&gt;花子" in _who(page)  # type: ignore[operator]


# --- installation steps, the visitor's platform first --------------------------------------

AGENTS = {
    "iphone": ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
               "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
               ["ios", "windows", "macos", "android"]),
    "ipad": ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
             "Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
             ["ios", "windows", "macos", "android"]),
    "android": ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like "
                "Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
                ["android", "windows", "macos", "ios"]),
    "mac": ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like "
            "Gecko) Version/17.5 Safari/605.1.15", ["macos", "windows", "ios", "android"]),
    "windows": ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                "Gecko) Chrome/126.0.0.0 Safari/537.36", ["windows", "macos", "ios", "android"]),
    "unknown": ("curl/8.5.0", ["windows", "macos", "ios", "android"]),
}


@pytest.mark.parametrize("agent", list(AGENTS))
def test_the_visitors_platform_comes_first(agent: str) -> None:
    user_agent, order = AGENTS[agent]
    assert list(platforms_for(user_agent)) == order


STEP_HEADINGS = {
    "ja": {"windows": "Windows での取り込み方", "macos": "Mac (macOS) での取り込み方",
           "ios": "iPhone / iPad (iOS) での取り込み方", "android": "Android での取り込み方"},
    "en": {"windows": "Installing on Windows", "macos": "Installing on a Mac (macOS)",
           "ios": "Installing on an iPhone or iPad (iOS)", "android": "Installing on Android"},
}


@pytest.mark.parametrize("agent", ["iphone", "android", "mac", "windows"])
def test_the_delivered_page_orders_the_steps_by_platform(
        tohoku: Service, client: TestClient, agent: str) -> None:
    user_agent, order = AGENTS[agent]
    for language, headers in (("ja", JA), ("en", EN)):
        page = assert_page(client.post(new_path(tohoku), headers={
            **headers, "user-agent": user_agent}), 200)
        assert install_order(page) == order
        sections = dict(re.findall(
            r'<section id="install-([a-z]+)" class="install">\s*<h2>([^<]+)</h2>', page))
        assert sections == STEP_HEADINGS[language]
        steps = {name: len(re.findall(r"<li>", body)) for name, body in re.findall(
            r'<section id="install-([a-z]+)" class="install">(.*?)</section>', page, re.S)}
        assert steps == {"windows": 4, "macos": 3, "ios": 3, "android": 3}
        assert f"{LOGIN}.p12" in page.split('id="install-ios"', 1)[1]
