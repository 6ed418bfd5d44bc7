"""The tenant settings page: the current values shown, each form changing one setting by the
service call the API makes, audited with the signed-in admin as actor; bad input shown again
with the error (400) and nothing changed; the subscription shown to admins, set only by the
operator."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from ca.clock import FixedClock
from ca.db.models import AuditEvent
from ca.service import Service
from tests.console.conftest import Console
from tests.console.dom import parse

# the pages over the use cases: their PostgreSQL behaviour is the use cases' own tests'
# (tests/integration), and the console's sessions and walk run on both databases
pytestmark = [pytest.mark.usefixtures("db_url"),
              pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

PAGE = "/console/t/tohoku/settings"


def events(service: Service) -> list[tuple[str, str, str, dict[str, Any]]]:
    """Every change of a tenant's settings: (action, target, actor, details)."""
    with service.database.reading() as session:
        return [(e.action, e.target, e.actor, json.loads(e.details)) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action.like("tenant.%"),
                                     AuditEvent.action != "tenant.create")
            .order_by(AuditEvent.id))]


def state(service: Service) -> dict[str, object]:
    """Every setting the page changes, as the service reads it."""
    settings = service.hierarchy.tenant_settings("tohoku")
    ip = service.gateway.get_ip_policy("tohoku")
    sub = service.lifecycle.get_subscription("tohoku")
    return {"user_download": settings.user_download,
            "default_validity": settings.default_validity,
            "p12_profile": settings.p12_profile,
            "ocsp_validity": settings.ocsp_validity_seconds,
            "upn_suffix": settings.upn_suffix,
            "timezone": settings.timezone,
            "ip_policy": (ip.policy, ip.networks),
            "subscription": (sub.kind, sub.ends_on, sub.zone, sub.grace_days)}


DEFAULTS = {"user_download": True, "default_validity": "P1Y", "p12_profile": "compat",
            "ocsp_validity": 300, "upn_suffix": None, "timezone": "UTC",
            "ip_policy": ("cert_only", ()),
            "subscription": ("none", None, None, 30)}


def actor_of(service: Service, console: Console) -> str:
    """The actor the admin's session records (their token's)."""
    with service.database.reading() as session:
        return session.scalars(select(AuditEvent.actor).where(
            AuditEvent.action == "console.sign-in").order_by(AuditEvent.id.desc())).first() or ""


def test_the_page_shows_the_current_values(service: Service, admin: Console) -> None:
    assert state(service) == DEFAULTS
    page = admin.get(PAGE)
    assert page.status_code == 200  # type: ignore[attr-defined]
    doc = parse(page.text)  # type: ignore[attr-defined]
    assert doc.one("h1").text == "テナント設定: 東北電機株式会社"
    assert "checked" in doc.by_id("user_download").attrs
    assert {f: doc.value_of(f) for f in (
        "default_validity", "p12_profile", "ocsp_validity", "upn_suffix", "ip_policy",
        "networks")} == {"default_validity": "P1Y", "p12_profile": "compat",
                         "ocsp_validity": "300", "upn_suffix": "", "ip_policy": "cert_only",
                         "networks": ""}
    assert [o.attrs["value"] for o in doc.by_id("p12_profile").all("option")] == [
        "compat", "modern"]
    assert [o.attrs["value"] for o in doc.by_id("ip_policy").all("option")] == [
        "ip_only", "cert_only", "ip_or_cert", "ip_and_cert"]
    # each form its own button, every form carries the CSRF value
    forms = doc.all("form", method="post")
    assert sorted(f.one("input", name="form").attrs["value"] for f in forms
                  if f.all("input", name="form")) == sorted([
                      "user_download", "default_validity", "p12_profile", "ocsp_validity",
                      "upn_suffix", "ip_policy", "timezone"])
    zone = doc.by_id("timezone")
    assert [o.attrs["value"] for o in zone.all("option") if "selected" in o.attrs] == ["UTC"]
    assert {"Asia/Tokyo", "UTC", "America/New_York"} <= {
        o.attrs["value"] for o in zone.all("option")}
    assert all(len(f.all("button", type="submit")) == 1 for f in forms)
    assert all(f.one("input", name="csrf").attrs["value"] == admin.csrf for f in forms)
    assert not doc.has_id("notice") and not doc.has_id("error")
    # a notice is one of the page's own, never a word from the URL
    other = admin.get(PAGE + "?done=%3Cscript%3E")
    assert other.status_code == 200  # type: ignore[attr-defined]
    assert not parse(other.text).has_id("notice")  # type: ignore[attr-defined]


