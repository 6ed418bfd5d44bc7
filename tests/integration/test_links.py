"""One-time self-download links and a user's own certificates, through the service, on a real
database (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import typer
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import MetaData, select
from typer.testing import CliRunner

from ca.clock import FixedClock
from ca.db.models import AuditEvent, DownloadLink
from ca.errors import MailNotConfigured, NotFound, NotPermitted, StorageError
from ca.service import IssueRequest, Service, build_service
from ca.service.links import LinkGone, SelfDownloadOff
from ca.settings import Settings
from cli.context import STATE
from cli.links import link_app
from cli.tenants import tenant_set
from tests.support.environment import BASE_URL
from tests.support.issuing import csr_pem, issue_one


@pytest.fixture
def alice(service: Service) -> str:
    """alice, with one valid server-generated certificate; returns its serial."""
    service.users.add("default", "alice", email="alice@example.com", display_name="Alice A",
                     allow=True)
    return issue_one(service, "alice").serial


def opened(zip_bytes: bytes, login: str) -> tuple[str, object]:
    """The password and the loaded PKCS#12 of a user's zip."""
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        password = archive.read(f"{login}-password.txt").decode().strip()
        p12 = archive.read(f"{login}.p12")
    return password, pkcs12.load_pkcs12(p12, password.encode())


def actions(service: Service) -> list[tuple[str, str, str | None]]:
    with service.database.reading() as session:
        return [(e.action, e.outcome, e.source_ip) for e in session.scalars(
            select(AuditEvent).order_by(AuditEvent.id))]


# --- creating ------------------------------------------------------------------------------


def test_a_link_is_random_and_only_its_sha256_is_stored(service: Service, alice: str) -> None:
    made = service.links.create("default", "alice")
    assert made.url == f"{BASE_URL}/d/{made.token}"
    assert made.token.startswith("tdl_") and len(made.token) >= 4 + 43  # 256 bits
    assert made.expires_at == service.clock.now() + dt.timedelta(days=7)
    assert made.token not in repr(made) and made.url not in repr(made)
    secret = made.token.removeprefix("tdl_")
    metadata = MetaData()
    metadata.reflect(service.engine)
    with service.engine.connect() as conn:
        for table in metadata.tables.values():
            for row in conn.execute(select(table)):
                for value in row:
                    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                    assert secret not in text, table.name
    with service.database.reading() as session:
        stored = session.scalars(select(DownloadLink.token_hash)).all()
    assert stored == [hashlib.sha256(made.token.encode()).hexdigest()]


def test_the_link_validity_comes_from_the_settings(settings: Settings, service: Service,
                                                   alice: str) -> None:
    short = build_service(settings.model_copy(update={"link_validity_days": 2}),
                        clock=service.clock, engine=service.engine)
    assert short.links.create("default", "alice").expires_at == service.clock.now() + dt.timedelta(
        days=2)


@pytest.mark.parametrize("case", ["no-certificate", "csr-only", "retired", "unknown-user"])
def test_a_link_needs_an_active_user_with_a_key_to_hand_out(service: Service, case: str) -> None:
    service.users.add("default", "bob", email="bob@example.com", allow=True)
    if case == "csr-only":
        service.certificates.issue(IssueRequest(tenant="default", logins=("bob",), csr=csr_pem()))
    if case == "retired":
        issue_one(service, "bob")
        service.users.retire("default", "bob")
    expected = {"no-certificate": (NotPermitted, "bob: no valid certificate with a key"),
                "csr-only": (NotPermitted, "bob: no valid certificate with a key"),
                "retired": (NotPermitted, "bob: the user is retired"),
                "unknown-user": (NotFound, "no user 'carol'")}[case]
    with pytest.raises(expected[0], match=expected[1]):
        service.links.create("default", "carol" if case == "unknown-user" else "bob")
    with service.database.reading() as session:
        assert session.scalars(select(DownloadLink)).all() == []


# --- redeeming -----------------------------------------------------------------------------


