"""Bulk work: issuance for a selection (all or none, or best effort with every refusal
listed), and the bulk download (a zip of per-user zips and manifest.csv, only valid
certificates, the newest per user, audited, with no unsafe member name)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import unicodedata
import zipfile

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select

from ca import audit
from ca.clock import FixedClock
from ca.db.models import AuditEvent, Certificate
from ca.errors import InvalidInput, NotPermitted
from ca.holds import HoldCause
from ca.service import IssueRequest, Selection, Service
from ca.service import transitions as cert_status
from ca.states import State
from tests.support.issuing import csr_pem, issue_serials

TENANT = "default"
MANIFEST_COLUMNS = ["login", "serial", "not_after", "sha256_fingerprint"]
ARCHIVE_NAME = re.compile(r"[a-z0-9-]+-certificates-\d{8}-\d{6}\.zip")


def add(service: Service, login: str, *groups: str, allow: bool = True) -> None:
    service.users.add(TENANT, login, email=f"{login}@example.com", allow=allow, groups=groups)


def bulk(service: Service, **selection: object) -> IssueRequest:
    options = {k: selection.pop(k) for k in ("best_effort", "reissue") if k in selection}
    return IssueRequest(tenant=TENANT, selection=Selection(**selection),  # type: ignore[arg-type]
                        **options)  # type: ignore[arg-type]


def holders(service: Service) -> list[str]:
    """Logins with a valid certificate."""
    return sorted({v.login for v in service.certificates.list_certificates(TENANT, state="valid")})


def change(service: Service, serial: str, step: object, *args: object) -> None:
    with service.database.transaction() as session:
        cert = session.scalar(select(Certificate).where(Certificate.serial == serial))
        assert cert is not None
        step(session, cert, *args, audit.CLI_ACTOR, tenant=TENANT,  # type: ignore[operator]
             login=cert.user.login, now=service.clock.now())


def download(service: Service, **selection: object) -> bytes:
    made = service.downloads.bulk(TENANT, Selection(**selection))  # type: ignore[arg-type]
    assert ARCHIVE_NAME.fullmatch(made.filename), made.filename
    return b"".join(made.chunks)


def unsafe(name: str) -> bool:
    return (".." in name or "/" in name or "\\" in name
            or any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name))


def assert_safe_names(data: bytes) -> None:
    """No member of the zip, or of a zip inside it, has a path, NUL or control character."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            assert not unsafe(info.filename) and not unsafe(info.orig_filename), (
                info.orig_filename)
            if info.filename.endswith(".zip"):
                assert_safe_names(archive.read(info))


def manifest(data: bytes) -> dict[str, dict[str, str]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        text = archive.read("manifest.csv").decode("utf-8")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert reader.fieldnames == MANIFEST_COLUMNS
    return {row["login"]: row for row in reader}


def members(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return sorted(archive.namelist())


def downloads(service: Service) -> list[list[str]]:
    with service.database.reading() as session:
        rows = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "cert.download").order_by(AuditEvent.id)).all()
        return [json.loads(row.details)["serials"] for row in rows]


# --- bulk issuance -------------------------------------------------------------------------


@pytest.fixture
def staff(service: Service) -> Service:
    add(service, "alice", "Sales")
    add(service, "bob", "Sales", "Dev")
    add(service, "carol")
    add(service, "dave", "Dev")
    return service


def test_bulk_issuance_goes_to_a_group_the_unaffiliated_or_all_active_users(
        staff: Service) -> None:
    issued = staff.certificates.issue_bulk(bulk(staff, group="sales")).issued
    assert [v.login for v in issued] == ["alice", "bob"]
    assert all(v.state is State.VALID and v.has_key_material for v in issued)
    issued = staff.certificates.issue_bulk(bulk(staff, unaffiliated=True)).issued
    assert [v.login for v in issued] == ["carol"]
    assert holders(staff) == ["alice", "bob", "carol"]
    staff.users.retire(TENANT, "dave")
    result = staff.certificates.issue_bulk(bulk(staff, everyone=True))
    assert [v.login for v in result.issued] == ["alice", "bob", "carol"]
    assert result.failures == []


def test_bulk_issuance_with_a_status_filter_issues_only_to_those_users(staff: Service) -> None:
    [first] = issue_serials(staff, "alice")
    issued = staff.certificates.issue_bulk(bulk(staff, everyone=True, status="unissued")).issued
    assert [v.login for v in issued] == ["bob", "carol", "dave"]
    assert [v.serial for v in staff.certificates.list_certificates(TENANT,
                                                                   login="alice")] == [first]
    assert staff.certificates.issue_bulk(bulk(staff, everyone=True, status="unissued")).issued == []


