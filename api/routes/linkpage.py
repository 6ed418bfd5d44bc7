"""The pages of the user's one-time link (``/d/{token}``), drawn with the console's templates,
stylesheet and script, in Japanese or English (``?lang=``, a cookie, ``Accept-Language``).

The pages are for whoever holds the link, with no session: the landing page (whom the link is
for, and a Download button), the delivered page (the password, the zip and the .p12 as
``data:`` downloads, and how to install them on each platform, the visitor's first), and a
page for each refusal, explained in the reader's language rather than the domain's English.
Dates are in the tenant's zone, with the zone named.

Their Content-Security-Policy is the console's without what they never use (data: images,
fetches): scripts, styles and the icon only from ``/console/static``. A ``data:`` download from
``<a download>`` is a navigation, which no fetch directive governs.
"""

from __future__ import annotations

import base64
import logging
import math

from fastapi import Request
from fastapi.responses import HTMLResponse

from api import problems
from api.console import i18n
from api.console.frame import base_viewer, render
from ca.errors import CAError, LinkGone, NotFound, SelfDownloadOff
from ca.service.links import LinkInfo, Redeemed

log = logging.getLogger("tegata.api")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    # the token is in the path: no page it links to may learn it
    "Referrer-Policy": "no-referrer",
}

# --- platforms -------------------------------------------------------------------------------

PLATFORMS = ("windows", "macos", "ios", "android")
STEPS = {"windows": 4, "macos": 3, "ios": 3, "android": 3}


def platform_of(user_agent: str) -> str | None:
    """The visitor's platform from ``User-Agent``. iPhones say "like Mac OS X" and Android
    says "Linux", so the phones are looked for first."""
    if any(device in user_agent for device in ("iPhone", "iPad", "iPod")):
        return "ios"
    if "Android" in user_agent:
        return "android"
    if "Macintosh" in user_agent or "Mac OS X" in user_agent:
        return "macos"
    if "Windows" in user_agent:
        return "windows"
    return None


def platforms_for(user_agent: str) -> tuple[str, ...]:
    """The installation steps' order: the visitor's platform first, then the others."""
    first = platform_of(user_agent)
    return tuple(sorted(PLATFORMS, key=lambda p: (p != first, PLATFORMS.index(p))))


# --- the pages -------------------------------------------------------------------------------


def landing(request: Request, info: LinkInfo) -> HTMLResponse:
    return _render(request, "link_landing.html", info=info, zone=info.tenant_timezone)


def delivered(request: Request, made: Redeemed) -> HTMLResponse:
    info = made.info
    return _render(
        request, "link_delivered.html", info=info, zone=info.tenant_timezone,
        password=made.password, zip_name=made.bundle.filename, p12_name=f"{info.login}.p12",
        zip_data=base64.b64encode(made.bundle.content).decode("ascii"),
        p12_data=base64.b64encode(made.p12).decode("ascii"),
        platforms=platforms_for(request.headers.get("user-agent", "")), steps=STEPS)


# each refusal: its reason (data-reason on the page), which names its heading and text
def reason_of(exc: CAError) -> str:
    if isinstance(exc, LinkGone):
        return exc.reason
    if isinstance(exc, SelfDownloadOff):
        return "off"
    if isinstance(exc, NotFound):
        return "unknown"
    return "unavailable" if problems.row_of(exc).status >= 500 else "refused"


def refused(request: Request, exc: CAError) -> HTMLResponse:
    """The page for a refusal, with the status the API's problem table gives it."""
    status = problems.row_of(exc).status
    if status >= 500:
        log.error("link page failed: %s", exc.message)  # the message never holds the token
    return _refusal(request, status, reason_of(exc))


def too_many(request: Request, wait: float) -> HTMLResponse:
    seconds = max(1, math.ceil(wait))
    return _refusal(request, 429, "too_many", seconds=seconds,
                    headers={"Retry-After": str(seconds)})


def _refusal(request: Request, status: int, reason: str, *, seconds: int = 0,
             headers: dict[str, str] | None = None) -> HTMLResponse:
    return _render(request, "link_refused.html", status=status, reason=reason,
                   seconds=seconds, headers=headers)


def _render(request: Request, template: str, *, status: int = 200,
            headers: dict[str, str] | None = None, **context: object) -> HTMLResponse:
    base_viewer(request)  # the language; a link page has no session
    return render(request, template, status=status, headers={**HEADERS, **(headers or {})},
                  **context)


