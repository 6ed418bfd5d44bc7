"""``Gateway.live_token``: which token text in an nginx include file still counts as the
kit's live gateway token (mutation-pass survivors: the expiry compared with ``>=``, the role
check turned around). The same edges as ``Tokens.authenticate``: a token stops at its expiry,
to the second."""

from __future__ import annotations

import datetime as dt

import pytest

from ca.clock import FixedClock
from ca.service import Service

DAY = dt.timedelta(days=1)
SECOND = dt.timedelta(seconds=1)


def advance(service: Service, by: dt.timedelta) -> None:
    clock = service.clock
    assert isinstance(clock, FixedClock)
    clock.advance(by)


def test_a_gateway_token_is_live_until_the_second_before_its_expiry(service: Service) -> None:
    token, view = service.tokens.create(role="gateway", tenant="default", valid_for=DAY)

    assert service.gateway.live_token(token) == ("default", view.id)
    advance(service, DAY - SECOND)
    assert service.gateway.live_token(token) == ("default", view.id)


def test_a_gateway_token_expiring_exactly_now_is_not_live(service: Service) -> None:
    token, _view = service.tokens.create(role="gateway", tenant="default", valid_for=DAY)
    advance(service, DAY)

    assert service.gateway.live_token(token) is None
    advance(service, SECOND)
    assert service.gateway.live_token(token) is None


def test_a_gateway_token_without_expiry_stays_live(service: Service) -> None:
    token, view = service.tokens.create(role="gateway", tenant="default")
    advance(service, 3650 * DAY)

    assert service.gateway.live_token(token) == ("default", view.id)


@pytest.mark.parametrize(("role", "login"), [("admin", None), ("user", "tanaka")],
                         ids=["admin", "user"])
def test_a_live_token_of_another_role_is_not_the_kits_gateway_token(
        service: Service, role: str, login: str | None) -> None:
    if login is not None:
        service.users.add("default", login, email="tanaka@example.jp", allow=True)
    gateway_token, gateway = service.tokens.create(role="gateway", tenant="default")
    other, _view = service.tokens.create(role=role, tenant="default", login=login)

    assert service.gateway.live_token(other) is None
    assert service.gateway.live_token(gateway_token) == ("default", gateway.id)


def test_a_revoked_or_unknown_gateway_token_is_not_live(service: Service) -> None:
    token, view = service.tokens.create(role="gateway", tenant="default")
    service.tokens.revoke(view.id)

    assert service.gateway.live_token(token) is None
    assert service.gateway.live_token("tgt_" + "A" * 43) is None
