"""The user's PKCS#12 bundle judged by OpenSSL 3 (without ``-legacy``) and by NSS.

Each bundle is what a user downloads: ``service.bundle`` of a certificate issued through the
service, unzipped. The password is handed to the tools as the zip's own password file, never
on the command line.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca import passwords
from ca.clock import FixedClock
from ca.service import IssueRequest, Service
from tests.support.environment import require_tool
from tests.support.tools import run, write_pem

pytestmark = pytest.mark.interop

PROFILES = ["compat", "modern"]
LEAF_NICKNAME = "alice (default)"  # the friendly name: "<login> (<tenant>)"

# what `openssl pkcs12 -info` says of the MAC, the certificate bags and the key bag
ALGORITHMS = {
    "compat": ["MAC: sha1, Iteration 2048",
               "PKCS7 Encrypted data: pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048",
               "Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048"],
    "modern": ["MAC: sha256, Iteration 2048",
               "PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, "
               "PRF hmacWithSHA256",
               "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, "
               "PRF hmacWithSHA256"],
}


@pytest.fixture
def nss() -> None:
    for tool in ("certutil", "pk12util"):
        require_tool(tool)


@dataclass(frozen=True)
class Unpacked:
    """A user's zip, unpacked, with the CA certificates and the leaf as the service has them."""

    p12: Path
    password_file: Path
    root: Path
    issuing: Path
    leaf: x509.Certificate


def export(service: Service, directory: Path, *, profile: str,
           key_type: str | None = None) -> Unpacked:
    """Issue a certificate to alice (added here) and unpack her zip into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    service.users.add("default", "alice", email="alice@example.com", allow=True)
    (view,) = service.certificates.issue(IssueRequest(tenant="default", logins=("alice",),
                                         key_type=key_type, p12_profile=profile))
    made = service.certificates.bundle(view.serial, tenant="default", profile=profile)
    with zipfile.ZipFile(io.BytesIO(made.content)) as archive:
        assert sorted(archive.namelist()) == ["alice-password.txt", "alice.p12"]
        archive.extractall(directory)
    root, issuing = service.hierarchy.ca_certificates("default")
    return Unpacked(p12=directory / "alice.p12", password_file=directory / "alice-password.txt",
                    root=write_pem(directory / "root.pem", root.pem),
                    issuing=write_pem(directory / "issuing.pem", issuing.pem),
                    leaf=x509.load_der_x509_certificate(view.der))


def move_clock_to_the_real_now(clock: FixedClock) -> None:
    # NSS judges validity at the machine's time only (certutil -V has no "at" option), while
    # the service's FixedClock stands at MOMENTS.start and a leaf lives one year. So here, and
    # only here, the real time is read: the leaf is issued at it, so NSS sees a current
    # certificate whatever day the suite runs. The CAs (made at MOMENTS.start) last 20 years.
    real_now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    if real_now > clock.now():
        clock.set(real_now)


def pkcs12(openssl: str, bundle: Unpacked, *options: str, password_file: Path | None = None):
    return run(openssl, "pkcs12", "-in", str(bundle.p12),
               "-passin", f"file:{password_file or bundle.password_file}", *options)


def same_public_key(openssl: str, directory: Path, key_pem: str, cert_pem: str) -> bool:
    """OpenSSL's own reading of the public key of a private key and of a certificate."""
    key_file = write_pem(directory / "check-key.pem", key_pem)
    cert_file = write_pem(directory / "check-cert.pem", cert_pem)
    of_key = run(openssl, "pkey", "-pubout", "-in", str(key_file))
    of_cert = run(openssl, "x509", "-pubkey", "-noout", "-in", str(cert_file))
    assert of_key.returncode == 0 and of_cert.returncode == 0, of_key.stderr + of_cert.stderr
    return of_key.stdout == of_cert.stdout