CHANGES = [
    ("user_download", {}, {"user_download": False},
     ("tenant.update", {"user_download": False, "links_withdrawn": 0})),
    ("default_validity", {"default_validity": "p100y"}, {"default_validity": "P100Y"},
     ("tenant.update", {"default_validity": "P100Y", "previous_default_validity": "P1Y"})),
    ("p12_profile", {"p12_profile": "modern"}, {"p12_profile": "modern"},
     ("tenant.update", {"p12_profile": "modern", "previous_p12_profile": "compat"})),
    ("ocsp_validity", {"ocsp_validity": " 3600 "}, {"ocsp_validity": 3600},
     ("tenant.update", {"ocsp_validity_seconds": 3600,
                        "previous_ocsp_validity_seconds": 300})),
    ("timezone", {"timezone": "Asia/Tokyo"}, {"timezone": "Asia/Tokyo"},
     ("tenant.update", {"timezone": "Asia/Tokyo", "previous_timezone": "UTC"})),
    ("upn_suffix", {"upn_suffix": "tohoku.example.jp"}, {"upn_suffix": "tohoku.example.jp"},
     ("tenant.update", {"upn_suffix": "tohoku.example.jp", "previous_upn_suffix": None})),
    ("ip_policy", {"ip_policy": "ip_or_cert",
                   "networks": "192.0.2.0/24\r\n\r\n 2001:db8::/32 \r\n"},
     {"ip_policy": ("ip_or_cert", ("192.0.2.0/24", "2001:db8::/32"))},
     ("tenant.ip_policy", {"policy": "ip_or_cert",
                           "networks": ["192.0.2.0/24", "2001:db8::/32"]})),
]


NOTICES = {"user_download": "ユーザー自身によるダウンロードの設定を変更しました。",
           "default_validity": "既定の有効期間を変更しました。",
           "p12_profile": "PKCS#12 プロファイルを変更しました。",
           "ocsp_validity": "OCSP 応答の有効期間を変更しました。",
           "upn_suffix": "UPN サフィックスを変更しました。",
           "timezone": "テナントのタイムゾーンを変更しました。",
           "ip_policy": "IP アドレス制限を変更しました。"}


@pytest.mark.parametrize(("form", "fields", "changed", "event"), CHANGES,
                         ids=[c[0] for c in CHANGES])
def test_each_form_changes_its_setting_audited_with_the_admin_as_actor(
        service: Service, admin: Console, form: str, fields: dict[str, str],
        changed: dict[str, object], event: tuple[str, dict[str, object]]) -> None:
    admin.get(PAGE)
    answer = admin.post(PAGE, {"form": form, **fields})
    assert answer.status_code == 303, answer.text  # type: ignore[attr-defined]
    assert answer.headers["location"] == f"{PAGE}?done={form}"  # type: ignore[attr-defined]
    assert state(service) == {**DEFAULTS, **changed}
    actor = actor_of(service, admin)
    assert actor.startswith("token:") and actor.endswith(":佐藤 管理者")
    assert events(service) == [(event[0], "tohoku", actor, event[1])]
    doc = parse(admin.get(answer.headers["location"]).text)  # type: ignore[attr-defined]
    assert doc.by_id("notice").text == NOTICES[form]