def test_a_link_works_once(service: Service, alice: str) -> None:
    made = service.links.create("default", "alice")
    got = service.links.redeem(made.token, source_ip="192.0.2.7")
    assert got.bundle.serial == alice and got.bundle.filename == "alice.zip"
    password, loaded = opened(got.bundle.content, "alice")
    assert got.password == password
    assert pkcs12.load_pkcs12(got.p12, got.password.encode()).key is not None
    assert loaded.cert is not None  # type: ignore[attr-defined]
    with pytest.raises(LinkGone, match="already been used"):
        service.links.redeem(made.token, source_ip="192.0.2.8")
    with pytest.raises(LinkGone, match="already been used"):
        service.links.page_info(made.token)
    assert actions(service)[-4:] == [
        ("link.create", "success", None), ("link.redeem", "success", "192.0.2.7"),
        ("cert.download", "success", "192.0.2.7"), ("link.redeem", "refused", "192.0.2.8")]
    with service.database.reading() as session:
        row = session.scalars(select(DownloadLink)).one()
    assert row.spent_at == service.clock.now() and row.failed_attempts == 1


def test_the_page_info_spends_nothing(service: Service, alice: str) -> None:
    made = service.links.create("default", "alice")
    for _ in range(3):
        info = service.links.page_info(made.token)
    assert (info.login, info.display_name, info.serial, info.expires_at) == (
        "alice", "Alice A", alice, made.expires_at)
    assert service.links.redeem(made.token, source_ip=None).bundle.serial == alice


@pytest.mark.parametrize("token", ["tdl_" + "A" * 43, "tgt_whatever", "", "tdl_" + "x" * 500],
                         ids=["unknown", "api-token", "empty", "huge"])
def test_an_unknown_link_is_not_found(service: Service, alice: str, token: str) -> None:
    with pytest.raises(NotFound, match="no such download link"):
        service.links.page_info(token)
    with pytest.raises(NotFound, match="no such download link"):
        service.links.redeem(token, source_ip=None)


def test_a_link_expires_after_the_validity(service: Service, clock: FixedClock,
                                           alice: str) -> None:
    made = service.links.create("default", "alice")
    clock.advance(dt.timedelta(days=7) - dt.timedelta(seconds=1))
    service.links.page_info(made.token)
    clock.advance(dt.timedelta(seconds=1))
    with pytest.raises(LinkGone, match="expired"):
        service.links.page_info(made.token)
    with pytest.raises(LinkGone, match="expired"):
        service.links.redeem(made.token, source_ip=None)


def test_a_new_link_replaces_the_users_earlier_ones(service: Service, alice: str) -> None:
    first = service.links.create("default", "alice")
    second = service.links.create("default", "alice")
    assert second.replaced == 1
    for call in (service.links.page_info, lambda token: service.links.redeem(token,
                                                                            source_ip=None)):
        with pytest.raises(LinkGone) as gone:
            call(first.token)
        assert (gone.value.reason, gone.value.message) == (
            "replaced", "a newer link was made for this user, which withdrew this one; use the "
            "newest link")
    assert service.links.redeem(second.token, source_ip=None).bundle.serial == alice


@pytest.mark.parametrize("case", ["used", "expired", "retired", "nothing"])
def test_each_refusal_says_why_for_the_page(service: Service, clock: FixedClock, alice: str,
                                           case: str) -> None:
    made = service.links.create("default", "alice")
    if case == "used":
        service.links.redeem(made.token, source_ip=None)
    elif case == "expired":
        clock.advance(dt.timedelta(days=7))
    elif case == "retired":
        service.users.retire("default", "alice")
    else:
        service.users.set_permission("default", ("alice",), allow=False)
    with pytest.raises(LinkGone) as gone:
        service.links.redeem(made.token, source_ip=None)
    assert gone.value.reason == case


