"""A copy of the data directory is not a copy of every user's private key.

The data-protection key is wrapped under the CA key passphrase, so the data directory and the
key directory together, without the passphrase, reveal no key and no bundle password; with
the passphrase everything opens. A deployment made by the previous release (its key in the
clear) keeps opening its sealed rows and has its key wrapped at the first start.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from ca import sealing
from ca.clock import FixedClock
from ca.errors import ConfigError
from ca.sealing import DATA_PROTECTION_FILE
from ca.service import InitRequest, IssueRequest, Service, build_service
from ca.settings import Settings, load_settings
from tests.support.environment import BASE_URL, PASSPHRASE

OTHER_PASSPHRASE = "someone-elses-passphrase-42"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: what is tested is the key file; the sealed rows are bytes both
    databases hold alike."""
    return f"sqlite:///{tmp_path / 'tegata.db'}"


def open_bundle(content: bytes, login: str) -> tuple[str, bytes, bytes]:
    """(password, the user's private key as PKCS#8 DER, its private scalar) from a zip."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        password = archive.read(f"{login}-password.txt").decode().strip()
        key, _cert, _chain = pkcs12.load_key_and_certificates(
            archive.read(f"{login}.p12"), password.encode())
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return password, der, key.private_numbers().private_value.to_bytes(32, "big")


def raw_data_protection_key(key_dir: Path) -> bytes:
    """The key itself, from the wrapped file (or from a file in the clear)."""
    data = (key_dir / DATA_PROTECTION_FILE).read_bytes()
    if not data.startswith(b"{"):
        return base64.b64decode(data)
    return sealing.unwrap_key(data, PASSPHRASE.encode(), path=key_dir,
                              passphrase_source="test")


def key_forms(key: bytes) -> dict[str, bytes]:
    return {"raw": key, "base64": base64.b64encode(key),
            "base64url": base64.urlsafe_b64encode(key).rstrip(b"="),
            "hex": key.hex().encode(), "HEX": key.hex().upper().encode()}


def scan(directory: Path, secrets: dict[str, bytes]) -> set[tuple[str, str]]:
    """(file, secret) for every secret found anywhere in any file under ``directory``."""
    return {(str(path.relative_to(directory)), name)
            for path in sorted(directory.rglob("*")) if path.is_file()
            for name, secret in secrets.items() if secret in path.read_bytes()}


def at(data_dir: Path, passphrase: str | None = PASSPHRASE) -> Settings:
    """The default layout: the SQLite database and the key directory in the data directory."""
    return load_settings(data_dir=data_dir, key_passphrase=passphrase,
                         public_base_url=BASE_URL)


def test_a_copy_of_the_data_directory_opens_nothing_without_the_passphrase(
        tmp_path: Path, clock: FixedClock) -> None:
    service = build_service(at(tmp_path / "data"), clock=clock)
    service.database.upgrade()
    service.hierarchy.initialize(InitRequest(key_type="ec-p256"))
    service.hierarchy.create_tenant("acme", display_name="株式会社アクメ")
    service.users.add("acme", "yamada", email="yamada@example.co.jp", display_name="山田 太郎",
                     allow=True)
    (view,) = service.certificates.issue(IssueRequest(tenant="acme", logins=("yamada",)))
    password, key_der, scalar = open_bundle(
        service.certificates.bundle(view.serial, tenant="acme").content, "yamada")
    dp_key = raw_data_protection_key(tmp_path / "data" / "keys")
    service.engine.dispose()
    shutil.copytree(tmp_path / "data", tmp_path / "copy")
    copy = tmp_path / "copy"

    secrets = {**{f"dp key ({k})": v for k, v in key_forms(dp_key).items()},
               "bundle password": password.encode(),
               "private key (PKCS#8 DER)": key_der, "private scalar": scalar,
               "private key (base64)": base64.b64encode(key_der)[:48],
               "certificate (public, a control)": view.der}
    assert scan(copy, secrets) == {("tegata.db", "certificate (public, a control)")}

    # without the passphrase: another one, or none at all
    thief = build_service(at(copy, OTHER_PASSPHRASE), clock=clock)
    with pytest.raises(ConfigError) as refused:
        thief.certificates.bundle(view.serial, tenant="acme")
    assert refused.value.message == (
        f"data-protection key {copy / 'keys' / DATA_PROTECTION_FILE}: wrong passphrase "
        "(TEGATA_KEY_PASSPHRASE) or the file was altered")
    with pytest.raises(ConfigError, match="wrong passphrase"):
        thief.startup.load_signers()
    thief.engine.dispose()
    with pytest.raises(ConfigError, match="no CA key passphrase"):
        _ = build_service(at(copy, None), clock=clock).keys.sealer

    # with it, the copy is a working deployment (this is a restore)
    restored = build_service(at(copy), clock=clock)
    restored.startup.load_signers()
    again = open_bundle(restored.certificates.bundle(view.serial, tenant="acme").content, "yamada")
    assert again == (password, key_der, scalar)
    restored.engine.dispose()


def as_the_previous_release_left_it(key_dir: Path) -> bytes:
    """The data-protection key written as releases before this one wrote it (bare base64,
    mode 0600); the rows stay sealed under the same key, as that release sealed them."""
    key = raw_data_protection_key(key_dir)
    path = key_dir / DATA_PROTECTION_FILE
    path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(base64.b64encode(key) + b"\n")
    return key


def test_a_deployment_of_the_previous_release_is_wrapped_at_start_and_opens_its_rows(
        service: Service, settings: Settings, clock: FixedClock) -> None:
    service.users.add("default", "alice", email="alice@example.com", allow=True)
    (view,) = service.certificates.issue(IssueRequest(tenant="default", logins=("alice",)))
    before = open_bundle(service.certificates.bundle(view.serial, tenant="default").content,
                         "alice")
    key_dir = settings.effective_key_dir
    key = as_the_previous_release_left_it(key_dir)
    service.engine.dispose()

    upgraded = build_service(settings, clock=clock)
    upgraded.startup.load_signers()  # what `tegata serve` does at start

    data = (key_dir / DATA_PROTECTION_FILE).read_bytes()
    assert json.loads(data)["version"] == 2
    assert [name for name, form in key_forms(key).items() if form in data] == []
    assert open_bundle(upgraded.certificates.bundle(view.serial, tenant="default").content,
                       "alice") == before
    upgraded.engine.dispose()
    later = build_service(settings, clock=clock)
    assert open_bundle(later.certificates.bundle(view.serial, tenant="default").content,
                       "alice") == before
    later.engine.dispose()
