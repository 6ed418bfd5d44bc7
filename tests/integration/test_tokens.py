"""API tokens: shown once, stored hashed, scoped, expiring."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Connection, event, select

from ca.clock import FixedClock
from ca.db.engine import WRITE
from ca.db.models import ApiToken
from ca.errors import AuthenticationFailed, InvalidInput, NotFound
from ca.service import Service


def test_only_the_hash_of_a_token_is_stored(service: Service) -> None:
    token, view = service.tokens.create(role="operator", name="ops")
    with service.database.transaction() as session:
        row = session.scalar(select(ApiToken))
        stored = [str(getattr(row, c.key)) for c in ApiToken.__table__.columns]
    assert all(token not in value for value in stored)
    assert token.startswith(view.prefix)
    principal = service.tokens.authenticate(token)
    assert (principal.role, principal.tenant, principal.name) == ("operator", None, "ops")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"role": "root"}, "role 'root' is not one of"),
     ({"role": "operator", "tenant": "default"}, "operator token spans all tenants"),
     ({"role": "admin"}, "admin token needs a tenant"),
     ({"role": "user", "tenant": "default"}, "user token needs a user"),
     ({"role": "gateway", "tenant": "default", "login": "alice"}, "not tied to a user"),
     ({"role": "admin", "tenant": "default", "valid_for": dt.timedelta(0)}, "positive"),
     ({"role": "admin", "tenant": "default", "timezone": "Mars/Base"}, "IANA")],
    ids=["unknown-role", "scoped-operator", "admin-without-tenant", "user-without-user",
         "gateway-with-user", "zero-lifetime", "bad-zone"],
)
def test_badly_scoped_tokens_are_refused(service: Service, kwargs: dict[str, object],
                                         message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        service.tokens.create(**kwargs)  # type: ignore[arg-type]


def test_tokens_for_unknown_tenants_or_users_are_refused(service: Service) -> None:
    with pytest.raises(NotFound):
        service.tokens.create(role="admin", tenant="nowhere")
    with pytest.raises(NotFound):
        service.tokens.create(role="user", tenant="default", login="ghost")


def test_a_token_stops_working_at_its_expiry(service: Service) -> None:
    token, view = service.tokens.create(role="admin", tenant="default",
                                       valid_for=dt.timedelta(days=1))
    assert view.expires_at == service.clock.now() + dt.timedelta(days=1)
    service.clock.advance(dt.timedelta(hours=23, minutes=59))  # type: ignore[attr-defined]
    service.tokens.authenticate(token)
    service.clock.advance(dt.timedelta(minutes=1))  # type: ignore[attr-defined]
    with pytest.raises(AuthenticationFailed, match="expired"):
        service.tokens.authenticate(token)


@pytest.mark.parametrize("bogus", ["", "tgt_", "tgt_" + "A" * 43, "Bearer x", "tgt_" + "A" * 500])
def test_unknown_tokens_are_refused(service: Service, bogus: str) -> None:
    with pytest.raises(AuthenticationFailed):
        service.tokens.authenticate(bogus)


def test_last_use_is_recorded(service: Service) -> None:
    token, _ = service.tokens.create(role="gateway", tenant="default")
    service.tokens.authenticate(token)
    with service.database.transaction() as session:
        assert session.scalar(select(ApiToken.last_used_at)) == service.clock.now()


def test_last_use_is_written_at_most_once_a_minute(service: Service,
                                                  clock: FixedClock) -> None:
    token, view = service.tokens.create(role="admin", tenant="default", name="佐藤の端末")
    writes: list[dt.datetime] = []

    @event.listens_for(service.engine, "begin")
    def counted(conn: Connection) -> None:  # every write transaction, on SQLite and PostgreSQL
        if conn.get_execution_options().get(WRITE):
            writes.append(service.clock.now())

    first = service.clock.now()
    for step in (0, 30, 29, 1, 59):  # at 0 s, 30 s, 59 s, 60 s and 119 s
        clock.advance(dt.timedelta(seconds=step))
        assert service.tokens.authenticate(token).name == "佐藤の端末"
        assert service.tokens.list_tokens(tenant="default")[0].last_used_at == writes[-1]
    assert writes == [first, first + dt.timedelta(seconds=60)]
    assert view.last_used_at is None


def test_a_revoked_token_stops_working_at_once_and_listing_never_shows_it(
        service: Service) -> None:
    token, view = service.tokens.create(role="admin", tenant="default", name="ci")
    service.tokens.authenticate(token)
    listed = service.tokens.list_tokens(tenant="default")
    assert [(t.id, t.name, t.revoked_at) for t in listed] == [(view.id, "ci", None)]
    assert all(token not in str(t) for t in listed)
    service.tokens.revoke(view.id)
    with pytest.raises(AuthenticationFailed, match="revoked"):
        service.tokens.authenticate(token)
    with pytest.raises(NotFound):
        service.tokens.revoke(view.id, tenant="other")