def test_each_redemption_makes_a_password_of_its_own(service: Service, alice: str) -> None:
    """The page says the password is shown only once: so a second link for the same
    certificate gives another password, and the first does not open the second's file."""
    first = service.links.redeem(service.links.create("default", "alice").token,
                                 source_ip=None)
    second = service.links.redeem(service.links.create("default", "alice").token,
                                  source_ip=None)
    admins = service.certificates.bundle(alice, tenant="default")
    sealed, _ = opened(admins.content, "alice")
    assert len({first.password, second.password, sealed}) == 3
    for got in (first, second):
        assert opened(got.bundle.content, "alice")[0] == got.password
        assert pkcs12.load_pkcs12(got.p12, got.password.encode()).key is not None
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(second.p12, first.password.encode())
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(first.p12, sealed.encode())


def test_the_link_hands_out_the_users_newest_valid_certificate(service: Service,
                                                               alice: str) -> None:
    made = service.links.create("default", "alice")
    newer = issue_one(service, "alice", reissue="revoke").serial
    assert service.links.page_info(made.token).serial == newer
    assert service.links.redeem(made.token, source_ip=None).bundle.serial == newer


def test_a_link_of_a_user_who_lost_the_certificate_is_gone(service: Service,
                                                           alice: str) -> None:
    made = service.links.create("default", "alice")
    service.users.set_permission("default", ("alice",), allow=False)  # suspends the certificate
    with pytest.raises(LinkGone, match="no valid certificate"):
        service.links.redeem(made.token, source_ip=None)
    service.users.set_permission("default", ("alice",), allow=True)
    assert service.links.redeem(made.token, source_ip=None).bundle.serial == alice


def test_concurrent_redeems_hand_out_the_key_once(service: Service, alice: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    made = service.links.create("default", "alice")
    # every request passes the checks before any claims the link: only the conditional
    # UPDATE stands between them and a second copy of the key
    at_claim = threading.Barrier(4, timeout=30)
    claim = service.links._claim  # type: ignore[attr-defined]

    def claim_together(*args: object, **kwargs: object) -> None:
        at_claim.wait()
        claim(*args, **kwargs)

    monkeypatch.setattr(service.links, "_claim", claim_together)

    def attempt(_: int) -> str:
        try:
            service.links.redeem(made.token, source_ip=None)
        except LinkGone:
            return "gone"
        return "zip"

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(attempt, range(4)))
    assert outcomes == ["gone", "gone", "gone", "zip"]
    assert [a for a, o, _ in actions(service) if a == "cert.download"] == ["cert.download"]


@pytest.mark.parametrize("failure", [StorageError("database error: OperationalError"),
                                     MemoryError()], ids=["domain-error", "any-error"])
def test_a_zip_that_cannot_be_built_leaves_the_link_usable(
        service: Service, alice: str, monkeypatch: pytest.MonkeyPatch,
        failure: Exception) -> None:
    made = service.links.create("default", "alice")

    def broken(*_args: object, **_kwargs: object) -> None:
        raise failure

    with monkeypatch.context() as patch:
        patch.setattr(service.certificates, "bundle", broken)
        with pytest.raises(type(failure)):
            service.links.redeem(made.token, source_ip=None)
    assert ("link.redeem", "failure", None) in actions(service)
    assert service.links.redeem(made.token, source_ip=None).bundle.serial == alice


# --- the tenant switch ---------------------------------------------------------------------


def test_switching_self_download_off_refuses_and_withdraws_links(service: Service,
                                                                 alice: str) -> None:
    made = service.links.create("default", "alice")
    setting = service.links.set_user_download("default", False)
    assert (setting.allowed, setting.links_withdrawn) == (False, 1)
    for call in (lambda: service.links.page_info(made.token),
                 lambda: service.links.redeem(made.token, source_ip=None),
                 lambda: service.links.my_bundle("default", "alice", alice)):
        with pytest.raises(SelfDownloadOff, match="turned off for Default"):
            call()
    with pytest.raises(NotPermitted, match="the tenant setting is off"):
        service.links.create("default", "alice")
    # admins still can
    assert service.certificates.bundle(alice, tenant="default").serial == alice
    # on again: the withdrawn link stays dead, a new one works
    assert service.links.set_user_download("default", True).links_withdrawn == 0
    with pytest.raises(LinkGone, match="expired or was withdrawn"):
        service.links.redeem(made.token, source_ip=None)
    fresh = service.links.create("default", "alice")
    assert service.links.redeem(fresh.token, source_ip=None).bundle.serial == alice
    changes = [json.loads(e.details) for e in _events(service, "tenant.update")]
    assert changes == [{"user_download": False, "links_withdrawn": 1},
                       {"user_download": True, "links_withdrawn": 0}]


