"""The commands added for API/CLI parity: `user show`, `tenant show`,
`token revoke --tenant/--json`; their output, their one-line refusals, what they record."""

from __future__ import annotations

import json

import pytest
from cryptography import x509

from tests.support.cli import Cli, Env, as_json


def acme(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme", "--display-name", "株式会社アクメ", "--key-type",
           "ec-p256")
    cli.ok("user", "add", "yamada", "--email", "yamada@example.co.jp", "--name", "山田 太郎",
           "--groups", "営業部;東京", "--allow", "--tenant", "acme")


def test_user_show_prints_one_user(ready_sqlite: Env, cli: Cli) -> None:
    acme(cli)
    assert as_json(cli, "user", "show", "yamada", "--tenant", "acme") == {
        "tenant": "acme", "login": "yamada", "email": "yamada@example.co.jp",
        "display_name": "山田 太郎", "kind": "person", "status": "active",
        "secure_access": True, "groups": ["営業部", "東京"], "certificate_status": "unissued"}
    text = cli.ok("user", "show", "yamada", "--tenant", "acme").out.splitlines()
    assert text[0].split() == ["tenant", "acme"]
    assert "display_name       山田 太郎" in text
    assert "groups             営業部;東京" in text


def test_user_show_of_nobody_is_one_line_and_another_tenants_user_is_nobody(
        ready_sqlite: Env, cli: Cli) -> None:
    acme(cli)
    result = cli("user", "show", "yamada")  # the default tenant's: there is no yamada there
    assert result.error() == "default: no user 'yamada'"
    assert (result.code, result.out) == (1, "")
    result = cli("user", "show", "yamada", "--tenant", "nobody")
    assert result.error() == "no tenant 'nobody'"


def test_user_show_of_a_hostile_login_is_one_line(ready_sqlite: Env, cli: Cli) -> None:
    for login in ("a\nb", "\u202eevil", "x" * 10_000, "../etc"):
        result = cli("user", "show", login)
        assert result.error(), login  # one line, the house prefix, no traceback
        assert result.code in (1, 2) and result.out == "", login


def test_tenant_show_prints_the_ocsp_validity_tenant_set_changes(ready_sqlite: Env,
                                                                 cli: Cli) -> None:
    acme(cli)
    assert as_json(cli, "tenant", "show", "--tenant", "acme") == {
        "tenant": "acme", "ocsp_validity_seconds": 300, "upn_suffix": None,
        "user_download": True, "p12_profile": "compat", "default_validity": "P1Y",
        "timezone": "UTC"}
    cli.ok("tenant", "set", "--ocsp-validity", "120", "--tenant", "acme")
    assert cli.ok("tenant", "show", "--tenant", "acme").out == (
        "tenant acme: OCSP answers valid 120 s\n"
        "  UPN suffix: none (certificates carry no UPN)\n"
        "  users' own downloads: on\n"
        "  default PKCS#12 profile: compat\n"
        "  default validity: P1Y\n")
    assert as_json(cli, "tenant", "show")["ocsp_validity_seconds"] == 300  # default's
    assert cli("tenant", "show", "--tenant", "nobody").error() == "no tenant 'nobody'"


def test_tenant_show_prints_the_upn_suffix_and_user_download_tenant_set_changes(
        ready_sqlite: Env, cli: Cli) -> None:
    acme(cli)
    cli.ok("tenant", "set", "--upn-suffix", "例え.jp", "--user-download", "off",
           "--tenant", "acme")
    assert as_json(cli, "tenant", "show", "--tenant", "acme") == {
        "tenant": "acme", "ocsp_validity_seconds": 300, "upn_suffix": "例え.jp",
        "user_download": False, "p12_profile": "compat", "default_validity": "P1Y",
        "timezone": "UTC"}
    assert cli.ok("tenant", "show", "--tenant", "acme").out == (
        "tenant acme: OCSP answers valid 300 s\n"
        "  UPN suffix: 例え.jp\n"
        "  users' own downloads: off\n"
        "  default PKCS#12 profile: compat\n"
        "  default validity: P1Y\n")
    cli.ok("tenant", "set", "--no-upn-suffix", "--user-download", "on", "--tenant", "acme")
    assert as_json(cli, "tenant", "show", "--tenant", "acme") == {
        "tenant": "acme", "ocsp_validity_seconds": 300, "upn_suffix": None,
        "user_download": True, "p12_profile": "compat", "default_validity": "P1Y",
        "timezone": "UTC"}
    cli.ok("tenant", "set", "--upn-suffix", "example.co.jp", "--user-download", "off")
    # another tenant's settings are its own
    assert as_json(cli, "tenant", "show", "--tenant", "acme")["upn_suffix"] is None
    assert as_json(cli, "tenant", "show") == {
        "tenant": "default", "ocsp_validity_seconds": 300, "upn_suffix": "example.co.jp",
        "user_download": False, "p12_profile": "compat", "default_validity": "P1Y",
        "timezone": "UTC"}


