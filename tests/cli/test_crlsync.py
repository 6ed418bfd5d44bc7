"""``tegata gateway crl-sync``'s checks on what it fetched, before the gateway gets it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509

from ca.errors import InvalidInput
from ca.service import Service
from cli import crlsync
from tests.moments import MOMENTS


@pytest.fixture
def trusted(service: Service) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(v.pem.encode())
            for v in service.hierarchy.ca_certificates("default")]


def test_a_signed_current_bundle_passes(service: Service,
                                        trusted: list[x509.Certificate]) -> None:
    chain = service.crls.chain("default")
    checked = crlsync.check(chain.pem.encode(), trusted, now=MOMENTS.start, previous=None)
    assert checked.pem == chain.pem.encode()
    assert checked.next_update == chain.first_to_expire.next_update


def test_text_around_the_crls_never_reaches_the_gateway(
        service: Service, trusted: list[x509.Certificate]) -> None:
    """No signature covers it: a man in the middle of plain http could feed HAProxy's
    runtime API (a blank line ends the payload) or nginx anything."""
    chain = service.crls.chain("default")
    own, root = chain.own.pem.encode(), chain.root.pem.encode()
    tampered = b"junk\n\nset server be/web state maint\n\n" + own + b"\n;x\n" + root + b"TAIL"
    checked = crlsync.check(tampered, trusted, now=MOMENTS.start, previous=None)
    assert checked.pem == own + root


def test_a_bundle_without_a_crl_for_every_trusted_ca_is_refused(
        service: Service, trusted: list[x509.Certificate]) -> None:
    # nginx refuses every client when a CA of the chain has no CRL
    only_own = service.crls.chain("default").own.pem.encode()
    with pytest.raises(InvalidInput, match="has no CRL of"):
        crlsync.check(only_own, trusted, now=MOMENTS.start, previous=None)


def test_a_crl_of_another_ca_or_an_older_one_is_refused(
        service: Service, trusted: list[x509.Certificate]) -> None:
    service.hierarchy.create_tenant("acme")
    foreign = service.crls.chain("acme").pem.encode()
    with pytest.raises(InvalidInput, match="not signed by a CA of the trusted bundle"):
        crlsync.check(foreign, trusted, now=MOMENTS.start, previous=None)
    old = crlsync.check(service.crls.chain("default").pem.encode(), trusted,
                        now=MOMENTS.start, previous=None)
    newer = crlsync.check(service.crls.chain("default", fresh=True).pem.encode(), trusted,
                          now=MOMENTS.start, previous=None)
    with pytest.raises(InvalidInput, match="older than"):
        crlsync.check(old.pem, trusted, now=MOMENTS.start, previous=newer)


def test_an_expired_bundle_is_refused(service: Service,
                                      trusted: list[x509.Certificate]) -> None:
    chain = service.crls.chain("default")
    later = chain.first_to_expire.next_update + dt.timedelta(seconds=1)
    with pytest.raises(InvalidInput, match="has expired"):
        crlsync.check(chain.pem.encode(), trusted, now=later, previous=None)


@pytest.mark.parametrize("name", ["a b.pem", "a;show info.pem", "a\nb.pem", "a#b.pem",
                                  "a\\b.pem"])
def test_a_file_name_haproxys_runtime_api_would_split_is_refused(name: str,
                                                                 tmp_path: Path) -> None:
    # refused before any connection: the socket does not even exist
    with pytest.raises(InvalidInput, match="runtime API cannot name"):
        crlsync.haproxy_push(str(tmp_path / "no.sock"), tmp_path / name, b"")


def test_what_haproxy_shows_is_compared_with_what_was_pushed(
        service: Service, trusted: list[x509.Certificate]) -> None:
    """``show ssl crl-file`` as HAProxy 2.6 prints it (its own order, OpenSSL's dates)."""
    chain = service.crls.chain("default")
    pem = crlsync.check(chain.pem.encode(), trusted, now=MOMENTS.start, previous=None).pem

    def block(number: int, crl: x509.CertificateRevocationList) -> str:
        assert crl.next_update_utc is not None
        revoked = "".join(f"    Serial Number: {entry.serial_number:X}\n"
                          "        Revocation Date: Jan  1 00:00:00 2026 GMT\n"
                          for entry in crl)
        return (f"Certificate Revocation List #{number}:\nVersion 2\nIssuer: /O=x/CN=y\n"
                f"Last Update: {crl.last_update_utc:%b} {crl.last_update_utc.day:2d} "
                f"{crl.last_update_utc:%H:%M:%S %Y} GMT\n"
                f"Next Update: {crl.next_update_utc:%b} {crl.next_update_utc.day:2d} "
                f"{crl.next_update_utc:%H:%M:%S %Y} GMT\n"
                + (("Revoked Certificates:\n" + revoked) if revoked
                   else "No Revoked Certificates.\n") + " \n")

    own, root = crlsync.split(pem)
    shown = "Filename: /x/crl.pem\nStatus: Used\n \n" + block(1, root) + block(2, own)
    assert crlsync._shown_summary(shown) == crlsync._crl_summary(pem)
    assert crlsync._shown_summary(shown.replace("Last Update: ", "Last Update: X")) != (
        crlsync._crl_summary(pem))
    assert crlsync._shown_summary("Unknown CRL file") == []


def test_the_record_of_what_was_applied_survives_a_round_trip_and_garbage(
        tmp_path: Path) -> None:
    out = tmp_path / "crl.pem"
    assert crlsync.read_applied(out) is None
    applied = crlsync.Applied(sha256="ab" * 32, gateway='["nginx -s reload", null]', etag='"1-2"',
                              last_modified="Sun, 29 Nov 2026 20:00:00 GMT")
    crlsync.write_applied(out, applied)
    assert crlsync.read_applied(out) == applied
    assert crlsync.record_path(out) == tmp_path / "crl.pem.applied"
    crlsync.record_path(out).write_text("{not json")
    assert crlsync.read_applied(out) is None  # pushed again: harmless


def test_a_watch_logs_any_failure_and_goes_on(
        service: Service, trusted: list[x509.Certificate], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """No exception of a sync ends --watch (a bug of ours included): it is logged in one
    line and retried; only bad arguments found at start end it."""
    from cli import gateway

    chain = service.crls.chain("default")
    checked = crlsync.check(chain.pem.encode(), trusted, now=MOMENTS.start, previous=None)
    results: list[BaseException | crlsync.Outcome] = [
        ValueError("No closing quotation"),
        x509.ExtensionNotFound("no CRL Number", x509.CRLNumber.oid),
        crlsync.Unreachable("HAProxy's runtime API at /x.sock: Connection refused"),
        crlsync.Outcome(checked=checked, changed=True)]

    def sync_once(*args: object, **kwargs: object) -> crlsync.Outcome:
        result = results.pop(0)
        if isinstance(result, BaseException):
            raise result
        return result

    class Stop(Exception):
        pass

    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if not results:
            raise Stop

    monkeypatch.setattr(crlsync, "sync_once", sync_once)
    monkeypatch.setattr(gateway.time, "sleep", sleep)
    monkeypatch.setattr(gateway, "_report", lambda *args, **kwargs: None)
    out = tmp_path / "crl.pem"
    target = crlsync.Target(out=out, url="http://127.0.0.1:1/crl/default-chain.pem")
    with pytest.raises(Stop):
        gateway._sync(target, trusted, watch=True, interval=60, retry=5,
                      warn_within=dt.timedelta(hours=0))

    assert waits == [5, 10, 20, 60]
    assert capsys.readouterr().err.splitlines() == [
        f"tegata: WARNING: crl-sync of {out} failed {what}; the gateway has no CRL; "
        f"retry {n} in {wait} s"
        for n, (what, wait) in enumerate([
            ("(internal error, ValueError): No closing quotation", 5),
            ("(internal error, ExtensionNotFound): no CRL Number", 10),
            ("(unreachable): HAProxy's runtime API at /x.sock: Connection refused", 20)],
            start=1)]
