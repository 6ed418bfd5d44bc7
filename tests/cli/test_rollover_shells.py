"""Rollover through both shells: `tegata ca rollover` and ``POST .../ca/rollover`` make the
same next generation; `tegata ca show --all` and ``GET /api/v1/ca/generations`` are the same
JSON; each generation's CRL is served at its own URL; bad input is refused with one line
(CLI) or a problem (API), nothing made."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from api.app import build_app
from ca.clock import FixedClock
from ca.service import build_service
from ca.settings import load_settings
from cli import crlsync
from tests.support.cli import Cli, Env, as_json
from tests.support.environment import BASE_URL
from tests.support.http import bearer

ACME = "/api/v1/tenants/acme"


@pytest.fixture
def api(env: Env, cli: Cli, cli_clock: FixedClock) -> Iterator[TestClient]:
    """A CA made by the CLI with tenant acme, and the API over the same database, as its
    operator."""
    cli.ok("init", "--key-type", "ec-p256")
    cli.ok("tenant", "create", "acme", "--key-type", "ec-p256")
    operator = cli.ok("token", "create", "--role", "operator").out.strip()
    service = build_service(load_settings(public_base_url=BASE_URL), clock=cli_clock)
    client = TestClient(build_app(service.settings, service=service),
                        raise_server_exceptions=False)
    client.headers.update(bearer(operator))
    yield client
    service.engine.dispose()


def idp(der: bytes) -> str:
    point = x509.load_der_x509_crl(der).extensions.get_extension_for_class(
        x509.IssuingDistributionPoint).value
    assert point.full_name is not None
    return str(point.full_name[0].value)


def test_either_shell_rolls_over_and_lists_every_generation_alike(api: TestClient,
                                                                   cli: Cli) -> None:
    made = as_json(cli, "ca", "rollover", "--tenant", "acme")
    r = api.post(f"{ACME}/ca/rollover", json={"key_type": "ec-p384"})
    assert r.status_code == 201, r.text
    over_the_api = r.json()
    on_the_cli = as_json(cli, "ca", "show", "--all")
    r = api.get("/api/v1/ca/generations")
    assert r.status_code == 200, r.text
    assert on_the_cli == r.json()
    rows = [(g["tenant"], g["kind"], g["generation"], g["current"], g["live_certificates"])
            for g in on_the_cli]
    assert rows == [(None, "root", 1, True, 0), ("acme", "issuing", 1, False, 0),
                    ("acme", "issuing", 2, False, 0), ("acme", "issuing", 3, True, 0),
                    ("default", "issuing", 1, True, 0)]
    assert [g["serial"] for g in on_the_cli[2:4]] == [made["serial"], over_the_api["serial"]]
    assert len({g["subject"] for g in on_the_cli[1:4]}) == 1  # one name, three keys
    # the chain: every generation in service, the current first, then the root
    chain = as_json(cli, "ca", "show", "--tenant", "acme")
    assert [c["serial"] for c in chain] == [g["serial"] for g in
                                            (on_the_cli[3], on_the_cli[2], on_the_cli[1],
                                             on_the_cli[0])]
    assert chain == api.get(f"{ACME}/ca").json()
    text = cli.ok("ca", "show", "--all").out.splitlines()
    assert [line.split()[:4] for line in text] == [
        ["root", "root", "g1", "current"], ["acme", "issuing", "g1", "in"],
        ["acme", "issuing", "g2", "in"], ["acme", "issuing", "g3", "current"],
        ["default", "issuing", "g1", "current"]]


def test_each_generation_has_its_crl_at_its_own_url(api: TestClient, cli: Cli) -> None:
    cli.ok("ca", "rollover", "--tenant", "acme")
    for name in ("acme.crl", "acme.g2.crl"):
        r = api.get(f"/crl/{name}")
        assert r.status_code == 200, (name, r.text)
        assert idp(r.content) == f"{BASE_URL}/crl/{name}"
    for name in ("acme.g1.crl", "acme.g3.crl", "root.g2.crl", "acme.g02.crl"):
        assert api.get(f"/crl/{name}").status_code == 404, name
    r = api.get("/crl/acme-chain.pem")
    assert r.status_code == 200
    crls = crlsync.split(r.content)
    assert [idp(c.public_bytes(serialization.Encoding.DER)) for c in crls[:2]] == [
        f"{BASE_URL}/crl/acme.g2.crl", f"{BASE_URL}/crl/acme.crl"]
    assert len(crls) == 3
    assert r.headers["ETag"].count("-") == 2  # changes with any of its three CRLs


@pytest.mark.parametrize("argv, code, message", [
    (("--tenant", "nosuch"), 1, "no tenant 'nosuch'"),
    (("--tenant", "acme", "--key-type", "dsa-1024"), 2,
     "CA key type 'dsa-1024' is not one of ec-p384, ec-p256, rsa-3072, rsa-4096"),
], ids=["unknown-tenant", "unknown-key-type"])
def test_the_cli_refuses_a_bad_rollover_and_makes_nothing(
        api: TestClient, cli: Cli, argv: tuple[str, ...], code: int, message: str) -> None:
    before = as_json(cli, "ca", "show", "--all")
    result = cli("ca", "rollover", *argv)
    assert result.error() == message
    assert result.code == code
    assert as_json(cli, "ca", "show", "--all") == before


def test_the_api_refuses_a_bad_rollover_with_a_problem(api: TestClient, cli: Cli) -> None:
    r = api.post("/api/v1/tenants/nosuch/ca/rollover", json={})
    assert (r.status_code, r.headers["content-type"]) == (404, "application/problem+json")
    r = api.post(f"{ACME}/ca/rollover", json={"key_type": "dsa-1024"})
    assert (r.status_code, r.headers["content-type"]) == (400, "application/problem+json")
    assert len(as_json(cli, "ca", "show", "--all")) == 3


def test_ca_show_all_takes_no_other_choice(api: TestClient, cli: Cli) -> None:
    assert cli("ca", "show", "--all", "--root").error() == \
        "--all shows every CA: give no --root, --tenant or --pem"


def test_either_shell_rolls_the_root_over_and_shows_the_links_alike(api: TestClient,
                                                                     cli: Cli) -> None:
    made = as_json(cli, "ca", "rollover", "--root")
    assert made["subject"] == "CN=Tegata Root CA G2,O=Tegata"
    r = api.post("/api/v1/ca/rollover", json={})
    assert r.status_code == 201, r.text
    assert r.json()["subject"] == "CN=Tegata Root CA G3,O=Tegata"
    links = as_json(cli, "ca", "show", "--links")
    assert links == api.get("/api/v1/ca/links").json()
    assert [link["subject"] for link in links] == [
        "CN=Tegata Root CA G2,O=Tegata", "CN=Tegata Root CA,O=Tegata",
        "CN=Tegata Root CA G3,O=Tegata", "CN=Tegata Root CA G2,O=Tegata"]
    assert cli.ok("ca", "show", "--links", "--pem").out == "".join(
        link["pem"] for link in links)
    assert as_json(cli, "ca", "show", "--root")[0]["serial"] == r.json()["serial"]
    for name in ("root.crl", "root.g2.crl", "root.g3.crl"):
        got = api.get(f"/crl/{name}")
        assert got.status_code == 200, name
    assert api.get("/crl/root.g4.crl").status_code == 404
    assert cli("ca", "rollover", "--root", "--tenant", "acme").error() == \
        "give --root or --tenant, not both"


def ca_issuers(der: bytes) -> str:
    access = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.AuthorityInformationAccess).value
    (url,) = [a.access_location.value for a in access
              if a.access_method == x509.AuthorityInformationAccessOID.CA_ISSUERS]
    return str(url)


def test_each_generation_is_served_where_its_certificates_caissuers_say(
        api: TestClient, cli: Cli) -> None:
    cli.ok("user", "add", "alice", "--email", "alice@example.com", "--allow", "--tenant",
           "acme")
    (old,) = as_json(cli, "cert", "issue", "alice", "--tenant", "acme")
    cli.ok("ca", "rollover", "--root")
    second = as_json(cli, "ca", "rollover", "--tenant", "acme")
    (new,) = as_json(cli, "cert", "issue", "alice", "--tenant", "acme")
    chain = as_json(cli, "ca", "show", "--tenant", "acme")
    by_serial = {c["serial"]: x509.load_pem_x509_certificate(c["pem"].encode())
                 for c in chain}
    for leaf in (old, new, second, *chain[1:2]):
        der = x509.load_pem_x509_certificate(leaf["pem"].encode()).public_bytes(
            serialization.Encoding.DER)
        url = ca_issuers(der)
        got = api.get(url.removeprefix(BASE_URL))
        assert got.status_code == 200, url
        issuer = x509.load_der_x509_certificate(got.content)
        x509.load_der_x509_certificate(der).verify_directly_issued_by(issuer)
        assert format(issuer.serial_number, "X") in by_serial
    assert ca_issuers(x509.load_pem_x509_certificate(new["pem"].encode()).public_bytes(
        serialization.Encoding.DER)) == f"{BASE_URL}/ca/acme.g2.crt"
    assert ca_issuers(x509.load_pem_x509_certificate(second["pem"].encode()).public_bytes(
        serialization.Encoding.DER)) == f"{BASE_URL}/ca/root.g2.crt"
    for missing in ("acme.g3.crt", "acme.g1.crt", "root.g3.crt"):
        assert api.get(f"/ca/{missing}").status_code == 404, missing


def test_crl_show_and_export_say_which_generation_and_take_one(api: TestClient, cli: Cli,
                                                              tmp_path: Path) -> None:
    """After a rollover `crl show` names the generation it shows (the one that issues
    now); --generation 1 is the CRL GET /crl/acme.crl serves; `crl export` alike."""
    cli.ok("ca", "rollover", "--tenant", "acme")
    served = x509.load_der_x509_crl(api.get("/crl/acme.crl").content)
    first = as_json(cli, "crl", "show", "--tenant", "acme", "--generation", "1")
    number = served.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert (first["generation"], first["number"]) == (1, number)
    shown_now = cli.ok("crl", "show", "--tenant", "acme").out
    assert shown_now.startswith("CRL ") and " of generation 2: " in shown_now
    assert as_json(cli, "crl", "show", "--tenant", "acme")["generation"] == 2
    pem = cli.ok("crl", "show", "--tenant", "acme", "--pem", "-g", "1").out.encode()
    assert idp(x509.load_pem_x509_crl(pem).public_bytes(serialization.Encoding.DER)) == \
        f"{BASE_URL}/crl/acme.crl"
    out = tmp_path / "g1.crl"
    wrote = cli.ok("crl", "export", "--tenant", "acme", "--generation", "1", "--der",
                   "--out", str(out)).out
    assert wrote.strip().endswith(", generation 1)")
    assert idp(out.read_bytes()) == f"{BASE_URL}/crl/acme.crl"
    assert cli("crl", "export", "--tenant", "acme", "--chain", "-g", "1", "--out",
               str(tmp_path / "x.pem")).error() == (
        "--chain holds every generation: give --chain or --generation, not both")
