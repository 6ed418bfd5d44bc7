"""Every path that bundles a key makes its PKCS#12 file in the profile one rule chooses
(``ca.bundle_profile``): the one the download asks for, else the certificate's own, else the
tenant's default. The bulk zip once made every bundle in the tenant's default, so that a
certificate issued ``modern`` came out ``compat``; here each path's files are judged by what
they are (the MAC's digest and the bags' encryption, read from the PKCS#12 structure), not
by any label of ours."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12
from pyasn1.codec.der import decoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc5652, rfc5958, rfc7292, rfc8018
from sqlalchemy import update

from ca.db.models import Tenant
from ca.service import IssueRequest, Selection, Service

TENANT = "default"
SHA1, SHA256 = "1.3.14.3.2.26", "2.16.840.1.101.3.4.2.1"
PBE_SHA1_3DES = "1.2.840.113549.1.12.1.3"  # RFC 7292, appendix C
PBES2_SHA256_AES256 = "PBES2/1.2.840.113549.2.9/2.16.840.1.101.3.4.1.42"  # RFC 8018
# what a file of each profile is: its MAC's digest, the certificates' and the key's encryption
IS = {"compat": (SHA1, [("certificates", PBE_SHA1_3DES), ("key", PBE_SHA1_3DES)]),
      "modern": (SHA256, [("certificates", PBES2_SHA256_AES256),
                          ("key", PBES2_SHA256_AES256)])}
# who was issued in what (None: no choice, the tenant's default applies), and by which path
ISSUED = {"sato": "modern", "suzuki": "compat", "takahashi": None}


def _algorithm(identifier: univ.Sequence) -> str:
    oid = str(identifier["algorithm"])
    if oid != str(rfc8018.id_PBES2):
        return oid
    params, _ = decoder.decode(identifier["parameters"], asn1Spec=rfc8018.PBES2_params())
    kdf, _ = decoder.decode(params["keyDerivationFunc"]["parameters"],
                            asn1Spec=rfc8018.PBKDF2_params())
    return f"PBES2/{kdf['prf']['algorithm']}/{params['encryptionScheme']['algorithm']}"


def what_it_is(p12: bytes, password: str) -> str:
    """The profile a PKCS#12 file is made in, read from its structure (RFC 7292): the MAC's
    digest and each encrypted part's algorithm. It must also open with its password."""
    crypto_pkcs12.load_pkcs12(p12, password.encode())
    pfx, _ = decoder.decode(p12, asn1Spec=rfc7292.PFX())
    mac = str(pfx["macData"]["mac"]["digestAlgorithm"]["algorithm"])
    data, _ = decoder.decode(pfx["authSafe"]["content"], asn1Spec=univ.OctetString())
    safe, _ = decoder.decode(data, asn1Spec=rfc7292.AuthenticatedSafe())
    parts = []
    for info in safe:
        if info["contentType"] == rfc5652.id_encryptedData:
            encrypted, _ = decoder.decode(info["content"], asn1Spec=rfc5652.EncryptedData())
            parts.append(("certificates", _algorithm(
                encrypted["encryptedContentInfo"]["contentEncryptionAlgorithm"])))
        elif info["contentType"] == rfc5652.id_data:
            raw, _ = decoder.decode(info["content"], asn1Spec=univ.OctetString())
            bags, _ = decoder.decode(raw, asn1Spec=rfc7292.SafeContents())
            for bag in bags:
                if bag["bagId"] == rfc7292.id_pkcs8ShroudedKeyBag:
                    key, _ = decoder.decode(bag["bagValue"],
                                            asn1Spec=rfc5958.EncryptedPrivateKeyInfo())
                    parts.append(("key", _algorithm(key["encryptionAlgorithm"])))
    found = [name for name, (digest, encrypted) in IS.items()
             if (mac, parts) == (digest, encrypted)]
    assert found, f"a PKCS#12 file of no profile: MAC {mac}, {parts}"
    return found[0]


def opened(user_zip: bytes, login: str) -> str:
    with zipfile.ZipFile(io.BytesIO(user_zip)) as archive:
        return what_it_is(archive.read(f"{login}.p12"),
                          archive.read(f"{login}-password.txt").decode().strip())


@pytest.fixture(params=["compat", "modern"], ids=["tenant-compat", "tenant-modern"])
def issued(request: pytest.FixtureRequest, service: Service) -> dict[str, str]:
    """ISSUED's certificates, sato's by the bulk issue's path (``issue_bulk``, what the
    API's job runs), the others' by ``issue``, under a tenant whose default is the param;
    {login: serial}."""
    with service.database.transaction() as session:
        session.execute(update(Tenant).where(Tenant.name == TENANT)
                        .values(p12_profile=request.param))
    serials = {}
    for login, profile in ISSUED.items():
        service.users.add(TENANT, login, email=f"{login}@example.jp", display_name="利用者",
                          allow=True)
        asked = IssueRequest(tenant=TENANT, logins=(login,), p12_profile=profile)
        made = (service.certificates.issue_bulk(asked).issued if login == "sato"
                else service.certificates.issue(asked))
        serials[login] = made[0].serial
    return serials


def expected(service: Service, asked: str | None) -> dict[str, str]:
    with service.database.reading() as session:
        default = session.query(Tenant.p12_profile).filter(Tenant.name == TENANT).scalar()
    return {login: asked or profile or default for login, profile in ISSUED.items()}


ASKED = [None, "modern", "compat"]
ASKED_IDS = ["as-issued", "asked-modern", "asked-compat"]


@pytest.mark.parametrize("asked", ASKED, ids=ASKED_IDS)
def test_the_bulk_zip_makes_each_bundle_in_its_certificates_profile_unless_asked(
        service: Service, issued: dict[str, str], asked: str | None) -> None:
    archive = b"".join(service.downloads.bulk(TENANT, Selection(everyone=True),
                                              profile=asked).chunks)
    with zipfile.ZipFile(io.BytesIO(archive)) as outer:
        found = {login: opened(outer.read(f"{login}.zip"), login) for login in ISSUED}
    assert found == expected(service, asked)


Download = Callable[[Service, str, str, "str | None"], bytes]
PATHS: dict[str, Download] = {
    "single-download": lambda s, login, serial, asked: s.certificates.bundle(
        serial, tenant=TENANT, profile=asked).content,
    "my-bundle": lambda s, login, serial, asked: s.links.my_bundle(
        TENANT, login, serial, profile=asked).content,
}


@pytest.mark.parametrize("asked", ASKED, ids=ASKED_IDS)
@pytest.mark.parametrize("path", list(PATHS), ids=list(PATHS))
def test_a_single_bundle_is_made_in_the_same_profile_as_in_the_bulk_zip(
        service: Service, issued: dict[str, str], path: str, asked: str | None) -> None:
    found = {login: opened(PATHS[path](service, login, serial, asked), login)
             for login, serial in issued.items()}
    assert found == expected(service, asked)


def test_a_link_hands_out_each_bundle_in_its_certificates_profile(
        service: Service, issued: dict[str, str]) -> None:
    found = {}
    for login in issued:
        link = service.links.create(TENANT, login)
        got = service.links.redeem(link.token, source_ip="192.0.2.7")
        found[login] = what_it_is(got.p12, got.password)
    assert found == expected(service, None)
