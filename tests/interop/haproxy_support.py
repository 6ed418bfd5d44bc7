"""What tests/interop/test_haproxy.py drives: real HAProxy processes configured by
``tegata gateway haproxy``, ``openssl s_client`` with saved sessions, and curl.

Tegata itself (``tegata serve``, the CLI in this process, user certificates) comes from
nginx_support. Every process started here is a child of the test run, listens on loopback
only, logs to a file under the test's directory, and is stopped by the fixture that
started it. Every wait is a bounded poll.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.interop.nginx_support import CURL_TIMEOUT, Client, Tegata, tail, wait_listening
from tests.processes import free_port, stop

# the application behind the gateway: it answers with what the gateway told it
UPSTREAM = ('    http-request return status 200 content-type text/plain lf-string '
            '"verify=%[req.hdr(X-Client-Verify)] serial=%[req.hdr(X-Client-Serial)]\\n"')


@dataclass
class Haproxy:
    """One HAProxy running the configuration `tegata gateway haproxy` printed for
    ``tenant``, plus a frontend standing in for the application."""

    binary: str
    directory: Path
    tenant: str
    port: int = field(default_factory=free_port)
    upstream_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    config: str = ""
    master_worker: bool = False  # -W: a master that reloads on SIGUSR2

    def reload_command(self) -> str:
        """What reloads this HAProxy (master-worker): its master re-reads the configuration
        and the files it names, and starts a new worker."""
        assert self.master_worker and self.proc is not None
        return f"kill -USR2 {self.proc.pid}"

    @property
    def socket(self) -> Path:
        return self.directory / "admin.sock"

    @property
    def crl_file(self) -> Path:
        return self.directory / "crl.pem"

    @property
    def ca_bundle(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def log(self) -> Path:
        return self.directory / "haproxy.log"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    def configure(self, tegata: Tegata, server_pem: Path) -> None:
        """The trust bundle, a first CRL (HAProxy will not start without it) and the
        kit's configuration, as the README says."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca_bundle.write_text(tegata.ok("gateway", "ca-bundle", "--tenant", self.tenant))
        self.sync(tegata)
        self.config = tegata.ok(
            "gateway", "haproxy", "--tenant", self.tenant,
            "--upstream", f"127.0.0.1:{self.upstream_port}", "--bind", f"127.0.0.1:{self.port}",
            "--server-pem", str(server_pem), "--ca-bundle", str(self.ca_bundle),
            "--crl-file", str(self.crl_file), "--runtime-socket", str(self.socket))
        (self.directory / "haproxy.cfg").write_text(
            self.config + f"\nfrontend upstream\n    bind 127.0.0.1:{self.upstream_port}\n"
            + UPSTREAM + "\n", encoding="utf-8")

    def sync(self, tegata: Tegata, *, push: bool = False) -> str:
        extra = ["--haproxy-socket", str(self.socket)] if push else []
        return tegata.ok("gateway", "crl-sync", "--tenant", self.tenant, "--out",
                         str(self.crl_file), "--ca-bundle", str(self.ca_bundle), "--url",
                         tegata.url, *extra)

    def start(self) -> None:
        cfg = self.directory / "haproxy.cfg"
        check = subprocess.run([self.binary, "-c", "-f", str(cfg)], capture_output=True,
                               text=True, timeout=30, check=False)
        assert check.returncode == 0, f"haproxy -c: {check.stdout}{check.stderr}"
        with self.log.open("ab") as sink:
            # -db: in the foreground, so that the test owns the process
            self.proc = subprocess.Popen(
                [self.binary, *(["-W"] if self.master_worker else []), "-db", "-f", str(cfg)],
                stdout=sink, stderr=subprocess.STDOUT)
        wait_listening(self.port, self.proc, "haproxy", self.log)
        deadline = time.monotonic() + 10
        while not self.socket.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def tail(self) -> str:
        return tail(self.log)


@dataclass(frozen=True)
class Reply:
    status: int  # 0: no HTTP answer (the handshake failed)
    body: str


def curl(binary: str, gateway: Haproxy, server_cert: Path, client: Client) -> Reply:
    """One request in a new curl process (a new TLS session: nothing resumed)."""
    result = subprocess.run(
        [binary, "-sS", "--max-time", str(CURL_TIMEOUT), "--cacert", str(server_cert),
         "--cert", str(client.pem), "--write-out", "\n%{http_code}", gateway.url],
        capture_output=True, text=True, timeout=CURL_TIMEOUT + 5, check=False)
    body, _, code = result.stdout.rpartition("\n")
    if result.returncode != 0:
        return Reply(status=0, body=result.stderr)
    return Reply(status=int(code), body=body)


@dataclass(frozen=True)
class Handshake:
    reused: bool  # the session was resumed
    status: int  # the HTTP status, 0 when no answer came
    transcript: str


def s_client(openssl: str, gateway: Haproxy, server_cert: Path, client: Client, *,
             sess_out: Path | None = None, sess_in: Path | None = None) -> Handshake:
    """One TLS 1.3 connection and one request with ``openssl s_client``, saving or offering
    a session."""
    argv = [openssl, "s_client", "-connect", f"127.0.0.1:{gateway.port}", "-tls1_3",
            "-cert", str(client.pem), "-CAfile", str(server_cert), "-ign_eof"]
    if sess_out is not None:
        argv += ["-sess_out", str(sess_out)]
    if sess_in is not None:
        argv += ["-sess_in", str(sess_in)]
    result = subprocess.run(argv, input=b"GET / HTTP/1.0\r\nHost: gateway\r\n\r\n",
                            capture_output=True, timeout=CURL_TIMEOUT + 5, check=False)
    text = (result.stdout + result.stderr).decode(errors="replace")
    # s_client prints the session (a ticket's hex dump) and the answer interleaved
    answer = re.search(r"HTTP/1\.[01] (\d{3}) ", text)
    status = int(answer.group(1)) if answer else 0
    reused = any(line.startswith("Reused,") for line in text.splitlines())
    return Handshake(reused=reused, status=status, transcript=text)
