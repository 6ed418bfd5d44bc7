"""`tegata gateway nginx --auth-include`: a bad path creates nothing, and
a new run for the same include file replaces the token the last one wrote there; an nginx
pin on a CA name two old tenants share is refused."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from pathlib import Path

import pytest

from ca.service import hierarchy
from cli.output import shown
from tests.legacy import legacy_request
from tests.support.cli import Cli, Env, Result

UPSTREAM = ("--upstream", "http://127.0.0.1:9000")


def auth_kit(cli: Cli, include: Path, *extra: str) -> Result:
    return cli("gateway", "nginx", "--mode", "auth", "--auth-include", str(include),
               *UPSTREAM, *extra)


def tokens(env: Env) -> list[tuple[int, str, str, bool]]:
    """(id, role, name, revoked) of every token."""
    return [(row["id"], row["role"], row["name"], row["revoked_at"] is not None)
            for row in sorted(env.rows("api_tokens"), key=lambda row: row["id"])]


def actions(env: Env) -> list[str]:
    return [row["action"] for row in sorted(env.rows("audit_events"), key=lambda r: r["id"])]


def token_in(include: Path) -> str:
    (token,) = re.findall(r'"Bearer (tgt_[A-Za-z0-9_-]+)"', include.read_text())
    return str(token)


def hash_of(env: Env, token_id: int) -> str:
    (row,) = [row for row in env.rows("api_tokens") if row["id"] == token_id]
    return str(row["token_hash"])


@pytest.mark.parametrize("where", ["missing-directory", "a-file-as-directory"])
def test_auth_include_into_a_path_that_cannot_be_written_changes_nothing(
        ready_sqlite: Env, cli: Cli, tmp_path: Path, where: str) -> None:
    (tmp_path / "plain-file").write_text("x")
    include = tmp_path / ("missing" if where == "missing-directory" else "plain-file") / "a.conf"
    before = ready_sqlite.dump()

    result = auth_kit(cli, include)

    assert result.code == 2
    reason = ("No such file or directory" if where == "missing-directory"
              else "Not a directory")
    assert result.error() == f"cannot write {include}: {reason}"
    assert result.out == ""
    assert ready_sqlite.dump() == before  # no token, no audit event
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "plain-file"]
    assert (tmp_path / "plain-file").read_text() == "x"


def test_a_new_run_for_the_same_include_file_replaces_the_token_it_holds(
        ready_sqlite: Env, cli: Cli, tmp_path: Path) -> None:
    include = tmp_path / "acme-auth.conf"
    other = tmp_path / "other-auth.conf"
    name = f"nginx kit {shown(include, 80)}"  # as the kit names it: cut to 80 characters

    first = auth_kit(cli, include)
    kept = auth_kit(cli, other)  # another gateway's file: left alone
    second = auth_kit(cli, include)
    third = auth_kit(cli, include)

    assert [r.code for r in (first, kept, second, third)] == [0, 0, 0, 0]
    assert first.out == second.out == third.out  # the configuration does not change
    assert tokens(ready_sqlite) == [(1, "gateway", name, True),
                                    (2, "gateway", f"nginx kit {shown(other, 80)}", False),
                                    (3, "gateway", name, True),
                                    (4, "gateway", name, False)]
    assert hashlib.sha256(token_in(include).encode()).hexdigest() == hash_of(ready_sqlite, 4)
    assert hashlib.sha256(token_in(other).encode()).hexdigest() == hash_of(ready_sqlite, 2)
    assert stat.S_IMODE(include.stat().st_mode) == 0o600
    assert include.read_text().startswith(
        "# Tegata gateway token 4 of tenant default, written by `tegata gateway nginx "
        "--auth-include`.\n# It does not expire: a new run for this file replaces it; "
        "`tegata token revoke 4` stops it.\n")
    assert actions(ready_sqlite)[-6:] == ["token.create", "token.create",
                                          "token.create", "token.revoke",
                                          "token.create", "token.revoke"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".conf") == [
        "acme-auth.conf", "other-auth.conf"]  # no partial file left


def test_a_token_made_for_a_file_that_then_cannot_be_written_is_revoked_again(
        ready_sqlite: Env, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    include = tmp_path / "auth.conf"
    real_replace = Path.replace

    def failing_replace(self: Path, target: str | os.PathLike[str]) -> Path:
        if Path(target) == include:  # the last step: the whole file taking its name
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", failing_replace)

    result = auth_kit(cli, include)

    assert result.code == 2
    assert result.error() == f"cannot write {include}: Input/output error"
    assert tokens(ready_sqlite) == [(1, "gateway", f"nginx kit {shown(include, 80)}", True)]
    assert actions(ready_sqlite)[-2:] == ["token.create", "token.revoke"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_an_include_file_that_holds_no_tegata_token_is_not_overwritten(
        ready_sqlite: Env, cli: Cli, tmp_path: Path) -> None:
    include = tmp_path / "auth.conf"
    include.write_text("proxy_set_header X-Mine yes;\n")
    before = ready_sqlite.dump()

    result = auth_kit(cli, include)

    assert result.code == 2
    assert result.error() == (f"{include} exists and holds no Tegata gateway token: not "
                              "overwriting it")
    assert include.read_text() == "proxy_set_header X-Mine yes;\n"
    assert ready_sqlite.dump() == before


def test_a_token_the_file_holds_but_that_is_already_revoked_is_left_as_it_is(
        ready_sqlite: Env, cli: Cli, tmp_path: Path) -> None:
    include = tmp_path / "auth.conf"
    cli.ok("gateway", "nginx", "--mode", "auth", "--auth-include", str(include), *UPSTREAM)
    cli.ok("token", "revoke", "1")

    again = auth_kit(cli, include)

    assert again.code == 0, again.err
    assert [(t[0], t[3]) for t in tokens(ready_sqlite)] == [(1, True), (2, False)]
    assert actions(ready_sqlite).count("token.revoke") == 1


def test_an_include_file_holding_another_tenants_live_token_is_not_overwritten(
        ready_sqlite: Env, cli: Cli, tmp_path: Path) -> None:
    cli.ok("tenant", "create", "acme", "--display-name", "株式会社アクメ")
    include = tmp_path / "auth.conf"
    cli.ok("gateway", "nginx", "--mode", "auth", "--auth-include", str(include),
           "--tenant", "acme", *UPSTREAM)
    held = include.read_text()
    before = ready_sqlite.dump()

    result = auth_kit(cli, include)  # for the default tenant, into acme's file

    assert result.code == 2
    assert result.error() == (f"{include} holds the gateway token of tenant acme: another "
                              "tenant's gateway uses it; not overwriting it")
    assert include.read_text() == held
    assert ready_sqlite.dump() == before  # acme's token still live, no new one


def test_a_relative_include_is_written_into_the_configuration_as_an_absolute_path(
        ready_sqlite: Env, cli: Cli, tmp_path: Path) -> None:
    """nginx reads a relative include against its own configuration directory."""
    result = cli("gateway", "nginx", "--mode", "auth", "--auth-include", "rel-auth.conf",
                 *UPSTREAM)
    assert result.code == 0, result.err
    written = Path.cwd() / "rel-auth.conf"
    assert token_in(written)
    includes = [line.strip() for line in result.out.splitlines()
                if line.strip().startswith("include ")]
    assert includes == [f"include {written};"]


@pytest.mark.parametrize("mode", ["ocsp", "crl"])
def test_auth_include_with_a_mode_that_uses_no_token_is_refused(
        ready_sqlite: Env, cli: Cli, tmp_path: Path, mode: str) -> None:
    include = tmp_path / "auth.conf"
    before = ready_sqlite.dump()
    result = cli("gateway", "nginx", "--mode", mode, "--auth-include", str(include),
                 *UPSTREAM)
    assert (result.code, result.out) == (2, "")
    assert result.error() == "--auth-include is for --mode auth (the other modes use no token)"
    assert not include.exists()
    assert ready_sqlite.dump() == before


def two_old_cas_sharing_a_name(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tenants tokyo and osaka made as before CA names were unique: one issuing-CA name for
    both."""
    long_name = "Example Holdings International Corporation Japan Branch "
    with monkeypatch.context() as old:
        old.setattr(hierarchy, "issuing_request", legacy_request)
        old.setattr(hierarchy, "_require_unique_subject", lambda *args: None)
        for tenant in ("tokyo", "osaka"):
            cli.ok("tenant", "create", tenant, "--display-name", long_name + tenant.title(),
                   "--key-type", "ec-p256")


