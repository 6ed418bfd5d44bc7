"""``tegata gateway crl-sync``'s checks on what it fetched, before the gateway gets it."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca.clock import FixedClock
from ca.errors import GatewayRefused, InvalidInput
from ca.service import Service
from cli import crlsync
from tests.cli.conftest import Cli
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
    with pytest.raises(InvalidInput, match=r"has no CRL of CN=Default Issuing CA.*"
                       r"--ca-bundle lacks: CN=acme Issuing CA"):
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


# --- exit codes, from real failing sources and reload commands --------------------------------

class Source:
    """A CRL source on a local port that answers every request with the same raw bytes (or
    never, or not at all): the failures a gateway's network can show, for real."""

    def __init__(self, answer: bytes | None, *, listen: bool = True) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._answer = answer
        self._done = threading.Event()
        if not listen:  # nothing listens on the port: connection refused
            self._sock.close()
            return
        self._sock.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._done.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                if self._answer is None:  # hold the connection, say nothing
                    self._done.wait()
                else:
                    conn.sendall(self._answer)

    def close(self) -> None:
        self._done.set()
        self._sock.close()


def http(status: str, body: bytes = b"", *, length: int | None = None) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Length: {len(body) if length is None else length}"
            f"\r\nConnection: close\r\n\r\n").encode() + body


@pytest.fixture
def bundle(trusted: list[x509.Certificate], tmp_path: Path) -> Path:
    (tmp_path / "gateway").mkdir()  # the gateway's files alone (the service's are beside)
    path = tmp_path / "gateway" / "ca.pem"
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in trusted))
    return path


@pytest.fixture
def fixed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """crl-sync checks the CRLs against the time of the service that made them."""
    from cli import gateway

    monkeypatch.setattr(gateway, "SystemClock", lambda: FixedClock(MOMENTS.start))
    monkeypatch.setattr(crlsync, "FETCH_TIMEOUT", 0.5)  # a silent source fails fast


def sync(cli: Cli, source: Source, bundle: Path, *extra: str) -> tuple[int, str, str]:
    ran = cli("gateway", "crl-sync", "--tenant", "default", "--ca-bundle", str(bundle),
              "--out", str(bundle.parent / "crl.pem"), "--url", source.url, *extra)
    line = ran.err.splitlines()[-1] if ran.err else ""
    return ran.code, ran.out.split(",")[0], line


@pytest.mark.parametrize(("answer", "listen", "code", "said"), [
    (b"", False, 69, "cannot reach Tegata at {url}: [Errno 111] Connection refused"),
    (None, True, 69, "cannot reach Tegata at {url}: timed out"),
    (b"", True, 69, "cannot reach Tegata at {url}: Remote end closed connection without "
                    "response"),
    (http("503 Service Unavailable"), True, 69, "Tegata at {url} answered 503"),
    (http("429 Too Many Requests"), True, 69, "Tegata at {url} answered 429"),
    (http("200 OK", b"-----BEGIN X509 CRL-----\nMIIB", length=4000), True, 69,
     "Tegata at {url} closed the connection 3971 bytes short of its answer"),
    (http("304 Not Modified"), True, 69, "Tegata at {url} answered 304 to an unconditional "
                                         "request"),
    (http("404 Not Found"), True, 2, "Tegata at {url} answered 404"),
], ids=["refused", "silent", "hung-up", "503", "429", "dropped-mid-answer",
        "unasked-304", "404-is-bad-input"])
def test_a_failing_source_exits_unavailable_in_one_line_and_writes_nothing(
        cli: Cli, bundle: Path, fixed_time: None, answer: bytes | None, listen: bool,
        code: int, said: str) -> None:
    """Tegata out of reach, slow, overloaded or cut off is EX_UNAVAILABLE (69), worth a
    retry; only an answer that names the caller's mistake (404: no such tenant) is bad
    input."""
    source = Source(answer, listen=listen)
    try:
        ran = sync(cli, source, bundle)
    finally:
        source.close()
    url = f"{source.url}/crl/default-chain.pem"
    assert ran == (code, "", "tegata: error: " + said.format(url=url))
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["ca.pem"]


