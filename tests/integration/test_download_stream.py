"""The bulk download while certificates change: the archive is consumed a chunk at a time,
and between chunks (and while a batch's PKCS#12 files are being built) certificates are
suspended, revoked, their user retired or their permission withdrawn. No key of a
certificate that is not valid when its entry is written leaves; the manifest lists exactly
the zip's entries; the audit log says which serials left and which were withheld."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from ca.service import IssueRequest, Selection, Service, downloads
from ca.states import State
from ca.x509 import bundle
from tests.integration.test_bulk import manifest, members

TENANT = "default"
USERS = 40
BATCH = 8  # five batches: the changes land in batches not yet written


@pytest.fixture
def staff(service: Service, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """login -> serial of 40 users with a valid certificate each."""
    monkeypatch.setattr(downloads, "BATCH", BATCH)
    logins = tuple(f"u{n:02d}" for n in range(USERS))
    for login in logins:
        service.users.add(TENANT, login, email=f"{login}@example.com", allow=True)
    views = service.certificates.issue(IssueRequest(tenant=TENANT, logins=logins))
    return {v.login: v.serial for v in views}


def ends(service: Service) -> list[dict[str, object]]:
    return [e.details | {"outcome": e.outcome}
            for e in service.audit.events(tenant=TENANT, action=downloads.END)]


def opened(service: Service) -> list[list[str]]:
    return [e.details["serials"]
            for e in service.audit.events(tenant=TENANT, action="cert.download")]


def test_a_certificate_that_stops_being_valid_mid_stream_is_not_exported(
        service: Service, staff: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    building = bundle.entry_zip

    def suspended_while_built(entry: bundle.Entry) -> bytes:
        # u12's PKCS#12 is being built (its key already unsealed) when it is suspended
        if entry.login == "u12":
            service.revocation.suspend(TENANT, staff["u12"])
        return building(entry)

    monkeypatch.setattr(bundle, "entry_zip", suspended_while_built)
    made = service.downloads.bulk(TENANT, Selection(everyone=True))
    assert made.count == USERS
    chunks: Iterator[bytes] = iter(made.chunks)
    data = [next(chunks)]  # the first batch, u00 to u07, has left
    # too late: its key is out, and the log says so
    service.revocation.suspend(TENANT, staff["u03"])
    service.revocation.suspend(TENANT, staff["u20"])
    service.users.set_permission(TENANT, ("u25",), allow=False)
    service.revocation.revoke(TENANT, staff["u30"], reason="keyCompromise")
    service.users.retire(TENANT, "u35")
    data += list(chunks)
    archive = b"".join(data)

    withheld = ["u12", "u20", "u25", "u30", "u35"]
    kept = [login for login in staff if login not in withheld]
    assert members(archive) == sorted([f"{login}.zip" for login in kept] + ["manifest.csv"])
    assert {login: row["serial"] for login, row in manifest(archive).items()} == {
        login: staff[login] for login in kept}
    with zipfile.ZipFile(io.BytesIO(archive)) as outer, zipfile.ZipFile(
            io.BytesIO(outer.read("u03.zip"))) as inner:
        opened_p12 = pkcs12.load_pkcs12(inner.read("u03.p12"),
                                        inner.read("u03-password.txt").strip())
    assert opened_p12.key is not None and opened_p12.cert is not None
    assert format(opened_p12.cert.certificate.serial_number, "X") == staff["u03"]

    assert opened(service) == [list(staff.values())]  # what was asked for, before any byte
    # u12 was built (and withheld); the others changed before their batch was read
    assert ends(service) == [{"serials": [staff[login] for login in kept], "complete": True,
                              "withheld": [staff[login] for login in withheld],
                              "built": USERS - 4, "outcome": "success"}]
    states = {login: service.certificates.get(staff[login]).state for login in withheld}
    assert states == {"u12": State.SUSPENDED, "u20": State.SUSPENDED, "u25": State.SUSPENDED,
                      "u30": State.REVOKED, "u35": State.REVOKED}


def test_a_download_broken_off_is_audited_with_what_left(
        service: Service, staff: dict[str, str]) -> None:
    made = service.downloads.bulk(TENANT, Selection(everyone=True))
    chunks = iter(made.chunks)
    next(chunks)
    next(chunks)  # two batches handed over, then the client goes away
    chunks.close()  # type: ignore[attr-defined]
    serials = list(staff.values())
    assert ends(service) == [{"serials": serials[:2 * BATCH], "complete": False,
                              "withheld": serials[2 * BATCH:], "built": 2 * BATCH,
                              "outcome": "failure"}]
