"""One user's page: details and every certificate (newest first, dates in the viewer's
zone), revoke / suspend / reinstate through the API's use cases with the admin as the
audit's actor, and the one-time link shown once."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest
from cryptography import x509
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import build_app
from ca.clock import FixedClock
from ca.db.models import AuditEvent, DownloadLink
from ca.service import CertificateView, Service
from ca.states import State
from ca.tokens import digest
from tests.console.conftest import Console
from tests.console.dom import Node, parse
from tests.integration.test_mail import link_in, received, start_smtp, with_smtp
from tests.moments import MOMENTS
from tests.support.issuing import crl_reasons, issue_one

# the pages over the use cases: their PostgreSQL behaviour is the use cases' own tests'
# (tests/integration), and the console's sessions and walk run on both databases
pytestmark = [pytest.mark.usefixtures("db_url"),
              pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

LOGIN = "yamada.taro"
NAME = "山田太郎<script>alert(1)</script>"
PAGE = f"/console/t/tohoku/users/{LOGIN}"
ZONE = "Asia/Tokyo"


@pytest.fixture
def yamada(service: Service, tenant: str) -> tuple[CertificateView, CertificateView]:
    """山田太郎 (with a script in his name) holding two certificates: the older until
    2027-03-31 in Tokyo, the newer (modern profile) until 2027-06-30 in Tokyo."""
    service.users.add(tenant, LOGIN, email="yamada@tohoku.example.jp", display_name=NAME,
                      allow=True, groups=("営業部", "東京"))
    older = issue_one(service, LOGIN, tenant=tenant, expires=dt.date(2027, 3, 31),
                      timezone=ZONE)
    newer = issue_one(service, LOGIN, tenant=tenant, expires=dt.date(2027, 6, 30),
                      timezone=ZONE, p12_profile="modern")
    return older, newer


def certificate_rows(page: Node) -> list[dict[str, Any]]:
    """Each certificate row: serial, state, the dates and columns as shown, and which
    forms it offers."""
    rows = []
    for tr in page.one("table", id="certificates").all("tr", data_serial=None):
        cells = tr.all("td")
        rows.append({
            "serial": tr.attrs["data-serial"],
            "badge": (tr.one("span", cls="badge").classes - {"badge"},
                      tr.one("span", cls="badge").text),
            "not_after": cells[2].text, "key_type": cells[3].text, "profile": cells[4].text,
            "forms": sorted(f.attrs["class"] for f in tr.all("form")),
            "notes": [n.text for n in tr.all("small")]})
    return rows


def audit(service: Service, *actions: str) -> list[tuple[str, str, str, str]]:
    with service.database.reading() as session:
        return [(e.action, e.target, e.actor, e.details) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action.in_(actions)).order_by(AuditEvent.id))]


def crl(service: Service) -> dict[str, str | None]:
    return crl_reasons(x509.load_der_x509_crl(service.crls.current("tohoku").der))


def test_the_page_shows_the_user_and_every_certificate_newest_first(
        admin: Console, yamada: tuple[CertificateView, CertificateView]) -> None:
    older, newer = yamada
    answer = admin.get(PAGE, headers={"Accept-Language": "ja"})
    assert answer.status_code == 200  # type: ignore[attr-defined]
    page = parse(answer.text)  # type: ignore[attr-defined]
    assert page.by_id("user-login").text == LOGIN
    assert page.by_id("user-name").text == NAME
    assert page.by_id("user-email").text == "yamada@tohoku.example.jp"
    assert page.by_id("user-groups").text == "営業部, 東京"
    assert page.by_id("user-secure-access").attrs["data-allowed"] == "true"
    assert page.one("h1").text == f"ユーザー: {NAME}"
    # the tenant's zone (UTC here) when the viewer chose none, and named
    assert page.one("table", id="certificates").all("th")[2].text == "有効期限 (UTC)"
    assert certificate_rows(page) == [
        {"serial": newer.serial, "badge": ({"valid"}, "有効"), "not_after": "2027-06-30 14:59 UTC",
         "key_type": "ec-p256", "profile": "modern", "forms": ["revoke", "suspend"],
         "notes": []},
        {"serial": older.serial, "badge": ({"valid"}, "有効"), "not_after": "2027-03-31 14:59 UTC",
         "key_type": "ec-p256", "profile": "compat", "forms": ["revoke", "suspend"],
         "notes": []}]
    reasons = [o.attrs["value"] for o in page.all("tr", data_serial=newer.serial)[0]
               .one("select", name="reason").all("option")]
    assert reasons == ["unspecified", "keyCompromise", "affiliationChanged", "superseded",
                       "cessationOfOperation", "privilegeWithdrawn"]
    assert not page.has_id("link-url")


def test_dates_are_in_the_viewers_zone_with_the_zone_named(
        admin: Console, yamada: tuple[CertificateView, CertificateView]) -> None:
    admin.get(PAGE)
    assert admin.post("/console/zone", {"zone": ZONE, "back": PAGE}).status_code == 303  # type: ignore[attr-defined]
    page = parse(admin.get(PAGE, headers={"Accept-Language": "en"}).text)  # type: ignore[attr-defined]
    assert page.one("table", id="certificates").all("th")[2].text == f"Valid until ({ZONE})"
    assert [r["not_after"] for r in certificate_rows(page)] == [
        "2027-06-30 23:59 JST", "2027-03-31 23:59 JST"]
    assert [r["badge"] for r in certificate_rows(page)] == [({"valid"}, "valid")] * 2


def test_user_strings_are_escaped(admin: Console,
                                  yamada: tuple[CertificateView, CertificateView]) -> None:
    text = admin.get(PAGE).text  # type: ignore[attr-defined]
    assert "<script>alert(1)</script>" not in text
    assert "山田太郎&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_a_login_with_dots_and_dashes_reaches_its_page_and_back(
        service: Service, admin: Console, tenant: str) -> None:
    service.users.add(tenant, "sato-hanako.2", email="sato@tohoku.example.jp", allow=True)
    view = issue_one(service, "sato-hanako.2", tenant=tenant)
    page = parse(admin.get("/console/t/tohoku/users/sato-hanako.2").text)  # type: ignore[attr-defined]
    form = page.one("form", cls="suspend")
    assert form.attrs["action"] == \
        f"/console/t/tohoku/users/sato-hanako.2/certificates/{view.serial}/suspend"
    answer = admin.post(form.attrs["action"])
    assert answer.headers["location"] == (  # type: ignore[attr-defined]
        f"/console/t/tohoku/users/sato-hanako.2?done=suspended&serial={view.serial}")


def test_revoke_with_key_compromise_is_audited_with_the_admin_and_published(
        service: Service, admin: Console,
        yamada: tuple[CertificateView, CertificateView]) -> None:
    older, newer = yamada
    admin.get(PAGE)
    answer = admin.post(f"{PAGE}/certificates/{older.serial}/revoke",
                        {"reason": "keyCompromise", "confirm": "1"})
    assert answer.status_code == 303  # type: ignore[attr-defined]
    assert answer.headers["location"] == f"{PAGE}?done=revoked&serial={older.serial}"  # type: ignore[attr-defined]
    after = service.certificates.get(older.serial)
    assert (after.state, after.revocation_reason, after.revoked_at) == (
        State.REVOKED, "keyCompromise", MOMENTS.start)
    assert crl(service) == {older.serial: "keyCompromise"}
    ((action, target, actor, details),) = audit(service, "cert.revoke")
    assert (action, target) == ("cert.revoke", f"tohoku/{LOGIN}/{older.serial}")
    assert actor.startswith("token:") and actor.endswith(":佐藤 管理者")
    assert json.loads(details) == {"reason": "keyCompromise"}
    page = parse(admin.get(answer.headers["location"],  # type: ignore[attr-defined]
                           headers={"Accept-Language": "en"}).text)  # type: ignore[attr-defined]
    assert page.by_id("notice").text == f"Certificate {older.serial} is revoked."
    rows = {r["serial"]: r for r in certificate_rows(page)}
    assert rows[older.serial]["badge"] == ({"revoked"}, "revoked")
    assert rows[older.serial]["forms"] == []
    assert rows[older.serial]["notes"] == ["Reason: Key compromise, lost device (keyCompromise)"]
    assert rows[newer.serial]["forms"] == ["revoke", "suspend"]


def test_an_unknown_reason_is_refused_and_changes_nothing(
        service: Service, admin: Console,
        yamada: tuple[CertificateView, CertificateView]) -> None:
    older, _ = yamada
    admin.get(PAGE)
    answer = admin.post(f"{PAGE}/certificates/{older.serial}/revoke",
                        {"reason": "certificateHold", "confirm": "1"},
                        headers={"Accept-Language": "en"})
    assert answer.status_code == 400  # type: ignore[attr-defined]
    assert parse(answer.text).by_id("error").text == (  # type: ignore[attr-defined]
        "Not done: reason 'certificateHold' is not one of unspecified, keyCompromise, "
        "affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn")
    assert service.certificates.get(older.serial).state is State.VALID
    assert audit(service, "cert.revoke") == []


@pytest.mark.parametrize(("lang", "confirm", "message"), [
    ("en", None, "Revocation is final: tick the box confirming it, then press Revoke. "
                 "Nothing was changed."),
    ("ja", "yes", "失効は取り消せません。確認のチェックを入れてから「失効」を押してください。"
                  "何も変更していません。")])
def test_a_revoke_without_its_confirming_box_is_refused_and_changes_nothing(
        service: Service, admin: Console, yamada: tuple[CertificateView, CertificateView],
        lang: str, confirm: str | None, message: str) -> None:
    older, _ = yamada
    page = parse(admin.get(PAGE, headers={"Accept-Language": lang}).text)  # type: ignore[attr-defined]
    box = page.all("tr", data_serial=older.serial)[0].one("form", cls="revoke").one(
        "input", name="confirm")
    assert (box.attrs["type"], box.attrs["value"], "required" in box.attrs,
            box.classes) == ("checkbox", "1", True, {"revoke-confirm"})
    posted = {"reason": "keyCompromise"} | ({"confirm": confirm} if confirm else {})
    answer = admin.post(f"{PAGE}/certificates/{older.serial}/revoke", posted,
                        headers={"Accept-Language": lang})
    assert answer.status_code == 400  # type: ignore[attr-defined]
    assert parse(answer.text).by_id("error").text == message  # type: ignore[attr-defined]
    assert service.certificates.get(older.serial).state is State.VALID
    assert audit(service, "cert.revoke") == []
    assert crl(service) == {}


def test_a_revoked_certificates_reason_is_named_in_the_pages_language(
        admin: Console, yamada: tuple[CertificateView, CertificateView]) -> None:
    older, _ = yamada
    admin.get(PAGE)
    admin.post(f"{PAGE}/certificates/{older.serial}/revoke",
               {"reason": "affiliationChanged", "confirm": "1"})
    page = parse(admin.get(PAGE, headers={"Accept-Language": "ja"}).text)  # type: ignore[attr-defined]
    rows = {r["serial"]: r for r in certificate_rows(page)}
    assert rows[older.serial]["notes"] == ["失効理由: 所属の変更 (affiliationChanged)"]


def test_suspend_then_reinstate(service: Service, admin: Console,
                                yamada: tuple[CertificateView, CertificateView]) -> None:
    older, _ = yamada
    admin.get(PAGE)
    answer = admin.post(f"{PAGE}/certificates/{older.serial}/suspend")
    assert answer.headers["location"] == f"{PAGE}?done=suspended&serial={older.serial}"  # type: ignore[attr-defined]
    assert service.certificates.get(older.serial).state is State.SUSPENDED
    assert crl(service) == {older.serial: "certificateHold"}
    page = parse(admin.get(answer.headers["location"]).text)  # type: ignore[attr-defined]
    assert page.by_id("notice").text == f"証明書 {older.serial} を一時停止しました。"
    row = {r["serial"]: r for r in certificate_rows(page)}[older.serial]
    assert (row["badge"], row["forms"], row["notes"]) == (
        ({"suspended"}, "一時停止"), ["reinstate", "revoke"], ["停止の理由: 手動"])

    answer = admin.post(f"{PAGE}/certificates/{older.serial}/reinstate")
    assert answer.headers["location"] == f"{PAGE}?done=reinstated&serial={older.serial}"  # type: ignore[attr-defined]
    assert service.certificates.get(older.serial).state is State.VALID
    assert crl(service) == {}
    assert [(a, t) for a, t, _, _ in audit(service, "cert.suspend", "cert.reinstate")] == [
        ("cert.suspend", f"tohoku/{LOGIN}/{older.serial}"),
        ("cert.reinstate", f"tohoku/{LOGIN}/{older.serial}")]
    assert {actor for _, _, actor, _ in audit(service, "cert.suspend", "cert.reinstate")} \
        == {audit(service, "cert.suspend")[0][2]}
    assert audit(service, "cert.suspend")[0][2].endswith(":佐藤 管理者")


def test_reinstating_a_certificate_held_for_the_subscription_is_refused(
        service: Service, clock: FixedClock, app_client: TestClient, admin_token: str,
        yamada: tuple[CertificateView, CertificateView]) -> None:
    older, newer = yamada
    service.lifecycle.set_subscription("tohoku", ends=dt.date(2026, 3, 10), zone=ZONE)
    clock.set(dt.datetime(2026, 3, 10, 15, 0, 1, tzinfo=dt.UTC))  # past the end, in Tokyo
    service.lifecycle.run()
    admin = Console(app_client)
    admin.sign_in(admin_token)
    assert service.certificates.get(older.serial).state is State.SUSPENDED
    page = parse(admin.get(PAGE, headers={"Accept-Language": "en"}).text)  # type: ignore[attr-defined]
    row = {r["serial"]: r for r in certificate_rows(page)}[older.serial]
    # no reinstate offered: only a manual hold is lifted here
    assert (row["badge"], row["forms"], row["notes"]) == (
        ({"suspended"}, "suspended"), ["revoke", "suspend"], ["Held for: the subscription"])
    crl_before = service.crls.current("tohoku").number
    answer = admin.post(f"{PAGE}/certificates/{older.serial}/reinstate",
                        headers={"Accept-Language": "en"})
    assert answer.status_code == 422  # type: ignore[attr-defined]
    assert parse(answer.text).by_id("error").text == (  # type: ignore[attr-defined]
        f"Certificate {older.serial} is suspended for the subscription, not by hand: only a "
        "manual suspension is reinstated here (renewing the subscription or allowing secure "
        "access again lifts the others).")
    assert service.certificates.get(older.serial).state is State.SUSPENDED
    assert service.crls.current("tohoku").number == crl_before
    assert audit(service, "cert.reinstate") == []

    # held by hand as well: reinstating lifts the manual hold, the subscription's stays
    admin.post(f"{PAGE}/certificates/{newer.serial}/suspend")
    answer = admin.post(f"{PAGE}/certificates/{newer.serial}/reinstate")
    assert answer.headers["location"] == f"{PAGE}?done=still-held&serial={newer.serial}"  # type: ignore[attr-defined]
    assert service.certificates.get(newer.serial).state is State.SUSPENDED
    assert service.revocation.hold_causes("tohoku", [newer.serial]) == {
        newer.serial: ("subscription",)}


def test_a_serial_of_another_user_is_not_found(
        service: Service, admin: Console, tenant: str,
        yamada: tuple[CertificateView, CertificateView]) -> None:
    service.users.add(tenant, "suzuki", email="suzuki@tohoku.example.jp", allow=True)
    admin.get(PAGE)
    answer = admin.post(f"/console/t/tohoku/users/suzuki/certificates/{yamada[0].serial}/revoke",
                        {"reason": "keyCompromise", "confirm": "1"})
    assert answer.status_code == 404  # type: ignore[attr-defined]
    assert service.certificates.get(yamada[0].serial).state is State.VALID


def test_the_link_url_is_shown_once_in_the_posts_answer(
        service: Service, admin: Console,
        yamada: tuple[CertificateView, CertificateView]) -> None:
    admin.get(PAGE)
    answer = admin.post(f"{PAGE}/link", {"action": "create"})
    assert answer.status_code == 200  # type: ignore[attr-defined]
    assert answer.headers["cache-control"] == "no-store"  # type: ignore[attr-defined]
    url = parse(answer.text).by_id("link-url").text  # type: ignore[attr-defined]
    assert url.startswith("http://tegata.test/d/tdl_")
    token = url.rsplit("/", 1)[1]
    with service.database.reading() as session:
        hashes = list(session.scalars(select(DownloadLink.token_hash)))
    assert hashes == [digest(token)]
    ((_, target, actor, details),) = audit(service, "link.create")
    assert target == f"tohoku/{LOGIN}" and actor.endswith(":佐藤 管理者")
    assert token not in details
    # shown once: the page afterwards does not have it
    again = admin.get(PAGE)
    assert token not in again.text and not parse(again.text).has_id("link-url")  # type: ignore[attr-defined]
    assert service.links.page_info(token).login == LOGIN


def test_without_mail_there_is_no_send_button_and_sending_is_refused(
        service: Service, admin: Console,
        yamada: tuple[CertificateView, CertificateView]) -> None:
    page = parse(admin.get(PAGE).text)  # type: ignore[attr-defined]
    assert page.has_id("link-submit") and not page.has_id("link-send")
    answer = admin.post(f"{PAGE}/link", {"action": "send"}, headers={"Accept-Language": "en"})
    assert answer.status_code == 422  # type: ignore[attr-defined]
    assert parse(answer.text).by_id("error").text == (  # type: ignore[attr-defined]
        "Not done: e-mail is not configured (TEGATA_SMTP_HOST and TEGATA_SMTP_FROM not set); "
        "create the link with send false and pass it on yourself")
    with service.database.reading() as session:
        assert list(session.scalars(select(DownloadLink))) == []


def test_another_tenants_admin_finds_nothing(
        service: Service, app_client: TestClient,
        yamada: tuple[CertificateView, CertificateView]) -> None:
    service.hierarchy.create_tenant("sakura", display_name="さくら商事")
    token = service.tokens.create(role="admin", tenant="sakura", name="さくら管理者")[0]
    other = Console(app_client)
    other.sign_in(token)
    other.get("/console/")
    assert other.get(PAGE).status_code == 404  # type: ignore[attr-defined]
    answer = other.post(f"{PAGE}/certificates/{yamada[0].serial}/revoke",
                        {"reason": "keyCompromise", "confirm": "1"})
    assert answer.status_code == 404  # type: ignore[attr-defined]
    assert service.certificates.get(yamada[0].serial).state is State.VALID


@pytest.mark.parametrize("action", ["revoke", "suspend", "reinstate", "link"])
def test_a_post_without_the_csrf_value_is_forbidden_and_changes_nothing(
        service: Service, admin: Console,
        yamada: tuple[CertificateView, CertificateView], action: str) -> None:
    older, _ = yamada
    if action == "reinstate":
        service.revocation.suspend("tohoku", older.serial)
    path = f"{PAGE}/link" if action == "link" else \
        f"{PAGE}/certificates/{older.serial}/{action}"
    before = service.certificates.get(older.serial).state
    answer = admin.post(path, {"reason": "keyCompromise", "confirm": "1", "action": "create"},
                        csrf=False)
    assert answer.status_code == 403  # type: ignore[attr-defined]
    forged = admin.post(path, {"reason": "keyCompromise", "confirm": "1", "csrf": "forged"},
                        csrf=False)
    assert forged.status_code == 403  # type: ignore[attr-defined]
    assert service.certificates.get(older.serial).state is before
    assert audit(service, "cert.revoke", "cert.suspend", "cert.reinstate", "link.create") == \
        ([] if action != "reinstate" else audit(service, "cert.suspend"))
    with service.database.reading() as session:
        assert list(session.scalars(select(DownloadLink))) == []


def test_an_unknown_user_is_not_found(admin: Console, tenant: str) -> None:
    assert admin.get("/console/t/tohoku/users/nobody").status_code == 404  # type: ignore[attr-defined]
    assert admin.get("/console/t/tohoku/users/a%2Fb").status_code == 404  # type: ignore[attr-defined]


@pytest.mark.parametrize("query", ["done=<script>", "done=revoked&serial=<b>x</b>",
                                   "done=revoked&serial=ZZ"])
def test_the_notice_names_only_fixed_messages_and_canonical_serials(
        admin: Console, yamada: tuple[CertificateView, CertificateView], query: str) -> None:
    page = parse(admin.get(f"{PAGE}?{query}", headers={"Accept-Language": "en"}).text)  # type: ignore[attr-defined]
    if query.startswith("done=revoked"):
        assert page.by_id("notice").text == "Certificate is revoked."
    else:
        assert not page.has_id("notice")


def test_with_mail_the_link_is_sent_and_its_url_shown_nowhere(
        service: Service, yamada: tuple[CertificateView, CertificateView],
        admin_token: str) -> None:
    server, controller = start_smtp(auth_require_tls=False)
    try:
        mailer = with_smtp(service, server.port)
        client = TestClient(build_app(mailer.settings, service=mailer),
                            base_url="http://127.0.0.1", raise_server_exceptions=False)
        admin = Console(client)
        admin.sign_in(admin_token)
        page = parse(admin.get(PAGE).text)  # type: ignore[attr-defined]
        assert page.by_id("link-send").attrs["value"] == "send"
        answer = admin.post(f"{PAGE}/link", {"action": "send"})
        assert answer.status_code == 303  # type: ignore[attr-defined]
        assert answer.headers["location"] == f"{PAGE}?done=link-sent"  # type: ignore[attr-defined]
        (message,) = received(server.inbox)
        url = link_in(message)
        assert message["To"].addresses[0].addr_spec == "yamada@tohoku.example.jp"
        after = admin.get(answer.headers["location"], headers={"Accept-Language": "en"})  # type: ignore[attr-defined]
        assert parse(after.text).by_id("notice").text == \
            "The download link has been sent by e-mail."  # type: ignore[attr-defined]
        assert url not in after.text  # type: ignore[attr-defined]
        assert [(a, t) for a, t, _, _ in audit(service, "link.create", "link.send")] == [
            ("link.create", f"tohoku/{LOGIN}"), ("link.send", f"tohoku/{LOGIN}")]
        assert all(actor.endswith(":佐藤 管理者") and url not in details for _, _, actor, details
                   in audit(service, "link.create", "link.send"))
    finally:
        controller.stop()


def test_the_language_switch_on_an_actions_answer_goes_back_to_the_page(
        admin: Console, yamada: tuple[CertificateView, CertificateView]) -> None:
    older, _ = yamada
    for path in (f"{PAGE}/link", f"{PAGE}/certificates/{older.serial}/revoke"):
        answer = admin.get(f"{path}?lang=en", follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (303, PAGE)  # type: ignore[attr-defined]
    assert parse(admin.get(PAGE).text).one("h1").text == f"User: {NAME}"  # type: ignore[attr-defined]


def test_the_operator_acts_on_any_tenants_user_as_itself(
        service: Service, app_client: TestClient, operator_token: str,
        yamada: tuple[CertificateView, CertificateView]) -> None:
    older, _ = yamada
    operator = Console(app_client)
    operator.sign_in(operator_token)
    assert operator.get(PAGE).status_code == 200  # type: ignore[attr-defined]
    answer = operator.post(f"{PAGE}/certificates/{older.serial}/suspend")
    assert answer.status_code == 303  # type: ignore[attr-defined]
    ((_, _, actor, _),) = audit(service, "cert.suspend")
    assert actor.startswith("token:") and actor.endswith(":operator")


def test_an_expired_certificate_offers_no_change(
        service: Service, clock: FixedClock, app_client: TestClient, admin_token: str,
        yamada: tuple[CertificateView, CertificateView]) -> None:
    older, newer = yamada
    clock.set(dt.datetime(2027, 4, 1, tzinfo=dt.UTC))  # past the older's end, in Tokyo too
    admin = Console(app_client)
    admin.sign_in(admin_token)
    page = parse(admin.get(PAGE).text)  # type: ignore[attr-defined]
    assert [(r["serial"], r["badge"], r["forms"]) for r in certificate_rows(page)] == [
        (newer.serial, ({"valid"}, "有効"), ["revoke", "suspend"]),
        (older.serial, ({"expired"}, "期限切れ"), [])]


def test_withdrawing_and_allowing_secure_access_from_the_page(
        service: Service, admin: Console, yamada: tuple[CertificateView, CertificateView]) -> None:
    older, newer = yamada
    page = parse(admin.get(PAGE, headers={"Accept-Language": "en"}).text)  # type: ignore[attr-defined]
    form = page.by_id("permission")
    button = page.by_id("permission-submit")
    assert (form.attrs["action"], button.attrs["name"], button.attrs["value"], button.text) == (
        f"{PAGE}/permission", "allow", "0", "Withdraw secure access")
    answer = admin.post(f"{PAGE}/permission", {"allow": "0"})
    assert answer.headers["location"] == f"{PAGE}?done=denied"  # type: ignore[attr-defined]
    assert service.users.get("tohoku", LOGIN).secure_access is False
    assert {service.certificates.get(s).state for s in (older.serial, newer.serial)} == {
        State.SUSPENDED}
    ((action, target, actor, _),) = audit(service, "user.deny")
    assert (action, target) == ("user.deny", f"tohoku/{LOGIN}")
    assert actor.startswith("token:") and actor.endswith(":佐藤 管理者")
    page = parse(admin.get(answer.headers["location"]).text)  # type: ignore[attr-defined]
    assert page.by_id("notice").text == \
        "セキュアアクセスを取り消しました。有効な証明書は一時停止されます。"
    assert page.by_id("user-secure-access").attrs["data-allowed"] == "false"
    assert (page.by_id("permission-submit").attrs["value"],
            page.by_id("permission-submit").text) == ("1", "セキュアアクセスを許可")

    answer = admin.post(f"{PAGE}/permission", {"allow": "1"})
    assert answer.headers["location"] == f"{PAGE}?done=allowed"  # type: ignore[attr-defined]
    assert service.users.get("tohoku", LOGIN).secure_access is True
    assert {service.certificates.get(s).state for s in (older.serial, newer.serial)} == {
        State.VALID}
    assert [a for a, _, _, _ in audit(service, "user.allow", "user.deny")] == [
        "user.deny", "user.allow"]


def test_a_bad_permission_value_is_refused_and_changes_nothing(
        service: Service, admin: Console, yamada: tuple[CertificateView, CertificateView]) -> None:
    admin.get(PAGE)
    answer = admin.post(f"{PAGE}/permission", {"allow": "maybe"},
                        headers={"Accept-Language": "en"})
    assert answer.status_code == 400  # type: ignore[attr-defined]
    assert parse(answer.text).by_id("error").text == "Not done: allow must be 1 or 0"  # type: ignore[attr-defined]
    assert service.users.get("tohoku", LOGIN).secure_access is True
    assert audit(service, "user.allow", "user.deny") == []


def test_the_page_issues_to_this_user_alone_with_the_tenants_defaults(
        service: Service, admin: Console, yamada: tuple[CertificateView, CertificateView]) -> None:
    service.users.add("tohoku", "suzuki", email="suzuki@tohoku.example.jp", allow=True)
    page = parse(admin.get(PAGE).text)  # type: ignore[attr-defined]
    form = page.by_id("issue-one")
    fields = {i.attrs["name"]: i.attrs.get("value") for i in form.all("input")}
    defaults = service.certificates.issue_defaults("tohoku")
    assert (form.attrs["action"], fields) == ("/console/t/tohoku/issue", {
        "csrf": fields["csrf"], "login": LOGIN, "timezone": defaults.zone, "reissue": "keep",
        "expires": defaults.expires.isoformat()})
    answer = admin.post(form.attrs["action"], {k: v for k, v in fields.items() if k != "csrf"}
                        | {"expires": "2027-05-31"})
    assert answer.status_code == 303  # type: ignore[attr-defined]
    job_id = answer.headers["location"].rsplit("/", 1)[1]  # type: ignore[attr-defined]
    for _ in range(600):
        job = service.jobs.get("tohoku", job_id)
        if job.status != "running":
            break
        time.sleep(0.05)
    assert job.status == "succeeded"
    issued = service.certificates.list_certificates("tohoku", login=LOGIN, limit=10)
    assert len(issued) == 3
    assert service.certificates.list_certificates("tohoku", login="suzuki", limit=10) == []
    assert (issued[0].key_type, issued[0].not_after) == (
        defaults.key_type, dt.datetime(2027, 5, 31, 23, 59, 59, tzinfo=dt.UTC))
    assert defaults.zone == "UTC"  # the tenant's zone: the end of that day there


def test_no_link_is_offered_without_a_valid_certificate_whose_key_is_kept(
        service: Service, admin: Console, tenant: str) -> None:
    service.users.add(tenant, "suzuki", email="suzuki@tohoku.example.jp", allow=True)
    page = parse(admin.get("/console/t/tohoku/users/suzuki",  # type: ignore[attr-defined]
                           headers={"Accept-Language": "en"}).text)
    assert not page.has_id("link") and not page.has_id("link-submit")
    assert page.by_id("link-unavailable").text == (
        "No link can be made: the user has no valid certificate whose key is kept. "
        "Issue a certificate first.")
