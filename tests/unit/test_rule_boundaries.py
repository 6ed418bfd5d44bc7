"""The exact edges of the small pure rules: each limit is accepted at its value and refused
one past it. Written for the mutants that survived the mutation pass over ca/
(a limit moved by one, a check dropped, a comparison flipped went unnoticed)."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from ca import csvio, expiry, sealing, serials, tokens, validate
from ca.errors import ConfigError, InvalidInput
from ca.x509 import crl, csr

# --- serials ----------------------------------------------------------------------------------


def test_the_smallest_serial_is_one() -> None:
    assert serials.to_text(1) == "1"
    assert serials.parse("1") == 1
    assert serials.parse("0x01") == 1
    assert serials.canonical("00:01") == "1"


def test_the_largest_serial_typed_is_forty_hex_digits() -> None:
    # "1 .. 2^160-1": forty hex digits, the top bit set included
    assert serials.parse("F" * 40) == 2**160 - 1
    assert serials.parse("8" + "0" * 39) == 2**159
    with pytest.raises(InvalidInput, match="serial"):
        serials.parse("1" + "0" * 40)


def test_leading_zeros_are_padding_up_to_64_characters_in_all() -> None:
    # 64 characters of text (24 zeros, then 40 digits) are one serial; 65 are refused before
    # any work, whatever their zeros
    assert serials.parse("0" * 24 + "F" * 40) == 2**160 - 1
    assert serials.parse("0" * 63 + "7") == 7
    with pytest.raises(InvalidInput, match="serial"):
        serials.parse("0" * 64 + "7")
    with pytest.raises(InvalidInput, match="serial"):
        serials.parse("0" * 25 + "F" * 40)


# --- e-mail, groups, display text ---------------------------------------------------------


def address(length: int) -> str:
    domain = "@" + ".".join(["a" * 63, "b" * 63, "example"])  # a valid domain of 136 chars
    return "x" * (length - len(domain)) + domain


def test_an_address_of_254_characters_is_accepted_and_255_refused() -> None:
    assert validate.email(address(254)) == address(254)
    with pytest.raises(InvalidInput, match="e-mail"):
        validate.email(address(255))


def test_a_group_name_is_at_most_100_characters() -> None:
    name = "営業部" + "あ" * 97
    assert validate.group_name(name) == name
    with pytest.raises(InvalidInput, match="longer than 100 characters"):
        validate.group_name(name + "い")


@pytest.mark.parametrize("blank", ["", "   ", "\u3000"], ids=["empty", "spaces",
                                                             "ideographic-space"])
def test_a_group_needs_a_name(blank: str) -> None:
    with pytest.raises(InvalidInput, match="a group needs a name"):
        validate.group_name(blank)


@pytest.mark.parametrize("name", ["営業;経理", ";", "sales;"])
def test_a_group_name_never_holds_the_csv_separator(name: str) -> None:
    with pytest.raises(InvalidInput, match="must not contain ';'"):
        validate.group_name(name)


def test_display_text_is_at_most_its_limit() -> None:
    text = "山" * 200
    assert validate.display_text(text, field="display_name") == text
    with pytest.raises(InvalidInput, match="longer than 200 characters"):
        validate.display_text(text + "田", field="display_name")
    assert validate.display_text("x" * 64, field="organization", limit=64) == "x" * 64
    with pytest.raises(InvalidInput, match="longer than 64 characters"):
        validate.display_text("x" * 65, field="organization", limit=64)


def test_a_upn_suffix_ending_in_digits_is_refused_and_digits_elsewhere_are_not() -> None:
    with pytest.raises(InvalidInput, match="not an IP address"):
        validate.upn_suffix("example.123")
    assert validate.upn_suffix("123.example") == "123.example"
    assert validate.upn_suffix("corp.7eleven.jp") == "corp.7eleven.jp"


# --- tokens -------------------------------------------------------------------------------


def test_a_token_carries_256_random_bits_after_its_prefix() -> None:
    token = tokens.generate()
    assert token.startswith(tokens.PREFIX)
    body = token[len(tokens.PREFIX):]
    assert len(base64.urlsafe_b64decode(body + "=")) == 32


def test_a_token_is_shown_in_listings_by_its_prefix_and_six_characters() -> None:
    assert tokens.display_prefix("tgt_abcdefghijklmnop") == "tgt_abcdef"


# --- scrypt parameters a data-protection file may ask for, and sealed values --------------

SCRYPT_ACCEPTED = [(2**10, 1, 1), (2**20, 1, 1), (2**20, 8, 1),  # 128 * 2^20 * 8 = 1 GiB
                   (2**10, 32, 1), (2**10, 1, 16)]
SCRYPT_REFUSED = [(2**9, 1, 1), (2**21, 1, 1), (3 * 2**10, 1, 1), (2**10 + 2, 8, 1),
                  (2**20, 9, 1),  # just over 1 GiB
                  (2**10, 0, 1), (2**10, 33, 1), (2**10, 1, 0), (2**10, 1, 17)]


@pytest.mark.parametrize(("n", "r", "p"), SCRYPT_ACCEPTED,
                         ids=[f"n{n}-r{r}-p{p}" for n, r, p in SCRYPT_ACCEPTED])
def test_scrypt_parameters_at_their_limits_are_accepted(n: int, r: int, p: int) -> None:
    assert sealing.ScryptParams(n=n, r=r, p=p).n == n


@pytest.mark.parametrize(("n", "r", "p"), SCRYPT_REFUSED,
                         ids=[f"n{n}-r{r}-p{p}" for n, r, p in SCRYPT_REFUSED])
def test_scrypt_parameters_past_their_limits_are_refused(n: int, r: int, p: int) -> None:
    with pytest.raises(ConfigError, match=f"scrypt parameters n={n} r={r} p={p} are out of"):
        sealing.ScryptParams(n=n, r=r, p=p)


def test_the_shortest_sealed_value_opens_and_anything_shorter_is_refused_as_malformed() -> None:
    sealer = sealing.Sealer(b"\x07" * 32)
    empty = sealer.seal(b"", context="password:1")
    assert len(empty) == 29  # version, nonce, tag
    assert sealer.open(empty, context="password:1") == b""
    with pytest.raises(ConfigError, match="unknown format"):
        sealer.open(empty[:28], context="password:1")


# --- validity periods ---------------------------------------------------------------------


def test_a_period_has_only_the_parts_it_is_given() -> None:
    assert expiry.Period(months=6).text == "P6M"
    assert expiry.Period(days=90).after(dt.date(2026, 3, 2)) == dt.date(2026, 5, 31)
    assert expiry.Period(years=2).after(dt.date(2026, 3, 2)) == dt.date(2028, 3, 2)


@pytest.mark.parametrize(("start", "period", "end"), [
    (dt.date(2026, 11, 30), "P1M", dt.date(2026, 12, 30)),
    (dt.date(2025, 12, 31), "P1Y", dt.date(2026, 12, 31)),
    (dt.date(2026, 10, 31), "P2M", dt.date(2026, 12, 31)),
    (dt.date(2026, 1, 31), "P11M", dt.date(2026, 12, 31)),
], ids=["into-december", "december-to-december", "31-into-december", "january-to-december"])
def test_periods_ending_in_december_keep_their_day(start: dt.date, period: str,
                                                    end: dt.date) -> None:
    assert expiry.Period.parse(period).after(start) == end


def test_a_period_may_end_in_year_9999_and_never_beyond() -> None:
    assert expiry.Period(years=1).after(dt.date(9998, 6, 1)) == dt.date(9999, 6, 1)
    assert expiry.Period(months=1).after(dt.date(9999, 11, 30)) == dt.date(9999, 12, 30)
    with pytest.raises(InvalidInput, match="beyond year 9999"):
        expiry.Period(years=1).after(dt.date(9999, 6, 1))
    with pytest.raises(InvalidInput, match="beyond year 9999"):
        expiry.Period(months=1).after(dt.date(9999, 12, 1))


# --- user CSV files -----------------------------------------------------------------------

def test_a_csv_file_of_exactly_50_mib_is_read_and_one_byte_more_refused() -> None:
    limit = 50 * 1024 * 1024
    assert len(csvio.decode(b"a" * limit)) == limit
    with pytest.raises(InvalidInput, match="larger than 50 MB"):
        csvio.decode(b"a" * (limit + 1))


def test_a_badly_quoted_cell_is_refused_with_its_line() -> None:
    data = b'login,email\r\nyamada,taro@example.jp\r\n"suzuki"x,hanako@example.jp\r\n'
    with pytest.raises(InvalidInput, match=r"^line 3: "):
        csvio.read(data)


def test_a_short_row_is_reported_with_the_login_it_has_if_any() -> None:
    data = ("email,login\r\n"  # login in the second column
            "taro@example.jp\r\n"  # one cell: no login at all
            "hanako@example.jp,suzuki,extra\r\n"
            "jiro@example.jp," + "x" * 100 + ",extra\r\n").encode()
    rows = csvio.read(data)
    assert [(r.line, r.cells, r.problem) for r in rows] == [
        (2, {"login": ""}, "1 cells where the header has 2"),
        (3, {"login": "suzuki"}, "3 cells where the header has 2"),
        (4, {"login": "x" * 64}, "3 cells where the header has 2"),  # cut to a login's length
    ]


def test_an_expiry_asked_for_is_refused_past_the_latest_date_whatever_today_is() -> None:
    now = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    expiry.check_expiry(dt.date(9999, 12, 30), expiry.zone("Asia/Tokyo"), now=now)
    with pytest.raises(InvalidInput, match="requested 9999-12-31, latest allowed 9999-12-30"):
        expiry.check_expiry(dt.date(9999, 12, 31), expiry.zone("Asia/Tokyo"), now=now)


# --- CSR size ------------------------------------------------------------------------------

def test_a_csr_of_64_kib_is_parsed_and_one_byte_more_is_refused_unread() -> None:
    with pytest.raises(InvalidInput, match="not a PEM or DER PKCS#10 request"):
        csr.load(b"\x30" + b"\x00" * (64 * 1024 - 1))
    with pytest.raises(InvalidInput, match="larger than 65536 bytes"):
        csr.load(b"\x30" + b"\x00" * (64 * 1024))


def test_a_csr_with_a_key_of_another_kind_is_refused_by_its_name() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")]))
               .sign(key, None))
    with pytest.raises(InvalidInput, match="CSR: Ed25519 keys are not accepted"):
        csr.load(request.public_bytes(serialization.Encoding.PEM))


# --- CRL requests -------------------------------------------------------------------------

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def crl_request(number: int = 1, *, after: dt.timedelta = dt.timedelta(days=1)
                ) -> crl.CrlRequest:
    return crl.CrlRequest(number=number, this_update=NOW, next_update=NOW + after,
                          distribution_point="http://tegata.test/crl/sakura.crl",
                          covers_ca_certificates=False)


def test_a_crl_number_is_1_to_2_159_minus_1() -> None:
    assert crl_request(1).number == 1
    assert crl_request(2**159 - 1).number == 2**159 - 1
    for number in (0, 2**159):
        with pytest.raises(ValueError, match="CRL number out of range"):
            crl_request(number)


def test_next_update_is_strictly_after_this_update() -> None:
    assert crl_request(after=dt.timedelta(seconds=1)).next_update == NOW + dt.timedelta(seconds=1)
    with pytest.raises(ValueError, match="nextUpdate must be later than thisUpdate"):
        crl_request(after=dt.timedelta(0))


@pytest.mark.parametrize("which", ["this_update", "next_update"])
def test_a_crl_request_refuses_a_naive_time(which: str) -> None:
    naive = {"this_update": NOW.replace(tzinfo=None),
             "next_update": (NOW + dt.timedelta(days=1)).replace(tzinfo=None)}
    times = {"this_update": NOW, "next_update": NOW + dt.timedelta(days=1), which: naive[which]}
    with pytest.raises(ValueError, match="naive datetime"):
        crl.CrlRequest(number=1, distribution_point="http://tegata.test/crl/sakura.crl",
                       covers_ca_certificates=False, **times)
