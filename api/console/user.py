"""One user's page: their details and certificates, revoke / suspend / reinstate, and the
one-time download link.

Each action calls the use case the API's route calls (``api.routes.revocation``,
``api.routes.selfservice.create_link``) with the signed-in admin as the audit's actor, then
answers 303 back to the page with a fixed flag (``?done=revoked``) naming what was done: no
user string travels in that URL. A refusal shows the page again with the reason and the
API's status. A new link's URL is in the POST's own answer page and nowhere else: not in a
redirect, a log line or a later page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from api.console import i18n
from api.console.frame import (
    PREFIX,
    ConsoleRoute,
    console,
    form_of,
    log,
    redirect,
    render,
    service_of,
    viewer_of,
)
from api.console.frame import _quote as quote_segment
from api.problems import detail_of, row_of
from api.routes.tenants import actor_of
from ca import bundle_profile, mail, serials
from ca.errors import CAError, NotFound
from ca.holds import HoldCause
from ca.reasons import REASONS
from ca.service import CertificateView
from ca.service.links import CreatedLink
from ca.states import State

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

USER = "/t/{tenant}/users/{login}"
CERT = USER + "/certificates/{serial}"
MAX_CERTIFICATES = 10_000  # the most list_certificates gives; no user holds that many
# what ``?done=`` may name: each a fixed message, so the URL carries no user string
DONE = ("revoked", "suspended", "reinstated", "still-held", "link-sent", "allowed", "denied")
FormData = Annotated[dict[str, Any], Depends(form_of)]

i18n.register({
    "user.title": ("ユーザー: {name}", "User: {name}"),
    "user.back": ("ユーザー一覧へ", "Back to the users"),
    "user.details": ("ユーザー情報", "Details"),
    "user.login": ("ログイン名", "Login"),
    "user.display_name": ("表示名", "Display name"),
    "user.email": ("メールアドレス", "E-mail"),
    "user.groups": ("グループ", "Groups"),
    "user.no_groups": ("(なし)", "(none)"),
    "user.kind": ("種別", "Kind"),
    "user.kind.person": ("人", "Person"),
    "user.kind.service": ("サービス", "Service"),
    "user.status": ("在籍状態", "Status"),
    "user.status.active": ("有効", "Active"),
    "user.status.retired": ("退職済み", "Retired"),
    "user.secure_access": ("セキュアアクセス", "Secure access"),
    "user.allowed": ("許可", "Allowed"),
    "user.denied": ("不許可", "Not allowed"),
    "user.certificates": ("証明書", "Certificates"),
    "user.no_certificates": ("証明書はまだ発行されていません。",
                             "No certificate has been issued to this user yet."),
    "user.col.state": ("状態", "State"),
    "user.col.serial": ("シリアル番号", "Serial"),
    "user.col.not_after": ("有効期限 ({zone})", "Valid until ({zone})"),
    "user.col.key_type": ("鍵の種類", "Key type"),
    "user.col.profile": ("PKCS#12 プロファイル", "PKCS#12 profile"),
    "user.col.actions": ("操作", "Actions"),
    "user.state.valid": ("有効", "valid"),
    "user.state.expired": ("期限切れ", "expired"),
    "user.state.suspended": ("一時停止", "suspended"),
    "user.state.revoked": ("失効", "revoked"),
    "user.held_for": ("停止の理由: {causes}", "Held for: {causes}"),
    "user.cause.manual": ("手動", "by hand"),
    "user.cause.subscription": ("契約の終了", "the subscription"),
    "user.cause.permission": ("セキュアアクセス不許可", "secure access withdrawn"),
    "user.revoked_for": ("失効理由: {reason}", "Reason: {reason}"),
    "user.reason": ("失効理由", "Reason"),
    "user.reason.unspecified": ("指定なし (unspecified)", "Unspecified (unspecified)"),
    "user.reason.keyCompromise": ("鍵の漏洩・端末の紛失 (keyCompromise)",
                                  "Key compromise, lost device (keyCompromise)"),
    "user.reason.affiliationChanged": ("所属の変更 (affiliationChanged)",
                                       "Affiliation changed (affiliationChanged)"),
    "user.reason.superseded": ("再発行による置き換え (superseded)",
                               "Superseded (superseded)"),
    "user.reason.cessationOfOperation": ("利用の終了 (cessationOfOperation)",
                                         "Cessation of operation (cessationOfOperation)"),
    "user.reason.privilegeWithdrawn": ("権限の取り消し (privilegeWithdrawn)",
                                       "Privilege withdrawn (privilegeWithdrawn)"),
    "user.revoke": ("失効", "Revoke"),
    "user.revoke.confirm": ("失効は取り消せません", "I understand revocation is final"),
    "user.revoke.unconfirmed": ("失効は取り消せません。確認のチェックを入れてから「失効」を押して"
                                "ください。何も変更していません。",
                                "Revocation is final: tick the box confirming it, then press "
                                "Revoke. Nothing was changed."),
    "user.suspend": ("一時停止", "Suspend"),
    "user.reinstate": ("停止を解除", "Reinstate"),
    "user.done.revoked": ("証明書 {serial} を失効させました。",
                          "Certificate {serial} is revoked."),
    "user.done.suspended": ("証明書 {serial} を一時停止しました。",
                            "Certificate {serial} is suspended."),
    "user.done.reinstated": ("証明書 {serial} の停止を解除しました。",
                             "Certificate {serial} is reinstated."),
    "user.done.still-held": ("証明書 {serial} の手動の停止を解除しましたが、ほかの理由による"
                             "停止が残っています。",
                             "The manual suspension of certificate {serial} is lifted; it "
                             "stays suspended for another cause."),
    "user.done.link-sent": ("ダウンロード用リンクをメールで送りました。",
                            "The download link has been sent by e-mail."),
    "user.reinstate.other_cause": (
        "証明書 {serial} は {causes} のために停止されています。ここで解除できるのは手動の停止"
        "だけです (契約の更新やセキュアアクセスの許可で解除されます)。",
        "Certificate {serial} is suspended for {causes}, not by hand: only a manual "
        "suspension is reinstated here (renewing the subscription or allowing secure access "
        "again lifts the others)."),
    "user.link": ("ダウンロード用のワンタイムリンク", "One-time download link"),
    "user.link.help": ("利用者が自分で証明書とパスワードを受け取るためのリンクを作ります。"
                       "リンクは一度だけ使え、以前のリンクは使えなくなります。",
                       "Make a link with which the user fetches their certificate and its "
                       "password themselves. It works once; the user's earlier links stop "
                       "working."),
    "user.link.create": ("リンクを作成", "Create a link"),
    "user.link.send": ("メールで送信", "Send by e-mail"),
    "user.link.made": ("リンクを作成しました。このリンクはこの画面で一度だけ表示されます。"
                       "{email} に安全な方法で伝えてください。有効期限: {expires}",
                       "The link is made. It is shown on this page only, this once: pass it "
                       "to {email} by a safe channel. It expires {expires}."),
    "user.link.copy": ("コピー", "Copy"),
    "user.link.copied": ("コピーしました", "Copied"),
    "user.separator": ("、", ", "),
    "user.done.allowed": ("セキュアアクセスを許可しました。", "Secure access is allowed."),
    "user.done.denied": ("セキュアアクセスを取り消しました。有効な証明書は一時停止されます。",
                         "Secure access is withdrawn; the valid certificates are suspended."),
    "user.permission.allow": ("セキュアアクセスを許可", "Allow secure access"),
    "user.permission.deny": ("セキュアアクセスを取り消す", "Withdraw secure access"),
    "user.permission.deny_help": ("取り消すと、このユーザーの証明書は一時停止されます (再び許可"
                                  "すると解除されます)。",
                                  "Withdrawing suspends this user's certificates (allowing "
                                  "again lifts that)."),
    "user.issue": ("証明書を発行", "Issue a certificate"),
    "user.issue.help": ("このユーザーだけに、テナントの既定 (鍵の種類・PKCS#12 プロファイル) で"
                        "発行します。",
                        "Issue to this user alone, with the tenant's defaults (key type, "
                        "PKCS#12 profile)."),
    "user.issue.expires": ("有効期限 ({zone})", "Valid until ({zone})"),
    "user.issue.submit": ("発行する", "Issue"),
    "user.link.none": ("鍵を保管している有効な証明書がないため、リンクは作れません。先に証明書を"
                       "発行してください。",
                       "No link can be made: the user has no valid certificate whose key is "
                       "kept. Issue a certificate first."),
    "user.error": ("処理できませんでした: {detail}", "Not done: {detail}"),
})


@dataclass(frozen=True)
class CertRow:
    """A certificate as the page lists it."""

    view: CertificateView
    holds: tuple[str, ...]  # the causes of its unlifted holds
    profile: str  # the PKCS#12 profile its bundles are made in

    @property
    def actions(self) -> tuple[str, ...]:
        """The changes that apply to its state."""
        state = self.view.state
        if state is State.VALID:
            return ("suspend", "revoke")
        if state is State.SUSPENDED:
            manual = HoldCause.MANUAL.value in self.holds
            return ("reinstate", "revoke") if manual else ("suspend", "revoke")
        return ()


@router.get(USER, dependencies=[console()])
def user_page(request: Request, tenant: str, login: str,
              done: Annotated[str | None, Query(max_length=32)] = None,
              serial: Annotated[str | None, Query(max_length=64)] = None) -> Response:
    return _page(request, tenant, login, notice=_notice(request, done, serial))


@router.post(CERT + "/revoke", dependencies=[console()])
def revoke(request: Request, tenant: str, login: str, serial: str, form: FormData) -> Response:
    """As ``POST /api/v1/tenants/{tenant}/certificates/{serial}/revoke``, once the form's
    box says the admin knows it is final (nothing is done otherwise)."""
    reason = form["_form"].get("reason")
    try:
        view = _users_certificate(request, tenant, login, serial)
        if form["_form"].get("confirm") != "1":
            translate = i18n.translator(viewer_of(request).lang)
            return _page(request, tenant, login, status=400,
                         error=translate("user.revoke.unconfirmed"))
        service_of(request).revocation.revoke(
            tenant, view.serial, reason=reason if isinstance(reason, str) else "unspecified",
            actor=actor_of(request))
    except CAError as exc:
        return _refused(request, tenant, login, exc)
    return _done(request, tenant, login, "revoked", view.serial)


@router.post(CERT + "/suspend", dependencies=[console()])
def suspend(request: Request, tenant: str, login: str, serial: str) -> Response:
    """As ``POST .../certificates/{serial}/suspend``: a manual hold."""
    try:
        view = _users_certificate(request, tenant, login, serial)
        service_of(request).revocation.suspend(tenant, view.serial, actor=actor_of(request))
    except CAError as exc:
        return _refused(request, tenant, login, exc)
    return _done(request, tenant, login, "suspended", view.serial)


@router.post(CERT + "/reinstate", dependencies=[console()])
def reinstate(request: Request, tenant: str, login: str, serial: str) -> Response:
    """As ``POST .../certificates/{serial}/reinstate``, which lifts the manual hold only. A
    certificate held for another cause alone (the subscription, a withdrawn permission) is
    refused here, with that cause named, instead of answering "done" for a change that
    changed nothing."""
    service = service_of(request)
    try:
        view = _users_certificate(request, tenant, login, serial)
        causes = service.revocation.hold_causes(tenant, [view.serial]).get(view.serial, ())
        if view.state is State.SUSPENDED and HoldCause.MANUAL.value not in causes:
            translate = i18n.translator(viewer_of(request).lang)
            return _page(request, tenant, login, status=422, error=translate(
                "user.reinstate.other_cause", serial=view.serial,
                causes=_causes(translate, causes)))
        after = service.revocation.reinstate(tenant, view.serial, actor=actor_of(request))
    except CAError as exc:
        return _refused(request, tenant, login, exc)
    return _done(request, tenant, login,
                 "still-held" if after.state is State.SUSPENDED else "reinstated", view.serial)


@router.post(USER + "/link", dependencies=[console()])
def create_link(request: Request, tenant: str, login: str, form: FormData) -> Response:
    """As ``POST /api/v1/tenants/{tenant}/users/{login}/links``: ``action=send`` mails the
    link (its URL is then shown nowhere); otherwise this answer shows the URL, this once."""
    links = service_of(request).links
    send = form["_form"].get("action") == "send"
    try:
        made = (links.send if send else links.create)(tenant, login, actor=actor_of(request))
    except CAError as exc:
        return _refused(request, tenant, login, exc)
    if send:
        return _done(request, tenant, login, "link-sent", None)
    return _page(request, tenant, login, link=made)


@router.post(USER + "/permission", dependencies=[console()])
def set_permission(request: Request, tenant: str, login: str, form: FormData) -> Response:
    """As ``POST /api/v1/tenants/{tenant}/users/permission`` for this user: withdrawing
    suspends their certificates, allowing lifts those holds."""
    allow = form["_form"].get("allow")
    if allow not in ("1", "0"):
        translate = i18n.translator(viewer_of(request).lang)
        return _page(request, tenant, login, status=400, error=translate(
            "user.error", detail="allow must be 1 or 0"))
    try:
        (view,) = service_of(request).users.set_permission(
            tenant, (login,), allow=allow == "1", actor=actor_of(request))
    except CAError as exc:
        return _refused(request, tenant, login, exc)
    return _done(request, tenant, view.login, "allowed" if view.secure_access else "denied",
                 None)


@router.get(USER + "/link", dependencies=[console()])
@router.get(USER + "/permission", dependencies=[console()])
@router.get(CERT + "/revoke", dependencies=[console()])
@router.get(CERT + "/suspend", dependencies=[console()])
@router.get(CERT + "/reinstate", dependencies=[console()])
def back_to_page(request: Request, tenant: str, login: str) -> Response:
    """The address of an action's answer, opened again (the language switch, a reload
    after the page was shown): the user's page, the language chosen kept (a cookie)."""
    return redirect(request, f"{PREFIX}/t/{tenant}/users/{quote_segment(login)}")


