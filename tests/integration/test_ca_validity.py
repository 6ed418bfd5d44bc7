"""How long the CAs made by ``init`` and ``tenant create`` last: 25 years for the root and
20 for an issuing CA by default, to the second, from the moment they are made
(mutation pass: a default validity moved by a year went unnoticed). A 29 February start ends
on 28 February when the end year has none."""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from ca import profiles
from ca.clock import FixedClock
from ca.service import InitRequest, Service
from tests.moments import MOMENTS


def chain(service: Service, tenant: str) -> tuple[x509.Certificate, x509.Certificate]:
    root, issuing = (x509.load_der_x509_certificate(view.der)
                     for view in service.hierarchy.ca_certificates(tenant))
    return root, issuing


def test_the_root_lasts_25_years_and_an_issuing_ca_20_by_default(bare_service: Service) -> None:
    bare_service.hierarchy.initialize(InitRequest(key_type="ec-p256"))
    bare_service.hierarchy.create_tenant("sakura", display_name="さくら商事")

    for tenant in ("default", "sakura"):
        root, issuing = chain(bare_service, tenant)
        assert root.not_valid_after_utc == MOMENTS.start.replace(year=2051)
        assert issuing.not_valid_after_utc == MOMENTS.start.replace(year=2046)


def test_a_ca_made_on_29_february_ends_on_28_february_unless_its_end_year_is_leap(
        bare_service: Service) -> None:
    clock = bare_service.clock
    assert isinstance(clock, FixedClock)
    clock.advance(MOMENTS.leap_day - clock.now())
    bare_service.hierarchy.initialize(InitRequest(key_type="ec-p256"))

    root, issuing = chain(bare_service, "default")
    assert root.not_valid_after_utc == dt.datetime(2053, 2, 28, 12, 0, tzinfo=dt.UTC)
    assert issuing.not_valid_after_utc == dt.datetime(2048, 2, 29, 12, 0, tzinfo=dt.UTC)


def test_add_years_keeps_the_day_and_time_or_falls_back_to_28_february() -> None:
    assert profiles.add_years(MOMENTS.start, 1) == MOMENTS.start.replace(year=2027)
    assert profiles.add_years(MOMENTS.leap_day, 4) == MOMENTS.leap_day.replace(year=2032)
    assert profiles.add_years(MOMENTS.leap_day, 1) == MOMENTS.leap_day.replace(year=2029, day=28)