@pytest.mark.parametrize(("command", "said"), [
    ("sh -c 'echo nginx is down >&2; exit 1'", "reload command failed (1): nginx is down"),
    ("sh -c 'printf \"\\377 not utf-8\\n\" >&2; exit 3'",
     "reload command failed (3): \ufffd not utf-8"),
    ("sh -c 'kill -KILL $$'", "reload command failed (killed by SIGKILL)"),
], ids=["exit-1", "exit-3-not-utf-8", "killed"])
def test_a_failing_reload_exits_tempfail_and_the_next_run_applies_it(
        cli: Cli, service: Service, bundle: Path, fixed_time: None, command: str,
        said: str) -> None:
    """The CRL is written but the gateway did not take it: EX_TEMPFAIL (75), its own code,
    and nothing recorded as applied, so the next run reloads again."""
    chain = service.crls.chain("default").pem.encode()
    source = Source(http("200 OK", chain))
    out, reloads = bundle.parent / "crl.pem", bundle.parent / "reloads"
    try:
        failed = sync(cli, source, bundle, "--reload", command)
        applied = crlsync.read_applied(out)
        retried = sync(cli, source, bundle, "--reload", f"sh -c 'echo >> {reloads}'")
    finally:
        source.close()
    assert failed == (75, "", f"tegata: error: {said}")
    assert applied is None  # written, not taken
    assert retried == (0, f"{out}: updated", "")  # the file was there; the reload was not
    assert crlsync.read_applied(out) is not None
    assert reloads.read_text() == "\n"


def test_a_reload_that_succeeds_with_output_in_any_encoding_is_a_success(
        cli: Cli, service: Service, bundle: Path, fixed_time: None) -> None:
    source = Source(http("200 OK", service.crls.chain("default").pem.encode()))
    try:
        ran = sync(cli, source, bundle, "--reload", "sh -c 'printf \"\\377\\376\"'")
    finally:
        source.close()
    assert ran == (0, f"{bundle.parent / 'crl.pem'}: updated", "")


class Redirector:
    """A real HTTP server answering every GET with a 301 to ``location``."""

    def __init__(self, location: str) -> None:
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(301)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Listener:
    """A port that records whether anything connected to it."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen()
        self.port = self._sock.getsockname()[1]
        self.contacted = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except OSError:
            return
        self.contacted.set()
        conn.close()

    def close(self) -> None:
        self._sock.close()


def test_a_redirect_to_another_scheme_than_http_is_refused_before_it_is_followed(
        cli: Cli, bundle: Path, fixed_time: None) -> None:
    """urllib would follow a 301 to ftp://: crl-sync refuses it (2), naming the scheme only,
    and never contacts the ftp server."""
    ftp = Listener()
    source = Redirector(f"ftp://user:s3cr3t@127.0.0.1:{ftp.port}/x")
    try:
        ran = cli("gateway", "crl-sync", "--tenant", "default", "--ca-bundle", str(bundle),
                  "--out", str(bundle.parent / "crl.pem"), "--url", source.url)
    finally:
        source.close()
    contacted = ftp.contacted.wait(0.2)
    ftp.close()
    assert (ran.code, ran.out, ran.err.splitlines()[-1]) == (
        2, "", f"tegata: error: Tegata at {source.url}/crl/default-chain.pem redirected to a URL "
               "of scheme ftp; crl-sync follows http and https only")
    assert "s3cr3t" not in ran.err
    assert not contacted
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["ca.pem"]


def test_redirects_between_http_urls_are_still_limited(
        cli: Cli, bundle: Path, fixed_time: None) -> None:
    """A redirect loop ends as urllib's limit says: one line, bad input (a 3xx answer)."""
    source = Redirector("/again")
    try:
        ran = cli("gateway", "crl-sync", "--tenant", "default", "--ca-bundle", str(bundle),
                  "--out", str(bundle.parent / "crl.pem"), "--url", source.url)
    finally:
        source.close()
    assert (ran.code, ran.out, ran.err.splitlines()[-1]) == (
        2, "", f"tegata: error: Tegata at {source.url}/crl/default-chain.pem answered 301")


