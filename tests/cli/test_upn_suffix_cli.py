"""A tenant's UPN suffix, set with `tegata tenant set --upn-suffix`.

The README promised a Windows UPN in certificates when a tenant has a UPN suffix, but nothing
could set one. A certificate issued after the setting carries exactly the e-mail address and
the otherName UPN (1.3.6.1.4.1.311.20.2.3, a UTF8String ``login@suffix``), as OpenSSL shows
it (``x509 -text`` and ``asn1parse``) and pkilint accepts it; one issued before, or after the
suffix is removed, carries the e-mail address alone. A refused suffix changes nothing.
The certificate's DER does not depend on the database: SQLite is enough.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from ca.x509.certificate import UPN_OID
from tests.support.cli import Cli, Env, issue_pem
from tests.support.environment import require_tool
from tests.support.tools import pkilint_tool, run

pytestmark = pytest.mark.interop

# (typed, stored): a plain domain, and a Japanese one typed with a full-width dot
SUFFIXES = [("example.co.jp", "example.co.jp"), ("株式会社アクメ\uff0ejp", "株式会社アクメ.jp")]


def san_text(openssl: str, pem: Path) -> str:
    """The Subject Alternative Name as ``openssl x509 -text`` prints it (one line)."""
    result = run(openssl, "x509", "-noout", "-text", "-nameopt", "utf8", "-in", str(pem))
    assert result.returncode == 0, result.stderr
    found = re.findall(r"X509v3 Subject Alternative Name: ?\n\s+(.+)\n", result.stdout)
    assert len(found) == 1, result.stdout
    return found[0]


def san_asn1(openssl: str, pem: Path, tmp_path: Path) -> list[tuple[str, str]]:
    """The SAN extension's value as ``openssl asn1parse`` reads it: (tag, value) per line."""
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    der = tmp_path / f"{pem.stem}-san.der"
    der.write_bytes(cert.extensions.get_extension_for_oid(
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value.public_bytes())
    result = run(openssl, "asn1parse", "-inform", "DER", "-in", str(der))
    assert result.returncode == 0, result.stderr
    lines = []
    for line in result.stdout.splitlines():
        # "    0:d=0  hl=2 l=  47 cons: SEQUENCE" / "... prim: UTF8STRING        :alice@..."
        tag, _, value = line.split(": ", 1)[1].partition(":")
        lines.append((tag.strip(), value))
    return lines


def sans(pem: Path) -> list[x509.GeneralName]:
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)


@pytest.mark.parametrize(("typed", "stored"), SUFFIXES, ids=["ascii", "japanese"])
def test_a_certificate_issued_after_the_setting_carries_exactly_the_email_and_the_upn(
        ready_sqlite: Env, cli: Cli, tmp_path: Path, typed: str, stored: str) -> None:
    openssl, lint = require_tool("openssl"), pkilint_tool("lint_pkix_cert")
    before = tmp_path / "before.pem"
    issue_pem(cli, before)

    answer = json.loads(cli.ok("tenant", "set", "--upn-suffix", typed, "--json").out)
    after = tmp_path / "after.pem"
    issue_pem(cli, after)

    upn = f"alice@{stored}"
    assert answer == {"tenant": "default", "upn_suffix": stored}
    assert sans(before) == [x509.RFC822Name("alice@example.com")]
    utf8 = upn.encode()
    assert sans(after) == [x509.RFC822Name("alice@example.com"),
                           x509.OtherName(UPN_OID, bytes([0x0C, len(utf8)]) + utf8)]
    assert san_text(openssl, before) == "email:alice@example.com"
    # OpenSSL 3.0 prints "UPN::" (a quirk of its otherName printer), later ones "UPN:"
    shown = re.fullmatch(r"email:alice@example\.com, othername: ?UPN::?(.+)",
                         san_text(openssl, after))
    assert shown is not None and shown.group(1) == upn, san_text(openssl, after)
    assert san_asn1(openssl, after, tmp_path) == [
        ("SEQUENCE", ""),
        ("cont [ 1 ]", ""),  # rfc822Name: asn1parse shows no value for an implicit tag
        ("cont [ 0 ]", ""),  # otherName
        ("OBJECT", "Microsoft User Principal Name"),
        ("cont [ 0 ]", ""),
        ("UTF8STRING", upn),
    ]
    for pem in (before, after):
        linted = run(lint, "lint", "-s", "WARNING", str(pem))
        assert (pem.stem, linted.returncode, (linted.stdout + linted.stderr).strip()) == (
            pem.stem, 0, "")