def test_crl_show_defaults_to_the_default_tenant_as_ca_show_does(ready_sqlite: Env,
                                                                 cli: Cli) -> None:
    acme(cli)
    default = as_json(cli, "crl", "show")
    assert default == as_json(cli, "crl", "show", "--tenant", "default")
    assert default["tenant"] == "default"
    assert set(default) == {"tenant", "generation", "number", "this_update", "next_update"}
    assert default["generation"] == 1
    root = as_json(cli, "crl", "show", "--root")
    assert root["tenant"] is None
    assert as_json(cli, "crl", "show", "--tenant", "acme")["tenant"] == "acme"
    crls = {name: x509.load_pem_x509_crl(cli.ok("crl", "show", "--pem", *argv).out.encode())
            for name, argv in (("default", ()), ("acme", ("--tenant", "acme")),
                               ("root", ("--root",)))}
    issuers = {name: crl.issuer.rfc4514_string() for name, crl in crls.items()}
    assert len(set(issuers.values())) == 3  # three CAs' CRLs
    assert "株式会社アクメ" in issuers["acme"]
    assert crls["root"].issuer == x509.load_pem_x509_certificate(
        cli.ok("ca", "show", "--root", "--pem").out.encode()).subject
    assert int(root["number"]) == crls["root"].extensions.get_extension_for_class(
        x509.CRLNumber).value.crl_number
    assert cli("crl", "show", "--root", "--tenant", "acme").error() == (
        "give --root or --tenant, not both")
    assert cli("crl", "show", "--tenant", "nobody").error() == "no tenant 'nobody'"


def test_token_list_never_prints_a_tokens_text(ready_sqlite: Env, cli: Cli) -> None:
    made = [cli.ok("token", "create", "--role", "admin", "--name", "管理者").out.strip(),
            cli.ok("token", "create", "--role", "operator").out.strip()]
    listed = cli.ok("token", "list", "--json").out + cli.ok("token", "list").out
    for text in made:
        assert text not in listed and text[len("tgt_"):] not in listed
    assert [t["name"] for t in as_json(cli, "token", "list")] == [
        "管理者", "operator token"]


def test_token_revoke_with_a_tenant_revokes_only_that_tenants_token(
        ready_sqlite: Env, cli: Cli) -> None:
    acme(cli)
    mine = as_json(cli, "token", "create", "--role", "gateway", "--tenant", "acme",
                   "--name", "アクメ nginx")["id"]
    theirs = as_json(cli, "token", "create", "--role", "admin")["id"]  # default's
    result = cli("token", "revoke", str(theirs), "--tenant", "acme")
    assert result.error() == f"no token {theirs}"
    assert (result.code, result.out) == (1, "")
    assert [e for e in ready_sqlite.rows("audit_events") if e["action"] == "token.revoke"] == []

    revoked = as_json(cli, "token", "revoke", str(mine), "--tenant", "acme")
    assert (revoked["id"], revoked["name"], revoked["tenant"]) == (mine, "アクメ nginx", "acme")
    assert revoked["revoked_at"] is not None
    assert cli.ok("token", "revoke", str(theirs)).out == f"token {theirs} revoked\n"
    events = [(e["actor"], e["target"]) for e in ready_sqlite.rows("audit_events")
              if e["action"] == "token.revoke"]
    assert events == [("cli", f"token:{mine}"), ("cli", f"token:{theirs}")]
    # again: still revoked at the first time, nothing more recorded
    assert as_json(cli, "token", "revoke", str(mine))["revoked_at"] == revoked["revoked_at"]
    assert len([e for e in ready_sqlite.rows("audit_events")
                if e["action"] == "token.revoke"]) == 2