def test_gateway_nginx_refuses_to_pin_a_name_two_old_cas_share(
        ready_sqlite: Env, cli: Cli, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    two_old_cas_sharing_a_name(cli, monkeypatch)

    refused = {mode: cli("gateway", "nginx", "--tenant", "osaka", "--mode", mode, *UPSTREAM)
               for mode in ("ocsp", "crl")}
    auth = cli("gateway", "nginx", "--tenant", "osaka", "--mode", "auth", *UPSTREAM,
               "--auth-include", str(tmp_path / "osaka-auth.conf"))

    assert {mode: (r.code, r.error()) for mode, r in refused.items()} == {
        mode: (1, "tenant 'osaka': its issuing CA has the same name as the CA of tenant "
                  "'tokyo', so a gateway cannot tell their certificates apart by issuer; use "
                  "the auth variant (Tegata checks the serial in this tenant)")
        for mode in ("ocsp", "crl")}
    assert auth.code == 0, auth.err  # the auth variant pins nothing: Tegata checks
    assert "ssl_client_i_dn" not in auth.out


def test_gateway_haproxy_refuses_to_pin_a_name_two_old_cas_share(
        ready_sqlite: Env, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    two_old_cas_sharing_a_name(cli, monkeypatch)
    cli.ok("tenant", "create", "acme", "--display-name", "株式会社アクメ", "--key-type",
           "ec-p256")

    refused = {tenant: cli("gateway", "haproxy", "--tenant", tenant, "--upstream",
                           "127.0.0.1:9000") for tenant in ("tokyo", "osaka")}
    fine = cli("gateway", "haproxy", "--tenant", "acme", "--upstream", "127.0.0.1:9000")

    assert {tenant: (r.code, r.out, r.error()) for tenant, r in refused.items()} == {
        tenant: (1, "", f"tenant {tenant!r}: its issuing CA has the same name as the CA of "
                        f"tenant {other!r}, so a gateway cannot tell their certificates apart "
                        "by issuer; use the auth variant (Tegata checks the serial in this "
                        "tenant)")
        for tenant, other in (("tokyo", "osaka"), ("osaka", "tokyo"))}
    assert fine.code == 0, fine.err
    assert "ssl_c_i_dn(,0,rfc2253),hex -m str " in fine.out