def _events(service: Service, action: str) -> list[AuditEvent]:
    with service.database.reading() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                    .order_by(AuditEvent.id)))


# --- a user's own certificates -------------------------------------------------------------


def test_a_user_gets_only_their_own_certificates(service: Service, alice: str) -> None:
    service.users.add("default", "bob", email="bob@example.com", allow=True)
    bobs = issue_one(service, "bob").serial
    assert [v.serial for v in service.links.my_certificates("default", "bob")] == [bobs]
    assert opened(service.links.my_bundle("default", "bob", bobs).content, "bob")[0]
    # alice's certificate answers bob exactly as a serial that does not exist
    with pytest.raises(NotFound) as theirs:
        service.links.my_bundle("default", "bob", alice)
    with pytest.raises(NotFound) as absent:
        service.links.my_bundle("default", "bob", "ABCDEF12345")
    assert str(theirs.value).replace(alice, "X") == str(absent.value).replace("ABCDEF12345", "X")


# --- the CLI shell -------------------------------------------------------------------------


@pytest.fixture
def run(service: Service) -> Iterator[CliRunner]:
    STATE._service = service
    yield CliRunner()
    STATE._service = None


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(link_app, name="link")
    tenant = typer.Typer()
    tenant.command("set")(tenant_set)
    tenant.command("list")(lambda: None)  # a group of one command would lose its name
    app.add_typer(tenant, name="tenant")
    return app


def test_cli_link_create_prints_the_url_once(service: Service, alice: str,
                                             run: CliRunner) -> None:
    result = run.invoke(_cli(), ["link", "create", "alice"])
    assert result.exit_code == 0, result.output
    url = result.output.splitlines()[0]
    assert url.startswith(f"{BASE_URL}/d/tdl_") and "works once, until 2026-03-09 09:00 UTC" in (
        result.output)
    assert service.links.redeem(url.rsplit("/", 1)[1], source_ip=None).bundle.serial == alice
    result = run.invoke(_cli(), ["link", "create", "alice", "--json"])
    data = json.loads(result.output)
    assert data["url"].startswith(f"{BASE_URL}/d/tdl_") and data["sent"] is False


def test_cli_link_send_without_smtp_is_refused(service: Service, alice: str,
                                               run: CliRunner) -> None:
    result = run.invoke(_cli(), ["link", "create", "alice", "--send"])
    assert isinstance(result.exception, MailNotConfigured)
    assert str(result.exception) == (
        "e-mail is not configured (TEGATA_SMTP_HOST and TEGATA_SMTP_FROM not set)")
    with service.database.reading() as session:
        assert session.scalars(select(DownloadLink)).all() == []


def test_cli_tenant_set_user_download(service: Service, alice: str, run: CliRunner) -> None:
    service.links.create("default", "alice")
    result = run.invoke(_cli(), ["tenant", "set", "--user-download", "OFF"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ("tenant default: users may not download their own "
                                     "certificate; 1 outstanding link(s) withdrawn")
    result = run.invoke(_cli(), ["tenant", "set", "--user-download", "on", "--json"])
    assert json.loads(result.output) == {"tenant": "default", "user_download": True,
                                         "links_withdrawn": 0}
    assert run.invoke(_cli(), ["tenant", "set", "--user-download", "maybe"]).exit_code == 2
