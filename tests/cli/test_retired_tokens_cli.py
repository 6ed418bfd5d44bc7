"""Tokens do not outlive their owner, through the CLI: `tegata user
retire` revokes the user's tokens (the service then refuses them over HTTP), and `tegata
token create` for a retired user fails with one line and changes nothing."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from api.app import build_app
from ca.settings import load_settings
from tests.support.cli import Cli, Env

T = ("--tenant", "acme")


def test_retiring_revokes_the_users_tokens_and_none_can_be_made_for_them(
        ready_sqlite: Env, cli: Cli) -> None:
    cli.ok("tenant", "create", "acme", "--display-name", "株式会社アクメ",
           "--key-type", "ec-p256")
    cli.ok("user", "add", "yamada", "--email", "yamada@example.co.jp", "--name", "山田 太郎",
           "--allow", *T)
    cli.ok("user", "add", "bob", "--email", "bob@example.co.jp", "--allow", *T)
    made = {login: json.loads(cli.ok("token", "create", "--role", "user", "--user", login,
                                     "--name", f"{login} laptop", *T, "--json").out)
            for login in ("yamada", "bob")}
    client = TestClient(build_app(load_settings()), raise_server_exceptions=False)

    def whoami(login: str) -> int:
        return client.get("/api/v1/whoami", headers={
            "Authorization": f"Bearer {made[login]['token']}"}).status_code

    assert (whoami("yamada"), whoami("bob")) == (200, 200)

    cli.ok("user", "retire", "yamada", *T)

    listed = json.loads(cli.ok("token", "list", *T, "--json").out)
    assert {(t["id"], t["user"], t["revoked_at"] is not None) for t in listed} == {
        (made["yamada"]["id"], "yamada", True), (made["bob"]["id"], "bob", False)}
    assert (whoami("yamada"), whoami("bob")) == (401, 200)
    events = json.loads(cli.ok("audit", "list", "--action", "token.revoke", "--json").out)
    assert [(e["target"], e["details"]) for e in events] == [
        (f"token:{made['yamada']['id']}", {"cause": "user.retire"})]

    before = ready_sqlite.rows("api_tokens")
    refused = cli("token", "create", "--role", "user", "--user", "yamada", *T)
    assert (refused.code, refused.error()) == (
        1, "acme/yamada is retired: a retired user gets no token")
    assert ready_sqlite.rows("api_tokens") == before
