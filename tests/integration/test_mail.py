"""The link mail, through a real SMTP server (aiosmtpd) on 127.0.0.1: plain, and STARTTLS with
a login. The link taken out of the received message works once over HTTP."""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import ipaddress
import re
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from api.app import api_routes, build_app, check_routes_declare_access
from api.routes import selfservice
from ca import mail
from ca.db.models import AuditEvent, DownloadLink
from ca.errors import MailNotConfigured
from ca.service import IssueRequest, Service, build_service
from ca.settings import Settings
from tests.processes import free_port
from tests.support.environment import BASE_URL, unavailable

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword
except ImportError:  # a skip on a laptop, a failure in CI
    Controller = None

SENDER = "Tegata <tegata@example.com>"
LINK = re.compile(re.escape(BASE_URL) + r"/d/tdl_[A-Za-z0-9_-]{43}")
SMTP_USER, SMTP_PASSWORD = "tegata", "smtp-secret-for-tests"


@dataclass
class Inbox:
    """What the SMTP server received; ``refuse`` makes it refuse every recipient."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    refuse: bool = False
    logins: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> Any:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
              and auth_data.password == SMTP_PASSWORD.encode())
        if ok:
            self.logins.append(SMTP_USER)
        return AuthResult(success=ok, handled=False)


@dataclass(frozen=True)
class Smtp:
    inbox: Inbox
    port: int


def start_smtp(**options: Any) -> tuple[Smtp, Any]:
    if Controller is None:
        unavailable("aiosmtpd (pip install aiosmtpd)")
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port,
                            authenticator=inbox.authenticate, **options)
    controller.start()
    return Smtp(inbox=inbox, port=port), controller


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    server, controller = start_smtp(auth_require_tls=False)
    yield server
    controller.stop()



@pytest.fixture
def alice(service: Service) -> str:
    service.users.add("default", "alice", email="alice@example.com", display_name="山田 アリス",
                     allow=True)
    return service.certificates.issue(IssueRequest(tenant="default", logins=("alice",)))[0].serial


def with_smtp(service: Service, port: int, **overrides: Any) -> Service:
    """The same database and keys, with SMTP settings."""
    settings = service.settings.model_copy(update={
        "smtp_host": "127.0.0.1", "smtp_port": port, "smtp_starttls": False,
        "smtp_from": SENDER, **overrides})
    return build_service(settings, clock=service.clock, engine=service.engine)


def link_app(service: Service) -> FastAPI:
    app = build_app(service.settings, service=service)
    if not any(route.path == "/d/{token}" for route in api_routes(app)):
        app.include_router(selfservice.router)
        check_routes_declare_access(app)
    return app


def received(inbox: Inbox, count: int = 1) -> list[EmailMessage]:
    deadline = time.monotonic() + 5
    while len(inbox.messages) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(inbox.messages) == count
    return inbox.messages


def link_in(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    urls = LINK.findall(body.get_content())
    assert len(urls) == 2 and urls[0] == urls[1]  # once in Japanese, once in English
    return str(urls[0])


# --- the message ---------------------------------------------------------------------------


def test_the_mailed_link_works_once(service: Service, alice: str, smtp: Smtp) -> None:
    mailer = with_smtp(service, smtp.port)
    made = mailer.links.send("default", "alice")
    message = received(smtp.inbox)[0]
    assert smtp.inbox.envelopes == [("tegata@example.com", ["alice@example.com"])]
    assert message["Subject"] == "証明書のダウンロード / Your Tegata certificate"
    assert message["To"].addresses[0].addr_spec == "alice@example.com"
    assert message["To"].addresses[0].display_name == "山田 アリス"
    url = link_in(message)
    assert url == made.url
    client = TestClient(link_app(mailer), raise_server_exceptions=False)
    path = url[len(BASE_URL):]
    assert client.get(path).status_code == 200
    page = client.post(path)
    assert page.status_code == 200
    password = re.search(r'<code id="password" class="secret">([^<]+)</code>', page.text)
    p12 = re.search(r'href="data:application/x-pkcs12;base64,([A-Za-z0-9+/=]+)"', page.text)
    assert password is not None and p12 is not None
    loaded = pkcs12.load_pkcs12(base64.b64decode(p12.group(1)), password.group(1).encode())
    assert loaded.key is not None and loaded.cert is not None
    assert format(loaded.cert.certificate.serial_number, "X") == alice
    again = client.post(path)
    assert again.status_code == 410 and password.group(1) not in again.text
    with service.database.reading() as session:
        sent = session.scalars(select(AuditEvent).where(AuditEvent.action == "link.send")).one()
    assert (sent.outcome, sent.details) == ("success", '{"to": "alice@example.com"}')
    assert made.token not in sent.details


def test_the_template_is_japanese_then_english(settings: Settings) -> None:
    configured = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_from": SENDER})
    expires = dt.datetime(2026, 3, 9, 9, 0, tzinfo=dt.UTC)
    url = BASE_URL + "/d/tdl_" + "x" * 43
    message = mail.compose(configured, mail.LinkMail(
        to_address="alice@example.com", to_name="山田 アリス", tenant="Acme 株式会社", url=url,
        expires_at=expires.astimezone(dt.timezone(dt.timedelta(hours=9)))),
        now=dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC))
    body = message.get_content()
    japanese, english = body.index("山田 アリス 様"), body.index("Dear 山田 アリス,")
    assert japanese < english
    assert "有効期限は 2026年03月09日 09:00 (UTC)" in body  # in UTC, whatever the zone given
    assert "until 2026-03-09 09:00 UTC" in body
    assert "Acme 株式会社 のクライアント証明書" in body and "certificate for Acme 株式会社" in body
    assert body.count(url) == 2
    wire = message.as_bytes()
    headers = wire.split(b"\n\n", 1)[0].decode("ascii")  # every header is ASCII (RFC 2047)
    assert "tdl_" not in headers
    assert message["Date"] == "Mon, 02 Mar 2026 09:00:00 +0000"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_charset() == "utf-8"


def test_a_hostile_name_cannot_add_a_header(settings: Settings) -> None:
    configured = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_from": SENDER})
    message = mail.compose(configured, mail.LinkMail(
        to_address="alice@example.com", to_name="Eve\r\nBcc: spy@evil.example", tenant="T",
        url=BASE_URL + "/d/tdl_x", expires_at=dt.datetime(2026, 3, 9, tzinfo=dt.UTC)),
        now=dt.datetime(2026, 3, 2, tzinfo=dt.UTC))
    assert message["Bcc"] is None
    assert [a.addr_spec for a in message["To"].addresses] == ["alice@example.com"]


# --- refusals and failures -----------------------------------------------------------------


def test_sending_without_smtp_settings_is_refused_and_makes_no_link(service: Service,
                                                                    alice: str) -> None:
    with pytest.raises(MailNotConfigured,
                       match=r"^e-mail is not configured \(TEGATA_SMTP_HOST and "
                             r"TEGATA_SMTP_FROM not set\)$"):
        service.links.send("default", "alice")
    with service.database.reading() as session:
        assert session.scalars(select(DownloadLink)).all() == []


def test_a_refused_mail_withdraws_the_new_link(service: Service, alice: str,
                                               smtp: Smtp) -> None:
    smtp.inbox.refuse = True
    mailer = with_smtp(service, smtp.port)
    with pytest.raises(mail.MailError, match=r"refused the message|could not send") as caught:
        mailer.links.send("default", "alice")
    assert "tdl_" not in str(caught.value)
    with service.database.reading() as session:
        link = session.scalars(select(DownloadLink)).one()
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "link.send")
                                ).one()
    assert link.expires_at == service.clock.now() and link.spent_at is None
    assert event.outcome == "failure" and '"withdrawn": 1' in event.details


def test_no_server_listening_is_a_clear_error(service: Service, alice: str) -> None:
    mailer = with_smtp(service, free_port())
    with pytest.raises(mail.MailError, match=r"could not send mail through 127\.0\.0\.1:\d+: "
                                             r"ConnectionRefusedError"):
        mailer.links.send("default", "alice")


def test_starttls_is_never_skipped(service: Service, alice: str, smtp: Smtp) -> None:
    mailer = with_smtp(service, smtp.port, smtp_starttls=True)
    with pytest.raises(mail.MailError, match="does not offer STARTTLS"):
        mailer.links.send("default", "alice")
    assert smtp.inbox.messages == []


# --- STARTTLS with a login -----------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 (its own CA), made fresh for the test."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "smtp.crt", directory / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Iterator[tuple[Smtp, Path]]:
    cert_file, key_file = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    server, controller = start_smtp(tls_context=context, require_starttls=True,
                                    auth_required=True)
    yield server, cert_file
    controller.stop()


def test_starttls_with_a_login(service: Service, alice: str, tls_smtp: tuple[Smtp, Path],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    server, cert_file = tls_smtp
    mailer = with_smtp(service, server.port, smtp_starttls=True, smtp_username=SMTP_USER,
                       smtp_password=SecretStr(SMTP_PASSWORD))
    # the system trust store, plus the test's server certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    made = mailer.links.send("default", "alice")
    assert link_in(received(server.inbox)[0]) == made.url
    assert server.inbox.logins == [SMTP_USER]


def test_starttls_refuses_an_untrusted_server(service: Service, alice: str,
                                              tls_smtp: tuple[Smtp, Path]) -> None:
    server, _ = tls_smtp
    mailer = with_smtp(service, server.port, smtp_starttls=True, smtp_username=SMTP_USER,
                       smtp_password=SecretStr(SMTP_PASSWORD))
    with pytest.raises(mail.MailError, match=r"TLS with the mail server 127\.0\.0\.1:"):
        mailer.links.send("default", "alice")
    assert server.inbox.messages == [] and server.inbox.logins == []