# --- the page ---------------------------------------------------------------------------------


def _page(request: Request, tenant: str, login: str, *, status: int = 200,
          notice: str | None = None, error: str | None = None,
          link: CreatedLink | None = None) -> Response:
    service = service_of(request)
    user = service.users.get(tenant, login)
    settings = service.hierarchy.tenant_settings(tenant)
    views = service.certificates.list_certificates(tenant, login=user.login,
                                                   limit=MAX_CERTIFICATES)
    holds = service.revocation.hold_causes(
        tenant, [v.serial for v in views if v.state is State.SUSPENDED])
    rows = [CertRow(view=v, holds=holds.get(v.serial, ()), profile=bundle_profile.chosen(
        None, issued=v.p12_profile, tenant=settings.p12_profile).value) for v in views]
    defaults = service.certificates.issue_defaults(tenant, zone=viewer_of(request).zone)
    linkable = any(v.state is State.VALID and v.has_key_material for v in views)
    return render(request, "user.html", status=status, user=user, settings=settings,
                  defaults=defaults, linkable=linkable,
                  certificates=rows, zone=viewer_of(request).zone_or(settings.timezone),
                  reasons=REASONS, notice=notice, error=error, link=link,
                  mail_ready=_mail_ready(request), causes=_causes, reason_label=_reason_label)