def bags(pem_output: str) -> list[dict[str, str]]:
    """The bags of ``openssl pkcs12 -nodes``: attributes, subject and PEM of each."""
    found = []
    for block in pem_output.split("Bag Attributes")[1:]:
        attributes = dict(re.findall(r"^\s+(localKeyID|friendlyName): (.+?)\s*$", block,
                                     re.MULTILINE))
        pem = re.search(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----\n", block, re.DOTALL)
        subject = re.search(r"^subject=(.+)$", block, re.MULTILINE)
        assert pem is not None, block
        found.append({**attributes, "pem": pem.group(0), "kind": pem.group(1),
                      "subject": subject.group(1) if subject else ""})
    return found


class NssDb:
    """A fresh NSS database with an empty password, in a directory of its own."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True)
        self.spec = f"sql:{directory}"
        created = run("certutil", "-N", "-d", self.spec, "--empty-password")
        assert created.returncode == 0, created.stdout + created.stderr

    def import_p12(self, p12: Path, password_file: Path):
        return run("pk12util", "-i", str(p12), "-d", self.spec, "-w", str(password_file))

    def listing(self) -> str:
        listed = run("certutil", "-L", "-d", self.spec)
        assert listed.returncode == 0, listed.stderr
        return listed.stdout

    def trust_root_for_client_auth(self, root: Path) -> None:
        added = run("certutil", "-A", "-n", "tegata-root", "-t", "T,,", "-i", str(root),
                    "-d", self.spec)
        assert added.returncode == 0, added.stdout + added.stderr

    def verify_client(self, nickname: str):
        return run("certutil", "-V", "-u", "C", "-n", nickname, "-d", self.spec)

    def pem_of(self, nickname: str) -> str:
        shown = run("certutil", "-L", "-n", nickname, "-a", "-d", self.spec)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        return shown.stdout


def check_nss_imports_and_verifies(bundle: Unpacked, directory: Path) -> None:
    db = NssDb(directory)
    imported = db.import_p12(bundle.p12, bundle.password_file)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "PKCS12 IMPORT SUCCESSFUL" in imported.stdout + imported.stderr
    # the leaf comes in under its friendly name, paired with its key ("u": a user certificate)
    assert re.search(rf"^{re.escape(LEAF_NICKNAME)}\s+u,u,u\s*$", db.listing(), re.MULTILINE)
    assert x509.load_pem_x509_certificate(db.pem_of(LEAF_NICKNAME).encode()) == bundle.leaf
    # the control: the chain came in, but nothing in it is trusted yet
    untrusted = db.verify_client(LEAF_NICKNAME)
    assert untrusted.returncode != 0
    assert "certificate is valid" not in untrusted.stdout + untrusted.stderr
    db.trust_root_for_client_auth(bundle.root)
    verified = db.verify_client(LEAF_NICKNAME)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "certificate is valid" in verified.stdout + verified.stderr


@pytest.mark.parametrize("profile", PROFILES)
def test_openssl_3_reads_the_bundle_without_legacy_in_the_profiles_algorithms(
        openssl: str, service: Service, tmp_path: Path, profile: str) -> None:
    bundle = export(service, tmp_path, profile=profile)

    result = pkcs12(openssl, bundle, "-info", "-noout")

    info = result.stdout + result.stderr
    assert result.returncode == 0, info  # RC2 anywhere, and OpenSSL 3 would need -legacy
    algorithms = [line.strip() for line in info.splitlines()
                  if line.startswith(("MAC:", "PKCS7 Encrypted data:", "Shrouded Keybag:"))]
    assert algorithms == ALGORITHMS[profile]
    assert "rc2" not in info.lower()


@pytest.mark.parametrize("profile", PROFILES)
def test_the_bundle_holds_the_key_the_leaf_and_the_whole_chain_paired_by_name_and_key_id(
        openssl: str, service: Service, tmp_path: Path, profile: str) -> None:
    bundle = export(service, tmp_path, profile=profile)

    certs_only = pkcs12(openssl, bundle, "-nokeys")
    everything = pkcs12(openssl, bundle, "-nodes")

    assert certs_only.returncode == 0, certs_only.stderr
    certs = x509.load_pem_x509_certificates(certs_only.stdout.encode())
    names = [cert.subject.rfc4514_string() for cert in certs]
    assert names == ["CN=alice,O=Default", "CN=Default Issuing CA,OU=default,O=Tegata",
                     "CN=Tegata Root CA,O=Tegata"]
    assert certs[0] == bundle.leaf
    assert [c.public_bytes(Encoding.PEM).decode() for c in certs[1:]] \
        == [bundle.issuing.read_text(), bundle.root.read_text()]
    assert everything.returncode == 0, everything.stderr
    (key,) = [bag for bag in bags(everything.stdout) if bag["kind"] == "PRIVATE KEY"]
    (leaf,) = [bag for bag in bags(everything.stdout) if "CN = alice" in bag["subject"]]
    assert same_public_key(openssl, tmp_path, key["pem"], leaf["pem"])
    assert key["friendlyName"] == leaf["friendlyName"] == LEAF_NICKNAME
    assert re.fullmatch(r"([0-9A-F]{2} )+[0-9A-F]{2}", key["localKeyID"])
    assert key["localKeyID"] == leaf["localKeyID"]


@pytest.mark.parametrize("profile", PROFILES)
def test_a_wrong_password_is_refused_by_openssl_and_by_pk12util(
        openssl: str, nss: None, service: Service, tmp_path: Path, profile: str) -> None:
    bundle = export(service, tmp_path / "zip", profile=profile)
    wrong = tmp_path / "wrong-password.txt"
    wrong.write_text(passwords.generate() + "\n", encoding="ascii")
    db = NssDb(tmp_path / "nss")

    by_openssl = pkcs12(openssl, bundle, "-info", "-noout", password_file=wrong)
    by_nss = db.import_p12(bundle.p12, wrong)

    assert by_openssl.returncode != 0
    assert "Mac verify error" in by_openssl.stderr
    assert by_nss.returncode != 0
    assert "SEC_ERROR_BAD_PASSWORD" in by_nss.stdout + by_nss.stderr
    assert LEAF_NICKNAME not in db.listing()
    # the control: the right password opens the very same file
    assert pkcs12(openssl, bundle, "-info", "-noout").returncode == 0


@pytest.mark.parametrize("profile", PROFILES)
def test_nss_imports_the_bundle_and_accepts_the_leaf_for_client_auth_under_a_trusted_root(
        nss: None, service: Service, clock: FixedClock, tmp_path: Path, profile: str) -> None:
    move_clock_to_the_real_now(clock)
    bundle = export(service, tmp_path / "zip", profile=profile)

    check_nss_imports_and_verifies(bundle, tmp_path / "nss")


def test_the_password_file_is_one_line_with_at_least_112_bits(service: Service,
                                                              tmp_path: Path) -> None:
    bundle = export(service, tmp_path, profile="compat")

    content = bundle.password_file.read_text(encoding="ascii")

    assert content.count("\n") == 1 and content.endswith("\n")
    alphabet = re.escape(passwords.ALPHABET)
    assert re.fullmatch(rf"[{alphabet}]{{4}}(-[{alphabet}]{{4}}){{5}}\n", content), content
    assert len(set(passwords.ALPHABET)) == len(passwords.ALPHABET)
    assert 24 * math.log2(len(passwords.ALPHABET)) >= 112


@pytest.mark.parametrize("profile", PROFILES)
def test_an_rsa_2048_bundle_opens_with_openssl_and_imports_into_nss(
        openssl: str, nss: None, service: Service, clock: FixedClock, tmp_path: Path,
        profile: str) -> None:
    move_clock_to_the_real_now(clock)
    bundle = export(service, tmp_path / "zip", profile=profile, key_type="rsa-2048")

    opened = pkcs12(openssl, bundle, "-nodes")

    assert opened.returncode == 0, opened.stderr
    (key,) = [bag for bag in bags(opened.stdout) if bag["kind"] == "PRIVATE KEY"]
    described = run(openssl, "pkey", "-noout", "-text_pub",
                    "-in", str(write_pem(tmp_path / "key.pem", key["pem"])))
    assert "Public-Key: (2048 bit)" in described.stdout, described.stdout + described.stderr
    leaf_pem = bundle.leaf.public_bytes(Encoding.PEM).decode()
    assert same_public_key(openssl, tmp_path, key["pem"], leaf_pem)
    check_nss_imports_and_verifies(bundle, tmp_path / "nss")
