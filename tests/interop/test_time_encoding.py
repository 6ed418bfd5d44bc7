"""RFC 5280, 4.1.2.5: validity dates through 2049 are UTCTime, from 2050 GeneralizedTime.
Judged by ``openssl asn1parse`` on the DER, not by the library that wrote it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ca.clock import FixedClock
from ca.service import Service
from tests.support.tools import load, run, write_chain

pytestmark = pytest.mark.interop

# Late enough that a leaf expiring in 2060 still lies inside its issuing CA's 20 years, so
# that the encoding is tested whatever Tegata does about leaves that outlive their issuer.
LATE = dt.datetime(2045, 6, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def clock() -> FixedClock:
    """Overrides tests/conftest.py's clock for this module."""
    return FixedClock(LATE)


def validity_times(openssl: str, pem: Path) -> list[tuple[str, str]]:
    """(type, value) of notBefore and notAfter, as asn1parse reads them from the DER."""
    result = run(openssl, "asn1parse", "-in", str(pem))
    assert result.returncode == 0, result.stderr
    times = []
    for line in result.stdout.splitlines():
        if "d=3" in line and ("UTCTIME" in line or "GENERALIZEDTIME" in line):
            kind = "GENERALIZEDTIME" if "GENERALIZEDTIME" in line else "UTCTIME"
            times.append((kind, line.rsplit(":", 1)[1]))
    assert len(times) == 2, result.stdout  # the validity is the only time in the TBS
    return times


@pytest.mark.parametrize(("expires", "zone", "not_after"), [
    (dt.date(2049, 12, 31), "UTC", ("UTCTIME", "491231235959Z")),
    (dt.date(2049, 12, 31), "Asia/Tokyo", ("UTCTIME", "491231145959Z")),
    (dt.date(2049, 12, 31), "America/Los_Angeles", ("GENERALIZEDTIME", "20500101075959Z")),
    (dt.date(2050, 1, 1), "UTC", ("GENERALIZEDTIME", "20500101235959Z")),
    (dt.date(2060, 1, 1), "UTC", ("GENERALIZEDTIME", "20600101235959Z")),
], ids=["2049-utc", "2049-tokyo", "2049-los-angeles-ends-in-2050", "2050-utc", "2060-utc"])
def test_not_after_is_utctime_before_2050_and_generalizedtime_from_2050(
        openssl: str, service: Service, tmp_path: Path, expires: dt.date, zone: str,
        not_after: tuple[str, str]) -> None:
    chain = write_chain(service, tmp_path, expires=expires, timezone=zone)
    assert load(chain.issuing).not_valid_after_utc >= load(chain.leaf).not_valid_after_utc
    not_before = ("UTCTIME", f"{(LATE - dt.timedelta(minutes=5)):%y%m%d%H%M%S}Z")
    assert validity_times(openssl, chain.leaf) == [not_before, not_after]


def test_a_ca_ending_after_2049_is_encoded_with_generalizedtime(openssl: str,
                                                                service: Service,
                                                                tmp_path: Path) -> None:
    chain = write_chain(service, tmp_path)
    assert validity_times(openssl, chain.root)[1] == ("GENERALIZEDTIME", "20700601090000Z")
    assert validity_times(openssl, chain.issuing)[1] == ("GENERALIZEDTIME", "20650601090000Z")