def test_token_revoke_of_an_id_no_token_can_have_is_one_line(ready_sqlite: Env,
                                                            cli: Cli) -> None:
    """One rule: a well-formed id that names no token (beyond the table's range too) is
    not found (1), as for another tenant's token."""
    for token_id in ("999999", str(2**31), str(10**22)):
        result = cli("token", "revoke", token_id)
        assert (result.code, result.out, result.error()) == (1, "", f"no token {token_id}")


@pytest.mark.parametrize("text", ["0", "abc", " 6", "6 ", "+6", "06", "5_0", "1.0", "\uff16", "-1"])
def test_token_revoke_of_a_malformed_id_revokes_nothing(ready_sqlite: Env, cli: Cli,
                                                         text: str) -> None:
    """Only plain ASCII digits without a leading zero: int() would take " 6" as 6 and "5_0"
    as 50, revoking another token than the one meant."""
    made = [as_json(cli, "token", "create", "--role", "admin", "--name", f"管理者{i}")["id"]
            for i in range(6)]
    assert made == [1, 2, 3, 4, 5, 6]
    result = cli("token", "revoke", "--", text)
    assert (result.code, result.out, result.error()) == (2, "", f"{text!r} is not a token id")
    assert [t["revoked_at"] for t in as_json(cli, "token", "list")] == [None] * 6
    assert [e for e in ready_sqlite.rows("audit_events") if e["action"] == "token.revoke"] == []


def test_user_update_changes_the_kind_as_the_api_patch_does(ready_sqlite: Env, cli: Cli) -> None:
    acme(cli)
    t = ("--tenant", "acme")
    assert as_json(cli, "user", "update", "yamada", "--kind", "service", *t)["kind"] == "service"
    assert as_json(cli, "user", "show", "yamada", *t)["kind"] == "service"
    events = [e for e in ready_sqlite.rows("audit_events") if e["action"] == "user.update"]
    assert len(events) == 1 and json.loads(events[0]["details"]) == {"changed": ["kind"]}
    result = cli("user", "update", "yamada", "--kind", "robot", *t)
    assert result.error() == "user kind 'robot' is not person or service"
    assert result.code == 2
    assert as_json(cli, "user", "show", "yamada", *t)["kind"] == "service"


def test_cert_list_pages_as_the_api_does(ready_sqlite: Env, cli: Cli) -> None:
    serials = [as_json(cli, "cert", "issue", "alice")[0]["serial"] for _ in range(3)]
    newest_first = serials[::-1]
    assert [c["serial"] for c in as_json(cli, "cert", "list")] == newest_first
    assert [c["serial"] for c in as_json(cli, "cert", "list", "--limit", "2")] == (
        newest_first[:2])
    assert [c["serial"] for c in as_json(cli, "cert", "list", "--limit", "2",
                                         "--offset", "2")] == newest_first[2:]
    for bad in (("--limit", "0"), ("--limit", "10001"), ("--offset", "-1")):
        result = cli("cert", "list", *bad)
        assert result.code == 2 and result.out == "", bad
        assert result.err.count("\n") == 1 and "Traceback" not in result.err, bad


def test_cert_issue_best_effort_json_is_each_certificate_as_cert_show_and_the_refused(
        ready_sqlite: Env, cli: Cli) -> None:
    acme(cli)
    cli.ok("user", "add", "suzuki", "--email", "suzuki@example.co.jp", "--name", "鈴木 花子",
           "--groups", "営業部", "--tenant", "acme")  # no secure access: refused
    result = cli("cert", "issue", "--group", "営業部", "--best-effort", "--json",
                 "--tenant", "acme")
    assert result.code == 1
    data = json.loads(result.out)
    [issued] = data["issued"]
    [failure] = data["failures"]
    assert data == {
        "issued": [as_json(cli, "cert", "show", issued["serial"], "--tenant", "acme")],
        "failures": [{"login": "suzuki", "reason": failure["reason"]}]}
    assert issued["login"] == "yamada" and issued["tenant"] == "acme"
    assert "permission" in failure["reason"]
    # without --best-effort, --json is the list of certificates, each as cert show has it
    cli.ok("user", "allow", "suzuki", "--tenant", "acme")
    [again] = as_json(cli, "cert", "issue", "suzuki", "--tenant", "acme")
    assert again == as_json(cli, "cert", "show", again["serial"], "--tenant", "acme")