def test_bulk_issuance_is_all_or_nothing(staff: Service) -> None:
    staff.users.set_permission(TENANT, ("carol",), allow=False)
    with pytest.raises(NotPermitted, match="carol: the user has no secure-access permission"):
        staff.certificates.issue_bulk(bulk(staff, everyone=True))
    with pytest.raises(NotPermitted, match="carol"):
        staff.certificates.issue(bulk(staff, everyone=True))
    assert staff.certificates.list_certificates(TENANT) == []


def test_best_effort_issues_the_others_and_lists_each_refused_user_with_its_reason(
        staff: Service) -> None:
    staff.users.set_permission(TENANT, ("bob", "carol"), allow=False)
    result = staff.certificates.issue_bulk(bulk(staff, everyone=True, best_effort=True))
    assert [v.login for v in result.issued] == ["alice", "dave"]
    assert [login for login, _ in result.failures] == ["bob", "carol"]
    for login, reason in result.failures:
        assert login in reason and "secure-access permission" in reason
    assert holders(staff) == ["alice", "dave"]


def test_best_effort_by_login_lists_unknown_retired_and_refused_users(staff: Service) -> None:
    staff.users.retire(TENANT, "dave")
    staff.users.set_permission(TENANT, ("carol",), allow=False)
    request = IssueRequest(tenant=TENANT, logins=("alice", "ghost", "carol", "dave"),
                           best_effort=True)
    result = staff.certificates.issue_bulk(request)
    assert [v.login for v in result.issued] == ["alice"]
    reasons = dict(result.failures)
    assert set(reasons) == {"ghost", "carol", "dave"}
    assert "no user 'ghost'" in reasons["ghost"]
    assert "permission" in reasons["carol"] and "retired" in reasons["dave"]
    with pytest.raises(InvalidInput, match="issue_bulk"):
        staff.certificates.issue(request)  # best effort must report its failures


def test_progress_is_reported_as_done_of_total_ending_at_total(staff: Service) -> None:
    calls: list[tuple[int, int]] = []
    staff.users.set_permission(TENANT, ("dave",), allow=False)
    staff.certificates.issue_bulk(bulk(staff, everyone=True, best_effort=True),
                     progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_bulk_reissue_revoke_supersedes_the_current_certificates(staff: Service) -> None:
    old = [v.serial for v in staff.certificates.issue_bulk(bulk(staff, group="Sales")).issued]
    new = [v.serial for v in staff.certificates.issue_bulk(bulk(staff, group="Sales",
                                                                reissue="revoke")
                                              ).issued]
    for serial in old:
        cert = staff.certificates.get(serial)
        assert (cert.state, cert.revocation_reason) == (State.REVOKED, "superseded")
        assert not cert.has_key_material
    assert [staff.certificates.get(s).state for s in new] == [State.VALID, State.VALID]
    assert sorted(v.serial for v in staff.certificates.list_certificates(TENANT,
                                                                         state="valid")) == sorted(
        new)


# --- bulk download -------------------------------------------------------------------------

USERS_AT_SCALE = 500


def test_bulk_download_of_500_users_holds_each_users_zip_and_a_manifest(
        service: Service) -> None:
    rows = "".join(f"user{i:03d},user{i:03d}@example.com,yes\n" for i in range(USERS_AT_SCALE))
    report = service.users.import_users(TENANT, ("login,email,secure_access\n" + rows).encode())
    assert len(report.created) == USERS_AT_SCALE and report.errors == []
    issued = service.certificates.issue_bulk(bulk(service, everyone=True)).issued
    assert len(issued) == USERS_AT_SCALE

    made = service.downloads.bulk(TENANT, Selection(everyone=True))
    assert made.count == USERS_AT_SCALE and ARCHIVE_NAME.fullmatch(made.filename)
    data = b"".join(made.chunks)
    logins = [v.login for v in issued]
    assert members(data) == sorted([f"{login}.zip" for login in logins] + ["manifest.csv"])
    listed = manifest(data)
    assert sorted(listed) == sorted(logins)
    assert {row["serial"] for row in listed.values()} == {v.serial for v in issued}
    assert_safe_names(data)

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for login in logins:
            with zipfile.ZipFile(io.BytesIO(archive.read(f"{login}.zip"))) as inner:
                assert inner.namelist() == [f"{login}.p12", f"{login}-password.txt"]
                password = inner.read(f"{login}-password.txt").decode().strip()
                opened = pkcs12.load_pkcs12(inner.read(f"{login}.p12"), password.encode())
            assert opened.key is not None and opened.cert is not None
            cert = opened.cert.certificate
            row = listed[login]
            assert format(cert.serial_number, "X") == row["serial"]
            assert row["sha256_fingerprint"].upper() == cert.fingerprint(
                hashes.SHA256()).hex().upper()
            assert dt.datetime.fromisoformat(row["not_after"]) == cert.not_valid_after_utc
            assert cert.public_key() == opened.key.public_key()
    [audited] = downloads(service)
    assert sorted(audited) == sorted(v.serial for v in issued)


@pytest.fixture
def mixed(service: Service, clock: FixedClock) -> dict[str, list[str]]:
    """Users whose certificates are in every state; serials by login, oldest first."""
    for login in ("expired", "valid", "twice", "revoked", "suspended", "held", "csr",
                  "reissued", "unissued"):
        add(service, login, "Sales" if login in ("valid", "twice", "held") else "Other")
    serials = {"expired": issue_serials(service, "expired", expires=dt.date(2026, 3, 5))}
    clock.advance(dt.timedelta(days=10))
    for login in ("valid", "twice", "twice", "revoked", "suspended", "held", "reissued"):
        serials.setdefault(login, []).extend(issue_serials(service, login))
    serials["reissued"] += issue_serials(service, "reissued", reissue="revoke")
    serials["csr"] = [v.serial for v in service.certificates.issue(IssueRequest(
        tenant=TENANT, logins=("csr",), csr=csr_pem()))]
    change(service, serials["revoked"][0], cert_status.revoke, "keyCompromise")
    change(service, serials["held"][0], cert_status.place_hold, HoldCause.MANUAL)
    service.users.set_permission(TENANT, ("suspended",), allow=False)
    assert service.certificates.get(serials["expired"][0]).state is State.EXPIRED
    return serials


def test_bulk_download_holds_only_valid_server_keyed_certificates_the_newest_per_user(
        service: Service, mixed: dict[str, list[str]]) -> None:
    data = download(service, everyone=True)
    assert members(data) == ["manifest.csv", "reissued.zip", "twice.zip", "valid.zip"]
    listed = manifest(data)
    assert {login: row["serial"] for login, row in listed.items()} == {
        "reissued": mixed["reissued"][1], "twice": mixed["twice"][1],
        "valid": mixed["valid"][0]}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        inner = zipfile.ZipFile(io.BytesIO(archive.read("twice.zip")))
        password = inner.read("twice-password.txt").decode().strip()
        opened = pkcs12.load_pkcs12(inner.read("twice.p12"), password.encode())
    assert opened.cert is not None
    assert format(opened.cert.certificate.serial_number, "X") == mixed["twice"][1]


def test_bulk_download_by_group_holds_that_groups_users_only_and_is_audited(
        service: Service, mixed: dict[str, list[str]]) -> None:
    data = download(service, group="sales")
    assert members(data) == ["manifest.csv", "twice.zip", "valid.zip"]
    [serials] = downloads(service)
    assert sorted(serials) == sorted(row["serial"] for row in manifest(data).values())
    with service.database.reading() as session:
        event = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "cert.download")).one()
        assert event.tenant_id is not None and event.actor == audit.CLI_ACTOR.name
    data = download(service, logins=("valid", "csr"))
    assert members(data) == ["manifest.csv", "valid.zip"]