def test_the_user_download_box_turns_it_back_on(service: Service, admin: Console) -> None:
    service.links.set_user_download("tohoku", False)
    doc = parse(admin.get(PAGE).text)  # type: ignore[attr-defined]
    assert "checked" not in doc.by_id("user_download").attrs
    answer = admin.post(PAGE, {"form": "user_download", "user_download": "1"})
    assert answer.status_code == 303  # type: ignore[attr-defined]
    assert state(service)["user_download"] is True


BAD = [
    ("ocsp_validity", {"ocsp_validity": "59"}, "the OCSP validity must be 60 seconds to 7 days"),
    ("ocsp_validity", {"ocsp_validity": "604801"},
     "the OCSP validity must be 60 seconds to 7 days"),
    ("ocsp_validity", {"ocsp_validity": "５分"}, "ocsp_validity '５分' is not a whole number"),
    ("ip_policy", {"ip_policy": "ip_only", "networks": "192.0.2.0/24\n10.0.0.0/33"},
     "'10.0.0.0/33' is not an IPv4 or IPv6 network (CIDR)"),
    ("ip_policy", {"ip_policy": "ip_only", "networks": ""},
     "policy ip_only needs at least one allowed network"),
    ("ip_policy", {"ip_policy": "everyone", "networks": ""},
     "policy 'everyone' is not one of ip_only, cert_only, ip_or_cert, ip_and_cert"),
    ("default_validity", {"default_validity": "1 year"},
     "validity '1 year' is not of the form P1Y, P6M, P90D or P1Y6M"),
    ("default_validity", {"default_validity": "P0Y"},
     "a validity of zero length is not a validity"),
    ("p12_profile", {"p12_profile": "legacy"}, "PKCS#12 profile 'legacy' is not compat or modern"),
    ("upn_suffix", {"upn_suffix": "not a domain"}, None),
    ("nothing", {}, "no setting 'nothing'"),
    ("timezone", {"timezone": "Mars/Olympus_Mons"}, None),
    ("timezone", {"timezone": ""}, None),
    ("user_download", {"user_download": "yes"},
     "user_download 'yes' is not the checkbox's value 1"),
    ("user_download", {"user_download": ""}, "user_download '' is not the checkbox's value 1"),
]


