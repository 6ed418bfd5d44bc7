"""Bundle passwords, PKCS#12 profiles and zip names (pure)."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12
from cryptography.x509.oid import NameOID

from ca import passwords
from ca.x509 import bundle, pkcs12

WHEN = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def test_passwords_carry_at_least_112_bits_in_groups_without_look_alikes() -> None:
    assert passwords.entropy_bits() >= 112
    for ch in "0O1lIoiSZB":
        assert ch not in passwords.ALPHABET
    made = {passwords.generate() for _ in range(200)}
    assert len(made) == 200
    for pw in made:
        group = f"[{passwords.ALPHABET}]{{4}}"
        assert re.fullmatch(f"({group}-){{5}}{group}", pw)


@pytest.fixture(scope="module")
def key_and_cert() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7).not_valid_before(WHEN)
            .not_valid_after(WHEN + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return key, cert


@pytest.mark.parametrize("profile", list(pkcs12.Profile), ids=lambda p: p.value)
def test_pkcs12_holds_key_certificate_and_friendly_name(
        key_and_cert: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
        profile: pkcs12.Profile) -> None:
    key, cert = key_and_cert
    data = pkcs12.build(key=key, cert=cert, chain=[cert], friendly_name="alice (default)",
                        password="Ab3d-efgh", profile=profile)
    loaded = crypto_pkcs12.load_pkcs12(data, b"Ab3d-efgh")
    assert loaded.cert is not None and loaded.cert.certificate == cert
    assert loaded.cert.friendly_name == b"alice (default)"
    assert loaded.key is not None and loaded.key.public_key() == key.public_key()
    assert [c.certificate for c in loaded.additional_certs] == [cert]
    with pytest.raises(ValueError):
        crypto_pkcs12.load_pkcs12(data, b"wrong")


@pytest.mark.parametrize("text", ["rc2", "", "COMPAT", "legacy"])
def test_unknown_pkcs12_profiles_are_refused(text: str) -> None:
    from ca.errors import InvalidInput

    with pytest.raises(InvalidInput, match="compat or modern"):
        pkcs12.Profile.parse(text)


def test_user_zip_holds_the_p12_and_the_password_file() -> None:
    data = bundle.user_zip(login="alice", p12=b"P12", password="pw", when=WHEN)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["alice.p12", "alice-password.txt"]
        assert archive.read("alice.p12") == b"P12"
        assert archive.read("alice-password.txt") == b"pw\n"
        assert archive.getinfo("alice.p12").external_attr >> 16 == 0o100600


@pytest.mark.parametrize(
    "name", ["../x", "a/b", "a\\b", "a\x00b", "a\r\nb", "\u202egnp", ".x", "a..b", "", "x" * 200],
    ids=["dotdot", "slash", "backslash", "nul", "crlf", "rtl", "dot", "inner-dotdot", "empty",
         "long"])
def test_no_input_can_make_an_unsafe_zip_entry(name: str) -> None:
    with pytest.raises(ValueError, match="unsafe file name"):
        bundle.user_zip(login=name, p12=b"", password="", when=WHEN)


def test_values_holding_key_material_do_not_show_it_in_their_repr() -> None:
    from ca.service.downloads import Entry
    from ca.service.views import Bundle

    bundle = Bundle(filename="alice.zip", content=b"PKCS12-AND-PASSWORD", serial="1A")
    entry = Entry(login="alice", serial="1A", not_after=dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
                  fingerprint="00", cert_der=b"cert", key_der=b"PRIVATE-KEY",
                  password="pw-Secret-123", chain_der=(), friendly_name="alice",
                  profile="compat", when=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert "PKCS12-AND-PASSWORD" not in repr(bundle) and "1A" in repr(bundle)
    assert "PRIVATE-KEY" not in repr(entry) and "pw-Secret-123" not in repr(entry)
