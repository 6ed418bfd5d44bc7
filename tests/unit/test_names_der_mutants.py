"""Exact edges of three small pure rules, for the mutation pass's survivors: how a
name is printed for a gateway pin (OpenSSL's RFC 2253 form, byte by byte), where UTCTime
gives way to GeneralizedTime (1950 and 2050), and how many networks an IP policy holds and
how one written with host bits is read."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from ca.errors import InvalidInput
from ca.service import gateway
from ca.x509 import der, names

# --- names: every byte as OpenSSL prints it -----------------------------------------------------


@pytest.mark.parametrize(("value", "printed"), [
    ("さくら", "\\E3\\81\\95\\E3\\81\\8F\\E3\\82\\89"),
    ("Ѐ", "\\D0\\80"),  # 0x80 itself is escaped
    ("\x7f\x1f", "\\7F\\1F"),
    ("a\x20b", "a b"),  # a space inside stays bare
    ("~", "~"),  # 0x7E, the last bare byte
    ("さくら ", "\\E3\\81\\95\\E3\\81\\8F\\E3\\82\\89\\ "),  # trailing space
    ("a ", "a\\ "),
    (" a", "\\ a"),
    ("#a#", "\\#a#"),
    ("#", "#"),  # a lone '#' is bare
    ("a,b+c\"d\\e<f>g;h", "a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h"),
], ids=["japanese", "0x80", "controls", "inner-space", "tilde", "trailing-after-utf8",
        "trailing-space", "leading-space", "leading-hash", "lone-hash", "specials"])
def test_a_value_is_printed_as_openssl_prints_it(value: str, printed: str) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "sakura"),
                      x509.NameAttribute(NameOID.COMMON_NAME, value)])
    assert names.openssl_rfc2253(name) == f"CN={printed},OU=sakura"


def test_an_attribute_without_an_openssl_short_name_is_refused() -> None:
    name = x509.Name([x509.NameAttribute(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), "x")])
    with pytest.raises(ValueError,
                       match=r"no RFC 2253 form for attribute 1\.3\.6\.1\.4\.1\.99999\.1"):
        names.openssl_rfc2253(name)


# --- der: UTCTime 1950 through 2049 -------------------------------------------------------------


@pytest.mark.parametrize(("moment", "encoded"), [
    (dt.datetime(1949, 12, 31, 23, 59, 59, tzinfo=dt.UTC), b"\x18\x0f19491231235959Z"),
    (dt.datetime(1950, 1, 1, tzinfo=dt.UTC), b"\x17\x0d500101000000Z"),
    (dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC), b"\x17\x0d491231235959Z"),
    (dt.datetime(2050, 1, 1, tzinfo=dt.UTC), b"\x18\x0f20500101000000Z"),
    # 2050-01-01 09:00 in Tokyo is still 2049 in UTC
    (dt.datetime(2050, 1, 1, 8, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=9))),
     b"\x17\x0d491231235959Z"),
], ids=["1949", "1950", "2049", "2050", "2049-in-utc"])
def test_utctime_runs_from_1950_through_2049(moment: dt.datetime, encoded: bytes) -> None:
    assert der.time(moment) == encoded


# --- gateway: an IP policy holds at most 1000 networks, host bits ignored ----------------------


def test_an_ip_policy_holds_up_to_1000_networks() -> None:
    networks = [f"10.{i // 256}.{i % 256}.0/24" for i in range(1001)]
    assert len(gateway.parse_networks(networks[:1000])) == 1000
    with pytest.raises(InvalidInput, match="at most 1000 networks"):
        gateway.parse_networks(networks)


def test_a_network_written_with_host_bits_is_taken_as_its_network() -> None:
    assert gateway.parse_networks([" 192.0.2.77/24 ", "2001:db8::1/64"]) == (
        ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/64"))
