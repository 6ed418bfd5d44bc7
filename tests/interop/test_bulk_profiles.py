"""The bulk zip builds each bundle in its certificate's own PKCS#12 profile, as the single
download does (one rule: ``ca.bundle_profile``), unless the download asks for one: a
certificate issued ``modern`` does not come out ``compat`` because the tenant's default is.
Each entry is judged by ``openssl pkcs12 -info``, the password handed over as its file."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from ca.service import IssueRequest, Selection, Service
from tests.interop.test_pkcs12 import ALGORITHMS
from tests.support.tools import run

pytestmark = pytest.mark.interop
TENANT = "default"
ISSUED = {"sato": "modern", "suzuki": "compat", "takahashi": None}  # None: the tenant's


def algorithms(openssl: str, archive: bytes, login: str, directory: Path) -> list[str]:
    """What ``openssl pkcs12 -info`` says of one entry's MAC and bags."""
    with zipfile.ZipFile(io.BytesIO(archive)) as outer, zipfile.ZipFile(
            io.BytesIO(outer.read(f"{login}.zip"))) as inner:
        inner.extractall(directory / login)
    info = run(openssl, "pkcs12", "-in", str(directory / login / f"{login}.p12"), "-info",
               "-noout", "-passin", f"file:{directory / login / f'{login}-password.txt'}")
    assert info.returncode == 0, info.stderr
    return [line.strip() for line in (info.stdout + info.stderr).splitlines()
            if line.startswith(("MAC:", "PKCS7 Encrypted data:", "Shrouded Keybag:"))]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("asked", [None, "modern", "compat"], ids=["as-issued", "modern",
                                                                    "compat"])
def test_the_bulk_zip_builds_each_bundle_in_its_certificates_profile_unless_asked(
        openssl: str, service: Service, tmp_path: Path, asked: str | None) -> None:
    for login, profile in ISSUED.items():
        service.users.add(TENANT, login, email=f"{login}@example.jp", display_name="利用者",
                         allow=True)
        service.certificates.issue(IssueRequest(tenant=TENANT, logins=(login,),
                                                p12_profile=profile))
    archive = b"".join(service.downloads.bulk(TENANT, Selection(everyone=True),
                                             profile=asked).chunks)
    found = {login: algorithms(openssl, archive, login, tmp_path) for login in ISSUED}
    assert found == {login: ALGORITHMS[asked or profile or "compat"]
                     for login, profile in ISSUED.items()}