i18n.register({
    "link.brand": ("証明書のダウンロード", "Certificate download"),
    "link.landing.title": ("証明書のダウンロード", "Download your certificate"),
    "link.delivered.title": ("証明書を受け取りました", "Your certificate"),
    "link.who": ("{name} さんのクライアント証明書 ({tenant})",
                 "Client certificate of {name} ({tenant})"),
    "link.login": ("ログイン名", "Login"),
    "link.valid_until": ("証明書の有効期限", "Certificate valid until"),
    "link.link_until": ("このリンクの有効期限", "This link works until"),
    "link.landing.help": ("このリンクは一度だけ使えます。ボタンを押すと証明書とパスワードが"
                          "表示されます。パスワードはこのリンクのために作られ、一度しか"
                          "表示されません。",
                          "This link works once. Press the button to get your certificate "
                          "and its password. The password is made for this link and shown "
                          "only once."),
    "link.download": ("ダウンロード", "Download"),
    "link.password": ("パスワード", "Password"),
    "link.copy": ("コピー", "Copy"),
    "link.copied": ("コピーしました", "Copied"),
    "link.password.help": ("このパスワードはこのリンクのために作られたもので、この一度しか"
                           "表示されません。控えてからこの画面を閉じてください (zip "
                           "ファイルの中にも入っています)。証明書を取り込むときに入力します。",
                           "This password was made for this link and is shown only this "
                           "once: note it before you close this page (it is also inside the "
                           "zip file). You type it when you install the certificate."),
    "link.files": ("ファイル", "Files"),
    "link.save_zip": ("{name} を保存 (証明書とパスワード)",
                      "Save {name} (certificate and password)"),
    "link.save_p12": ("{name} のみを保存 (スマートフォン向け)",
                      "Save only {name} (for phones)"),
    "link.install.windows": ("Windows での取り込み方", "Installing on Windows"),
    "link.install.windows.1": ("zip ファイルを保存して展開し (右クリック →「すべて展開」)、"
                               "{p12} をダブルクリックします。「証明書のインポート ウィザード」"
                               "が開きます。",
                               "Save the zip file and extract it (right-click, Extract All), "
                               "then double-click {p12}. The Certificate Import Wizard opens."),
    "link.install.windows.2": ("保存場所は「現在のユーザー」を選び、「次へ」を押します。",
                               "Choose Current User as the store location, then Next."),
    "link.install.windows.3": ("上のパスワードを入力して「次へ」を押します。",
                               "Type the password above, then Next."),
    "link.install.windows.4": ("「証明書をすべて次のストアに配置する」を選び、「参照」から"
                               "「個人」を選んで「次へ」、「完了」を押します。",
                               "Choose Place all certificates in the following store, Browse, "
                               "Personal, then Next and Finish."),
    "link.install.macos": ("Mac (macOS) での取り込み方", "Installing on a Mac (macOS)"),
    "link.install.macos.1": ("zip ファイルを保存して開き、{p12} をダブルクリックします。"
                             "「キーチェーンアクセス」が開きます。",
                             "Save the zip file and open it, then double-click {p12}. "
                             "Keychain Access opens."),
    "link.install.macos.2": ("キーチェーンは「ログイン」を選び、上のパスワードを入力します。",
                             "Choose the login keychain and type the password above."),
    "link.install.macos.3": ("Safari と Chrome は、サイトが証明書を求めたときにこの証明書を"
                             "使います。Firefox は「設定」→「プライバシーとセキュリティ」→"
                             "「証明書を表示」→「あなたの証明書」→「読み込む」で取り込みます。",
                             "Safari and Chrome offer it when a site asks for a certificate. "
                             "Firefox keeps its own: Settings, Privacy & Security, View "
                             "Certificates, Your Certificates, Import."),
    "link.install.ios": ("iPhone / iPad (iOS) での取り込み方",
                         "Installing on an iPhone or iPad (iOS)"),
    "link.install.ios.1": ("上の「{p12} のみを保存」をタップします (zip ではなく .p12 を"
                           "使います)。構成プロファイルのダウンロードを求められたら"
                           "「許可」を、ファイルとして保存されたら「ファイル」アプリで"
                           "開きます。",
                           "Tap \"Save only {p12}\" above (use the .p12, not the zip). If "
                           "Safari asks to download a configuration profile, allow it; if it "
                           "is saved as a file, open it in the Files app (or from Mail)."),
    "link.install.ios.2": ("「設定」→「一般」→「VPN とデバイス管理」を開き、ダウンロード"
                           "したプロファイルをタップして「インストール」を押します。",
                           "Open Settings, General, VPN & Device Management, tap the "
                           "downloaded profile, then Install."),
    "link.install.ios.3": ("端末のパスコードを入力し、続けて上のパスワードを入力します。",
                           "Enter your device passcode, then the password above."),
    "link.install.android": ("Android での取り込み方", "Installing on Android"),
    "link.install.android.1": ("上の「{p12} のみを保存」をタップして保存します。",
                               "Tap \"Save only {p12}\" above to save it."),
    "link.install.android.2": ("「設定」→「セキュリティ」→「暗号化と認証情報」→"
                               "「証明書のインストール」→「VPN とアプリのユーザー証明書」を"
                               "開き、{p12} を選びます (メニューの名前は機種によって少し"
                               "違います)。",
                               "Open Settings, Security, Encryption & credentials, Install a "
                               "certificate, VPN & app user certificate, and choose {p12} "
                               "(the menu names differ a little between makers)."),
    "link.install.android.3": ("上のパスワードを入力し、証明書に名前をつけて「OK」を押します。",
                               "Type the password above, name the certificate, then OK."),
    "link.refused.used": ("このリンクは使用済みです", "This link has already been used"),
    "link.refused.used.help": ("ダウンロード用のリンクは一度しか使えません。もう一度必要な"
                               "ときは、管理者に新しいリンクを依頼してください。",
                               "A download link works only once. If you need your "
                               "certificate again, ask your administrator for a new link."),
    "link.refused.expired": ("このリンクは有効期限が切れています",
                             "This link has expired"),
    "link.refused.expired.help": ("リンクの有効期限が過ぎたか、管理者が取り消しました。"
                                  "管理者に新しいリンクを依頼してください。",
                                  "The link is past its end, or your administrator withdrew "
                                  "it. Ask your administrator for a new link."),
    "link.refused.replaced": ("このリンクは取り消されました", "This link was withdrawn"),
    "link.refused.replaced.help": ("あなた宛てに新しいリンクが作られたため、このリンクは"
                                   "使えなくなりました。届いた中でいちばん新しいリンクを"
                                   "使ってください。",
                                   "A newer link was made for you, so this one no longer "
                                   "works. Use the newest link you received."),
    "link.refused.retired": ("このリンクは使えません", "This link no longer works"),
    "link.refused.retired.help": ("このリンクの利用者は無効になっています。管理者に"
                                  "お問い合わせください。",
                                  "The user this link was made for is no longer active. "
                                  "Ask your administrator."),
    "link.refused.nothing": ("ダウンロードできる証明書がありません",
                             "There is no certificate to download"),
    "link.refused.nothing.help": ("有効な証明書がなくなりました (失効、一時停止、または期限"
                                  "切れ)。管理者にお問い合わせください。",
                                  "Your certificate is no longer valid (revoked, suspended "
                                  "or expired). Ask your administrator."),
    "link.refused.off": ("ダウンロードは停止されています", "Downloading is turned off"),
    "link.refused.off.help": ("あなたの組織では、利用者が自分で証明書をダウンロードすることを"
                              "停止しています。管理者にお問い合わせください。",
                              "Your organisation has turned off downloading your own "
                              "certificate. Ask your administrator."),
    "link.refused.unknown": ("リンクが見つかりません", "This link is not known"),
    "link.refused.unknown.help": ("アドレスが途中で切れていないか確かめてください。メールの"
                                  "リンクは、全体をコピーして開いてください。",
                                  "Check that the whole address was copied: a link cut short "
                                  "is not found."),
    "link.refused.too_many": ("しばらく待ってからお試しください", "Too many requests"),
    "link.refused.too_many.help": ("短い間にリクエストが多すぎました。{seconds} 秒ほど待って"
                                   "から、もう一度お試しください。",
                                   "There were too many requests from your address. Wait "
                                   "{seconds} seconds, then try again."),
    "link.refused.unavailable": ("ただいま処理できません", "Service unavailable"),
    "link.refused.unavailable.help": ("しばらくしてから、もう一度お試しください。",
                                      "Try again in a while."),
    "link.refused.refused": ("このリンクは使えません", "This link cannot be used"),
    "link.refused.refused.help": ("管理者にお問い合わせください。", "Ask your administrator."),
})
