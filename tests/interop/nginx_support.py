"""What tests/interop/test_nginx.py drives: a real ``tegata serve``, real nginx instances
configured by ``tegata gateway nginx``, the ``tegata`` CLI, and curl.

Every process started here is a child of the test run, listens on loopback only, writes its
output to a file under the test's directory (never a pipe that could fill up), and is
stopped by the fixture that started it. Every wait is a bounded poll.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import ipaddress
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cli.context import STATE
from cli.main import main
from tests.processes import free_port, stop
from tests.support.environment import PASSPHRASE

START_DEADLINE = 20.0  # seconds for tegata serve or nginx to listen
CURL_TIMEOUT = 10  # seconds for one request through the gateway
POLL_EVERY = 0.5  # seconds between two attempts of a bounded poll


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}: {tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                    timeout=0.2):
            return
        time.sleep(0.05)
    pytest.fail(f"{what} did not listen on 127.0.0.1:{port} within {START_DEADLINE} s: "
                f"{tail(log)}")


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


# --- the tegata CLI, in this process -----------------------------------------------------

@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


@dataclass
class Tegata:
    """One Tegata: a data directory with an SQLite database, its CLI and its server."""

    home: Path
    port: int = field(default_factory=free_port)
    server: subprocess.Popen[bytes] | None = None
    # the CLI run from a shell whose TEGATA_* differ (None: unset), as dataclasses.replace
    # makes it; the server keeps self.env()
    shell: dict[str, str | None] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database(self) -> Path:
        return self.home / "data" / "tegata.db"  # the embedded SQLite default

    def env(self) -> dict[str, str]:
        """The TEGATA_* an operator would export; nothing from the developer's shell."""
        return {"TEGATA_DATA_DIR": str(self.home / "data"),
                "TEGATA_KEY_PASSPHRASE": PASSPHRASE,
                "TEGATA_PUBLIC_BASE_URL": self.url,
                "TEGATA_LIFECYCLE_INTERVAL_SECONDS": "0",
                "TEGATA_CONFIG": str(self.home / "no-such-tegata.toml")}

    def __call__(self, *argv: str) -> Ran:
        """``tegata ARGV`` through the real entry point, in this process (a child process
        would cost a second of start-up per command)."""
        out, err = io.StringIO(), io.StringIO()
        code = 0
        with pytest.MonkeyPatch.context() as mp:
            for name in list(os.environ):
                if name.startswith("TEGATA_"):
                    mp.delenv(name)
            for name, value in (self.env() | self.shell).items():
                if value is not None:
                    mp.setenv(name, value)
            _reset_cli()
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    main(list(argv))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None
                                                                     else 1)
            finally:
                _reset_cli()
        return Ran(code=code, out=out.getvalue(), err=err.getvalue())

    def ok(self, *argv: str) -> str:
        ran = self(*argv)
        assert ran.code == 0, f"tegata {' '.join(argv)} failed ({ran.code}): {ran.err}"
        return ran.out

    def serve(self, *, workers: int | None = None) -> None:
        """``tegata serve``: one worker per core, unless ``workers`` says otherwise."""
        log = self.home / "serve.log"
        extra = [] if workers is None else ["--workers", str(workers)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEGATA_")}
        with log.open("wb") as sink:
            self.server = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "serve", "--port", str(self.port), *extra],
                cwd=self.home, env={**env, **self.env()}, stdout=sink,
                stderr=subprocess.STDOUT)
        wait_listening(self.port, self.server, "tegata serve", log)

    def stop(self) -> None:
        if self.server is not None:
            stop(self.server)


def _reset_cli() -> None:
    """Each command builds its own settings and service, as a fresh process would."""
    if STATE._service is not None:
        STATE._service.engine.dispose()
    STATE._settings = None
    STATE._service = None
    STATE.debug = False


# --- client certificates, as a user gets them --------------------------------------------

@dataclass(frozen=True)
class Client:
    """A certificate issued by Tegata, taken out of the user's PKCS#12 by openssl."""

    tenant: str
    serial: str
    pem: Path  # key, certificate and the CA certificates the PKCS#12 carries