def _users_certificate(request: Request, tenant: str, login: str,
                       serial: str) -> CertificateView:
    """The certificate, if it is this user's: a form names both, and must not act on
    another user's certificate because its serial was changed."""
    view = service_of(request).certificates.get(serial, tenant=tenant)
    if view.login.lower() != login.lower():
        raise NotFound(f"{login[:64]!r} has no certificate with serial {view.serial}",
                       field="serial")
    return view


def _done(request: Request, tenant: str, login: str, what: str,
          serial: str | None) -> Response:
    to = f"{PREFIX}/t/{tenant}/users/{quote_segment(login)}?done={what}"
    return redirect(request, to + (f"&serial={serial}" if serial else ""))


def _notice(request: Request, done: str | None, serial: str | None) -> str | None:
    """The message of ``?done=``: one of ``DONE``, with a serial only in canonical form."""
    if done not in DONE:
        return None
    try:
        shown = serials.canonical(serial) if serial else ""
    except CAError:
        shown = ""
    return i18n.translator(viewer_of(request).lang)(f"user.done.{done}", serial=shown)


def _refused(request: Request, tenant: str, login: str, exc: CAError) -> Response:
    """The page again, saying why the action was refused, with the API's status."""
    status = row_of(exc).status
    if status >= 500:
        log.error("console: %s", exc.message)
        detail = "the service cannot complete this request now; try again later"
    else:
        detail = detail_of(exc)
    if status in (401, 403, 404):  # nothing to show the page again for
        raise exc
    translate = i18n.translator(viewer_of(request).lang)
    return _page(request, tenant, login, status=status,
                 error=translate("user.error", detail=detail))


def _causes(translate: Callable[..., str], causes: tuple[str, ...]) -> str:
    return translate("user.separator").join(translate(f"user.cause.{c}") for c in causes)


def _reason_label(translate: Callable[..., str], reason: str) -> str:
    """A revocation reason as the page's dropdown names it, in the page's language."""
    return translate(f"user.reason.{reason}") if reason in REASONS else reason


def _mail_ready(request: Request) -> bool:
    try:
        mail.check_configured(service_of(request).settings)
    except CAError:
        return False
    return True
