"""The tenant's settings page: each setting its own form, posted to one address and told
apart by its ``form`` field; the subscription shown to admins and set by the operator.

Every change goes through the service call the API's settings routes make (and ``tegata
tenant set``, ``tegata tenant subscription set``), with the signed-in admin as the audit's
actor. Bad input shows the page again with the error (400) and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.console import i18n
from api.console.frame import (
    PREFIX,
    ConsoleRoute,
    console,
    form_of,
    redirect,
    render,
    service_of,
    viewer_of,
)
from api.problems import row_of
from api.routes.tenants import actor_of
from ca import expiry
from ca.errors import Forbidden, InvalidInput, NeedsConfirmation
from ca.service.gateway import POLICIES
from ca.x509.pkcs12 import Profile

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

FORMS = ("user_download", "default_validity", "p12_profile", "ocsp_validity", "upn_suffix",
         "ip_policy", "subscription", "timezone")
KINDS = ("contract", "trial")  # an open-ended subscription: no end date
MAX_FIELD = 100_000  # the networks' textarea: at most 1000 networks of a few dozen characters

i18n.register({
    "settings.title": ("テナント設定", "Tenant settings"),
    "settings.heading": ("テナント設定: {name}", "Tenant settings: {name}"),
    "settings.save": ("保存", "Save"),
    "settings.zone_note": ("日時は {zone} で表示しています。", "Times are shown in {zone}."),
    "settings.user_download": ("ユーザー自身によるダウンロード", "Users' own downloads"),
    "settings.user_download.label": ("ユーザーが自分の証明書をダウンロードできる",
                                     "Users may download their own certificate"),
    "settings.user_download.help": (
        "オフにすると、発行済みのダウンロードリンクはすべて無効になります。管理者は引き続き"
        "ダウンロードできます。",
        "Turning this off withdraws every outstanding download link; admins can still "
        "download."),
    "settings.default_validity": ("既定の有効期間", "Default validity"),
    "settings.default_validity.help": (
        "有効期限を指定せずに発行した証明書の期間 (ISO 8601 形式: P1Y = 1 年、P90D = 90 日、"
        "P100Y = 100 年)。",
        "How long a certificate issued without a chosen expiry lasts (ISO 8601: P1Y = one "
        "year, P90D = 90 days, P100Y = 100 years)."),
    "settings.p12_profile": ("PKCS#12 プロファイル (既定)", "PKCS#12 profile (default)"),
    "settings.p12_profile.help": (
        "compat は古い Windows や macOS でも読める形式、modern は AES-256 の形式です。",
        "compat is readable by older Windows and macOS; modern uses AES-256."),
    "settings.ocsp_validity": ("OCSP 応答の有効期間 (秒)", "OCSP answer validity (seconds)"),
    "settings.ocsp_validity.help": (
        "60 から 604800 (7 日) まで。ゲートウェイ (nginx) は応答をこの間キャッシュするため、"
        "失効がゲートウェイに届くまでの最大時間になります。",
        "60 to 604800 (7 days). A gateway (nginx) caches an answer this long, so a "
        "revocation reaches it within this time."),
    "settings.upn_suffix": ("UPN サフィックス", "UPN suffix"),
    "settings.upn_suffix.help": (
        "DNS ドメイン (例: example.co.jp)。以後発行する証明書に Windows の UPN "
        "<ログイン名>@サフィックス を入れます。空にすると UPN を入れません。",
        "A DNS domain (e.g. example.co.jp): certificates issued from now on carry the "
        "Windows UPN <login>@suffix. Empty: no UPN."),
    "settings.ip_policy": ("IP アドレス制限", "IP restriction"),
    "settings.ip_policy.policy": ("ポリシー", "Policy"),
    "settings.ip_policy.cert_only": ("証明書のみ", "Certificate only"),
    "settings.ip_policy.ip_only": ("許可したネットワークのみ", "Allowed networks only"),
    "settings.ip_policy.ip_or_cert": ("許可したネットワーク、または証明書",
                                      "An allowed network, or a certificate"),
    "settings.ip_policy.ip_and_cert": ("許可したネットワーク、かつ証明書",
                                       "An allowed network and a certificate"),
    "settings.networks": ("許可するネットワーク (1 行に 1 つ、CIDR)",
                          "Allowed networks (one per line, CIDR)"),
    "settings.networks.help": ("例: 192.0.2.0/24、2001:db8::/32",
                               "For example 192.0.2.0/24, 2001:db8::/32"),
    "settings.subscription": ("契約", "Subscription"),
    "settings.subscription.kind": ("種別", "Kind"),
    "settings.subscription.kind.none": ("期限なし", "Open-ended"),
    "settings.subscription.kind.trial": ("試用", "Trial"),
    "settings.subscription.kind.contract": ("契約", "Contract"),
    "settings.subscription.state": ("状態", "State"),
    "settings.subscription.ends": ("終了日時", "Ends"),
    "settings.subscription.ends_on": ("最終日", "Last day"),
    "settings.subscription.grace": ("猶予期間の終了", "Grace period ends"),
    "settings.subscription.grace_days": ("猶予日数", "Grace days"),
    "settings.subscription.zone": ("終了日のタイムゾーン", "Zone of the last day"),
    "settings.subscription.allow_past": (
        "過去の日付を確定する (証明書はすぐに一時停止されます)",
        "Confirm a date already past (every certificate is suspended at once)"),
    "settings.subscription.ends_help": (
        "空欄にすると期限なしになります。", "Leave empty for an open-ended subscription."),
    "settings.subscription.admin_note": (
        "契約の変更はオペレーターが行います。", "The operator changes the subscription."),
    "settings.state.active": ("有効", "Active"),
    "settings.state.grace": ("猶予期間中", "In grace period"),
    "settings.state.ended": ("終了", "Ended"),
    "settings.none": ("なし", "None"),
    "settings.failed": ("変更できませんでした: {reason}", "Not changed: {reason}"),
    "settings.confirm_past": (
        "確定するには「過去の日付を確定する」にチェックを入れてください。",
        "To confirm, tick \"Confirm a date already past\"."),
    "settings.done.user_download": ("ユーザー自身によるダウンロードの設定を変更しました。",
                                    "The users' own downloads setting was changed."),
    "settings.done.default_validity": ("既定の有効期間を変更しました。",
                                       "The default validity was changed."),
    "settings.done.timezone": ("テナントのタイムゾーンを変更しました。",
                               "The tenant's time zone was changed."),
    "settings.timezone": ("テナントのタイムゾーン", "Tenant's time zone"),
    "settings.timezone.help": (
        "有効期限の日付や監査ログの絞り込みの日付は、このタイムゾーンの 1 日として扱います "
        "(表示タイムゾーンを選んだ人にはそのタイムゾーンで表示します)。",
        "Expiry dates and audit filter dates are whole days in this zone (shown in another "
        "zone to whoever chose one)."),
    "settings.done.p12_profile": ("PKCS#12 プロファイルを変更しました。",
                                  "The PKCS#12 profile was changed."),
    "settings.done.ocsp_validity": ("OCSP 応答の有効期間を変更しました。",
                                    "The OCSP answer validity was changed."),
    "settings.done.upn_suffix": ("UPN サフィックスを変更しました。",
                                 "The UPN suffix was changed."),
    "settings.done.ip_policy": ("IP アドレス制限を変更しました。",
                                "The IP restriction was changed."),
    "settings.done.subscription": ("契約を変更しました。", "The subscription was changed."),
})


@router.get("/t/{tenant}/settings", dependencies=[console()])
def settings_page(request: Request, tenant: str, done: str | None = None) -> Response:
    return _page(request, tenant, notice=done if done in FORMS else None)


@router.post("/t/{tenant}/settings", dependencies=[console()])
async def change_setting(request: Request, tenant: str) -> Response:
    form = (await form_of(request))["_form"]
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    return await run_in_threadpool(_change, request, tenant, fields)


def _change(request: Request, tenant: str, fields: dict[str, str]) -> Response:
    which = fields.get("form", "")
    if which == "subscription" and viewer_of(request).role != "operator":
        raise Forbidden("only the operator may change the subscription", field="form")
    change = _CHANGES.get(which)
    try:
        if change is None:
            raise InvalidInput(f"no setting {which[:32]!r}", field="form")
        if any(len(value) > MAX_FIELD for value in fields.values()):
            raise InvalidInput("a field of the form is too long", field="form")
        change(request, tenant, fields)
    except InvalidInput as exc:
        return _page(request, tenant, failed=which, posted=fields,
                     error=exc.message, confirm=isinstance(exc, NeedsConfirmation),
                     status=row_of(exc).status)
    return redirect(request, f"{PREFIX}/t/{tenant}/settings?done={which}")


def _user_download(request: Request, tenant: str, fields: dict[str, str]) -> None:
    """The checkbox sends ``1`` when ticked and nothing when not; anything else is refused,
    not read as "off"."""
    value = fields.get("user_download")
    if value not in (None, "1"):
        raise InvalidInput(f"user_download {value[:16]!r} is not the checkbox's value 1",
                           field="user_download")
    service_of(request).links.set_user_download(tenant, value == "1", actor=actor_of(request))


def _default_validity(request: Request, tenant: str, fields: dict[str, str]) -> None:
    service_of(request).hierarchy.set_default_validity(
        tenant, fields.get("default_validity", ""), actor=actor_of(request))


def _p12_profile(request: Request, tenant: str, fields: dict[str, str]) -> None:
    service_of(request).links.set_p12_profile(tenant, fields.get("p12_profile", ""),
                                              actor=actor_of(request))


def _ocsp_validity(request: Request, tenant: str, fields: dict[str, str]) -> None:
    service_of(request).ocsp.set_validity(
        tenant, _integer(fields.get("ocsp_validity", ""), "ocsp_validity"),
        actor=actor_of(request))


def _upn_suffix(request: Request, tenant: str, fields: dict[str, str]) -> None:
    suffix = fields.get("upn_suffix", "").strip()
    service_of(request).links.set_upn_suffix(tenant, suffix or None, actor=actor_of(request))


def _timezone(request: Request, tenant: str, fields: dict[str, str]) -> None:
    service_of(request).hierarchy.set_timezone(tenant, fields.get("timezone", ""),
                                              actor=actor_of(request))


def _ip_policy(request: Request, tenant: str, fields: dict[str, str]) -> None:
    networks = [line.strip() for line in fields.get("networks", "").splitlines()
                if line.strip()]
    service_of(request).gateway.set_ip_policy(tenant, policy=fields.get("ip_policy", ""),
                                              networks=networks, actor=actor_of(request))


def _subscription(request: Request, tenant: str, fields: dict[str, str]) -> None:
    """As ``PUT .../subscription``: no end date is open-ended; an end already past needs the
    confirmation box."""
    text = fields.get("ends", "").strip()
    ends = None
    if text:
        try:
            ends = expiry.parse_date(text)
        except InvalidInput:
            raise InvalidInput(f"subscription end {text[:32]!r} is not a date of the form "
                               "YYYY-MM-DD", field="ends") from None
    zone = fields.get("timezone", "").strip() or None
    if zone is not None:
        expiry.zone(zone)  # an unknown zone is refused by name, before anything changes
    grace = fields.get("grace_days", "").strip()
    kind = fields.get("kind", "contract")
    if kind not in KINDS:
        raise InvalidInput(f"subscription kind {kind[:16]!r} is not one of "
                           f"{', '.join(KINDS)}", field="kind")
    service_of(request).lifecycle.set_subscription(
        tenant, ends=ends, zone=zone,
        grace_days=_integer(grace, "grace_days") if grace else None,
        kind=kind if ends else "none", allow_past=fields.get("allow_past") == "1",
        actor=actor_of(request))


_CHANGES: dict[str, Callable[[Request, str, dict[str, str]], None]] = {
    "user_download": _user_download, "default_validity": _default_validity,
    "p12_profile": _p12_profile, "ocsp_validity": _ocsp_validity, "upn_suffix": _upn_suffix,
    "ip_policy": _ip_policy, "subscription": _subscription, "timezone": _timezone,
}


def _integer(text: str, field: str) -> int:
    cleaned = text.strip()
    if not cleaned.isascii() or not cleaned.isdigit() or len(cleaned) > 9:
        raise InvalidInput(f"{field} {cleaned[:16]!r} is not a whole number", field=field)
    return int(cleaned)


def _page(request: Request, tenant: str, *, notice: str | None = None,
          failed: str | None = None, posted: dict[str, str] | None = None,
          error: str | None = None, confirm: bool = False, status: int = 200) -> Response:
    service = service_of(request)
    settings = service.hierarchy.tenant_settings(tenant)
    zone = viewer_of(request).zone_or(settings.timezone)
    subscription = service.lifecycle.get_subscription(tenant)
    ip = service.gateway.get_ip_policy(tenant)
    shown: dict[str, Any] = {
        "user_download": settings.user_download, "default_validity": settings.default_validity,
        "p12_profile": settings.p12_profile, "ocsp_validity": str(settings.ocsp_validity_seconds),
        "upn_suffix": settings.upn_suffix or "", "ip_policy": ip.policy,
        "networks": "\n".join(ip.networks),
        "ends": subscription.ends_on.isoformat() if subscription.ends_on else "",
        "timezone": subscription.zone or settings.timezone,
        "tenant_timezone": settings.timezone,
        "grace_days": str(subscription.grace_days),
        "kind": subscription.kind if subscription.kind in KINDS else "contract",
        "allow_past": False,
    }
    if failed is not None and posted is not None:  # the failed form keeps what was typed
        for name in _FIELDS.get(failed, ()):
            shown[name] = posted.get(name, "")
        if failed == "user_download":
            shown["user_download"] = posted.get("user_download") == "1"
        if failed == "subscription":
            shown["allow_past"] = posted.get("allow_past") == "1"
    return render(request, "settings.html", status=status, settings=settings, shown=shown,
                  subscription=subscription, zone=zone, notice=notice, error=error,
                  confirm=confirm, policies=POLICIES, profiles=[p.value for p in Profile],
                  kinds=KINDS)


# the typed fields a failed form keeps (a select shows the setting: a refused value is
# none of its options)
_FIELDS = {"default_validity": ("default_validity",), "ocsp_validity": ("ocsp_validity",),
           "upn_suffix": ("upn_suffix",), "ip_policy": ("networks",),
           "subscription": ("ends", "timezone", "grace_days")}