def client_certificate(tegata: Tegata, openssl: str, directory: Path, *, login: str,
                       tenant: str) -> Client:
    """Issue a certificate to ``login``, export the user's zip, and unpack the PKCS#12 with
    openssl reading the password from the zip's own file (never from argv)."""
    (view,) = json.loads(tegata.ok("cert", "issue", login, "--tenant", tenant, "--json"))
    serial = view["serial"]
    where = directory / f"{tenant}-{serial}"
    where.mkdir(parents=True)
    tegata.ok("cert", "export", serial, "--tenant", tenant, "--out", str(where / "user.zip"))
    with zipfile.ZipFile(where / "user.zip") as archive:
        archive.extractall(where)
    pem = where / "client.pem"
    result = subprocess.run(
        [openssl, "pkcs12", "-in", str(where / f"{login}.p12"), "-passin",
         f"file:{where / f'{login}-password.txt'}", "-nodes", "-out", str(pem)],
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return Client(tenant=tenant, serial=serial, pem=pem)


def server_certificate(directory: Path) -> tuple[Path, Path]:
    """The gateway's own TLS certificate (self-signed, for 127.0.0.1) and key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


# --- nginx ---------------------------------------------------------------------------------

# the application behind the gateway: it answers with what the gateway told it
UPSTREAM = ('return 200 "verify=$http_x_client_verify serial=$http_x_client_serial '
            'subject=$http_x_client_subject\\n";')


@dataclass
class Nginx:
    """One nginx with its own prefix directory: the gateway server block that `tegata
    gateway nginx` printed, included into an http block, and a tiny upstream."""

    binary: str
    prefix: Path
    port: int = field(default_factory=free_port)
    upstream_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"

    @property
    def gateway_conf(self) -> Path:
        return self.prefix / "tegata-gateway.conf"

    @property
    def upstream(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}"

    def command(self, *extra: str) -> list[str]:
        return [self.binary, "-p", f"{self.prefix}/", "-c", str(self.conf), "-e",
                str(self.error_log), *extra]

    def reload_command(self) -> str:
        return shlex.join(self.command("-s", "reload"))

    def write_conf(self) -> None:
        p = self.prefix
        temp = "\n".join(f"    {kind}_temp_path {p}/temp/{kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        # as root, workers would otherwise run as nobody and could not read tmp_path
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"{user}worker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log info;\n"
            "events { worker_connections 256; }\n"
            f"http {{\n    access_log {p}/access.log;\n{temp}\n"
            f"    server {{\n        listen 127.0.0.1:{self.upstream_port};\n"
            f"        location / {{ {UPSTREAM} }}\n    }}\n"
            f"    include {self.gateway_conf};\n}}\n", encoding="utf-8")
        (p / "temp").mkdir(exist_ok=True)

    def check(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` on the configuration as written now."""
        self.write_conf()
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30,
                              check=False)

    def start(self) -> None:
        test = self.check()
        assert test.returncode == 0, f"nginx -t: {test.stderr}"
        with (self.prefix / "nginx.out").open("wb") as sink:
            self.proc = subprocess.Popen(self.command("-g", "daemon off;"), stdout=sink,
                                         stderr=subprocess.STDOUT)
        wait_listening(self.port, self.proc, "nginx", self.error_log)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def reloads(self) -> int:
        """How many reloads the master has received (its error log at level notice)."""
        return self.error_log.read_text(errors="replace").count("(SIGHUP) received")

    def settled_reloads(self, expected: int, *, limit: float = 10) -> int:
        """The reload count once it reaches ``expected`` (the master logs a reload a moment
        after ``nginx -s reload`` has returned), or whatever it is after ``limit`` s."""
        deadline = time.monotonic() + limit
        while (count := self.reloads()) != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return count


# --- curl ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    status: int  # 0: no HTTP answer (the handshake failed)
    body: str


def curl(binary: str, nginx: Nginx, server_cert: Path, *, client: Client | None = None,
         source: str | None = None, port: int | None = None) -> Reply:
    """One request through the gateway (on ``port``, default the nginx's first server) in a
    new curl process (a new TLS session: nothing resumed), from ``source`` (a loopback
    address) if given."""
    argv = [binary, "-sS", "--max-time", str(CURL_TIMEOUT), "--cacert", str(server_cert),
            "--write-out", "\n%{http_code}"]
    if client is not None:
        argv += ["--cert", str(client.pem)]
    if source is not None:
        argv += ["--interface", source]
    result = subprocess.run([*argv, f"https://127.0.0.1:{port or nginx.port}/"],
                            capture_output=True,
                            text=True, timeout=CURL_TIMEOUT + 5, check=False)
    body, _, code = result.stdout.rpartition("\n")
    if result.returncode != 0:
        return Reply(status=0, body=result.stderr)
    return Reply(status=int(code), body=body)


def poll(attempt: Callable[[], Reply], done: Callable[[Reply], bool], *, limit: float,
         since: float | None = None) -> tuple[Reply, float]:
    """Attempt every POLL_EVERY seconds until ``done``, for at most ``limit`` seconds; the
    last reply and the seconds from ``since`` (a time.monotonic(); default: now) to it."""
    started = time.monotonic() if since is None else since
    while True:
        reply = attempt()
        elapsed = time.monotonic() - started
        if done(reply) or elapsed > limit:
            return reply, elapsed
        time.sleep(POLL_EVERY)


# --- the gateways under test ------------------------------------------------------------

@dataclass(frozen=True)
class Tools:
    nginx: str
    curl: str
    openssl: str


@dataclass(frozen=True)
class Gateway:
    mode: str
    nginx: Nginx
    config: str  # what `tegata gateway nginx` printed for the default tenant
    ports: dict[str, int]  # tenant -> the port of its server block in this nginx