@pytest.mark.parametrize(("form", "fields", "message"), BAD,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_shows_the_page_again_with_the_error_and_changes_nothing(
        service: Service, admin: Console, form: str, fields: dict[str, str],
        message: str | None) -> None:
    admin.get(PAGE)
    answer = admin.post(PAGE, {"form": form, **fields})
    assert answer.status_code == 400, answer.text  # type: ignore[attr-defined]
    doc = parse(answer.text)  # type: ignore[attr-defined]
    error = doc.by_id("error").text
    assert error.startswith("変更できませんでした: ")
    if message is not None:
        assert error == f"変更できませんでした: {message}"
    assert state(service) == DEFAULTS
    assert events(service) == []
    typed = {name: value for name, value in fields.items()  # a select shows the setting
             if name not in ("ip_policy", "p12_profile", "user_download", "timezone")}
    assert {name: doc.value_of(name) for name in typed} == typed


def test_subscription_is_shown_to_admins_in_the_viewer_zone(
        service: Service, clock: FixedClock, app_client: TestClient, tenant: str) -> None:
    service.lifecycle.set_subscription(tenant, ends=dt.date(2026, 3, 31), zone="Asia/Tokyo",
                                       grace_days=30, kind="contract")
    token = service.tokens.create(role="admin", tenant=tenant, timezone="Asia/Tokyo")[0]
    console = Console(app_client)
    assert console.sign_in(token).status_code == 303  # type: ignore[attr-defined]
    page = console.get(PAGE)
    assert page.status_code == 200, page.text  # type: ignore[attr-defined]
    section = parse(page.text).by_id("subscription")  # type: ignore[attr-defined]
    assert {d: section.one(id=d).text for d in (
        "subscription-kind", "subscription-state", "subscription-ends-on", "subscription-ends",
        "subscription-grace", "subscription-grace-days")} == {
        "subscription-kind": "契約", "subscription-state": "有効",
        "subscription-ends-on": "2026-03-31 (Asia/Tokyo)",
        "subscription-ends": "2026-04-01 00:00 JST",
        "subscription-grace": "2026-05-01 00:00 JST", "subscription-grace-days": "30"}
    assert section.one(id="subscription-state").attrs["class"] == "badge active"
    assert not section.all("form")  # an admin only sees
    # the viewer's own choice of zone wins; past the end, the grace period
    clock.set(dt.datetime(2026, 4, 2, 0, 0, tzinfo=dt.UTC))
    console.sign_in(token)  # the session has long been idle
    console.client.cookies.set("tegata_zone", "Pacific/Honolulu")
    doc = parse(console.get(PAGE + "?lang=en").text)  # type: ignore[attr-defined]
    section = doc.by_id("subscription")
    assert (section.one(id="subscription-state").text, section.one(id="subscription-ends").text,
            section.one(id="subscription-grace").text) == (
        "In grace period", "2026-03-31 05:00 HST", "2026-05-01 14:00 HST")
    assert section.one(id="subscription-state").attrs["data-state"] == "grace"


def test_an_admin_posting_the_subscription_form_is_refused(service: Service,
                                                           admin: Console) -> None:
    admin.get(PAGE)
    answer = admin.post(PAGE, {"form": "subscription", "ends": "2027-03-31",
                               "timezone": "Asia/Tokyo", "grace_days": "10",
                               "kind": "contract"})
    assert answer.status_code == 403  # type: ignore[attr-defined]
    assert state(service) == DEFAULTS
    assert events(service) == []


@pytest.fixture
def operator(app_client: TestClient, operator_token: str, tenant: str) -> Console:
    console = Console(app_client)
    assert console.sign_in(operator_token).status_code == 303  # type: ignore[attr-defined]
    console.get(PAGE)
    return console


def test_the_operator_sets_the_subscription_as_the_api_does(service: Service,
                                                            operator: Console) -> None:
    doc = parse(operator.get(PAGE).text)  # type: ignore[attr-defined]
    form = doc.by_id("subscription-form")
    assert form.one("input", name="form").attrs["value"] == "subscription"
    assert (doc.value_of("ends"), doc.value_of("subscription_timezone"),
            doc.value_of("grace_days"), doc.value_of("kind")) == ("", "UTC", "30", "contract")
    answer = operator.post(PAGE, {"form": "subscription", "ends": "2027-03-31",
                                  "timezone": "Asia/Tokyo", "grace_days": "10",
                                  "kind": "trial"})
    assert answer.status_code == 303, answer.text  # type: ignore[attr-defined]
    assert state(service) == {**DEFAULTS, "subscription": (
        "trial", dt.date(2027, 3, 31), "Asia/Tokyo", 10)}
    assert events(service) == [("tenant.subscription", "tohoku", actor_of(service, operator), {
        "ends_on": "2027-03-31", "zone": "Asia/Tokyo", "grace_days": 10})]
    # open-ended again: no end date
    answer = operator.post(PAGE, {"form": "subscription", "ends": "", "timezone": "UTC",
                                  "grace_days": "10", "kind": "contract"})
    assert answer.status_code == 303  # type: ignore[attr-defined]
    assert state(service)["subscription"] == ("none", None, None, 10)


@pytest.mark.parametrize(("fields", "message"), [
    ({"ends": "2027-03-31", "timezone": "Mars/Olympus_Mons"}, None),
    ({"ends": "2027-02-30", "timezone": "UTC"},
     "subscription end '2027-02-30' is not a date of the form YYYY-MM-DD"),
    ({"ends": "2027-03-31", "timezone": "UTC", "grace_days": "-1"},
     "grace_days '-1' is not a whole number"),
    ({"ends": "2027-03-31", "timezone": "UTC", "kind": "none"},
     "subscription kind 'none' is not one of contract, trial"),
    ({"ends": "2026-03-01", "timezone": "UTC"}, None),
], ids=["unknown-zone", "no-such-day", "negative-grace", "bad-kind", "past-unconfirmed"])
def test_bad_subscription_input_changes_nothing(service: Service, operator: Console,
                                                fields: dict[str, str],
                                                message: str | None) -> None:
    answer = operator.post(PAGE, {"form": "subscription", "grace_days": "30",
                                  "kind": "contract", **fields})
    assert answer.status_code == 400, answer.text  # type: ignore[attr-defined]
    error = parse(answer.text).by_id("error").text  # type: ignore[attr-defined]
    if message is not None:
        assert error == f"変更できませんでした: {message}"
    assert state(service) == DEFAULTS
    assert events(service) == []


def test_a_past_end_needs_the_confirmation_box(service: Service, operator: Console) -> None:
    refused = operator.post(PAGE, {"form": "subscription", "ends": "2026-03-01",
                                   "timezone": "UTC", "grace_days": "30", "kind": "contract"})
    assert refused.status_code == 400  # type: ignore[attr-defined]
    error = parse(refused.text).by_id("error").text  # type: ignore[attr-defined]
    assert error.endswith("確定するには「過去の日付を確定する」にチェックを入れてください。")
    done = operator.post(PAGE, {"form": "subscription", "ends": "2026-03-01",
                                "timezone": "UTC", "grace_days": "30", "kind": "contract",
                                "allow_past": "1"})
    assert done.status_code == 303  # type: ignore[attr-defined]
    assert service.lifecycle.get_subscription("tohoku").state == "grace"


def test_the_display_name_is_escaped(service: Service, app_client: TestClient,
                                     operator_token: str) -> None:
    service.hierarchy.create_tenant("kansai", display_name="関西<script>alert(1)</script>")
    console = Console(app_client)
    console.sign_in(operator_token)
    page = console.get("/console/t/kansai/settings")
    assert page.status_code == 200  # type: ignore[attr-defined]
    assert "<script>alert(1)</script>" not in page.text  # type: ignore[attr-defined]
    assert ("<h1>テナント設定: 関西&lt;script&gt;alert(1)&lt;/script&gt;</h1>"
            in page.text)  # type: ignore[attr-defined]


def test_english(admin: Console) -> None:
    doc = parse(admin.get(PAGE + "?lang=en").text)  # type: ignore[attr-defined]
    assert doc.one("h1").text == "Tenant settings: 東北電機株式会社"
    assert [h.text for h in doc.all("h2")] == [
        "Subscription", "Users' own downloads", "Tenant's time zone", "Default validity",
        "PKCS#12 profile (default)",
        "OCSP answer validity (seconds)", "UPN suffix", "IP restriction"]
    answer = admin.post(PAGE, {"form": "ocsp_validity", "ocsp_validity": "30"})
    assert parse(answer.text).by_id("error").text == (  # type: ignore[attr-defined]
        "Not changed: the OCSP validity must be 60 seconds to 7 days")


def test_an_admin_of_another_tenant_gets_404(service: Service, admin: Console) -> None:
    service.hierarchy.create_tenant("kansai", display_name="関西電機")
    assert admin.get("/console/t/kansai/settings").status_code == 404  # type: ignore[attr-defined]
    answer = admin.post("/console/t/kansai/settings", {"form": "ocsp_validity",
                                                        "ocsp_validity": "600"})
    assert answer.status_code == 404  # type: ignore[attr-defined]
    assert service.hierarchy.tenant_settings("kansai").ocsp_validity_seconds == 300


def test_a_post_without_the_csrf_value_changes_nothing(service: Service,
                                                       admin: Console) -> None:
    answer = admin.post(PAGE, {"form": "ocsp_validity", "ocsp_validity": "600"}, csrf=False)
    assert answer.status_code == 403  # type: ignore[attr-defined]
    assert state(service) == DEFAULTS