@pytest.mark.parametrize(("url", "said"), [
    ("http://user:pa55word@127.0.0.1:27998",
     "--url http://***@127.0.0.1:27998: crl-sync sends no user name or password; give the "
     "URL without them"),
    ("http://[::1", "--url http://[::1: not a URL (Invalid IPv6 URL)"),
    ("http://u:pa55word@[::1", "--url http://***@[::1: not a URL"),
    ("http://127.0.0.1:99999", "--url http://127.0.0.1:99999: not a URL (Port out of range "
                               "0-65535)"),
    # pasted with a leading space, one slash short, or a password holding "#" or "@" unencoded
    (" http://u:pa55word@127.0.0.1:27998", " http://***@127.0.0.1:27998 is not an http(s) URL"),
    ("http:/u:pa55word@127.0.0.1:27998", "http:/***@127.0.0.1:27998 is not an http(s) URL"),
    ("http://u:pa55#word@127.0.0.1:27998",
     "--url http://***@127.0.0.1:27998: not a URL"),
    ("http://u:pa5@5word@127.0.0.1:27998",
     "--url http://***@127.0.0.1:27998: crl-sync sends no user name or password; give the "
     "URL without them"),
    # typos, not outages: 2, never 69 (which --watch would retry for ever)
    ("http://127.0.0.1 :27998",
     "--url 'http://127.0.0.1 :27998': not a URL (a space or control character)"),
    ("http://127.0.0.1:27998/a b",
     "--url 'http://127.0.0.1:27998/a b': not a URL (a space or control character)"),
    ("http:///x", "--url http:///x: not a URL (no host)"),
], ids=["credentials", "unclosed-ipv6", "unclosed-ipv6-credentials", "port-99999",
        "leading-space", "one-slash", "hash-in-password", "at-in-password", "inner-space",
        "space-in-path", "no-host"])
def test_a_url_crl_sync_cannot_use_is_bad_input_without_its_password(
        cli: Cli, bundle: Path, fixed_time: None, url: str, said: str) -> None:
    """urllib sends no basic auth from a URL's userinfo: credentials there are refused (2),
    shown as ***, like a typo in the URL (never an internal error, 70)."""
    ran = cli("gateway", "crl-sync", "--tenant", "default", "--ca-bundle", str(bundle),
              "--out", str(bundle.parent / "crl.pem"), "--url", url)
    assert (ran.code, ran.out, ran.err) == (2, "", f"tegata: error: {said}\n")
    assert "pa5" not in ran.err


def test_an_empty_answer_of_haproxy_is_never_an_empty_reason(
        service: Service, tmp_path: Path) -> None:
    """A runtime API that closes the connection without a word (HAProxy's answer to a
    command longer than its buffer): the reason names the command's size."""
    pem = service.crls.chain("default").pem.encode()
    path = str(tmp_path / "mute.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(4)

        def mute() -> None:  # the abort, then the set: read, answered with nothing
            for _ in range(2):
                conn, _ = server.accept()
                with conn:
                    conn.recv(1 << 20)

        thread = threading.Thread(target=mute)
        thread.start()
        with pytest.raises(GatewayRefused) as caught:
            crlsync.haproxy_push(path, tmp_path / "crl.pem", pem)
        thread.join(5)
    size = len(f"set ssl crl-file {tmp_path / 'crl.pem'} <<\n".encode()) + len(pem.strip()) + 1
    assert caught.value.message == (
        f"HAProxy at {path} closed the connection without an answer to the {size}-byte "
        f"set ssl crl-file command for {tmp_path / 'crl.pem'} (more than its tune.bufsize "
        "takes?)")


def test_one_runtime_api_command_carries_crls_up_to_its_buffer_less_the_spare(
        tmp_path: Path) -> None:
    out = tmp_path / "crl.pem"
    command = len(f"set ssl crl-file {out} <<\n".encode()) + 2  # the payload's \n, the blank
    pem = b"x" * (16384 - 1024 - command)
    assert crlsync.haproxy_fits(out, pem)
    assert not crlsync.haproxy_fits(out, pem + b"x")
    assert crlsync.haproxy_fits(out, pem + b"x" * 1000, 17384)
