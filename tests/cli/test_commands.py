"""The happy paths of ``tegata``: what each command prints, for people and with --json."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable

import pytest
from cryptography import x509

from tests.support.cli import Cli, Env, as_json, issue

SERIAL = re.compile(r"[0-9A-F]{1,40}")
CA_KEYS = {"tenant", "kind", "subject", "serial", "not_before", "not_after", "pem"}
CERT_KEYS = {"serial", "tenant", "login", "subject", "state", "not_before", "not_after",
             "expiry_date", "expiry_zone", "fingerprint_sha256", "key_type", "source"}


def test_init_then_user_add_then_cert_issue_prints_serial_and_not_after(env: Env,
                                                                        cli: Cli) -> None:
    assert "root CA" in cli.ok("init").out  # the real defaults: EC P-384
    added = cli.ok("user", "add", "alice", "--email", "alice@example.com", "--allow").out
    assert "alice" in added

    out = cli.ok("cert", "issue", "alice").out
    serial_match = re.search(r"\bserial ([0-9A-F]{1,40})\n", out)
    not_after_match = re.search(r"\bnotAfter (\S+)", out)
    assert serial_match and not_after_match, out
    serial = serial_match[1]

    cert = x509.load_pem_x509_certificate(cli.ok("cert", "show", serial, "--pem").out.encode())
    assert format(cert.serial_number, "X") == serial
    shown = dt.datetime.fromisoformat(not_after_match[1])
    assert shown == cert.not_valid_after_utc


def test_init_json_names_the_root_and_the_default_tenant(env: Env, cli: Cli) -> None:
    data = as_json(cli, "init", "--key-type", "ec-p256")
    assert isinstance(data, dict)
    assert data["tenant"] == "default"
    assert set(data["root"]) >= CA_KEYS
    assert data["root"]["kind"] == "root"
    root = x509.load_pem_x509_certificate(data["root"]["pem"].encode())
    assert format(root.serial_number, "X") == data["root"]["serial"]


def test_user_add_json_echoes_the_user(env: Env, cli: Cli) -> None:
    cli.ok("init", "--key-type", "ec-p256")
    data = as_json(cli, "user", "add", "alice", "--email", "alice@example.com", "--allow")
    assert {k: data[k] for k in ("tenant", "login", "secure_access")} == {
        "tenant": "default", "login": "alice", "secure_access": True}
    assert data["certificate_status"] == "unissued" and data["groups"] == []


def test_cert_issue_and_cert_show_json_describe_the_same_valid_certificate(
        ready: Env, cli: Cli) -> None:
    issued = issue(cli)
    assert set(issued) >= CERT_KEYS
    assert SERIAL.fullmatch(str(issued["serial"]))
    assert issued["login"] == "alice" and issued["tenant"] == "default"
    assert issued["state"] == "valid"
    assert dt.datetime.fromisoformat(str(issued["not_after"])).tzinfo is not None

    shown = as_json(cli, "cert", "show", str(issued["serial"]))
    assert shown == issued


def test_ca_show_json_lists_the_tenants_issuing_ca_then_the_root(ready: Env, cli: Cli) -> None:
    data = as_json(cli, "ca", "show", "--tenant", "default")
    assert isinstance(data, list)
    assert [item["kind"] for item in data] == ["issuing", "root"]
    assert all(set(item) >= CA_KEYS for item in data)
    assert data[0]["tenant"] == "default" and data[1]["tenant"] is None


def test_ca_show_defaults_to_the_default_tenant_as_every_command_does(
        ready: Env, cli: Cli) -> None:
    assert as_json(cli, "ca", "show") == as_json(cli, "ca", "show", "--tenant", "default")


def test_ca_show_root_shows_the_root_alone(ready: Env, cli: Cli) -> None:
    data = as_json(cli, "ca", "show", "--root")
    assert isinstance(data, list)
    assert [(item["kind"], item["tenant"]) for item in data] == [("root", None)]
    (root,) = x509.load_pem_x509_certificates(cli.ok("ca", "show", "--root", "--pem")
                                              .out.encode())
    assert root.subject == root.issuer


def test_ca_show_root_with_a_tenant_is_refused_in_one_line(ready: Env, cli: Cli) -> None:
    result = cli("ca", "show", "--root", "--tenant", "default")
    assert result.error() == "give --root or --tenant, not both"
    assert result.code == 2 and result.out == ""


def test_ca_show_pem_and_the_gateway_bundle_print_one_chain_in_one_order(
        ready: Env, cli: Cli) -> None:
    cli.ok("tenant", "create", "acme", "--key-type", "ec-p256")
    for tenant in ("default", "acme"):
        shown = cli.ok("ca", "show", "--tenant", tenant, "--pem").out
        assert shown == cli.ok("gateway", "ca-bundle", "--tenant", tenant).out
        issuing, root = x509.load_pem_x509_certificates(shown.encode())
        issuing.verify_directly_issued_by(root)


def test_tenant_create_and_list_json(ready: Env, cli: Cli) -> None:
    created = as_json(cli, "tenant", "create", "acme", "--key-type", "ec-p256")
    assert isinstance(created, dict)
    assert set(created) >= CA_KEYS
    assert created["kind"] == "issuing" and created["tenant"] == "acme"
    assert as_json(cli, "tenant", "list") == ["acme", "default"]


def test_token_create_json_carries_the_token_once(ready: Env, cli: Cli) -> None:
    data = as_json(cli, "token", "create", "--role", "admin", "--tenant", "default")
    assert isinstance(data, dict)
    assert {"token", "id", "role", "tenant", "user", "expires_at"} <= set(data)
    assert str(data["token"]).startswith("tgt_")
    assert data["role"] == "admin" and data["tenant"] == "default"


def test_ca_show_pem_prints_exactly_the_issuing_ca_then_the_root(ready: Env, cli: Cli) -> None:
    out = cli.ok("ca", "show", "--tenant", "default", "--pem").out
    assert out.count("-----BEGIN CERTIFICATE-----") == 2
    assert out.count("-----END CERTIFICATE-----") == 2
    issuing, root = x509.load_pem_x509_certificates(out.encode())
    assert root.subject == root.issuer
    root.verify_directly_issued_by(root)
    assert issuing.issuer == root.subject
    issuing.verify_directly_issued_by(root)
    assert issuing.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_cert_show_pem_prints_one_certificate(ready: Env, cli: Cli) -> None:
    serial = str(issue(cli)["serial"])
    out = cli.ok("cert", "show", serial, "--pem").out
    assert out.count("-----BEGIN CERTIFICATE-----") == 1
    assert out.strip().endswith("-----END CERTIFICATE-----")
    cert = x509.load_pem_x509_certificate(out.encode())
    assert format(cert.serial_number, "X") == serial


def _colon_hex(serial: str) -> str:
    digits = serial.lower().rjust(len(serial) + len(serial) % 2, "0")
    return ":".join(digits[i:i + 2] for i in range(0, len(digits), 2))


SPELLINGS: dict[str, Callable[[str], str]] = {
    "lowercase": str.lower,
    "colon-separated": _colon_hex,
    "0x-prefixed": lambda s: "0x" + s.lower(),
    "leading-zeros": lambda s: "0000" + s,
}


@pytest.mark.parametrize("spelling", SPELLINGS.values(), ids=SPELLINGS.keys())
def test_cert_show_accepts_any_spelling_of_the_serial(ready: Env, cli: Cli,
                                                      spelling: Callable[[str], str]) -> None:
    serial = str(issue(cli)["serial"])
    shown = as_json(cli, "cert", "show", spelling(serial))
    assert isinstance(shown, dict)
    assert shown["serial"] == serial


def test_a_certificate_issued_in_a_new_tenant_is_signed_by_that_tenants_issuing_ca(
        ready: Env, cli: Cli) -> None:
    cli.ok("tenant", "create", "acme", "--key-type", "ec-p256")
    cli.ok("user", "add", "bob", "--email", "bob@example.com", "--allow", "--tenant", "acme")
    issued = issue(cli, "bob", "--tenant", "acme")
    assert issued["tenant"] == "acme"

    leaf = x509.load_pem_x509_certificate(
        cli.ok("cert", "show", str(issued["serial"]), "--pem").out.encode())
    acme, _ = x509.load_pem_x509_certificates(
        cli.ok("ca", "show", "--tenant", "acme", "--pem").out.encode())
    default, _ = x509.load_pem_x509_certificates(
        cli.ok("ca", "show", "--tenant", "default", "--pem").out.encode())
    assert leaf.issuer == acme.subject != default.subject
    leaf.verify_directly_issued_by(acme)


def test_token_create_prints_a_tgt_token_and_the_database_keeps_only_its_sha256(
        ready: Env, cli: Cli) -> None:
    token = cli.ok("token", "create", "--role", "admin", "--tenant", "default").out.strip()
    assert re.fullmatch(r"tgt_[A-Za-z0-9_-]{40,}", token)

    database = ready.dump()
    rows = database["api_tokens"]
    assert len(rows) == 1
    assert rows[0]["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    # no column of any table, api_tokens and the audit log included, holds the token text
    for table, table_rows in database.items():
        for row in table_rows:
            for column, value in row.items():
                text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                assert token not in text, f"{table}.{column} holds the token"
                assert token[4:] not in text, f"{table}.{column} holds the token's secret part"


def test_db_current_shows_the_database_at_this_releases_revision(ready: Env, cli: Cli) -> None:
    from ca.db import migrate

    data = as_json(cli, "db", "current")
    assert data == {"database": migrate.head_revision(), "release": migrate.head_revision()}


def test_gateway_nginx_uses_the_tenants_ocsp_validity(ready: Env, cli: Cli) -> None:
    cli.ok("tenant", "set", "--ocsp-validity", "120")
    text = cli.ok("gateway", "nginx", "--upstream", "http://127.0.0.1:9000").out
    # resumption is off: the validity is what a revocation waits for, and says so
    assert ("    # tenant's OCSP validity (120 s): the longest a revocation takes to show "
            "here\n") in text
    assert "ssl_session_timeout" not in text