def start_gateway(tegata: Tegata, tools: Tools, files: tuple[Path, Path, Path], prefix: Path,
                  mode: str, others: dict[str, Path] | None = None) -> Gateway:
    """One nginx for a variant: the default tenant's gateway on ``nginx.port``, and one
    server block for each of ``others`` (tenant -> its trust bundle) on a port of its own,
    each exactly as `tegata gateway nginx` printed it."""
    cert, key, bundle = files
    nginx = Nginx(binary=tools.nginx, prefix=prefix)
    ports = {"default": nginx.port} | {tenant: free_port() for tenant in others or {}}
    bundles = {"default": bundle} | (others or {})
    configs = {tenant: kit_config(tegata, nginx, mode, tenant, port=ports[tenant],
                                  server=(cert, key), bundle=bundles[tenant])
               for tenant in ports}
    nginx.gateway_conf.write_text("".join(configs.values()), encoding="utf-8")
    nginx.start()
    return Gateway(mode=mode, nginx=nginx, config=configs["default"], ports=ports)


def kit_config(tegata: Tegata, nginx: Nginx, mode: str, tenant: str, *, port: int,
               server: tuple[Path, Path], bundle: Path) -> str:
    """What `tegata gateway nginx` prints for ``tenant``'s server block in ``nginx``; in the
    crl variant, after the first crl-sync (nginx needs the file to start; nothing to reload
    yet), in the auth variant with its token in ``auth-<tenant>.conf``."""
    extra: list[str] = []
    if mode == "crl":
        crl = nginx.prefix / ("crl.pem" if tenant == "default" else f"crl-{tenant}.pem")
        extra = ["--crl-file", str(crl)]
        tegata.ok("gateway", "crl-sync", "--tenant", tenant, "--out", str(crl),
                  "--ca-bundle", str(bundle), "--url", tegata.url)
    if mode == "auth":
        extra = ["--auth-include", str(auth_include(nginx, tenant))]
    return tegata.ok("gateway", "nginx", "--tenant", tenant, "--mode", mode,
                     "--upstream", nginx.upstream, "--listen", f"127.0.0.1:{port}",
                     "--server-cert", str(server[0]), "--server-key", str(server[1]),
                     "--ca-bundle", str(bundle), "--tegata-url", tegata.url, *extra)


def auth_include(nginx: Nginx, tenant: str) -> Path:
    return nginx.prefix / ("auth.conf" if tenant == "default" else f"auth-{tenant}.conf")


# --- TLS session resumption, as openssl s_client tries it ---------------------------------

@dataclass(frozen=True)
class Handshake:
    """One connection by ``openssl s_client`` that sends one request."""

    protocol: str  # "tls1_2" or "tls1_3"
    summary: str  # "New, TLSv1.3, Cipher is ..." or "Reused, ..."
    status: int  # the HTTP status line's code; 0: none
    session_saved: bool  # with -sess_out: whether the server gave a session to resume

    @property
    def resumed(self) -> bool:
        return self.summary.startswith("Reused,")


def s_client(openssl: str, port: int, server_cert: Path, client: Client, session: Path, *,
             protocol: str, resume: bool) -> Handshake:
    """A request over a new TLS connection with ``client``'s certificate: saving the
    session into ``session`` (``-sess_out``), or offering the saved one (``-sess_in``)."""
    argv = [openssl, "s_client", "-connect", f"127.0.0.1:{port}", f"-{protocol}",
            "-CAfile", str(server_cert), "-cert", str(client.pem), "-key", str(client.pem),
            "-ign_eof", "-sess_in" if resume else "-sess_out", str(session)]
    if not resume:
        session.unlink(missing_ok=True)
    result = subprocess.run(
        argv, input=b"GET / HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n",
        capture_output=True, timeout=CURL_TIMEOUT + 5, check=False)
    lines = result.stdout.decode(errors="replace").splitlines()
    summaries = [line for line in lines if line.startswith(("New,", "Reused,"))]
    statuses = [int(line.split()[1]) for line in lines if line.startswith("HTTP/1.1 ")]
    assert len(summaries) == 1, (result.returncode, result.stderr[-500:])
    return Handshake(protocol=protocol, summary=summaries[0],
                     status=statuses[0] if statuses else 0, session_saved=session.exists())


def tegata_ocsp_status(tools: Tools, tegata: Tegata, bundle: Path, client: Client) -> str:
    """What Tegata's responder says now, asked directly by `openssl ocsp` (no nonce)."""
    result = subprocess.run(
        [tools.openssl, "ocsp", "-issuer", str(bundle), "-cert", str(client.pem),
         "-CAfile", str(bundle), "-url", f"{tegata.url}/ocsp", "-no_nonce"],
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert "Response verify OK" in result.stderr + result.stdout
    return result.stdout.split(f"{client.pem}: ", 1)[1].split()[0]