def test_nothing_to_download_is_refused_clearly(service: Service,
                                                mixed: dict[str, list[str]]) -> None:
    for selection in ({"logins": ("csr", "revoked", "suspended", "held", "expired")},
                      {"group": "Other", "status": "unissued"},
                      {"group": "no such group"}):
        with pytest.raises(NotPermitted, match="no selected user has a valid certificate"):
            service.downloads.bulk(TENANT, Selection(**selection))
    assert downloads(service) == []


HOSTILE_TEXT = ["../x", "a/b", "..\\..\\boot.ini", "/etc/passwd", "con", ".."]


def test_no_zip_has_an_unsafe_member_name_whatever_the_names_and_groups(
        service: Service) -> None:
    for i, text in enumerate(HOSTILE_TEXT):
        service.users.add(TENANT, f"user{i}", email=f"user{i}@example.com", display_name=text,
                         groups=(text,), allow=True)
    serials = [v.serial for v in service.certificates.issue_bulk(bulk(service,
                                                                      everyone=True)).issued]
    for serial in serials:
        assert_safe_names(service.certificates.bundle(serial, tenant=TENANT).content)
    for text in HOSTILE_TEXT:
        assert_safe_names(download(service, group=text))
    assert_safe_names(download(service, everyone=True))


def test_a_login_that_would_make_an_unsafe_file_name_is_refused_or_made_harmless(
        service: Service) -> None:
    problems = []
    for login in ("a..b", "alice.", "x..", "a.-.b"):
        try:
            service.users.add(TENANT, login, email="someone@example.com", allow=True)
        except InvalidInput as exc:
            assert exc.field == "login"
            continue  # refused at input: fine
        [serial] = issue_serials(service, login)
        try:
            assert_safe_names(service.certificates.bundle(serial, tenant=TENANT).content)
            data = download(service, logins=(login,))
        except Exception as exc:  # a crash, mid-stream for the bulk zip
            problems.append(f"{login!r} was accepted but cannot be downloaded: {exc!r}")
            continue
        assert_safe_names(data)
        assert list(manifest(data)) == [login]
    assert problems == []