def upn_events(cli: Cli) -> list[tuple[str, str, str, dict[str, object]]]:
    events = json.loads(cli.ok("audit", "list", "--action", "tenant.update", "--json").out)
    return [(e["actor"], e["target"], e["tenant"], e["details"]) for e in events
            if "upn_suffix" in e["details"]]


def test_removing_the_suffix_removes_the_upn_from_new_certificates_and_both_are_audited(
        ready_sqlite: Env, cli: Cli, tmp_path: Path) -> None:
    cli.ok("tenant", "set", "--upn-suffix", "Example.CO.jp")
    with_upn = tmp_path / "with.pem"
    issue_pem(cli, with_upn)
    cli.ok("tenant", "set", "--upn-suffix", "example.co.jp")  # the same again: no event

    answer = json.loads(cli.ok("tenant", "set", "--no-upn-suffix", "--json").out)
    without = tmp_path / "without.pem"
    issue_pem(cli, without)

    assert answer == {"tenant": "default", "upn_suffix": None}
    assert len(sans(with_upn)) == 2
    assert sans(without) == [x509.RFC822Name("alice@example.com")]
    assert upn_events(cli) == [
        ("cli", "default", "default", {"upn_suffix": "example.co.jp",
                                       "previous_upn_suffix": None}),
        ("cli", "default", "default", {"upn_suffix": None,
                                       "previous_upn_suffix": "example.co.jp"}),
    ]
    assert cli.ok("tenant", "set", "--upn-suffix", "example.co.jp").out == (
        "tenant default: certificates issued from now on carry the UPN "
        "<login>@example.co.jp\n")


REFUSED = {
    "empty": (["--upn-suffix", ""],
              "--upn-suffix is empty; --no-upn-suffix removes the UPN suffix"),
    "both": (["--upn-suffix", "example.co.jp", "--no-upn-suffix"],
             "give --upn-suffix or --no-upn-suffix, not both"),
    "with-login": (["--upn-suffix", "alice@example.co.jp"],
                   "UPN suffix 'alice@example.co.jp' must be a DNS domain name such as "
                   "example.co.jp: no spaces and no '@' (only the part after the '@')"),
    "space": (["--upn-suffix", "example .co.jp"],
              "UPN suffix 'example .co.jp' must be a DNS domain name such as example.co.jp: "
              "no spaces and no '@' (only the part after the '@')"),
    "one-label": (["--upn-suffix", "株式会社アクメ"],
                  "UPN suffix '株式会社アクメ' must be a DNS domain name such as "
                  "example.co.jp: at least two labels"),
    # refused before the OCSP validity, given in the same command, is changed
    "with-ocsp-validity": (["--ocsp-validity", "120", "--upn-suffix", "a_b.example"],
                           "UPN suffix 'a_b.example' must be a DNS domain name such as "
                           "example.co.jp: labels of letters, digits and hyphens (IDNA "
                           "2008), 1-63 characters each, no hyphen first or last"),
}


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_suffix_is_one_line_exit_2_and_changes_nothing(
        ready_sqlite: Env, cli: Cli, case: tuple[list[str], str]) -> None:
    argv, message = case
    cli.ok("tenant", "set", "--upn-suffix", "corp.example")
    before = ready_sqlite.dump()

    result = cli("tenant", "set", *argv)

    assert (result.code, result.error(), result.out) == (2, message, "")
    assert ready_sqlite.dump() == before
