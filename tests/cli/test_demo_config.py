"""``tegata demo``'s first run writes a configuration that reads back, whatever the data
directory is called, with the CA's URLs on the port it listens on; and it says how to reach
the console."""

from __future__ import annotations

import re
import sqlite3
import tomllib
from pathlib import Path

import pytest
from cryptography import x509

from ca.service import Service, build_service
from ca.settings import load_settings
from cli import server
from cli.server import _write_demo_config
from tests.cli.conftest import Cli, Env
from tests.support.issuing import issue_one


@pytest.mark.parametrize("name", ["tegata-data", 'say "hi"', "back\\slash", "データ"])
def test_the_demo_configuration_names_its_passphrase_file_exactly(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / name
    config = tmp_path / "tegata.toml"
    monkeypatch.delenv("TEGATA_KEY_PASSPHRASE", raising=False)
    monkeypatch.setenv("TEGATA_CONFIG", str(config))
    monkeypatch.setenv("TEGATA_DATA_DIR", str(data_dir))
    _write_demo_config()
    settings = load_settings()
    assert settings.key_passphrase_file == data_dir / "demo-passphrase"
    assert settings.passphrase() == (data_dir / "demo-passphrase").read_bytes().strip()


# --- the port of a first run, and what the demo prints ---------------------------------------


@pytest.fixture
def demo_env(sqlite_env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             ) -> list[tuple[str, int]]:
    """``tegata demo`` with nothing configured but its data directory, serving nothing: the
    addresses it would have served on are recorded instead."""
    monkeypatch.delenv("TEGATA_PUBLIC_BASE_URL")
    monkeypatch.setenv("TEGATA_CONFIG", str(tmp_path / "tegata.toml"))
    served: list[tuple[str, int]] = []

    def record(_service: Service, host: str, port: int, *, workers: int | None = None) -> None:
        served.append((host, port))

    monkeypatch.setattr(server, "run", record)
    return served


def urls_of(der: bytes) -> tuple[str, str]:
    """A certificate's CRL distribution point and OCSP responder."""
    cert = x509.load_der_x509_certificate(der)
    crl = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    (ocsp,) = [d.access_location.value for d in aia
               if d.access_method == x509.oid.AuthorityInformationAccessOID.OCSP]
    return crl[0].full_name[0].value, ocsp  # type: ignore[index]


def demo_text(port: int, token: str) -> str:
    url = f"http://127.0.0.1:{port}"
    return (f"\nTegata is starting at {url}  (API docs: {url}/docs)\n"
            f"web console: {url}/console/\n"
            f"  sign in by pasting the admin token below into its token field\n"
            f"admin token for tenant `demo` (valid 24 h, shown once):\n  {token}\n"
            f"try:\n  curl -H 'Authorization: Bearer {token}' {url}/api/v1/whoami\n"
            f"  curl -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' "
            f"-d '{{\"login\": \"alice\"}}' {url}/api/v1/tenants/demo/certificates\n\n")


@pytest.mark.parametrize("passphrase", ["environment", "first-run-file"])
def test_a_first_demo_run_puts_its_port_in_every_certificates_urls(
        demo_env: list[tuple[str, int]], cli: Cli, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, passphrase: str) -> None:
    if passphrase == "first-run-file":
        monkeypatch.delenv("TEGATA_KEY_PASSPHRASE")
    config = tmp_path / "tegata.toml"
    first = cli.ok("demo", "--port", "9000")
    assert demo_env == [("127.0.0.1", 9000)]
    assert tomllib.loads(config.read_text(encoding="utf-8"))["public_base_url"] == (
        "http://127.0.0.1:9000")
    token = re.findall(r"^  (tgt_\S+)$", first.out, re.M)[0]
    assert first.out.endswith(demo_text(9000, token))
    assert first.err == ""
    service = build_service(load_settings())
    try:
        made = issue_one(service, "alice", tenant="demo")
        assert urls_of(made.der) == ("http://127.0.0.1:9000/crl/demo.crl",
                                     "http://127.0.0.1:9000/ocsp")
    finally:
        service.engine.dispose()
    kept = config.read_bytes()
    # a later run on another port keeps the URLs the CA was made with, and says so
    later = cli.ok("demo", "--port", "9001")
    assert demo_env[-1] == ("127.0.0.1", 9001) and config.read_bytes() == kept
    assert later.out.endswith(demo_text(9001, re.findall(r"^  (tgt_\S+)$", later.out, re.M)[0]))
    assert later.err == (
        "warning: the public base URL is http://127.0.0.1:9000 (the CRL, OCSP and caIssuers "
        "URLs of every certificate) but the demo listens on port 9001; the URLs stay as they "
        f"are: change public_base_url in {config} to move them (certificates issued before "
        "keep theirs)\n")
    # on its own port again: nothing to say
    assert cli.ok("demo", "--port", "9000").err == ""


def test_a_configured_base_url_is_never_rewritten(demo_env: list[tuple[str, int]], cli: Cli,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEGATA_PUBLIC_BASE_URL", "https://ca.example.com")
    result = cli.ok("demo", "--port", "9000")
    assert not (tmp_path / "tegata.toml").exists() and result.err == ""
    with sqlite3.connect(tmp_path / "data" / "tegata.db") as db:
        urls = {row[0] for row in db.execute("SELECT crl_url FROM authorities")}
    assert urls == {"https://ca.example.com/crl/root.crl",
                    "https://ca.example.com/crl/default.crl",
                    "https://ca.example.com/crl/demo.crl"}


@pytest.mark.parametrize(("host", "shown"), [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"),
                                             ("::", "127.0.0.1"), ("::1", "[::1]"),
                                             ("192.0.2.10", "192.0.2.10"),
                                             ("ca.local", "ca.local")])
def test_the_demo_shows_an_address_a_browser_opens(host: str, shown: str) -> None:
    assert server.demo_base_url(host, 9000) == f"http://{shown}:9000"
