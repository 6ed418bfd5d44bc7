"""The e-mail that carries a one-time download link: composed here, sent over SMTP.

Headers are built only through ``EmailMessage`` and ``Address``, which encode non-ASCII
names (RFC 2047) and refuse CR/LF, so no user string can add a header. The link's token
is in the body only, and never in a log line or an error message.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import smtplib
import ssl
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import urlsplit

from ca import validate
from ca.errors import ConfigError, MailError, MailNotConfigured
from ca.settings import Settings, env_name

log = logging.getLogger("tegata.mail")

SUBJECT = "証明書のダウンロード / Your Tegata certificate"
TIMEOUT_SECONDS = 30.0

_BODY = """\
{name} 様

{tenant} のクライアント証明書をダウンロードするためのリンクをお送りします。

  {url}

このリンクは一度だけ使えます。有効期限は {expires_ja} (UTC) です。
リンクを開いて「ダウンロード」を押すと、証明書 (.p12) を含む zip ファイルと、
その読み込みに必要なパスワードが表示されます。パスワードは一度しか表示されないため、
必ず控えてください (zip ファイルの中にも入っています)。

このメールに心当たりがない場合は、リンクを開かずに管理者へご連絡ください。

----------------------------------------------------------------------

Dear {name},

Here is the link to download your client certificate for {tenant}:

  {url}

The link works once, until {expires_en} UTC. Open it and press "Download": you get
a zip file holding your certificate (.p12) and the password that opens it. The
password is shown only once, so write it down (it is also inside the zip file).

If you did not expect this message, do not open the link and tell your administrator.

Tegata
"""


@dataclass(frozen=True, kw_only=True)
class LinkMail:
    """What the mail says: to whom, for which tenant, the link and until when it works."""

    to_address: str
    to_name: str
    tenant: str
    url: str = field(repr=False)
    expires_at: dt.datetime


def check_configured(settings: Settings) -> None:
    """Refuse, naming the variables, when Tegata cannot send mail."""
    missing = [env_name(name) for name in ("smtp_host", "smtp_from")
               if getattr(settings, name) is None]
    if missing:
        # the shells add the way out: create the link without sending it
        raise MailNotConfigured(f"e-mail is not configured ({' and '.join(missing)} not set)",
                                field="send")
    if settings.smtp_username is not None and settings.smtp_password is None:
        var = env_name("smtp_password")
        raise ConfigError(f"{var}: {env_name('smtp_username')} is set but no password",
                          field=var)


def compose(settings: Settings, mail: LinkMail, *, now: dt.datetime) -> EmailMessage:
    """The message: Japanese first, then English, in one plain-text UTF-8 body."""
    check_configured(settings)
    assert settings.smtp_from is not None
    validate.email(mail.to_address)  # checked at creation; checked again before a header
    name = _plain(mail.to_name) or mail.to_address
    message = EmailMessage()
    message["Subject"] = SUBJECT
    message["From"] = settings.smtp_from
    message["To"] = Address(display_name=name, addr_spec=mail.to_address)
    message["Date"] = format_datetime(now.astimezone(dt.UTC))
    message["Message-ID"] = f"<{secrets.token_hex(16)}@{_domain(settings)}>"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    expires = mail.expires_at.astimezone(dt.UTC)
    message.set_content(_BODY.format(
        name=name, tenant=_plain(mail.tenant), url=mail.url,
        expires_ja=f"{expires:%Y年%m月%d日 %H:%M}", expires_en=f"{expires:%Y-%m-%d %H:%M}"))
    return message


def send(settings: Settings, message: EmailMessage, *, context: ssl.SSLContext | None = None,
         timeout: float = TIMEOUT_SECONDS) -> None:
    """Hand the message to the configured SMTP server: STARTTLS (certificate verified, never
    a fallback to plain text) when ``smtp_starttls``, then login when a user is set."""
    check_configured(settings)
    assert settings.smtp_host is not None
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout,
                          local_hostname=_domain(settings)) as smtp:
            if settings.smtp_starttls:
                smtp.starttls(context=context or ssl.create_default_context())
            if settings.smtp_username is not None:
                assert settings.smtp_password is not None
                smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
            smtp.send_message(message)
    except smtplib.SMTPNotSupportedError:
        raise MailError(f"the mail server {where} does not offer STARTTLS; set "
                        f"{env_name('smtp_starttls')}=false only for a server on a trusted "
                        "network") from None
    except smtplib.SMTPAuthenticationError as exc:
        raise MailError(f"the mail server {where} refused the login "
                        f"(SMTP {exc.smtp_code})") from None
    except smtplib.SMTPResponseException as exc:
        raise MailError(f"the mail server {where} refused the message "
                        f"(SMTP {exc.smtp_code})") from None
    except ssl.SSLError as exc:
        raise MailError(f"TLS with the mail server {where} failed: {exc.reason or 'error'}"
                        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        # the exception's text may quote the message: only its type is shown
        raise MailError(f"could not send mail through {where}: {type(exc).__name__}") from None
    log.info("sent a download link by mail", extra={"smtp": where})


def _plain(text: str) -> str:
    """A name for the body: control characters (refused at creation anyway) dropped."""
    return "".join(ch for ch in text if ch.isprintable()).strip()


def _domain(settings: Settings) -> str:
    """Our name in EHLO and Message-ID: the public host (no DNS lookup of our own)."""
    return urlsplit(settings.public_base_url).hostname or "localhost"
