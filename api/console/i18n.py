"""The console's words in Japanese and English.

Each page module registers its own messages (``register``), keyed ``area.name``; a key
missing in either language stops the app at import (``register`` checks both), so a page
never shows a key instead of a word. Templates call ``_("key", name=value)``; the values are
escaped by the template, the message itself is plain text.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable

LANGUAGES = ("ja", "en")
DEFAULT = "ja"

_MESSAGES: dict[str, dict[str, str]] = {"ja": {}, "en": {}}

# every IANA zone this host knows, for the zone switch
ZONES: tuple[str, ...] = tuple(sorted(z for z in zoneinfo.available_timezones()
                                      if "/" in z or z == "UTC"))


def register(messages: dict[str, tuple[str, str]]) -> None:
    """Add messages ``key: (japanese, english)``; a key registered twice is a mistake."""
    for key, (ja, en) in messages.items():
        if key in _MESSAGES["ja"]:
            raise ValueError(f"console message {key!r} registered twice")
        if not ja or not en:
            raise ValueError(f"console message {key!r} lacks a language")
        _MESSAGES["ja"][key] = ja
        _MESSAGES["en"][key] = en


def translator(lang: str) -> Callable[..., str]:
    table = _MESSAGES[lang if lang in LANGUAGES else DEFAULT]

    def translate(key: str, **values: object) -> str:
        text = table[key]  # KeyError: an unregistered key is a bug, caught by the page tests
        return text.format(**values) if values else text

    return translate


def from_accept_language(header: str) -> str:
    """The first of our languages by the header's q-values (RFC 9110, 12.5.4)."""
    best, best_q = DEFAULT, -1.0
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if primary in LANGUAGES and q > 0 and q - position * 1e-6 > best_q:
            best, best_q = primary, q - position * 1e-6
    return best


register({
    "app.name": ("Tegata 管理コンソール", "Tegata console"),
    "nav.users": ("ユーザー", "Users"),
    "nav.import": ("CSV 取り込み", "CSV import"),
    "nav.audit": ("監査ログ", "Audit log"),
    "nav.settings": ("テナント設定", "Tenant settings"),
    "nav.tenants": ("テナント一覧", "Tenants"),
    "nav.sign_out": ("サインアウト", "Sign out"),
    "nav.language": ("言語", "Language"),
    "nav.zone": ("表示タイムゾーン", "Time zone"),
    "nav.zone_apply": ("変更", "Change"),
    "nav.signed_in_as": ("{name} としてサインイン中", "Signed in as {name}"),
    "nav.skip": ("本文へ移動", "Skip to content"),
    "zone.title": ("表示タイムゾーン", "Time zone for dates"),
    "zone.tenant_default": ("テナントのタイムゾーン (既定)", "Each tenant's own zone (default)"),
    "zone.help": ("日時の表示に使うタイムゾーンです (このブラウザーだけの設定)。証明書の有効期限の"
                  "指定では、発行画面でタイムゾーンを選べます。",
                  "The zone dates are shown in (for this browser only). When issuing, the "
                  "expiry date's zone is chosen in the issue form."),
    "signin.title": ("サインイン", "Sign in"),
    "signin.token": ("API トークン (管理者またはオペレーター)", "API token (admin or operator)"),
    "signin.help": ("管理者に発行された API トークン (tgt_ で始まる) を貼り付けてください。"
                    "トークンはこの画面で一度だけ送られ、以後はセッションで操作します。"
                    "操作がないまま 30 分たつとサインアウトされます。",
                    "Paste the API token you were given (it starts with tgt_). It is sent once, "
                    "from this page; the console then works with a session, which ends after "
                    "30 minutes without use."),
    "signin.submit": ("サインイン", "Sign in"),
    "signin.needs_https": ("管理コンソールは HTTPS で開いてください (TLS ゲートウェイ経由、"
                           "またはこのサーバー上で http://127.0.0.1)。"
                           "平文の HTTP ではトークンが盗まれます。",
                           "Open the console over HTTPS (through your TLS gateway, or on this "
                           "host at http://127.0.0.1): over plain HTTP the token could be read "
                           "on the way."),
    "signin.failed": ("サインインできませんでした: {reason}", "Could not sign in: {reason}"),
    "signout.done": ("サインアウトしました。", "You have signed out."),
    "error.bad_request": ("リクエストが正しくありません", "Bad request"),
    "error.sign_in": ("サインインが必要です", "Sign-in required"),
    "error.forbidden": ("許可されていません", "Forbidden"),
    "error.not_found": ("見つかりません", "Not found"),
    "error.conflict": ("処理できません", "Conflict"),
    "error.gone": ("もうありません", "Gone"),
    "error.too_large": ("大きすぎます", "Too large"),
    "error.not_permitted": ("許可されていません", "Not permitted"),
    "error.too_many": ("しばらく待ってからお試しください", "Too many requests"),
    "error.unavailable": ("ただいま処理できません", "Service unavailable"),
    "error.back": ("戻る", "Back"),
    "tenants.title": ("テナント", "Tenants"),
    "tenants.name": ("テナント", "Tenant"),
    "tenants.display_name": ("表示名", "Display name"),
    "tenants.subscription": ("契約状態", "Subscription"),
    "tenants.users": ("ユーザー数", "Users"),
    "tenants.open": ("開く", "Open"),
})
