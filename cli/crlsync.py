"""`tegata gateway crl-sync`: keep a gateway's CRL file fresh.

Fetch the chain bundle (the CRLs of the tenant's issuing CAs in service, one per
generation, and the root's), keep the CRLs of the CAs of the trusted bundle (those are what
the gateway checks; a CRL of a CA it lacks, a rollover's next generation, is left out with
a warning), check them (nextUpdate ahead, CRL Number never going backwards, one for every
trusted CA), write them atomically, and run the reload command (nginx) or push them
through HAProxy's runtime API. It warns loudly long before the file on the gateway would
expire: an expired CRL locks every user out.

A CRL counts as applied only once the gateway has taken it: what was last applied is
recorded beside the file (``<out>.applied``) after the push or reload succeeded, so a run
after a failed one retries it rather than finding the file "unchanged"; HAProxy is also
asked which CRL it holds (``show ssl crl-file``). The record's ETag makes the next fetch
conditional: an unchanged CRL costs a 304 and no body.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ca.errors import ConfigError, GatewayRefused, InvalidInput, Unreachable
from cli.output import shown

_PEM = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----\s*", re.S)
MAX_BYTES = 512 * 1024 * 1024
FETCH_TIMEOUT = 30.0  # seconds for Tegata to answer; then the run fails as unreachable


# crl-sync's failures are in the one error tree (ca.errors), named here too; cli.errors
# gives their exit codes: Unreachable 69 (EX_UNAVAILABLE), GatewayRefused 75 (EX_TEMPFAIL)
__all__ = ["GatewayRefused", "Unreachable"]
# answers that say "not now" rather than "not this": worth a retry, never bad input
TRY_LATER = frozenset({408, 425, 429})


@dataclass(frozen=True, kw_only=True)
class Checked:
    pem: bytes
    numbers: dict[str, int]  # issuer (RFC 4514) -> CRL Number
    next_update: dt.datetime  # the earliest of the bundle
    # CAs of the chain the trusted bundle lacks (a rollover's next generation): their CRLs
    # are left out, nginx would not check them; one warning line names them
    untrusted: tuple[str, ...] = ()


def split(pem: bytes) -> list[x509.CertificateRevocationList]:
    blocks = _PEM.findall(pem)
    if not blocks:
        raise InvalidInput("no PEM CRL in the bundle")
    try:
        return [x509.load_pem_x509_crl(block) for block in blocks]
    except ValueError as exc:
        raise InvalidInput(f"a CRL in the bundle cannot be read: {exc}") from None


def check(pem: bytes, trusted: list[x509.Certificate], *, now: dt.datetime,
          previous: Checked | None) -> Checked:
    """The CRLs of the trusted CAs in the bundle, if each is current and not older than the
    one the gateway has, and every trusted CA has one (nginx refuses a chain with a CA whose
    CRL is missing). A CRL no trusted CA signed is left out, not a failure: after a rollover
    the chain carries the next generation's CRL before the gateway's bundle has its CA, and
    the CRLs of the CAs it does trust (the old generation's revocations) must still reach
    it; ``untrusted`` names those left out. What is kept is the CRLs alone, re-encoded: text
    around or between them, which no signature covers, never reaches the gateway."""
    numbers: dict[str, int] = {}
    earliest: dt.datetime | None = None
    kept: list[x509.CertificateRevocationList] = []
    untrusted: list[str] = []
    for crl in split(pem):
        issuer = _signer_of(crl, trusted)
        if issuer is None:
            untrusted.append(_crl_label(crl))
            continue
        kept.append(crl)
        next_update = crl.next_update_utc
        if next_update is None or next_update <= now:
            raise InvalidInput(f"the CRL of {crl.issuer.rfc4514_string()} has expired "
                               f"(nextUpdate {next_update})")
        ext = crl.extensions.get_extension_for_class(x509.CRLNumber).value
        name = ca_label(issuer, trusted)
        if previous is not None and ext.crl_number < previous.numbers.get(name, 0):
            raise InvalidInput(f"the CRL of {name} has number {ext.crl_number}, older than "
                               f"the {previous.numbers[name]} the gateway has")
        numbers[name] = ext.crl_number
        earliest = next_update if earliest is None else min(earliest, next_update)
    missing = [ca_label(ca, trusted) for ca in trusted if ca_label(ca, trusted) not in numbers]
    if missing:
        also = (f" (it has CRLs of CAs --ca-bundle lacks: {', '.join(untrusted)})"
                if untrusted else "")
        raise InvalidInput(f"the bundle has no CRL of {', '.join(missing)}{also}")
    assert earliest is not None
    clean = b"".join(crl.public_bytes(serialization.Encoding.PEM) for crl in kept)
    return Checked(pem=clean, numbers=numbers, next_update=earliest,
                   untrusted=tuple(untrusted))


def _crl_label(crl: x509.CertificateRevocationList) -> str:
    """A CRL's issuer as messages name it: its name, with the key identifier of its AKI
    (two generations of a CA share a name; the key tells which one)."""
    name = crl.issuer.rfc4514_string()
    try:
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return name
    return name if aki.key_identifier is None else \
        f"{name} (key {aki.key_identifier.hex().upper()})"


def _signer_of(crl: x509.CertificateRevocationList,
               trusted: list[x509.Certificate]) -> x509.Certificate | None:
    """The CA of the trusted bundle whose key signed ``crl``. Two CAs may share a name (a
    tenant's issuing CAs before and after a rollover): the signature tells them apart."""
    for ca in trusted:
        if ca.subject != crl.issuer:
            continue
        try:
            if crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
                return ca
        except (TypeError, ValueError):  # a key of another type than the signature's
            continue
    return None


def ca_label(ca: x509.Certificate, trusted: list[x509.Certificate]) -> str:
    """How a CA is named in messages and in the record of CRL Numbers: its name (RFC 4514),
    with its key identifier when another CA of the bundle has the same name."""
    name = ca.subject.rfc4514_string()
    if sum(other.subject == ca.subject for other in trusted) < 2:
        return name
    try:
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        ski = ca.fingerprint(hashes.SHA256())
    return f"{name} (key {ski.hex().upper()})"


def read_current(path: Path, trusted: list[x509.Certificate], *, now: dt.datetime,
                 quiet: bool = False) -> Checked | None:
    """What the gateway has now, if anything readable (expired or not).

    A file that holds CRLs this cannot use (unreadable, without a CRL Number) is replaced
    by the next sync, with a warning naming it (unless ``quiet``); a file that is there and
    holds no PEM CRL at all is someone else's (a mistyped --out) and is refused: exit 2,
    nothing written."""
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {shown(path)}: {shown(exc.strerror or exc)}"
                          ) from None
    if not _PEM.search(pem):
        if pem.strip():
            raise InvalidInput(f"{shown(path)} exists and holds no PEM CRL: not "
                               "overwriting it", field="out")
        return None
    try:
        crls = split(pem)
    except InvalidInput as exc:
        if not quiet:
            warn(f"{path}: {exc.message}; replacing it")
        return None
    numbers = {}
    earliest = None
    for crl in crls:
        try:
            number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        except x509.ExtensionNotFound:
            # not one of Tegata's: any numbered CRL is newer
            if not quiet:
                warn(f"{path}: the CRL of {crl.issuer.rfc4514_string()} has no CRL Number; "
                     "replacing it")
            continue
        signer = _signer_of(crl, trusted)
        numbers[crl.issuer.rfc4514_string() if signer is None
                else ca_label(signer, trusted)] = number
        if crl.next_update_utc is not None:
            earliest = crl.next_update_utc if earliest is None else min(earliest,
                                                                        crl.next_update_utc)
    return Checked(pem=pem, numbers=numbers, next_update=earliest or now)


@dataclass(frozen=True, kw_only=True)
class Fetched:
    pem: bytes | None  # None: 304, the CRL is the one the validators named
    etag: str | None
    last_modified: str | None


# everything up to the last "@" after an optional scheme: a password may hold "/", "?", "#" or
# "@" unencoded, and a URL pasted with a leading space or one slash short still names one
_USERINFO = re.compile(r"^(\s*[A-Za-z][A-Za-z0-9+.-]*:/*)?.*@", re.S)


def masked(url: str) -> str:
    """``url`` fit to be shown: its userinfo (a user name, a password) replaced by ***."""
    return shown(_USERINFO.sub(lambda m: f"{m.group(1) or ''}***@", url), 200)


def check_url(url: str) -> None:
    """An http(s) URL urllib can send, without userinfo (urllib sends no basic auth from it:
    a password there would only leak into messages); ``InvalidInput`` (2) if not."""
    if not url.startswith(("http://", "https://")):
        raise InvalidInput(f"{masked(url)} is not an http(s) URL", field="url")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (it raises for a port out of range)
    except ValueError as exc:
        # urllib's words may quote a piece of the userinfo ("… as 'pa55'"): left out then
        why = "" if "@" in url else f" ({shown(exc)})"
        raise InvalidInput(f"--url {masked(url)}: not a URL{why}", field="url") from None
    if any(c.isspace() or not c.isprintable() for c in url):
        raise InvalidInput(f"--url {masked(url)!r}: not a URL (a space or control character)",
                           field="url")
    if not parts.hostname:
        raise InvalidInput(f"--url {masked(url)}: not a URL (no host)", field="url")
    if "@" in parts.netloc:
        raise InvalidInput(f"--url {masked(url)}: crl-sync sends no user name or password; "
                           "give the URL without them", field="url")


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirects (their limits kept), to http and https only: its default handler
    would follow one to ftp://."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            raise InvalidInput(f"Tegata at {masked(req.full_url)} redirected to a URL of "
                               f"scheme {shown(scheme, 20)}; crl-sync follows http and "
                               "https only")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


def fetch(url: str, *, timeout: float | None = None, etag: str | None = None,
          last_modified: str | None = None) -> Fetched:
    """GET ``url``, conditionally when validators of the last applied CRL are given."""
    check_url(url)
    headers = {"User-Agent": "tegata-crl-sync"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    # the scheme is checked above (and each redirect's): http(s) only, never file: or ftp:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310
    try:
        # justified: the scheme is checked above, and by _HttpOnlyRedirects for each
        # redirect: http or https only (bandit B310)
        with _OPENER.open(request, timeout=timeout or FETCH_TIMEOUT) as response:  # nosec B310
            data: bytes = response.read(MAX_BYTES + 1)
            got = (response.headers.get("ETag"), response.headers.get("Last-Modified"))
            # read(n) returns what came before the connection dropped, without complaint:
            # the bytes still owed to Content-Length tell
            owed = response.length
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return Fetched(pem=None, etag=exc.headers.get("ETag") or etag,
                           last_modified=exc.headers.get("Last-Modified") or last_modified)
        if exc.code >= 500 or exc.code in TRY_LATER:
            raise Unreachable(f"Tegata at {masked(url)} answered {exc.code}") from None
        raise InvalidInput(f"Tegata at {masked(url)} answered {exc.code}") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        if isinstance(exc, ValueError):  # a URL urllib will not send
            raise InvalidInput(f"cannot fetch {masked(url)}: {shown(exc)}") from None
        raise Unreachable(f"cannot reach Tegata at {masked(url)}: "
                          f"{shown(getattr(exc, 'reason', exc))}") from None
    if len(data) > MAX_BYTES:
        raise InvalidInput(f"{masked(url)} is larger than {MAX_BYTES} bytes")
    if owed:
        raise Unreachable(f"Tegata at {masked(url)} closed the connection {owed} bytes short "
                          "of its answer")
    return Fetched(pem=data, etag=got[0], last_modified=got[1])


# --- what was applied ------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Applied:
    """The record beside --out of the CRL the gateway last took."""

    sha256: str
    gateway: str = ""  # how it was applied (Target.gateway): another way applies it again
    etag: str | None = None
    last_modified: str | None = None


def record_path(out: Path) -> Path:
    return out.with_name(out.name + ".applied")


def digest(pem: bytes) -> str:
    return hashlib.sha256(pem).hexdigest()


def read_applied(out: Path) -> Applied | None:
    """The record, or None when there is none or it cannot be read (then the CRL is pushed
    again: a needless push is harmless, a missed one is not)."""
    try:
        data = json.loads(record_path(out).read_text(encoding="utf-8"))
        return Applied(sha256=str(data["sha256"]), gateway=str(data.get("gateway", "")),
                       etag=data.get("etag"), last_modified=data.get("last_modified"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_applied(out: Path, applied: Applied) -> None:
    text = json.dumps({"sha256": applied.sha256, "gateway": applied.gateway,
                       "etag": applied.etag, "last_modified": applied.last_modified})
    try:
        write_atomically(record_path(out), text.encode())
    except OSError as exc:
        raise ConfigError(f"cannot write {shown(record_path(out))}: "
                          f"{shown(exc.strerror or exc)}") from None


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of one."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(name).chmod(0o644)  # a CRL is public; nginx's workers read it
        Path(name).replace(path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def reload_words(command: str) -> list[str]:
    """The reload command's words (split as a shell would, none run by one); checked
    before anything is fetched or written."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise InvalidInput(f"--reload {shown(command, 80)}: {exc}", field="reload") from None
    if not words:  # an unset variable: never "no reload" in silence
        raise InvalidInput("--reload is empty", field="reload")
    return words


def reload(command: str) -> None:
    """Run the reload command (no shell: its words are split as a shell would). Its output,
    in whatever encoding it came, is quoted in the error only."""
    words = reload_words(command)
    try:
        result = subprocess.run(words, capture_output=True, timeout=60,  # noqa: S603
                                check=False)
    except FileNotFoundError:
        raise ConfigError(f"reload command {shown(words[0], 80)} not found") from None
    except subprocess.TimeoutExpired:
        raise GatewayRefused(f"reload command {shown(words[0], 80)} did not finish within "
                             "60 s") from None
    except OSError as exc:  # not executable, a directory, not a program
        raise ConfigError(f"reload command {shown(words[0], 80)} cannot be run: "
                          f"{shown(exc.strerror or exc)}") from None
    if result.returncode != 0:
        said = (result.stderr or result.stdout).decode(errors="replace").strip()
        raise GatewayRefused(f"reload command failed ({_status(result.returncode)})"
                             + (f": {shown(said, 200)}" if said else ""))


def _status(returncode: int) -> str:
    """An exit status as a person reads it: ``1``, or ``killed by SIGKILL``."""
    if returncode >= 0:
        return str(returncode)
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


# --- nginx: did the master take the new configuration? -------------------------------------

RELOAD_WAIT = 10.0  # seconds for nginx's master to start a new generation of workers


def nginx_master(pid_file: Path) -> int:
    """The pid of the nginx master that ``pid_file`` names, if it runs."""
    try:
        text = pid_file.read_text(encoding="ascii", errors="replace").strip()
    except OSError as exc:
        raise Unreachable(f"nginx's pid file {shown(pid_file)}: "
                          f"{shown(exc.strerror or exc)} (is nginx running?)") from None
    if not text.isdigit() or int(text) < 1:
        raise Unreachable(f"nginx's pid file {shown(pid_file)} holds no pid")
    pid = int(text)
    if not Path(f"/proc/{pid}").exists():
        raise Unreachable(f"nginx's master (pid {pid}, from {shown(pid_file)}) is not "
                          "running")
    return pid


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (nginx's workers, cache manager...), from
    /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(errors="replace")
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.add(int(entry.name))
    return found


def reload_nginx(command: str, pid_file: Path, *, wait: float = RELOAD_WAIT) -> None:
    """Run the reload command, then check that nginx's master took the new configuration.

    ``nginx -s reload`` only signals the master: it exits 0 even when the master then
    refuses the configuration (``[emerg] bind() ... Address already in use``) and goes on
    with the old one and the old CRL. A master that took it starts new workers (and
    closes the old ones); one that did not keeps its workers. So the master's children are
    noted before the reload, and a new one must show up within ``wait`` seconds."""
    master = nginx_master(pid_file)
    before = children(master)
    reload(command)
    deadline = time.monotonic() + wait
    while True:
        if not Path(f"/proc/{master}").exists():
            raise GatewayRefused(f"nginx's master (pid {master}) exited on the reload")
        if children(master) - before:
            return
        if time.monotonic() > deadline:
            raise GatewayRefused(
                f"nginx (master {master}) did not take the new configuration within "
                f"{wait:g} s: it keeps the old one and the old CRL (its error log says why, "
                "e.g. [emerg] bind() failed)")
        time.sleep(0.05)


_HAPROXY_UNSAFE = re.compile(r"[\s;#\\\x00-\x1f\x7f]")


def check_haproxy_name(crl_file: Path) -> None:
    if _HAPROXY_UNSAFE.search(str(crl_file)):
        # the runtime API splits words on spaces and commands on ';'
        raise InvalidInput(f"{shown(crl_file)}: HAProxy's runtime API cannot name a file "
                           "with spaces, ';', '#', '\\' or control characters")


def _haproxy(socket_path: str, command: str) -> str:
    """One command on HAProxy's runtime API; its whole answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(socket_path)
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError as exc:
        raise Unreachable(f"HAProxy's runtime API at {shown(socket_path)}: "
                          f"{shown(exc.strerror or exc)}") from None
    return b"".join(chunks).decode(errors="replace")


def _asn1_time(moment: dt.datetime) -> str:
    """A time as OpenSSL prints it (ASN1_TIME_print): ``Nov  9 20:07:10 2026 GMT``."""
    return f"{moment:%b} {moment.day:2d} {moment:%H:%M:%S %Y} GMT"


def _crl_summary(pem: bytes) -> list[tuple[str, str, frozenset[int]]]:
    return sorted((_asn1_time(crl.last_update_utc),
             _asn1_time(crl.next_update_utc) if crl.next_update_utc else "",
             frozenset(entry.serial_number for entry in crl)) for crl in split(pem))


def _shown_summary(answer: str) -> list[tuple[str, str, frozenset[int]]]:
    """What ``show ssl crl-file <file>`` says HAProxy holds, in the form of _crl_summary."""
    found = []
    for block in re.split(r"^Certificate Revocation List #\d+:$", answer, flags=re.M)[1:]:
        last = re.search(r"^Last Update: (.+)$", block, re.M)
        after = re.search(r"^Next Update: (.+)$", block, re.M)
        serials = frozenset(int(s, 16) for s in
                            re.findall(r"^\s+Serial Number: ([0-9A-Fa-f]+)$", block, re.M))
        found.append((last.group(1).strip() if last else "?",
                      after.group(1).strip() if after else "", serials))
    return sorted(found)


def haproxy_holds(socket_path: str, crl_file: Path, pem: bytes) -> bool:
    """Whether the running HAProxy holds these CRLs for ``crl_file`` (same thisUpdate,
    nextUpdate and serials; HAProxy lists them in an order of its own)."""
    check_haproxy_name(crl_file)
    answer = _haproxy(socket_path, f"show ssl crl-file {crl_file}")
    return _shown_summary(answer) == _crl_summary(pem)


HAPROXY_BUFSIZE = 16384  # HAProxy's tune.bufsize unless its global section sets another
# HAProxy reads a runtime API command and its payload into one buffer of tune.bufsize: a
# longer one gets no answer at all, and HAProxy 2.6 was seen to abort (a "bogus APPCTX
# spinning") on one a few bytes short of the buffer; so a kilobyte of it is kept spare
HAPROXY_SPARE = 1024


def _set_command(crl_file: Path, pem: bytes) -> str:
    return f"set ssl crl-file {crl_file} <<\n{pem.decode().strip()}\n"


def haproxy_fits(crl_file: Path, pem: bytes, bufsize: int = HAPROXY_BUFSIZE) -> bool:
    """Whether the runtime API can take these CRLs in one ``set ssl crl-file`` (the
    command, its payload and the blank line that ends it, within one buffer)."""
    return len(_set_command(crl_file, pem).encode()) + 1 <= bufsize - HAPROXY_SPARE


def haproxy_push(socket_path: str, crl_file: Path, pem: bytes) -> None:
    """Replace the CRL in a running HAProxy (runtime API: set, then commit), and check that
    it holds it now."""
    check_haproxy_name(crl_file)
    command = _set_command(crl_file, pem)
    where = f"HAProxy at {shown(socket_path)}"
    # a transaction left open by a run that failed half-way would refuse the new one
    _haproxy(socket_path, f"abort ssl crl-file {crl_file}")
    answer = _haproxy(socket_path, command)
    if not answer.strip():
        raise GatewayRefused(f"{where} closed the connection without an answer to the "
                             f"{len(command.encode())}-byte set ssl crl-file command for "
                             f"{shown(crl_file)} (more than its tune.bufsize takes?)")
    if "transaction" not in answer.lower() or "error" in answer.lower():
        raise GatewayRefused(f"{where} refused the CRL for {shown(crl_file)}: "
                             f"{shown(answer.strip(), 200)}")
    answer = _haproxy(socket_path, f"commit ssl crl-file {crl_file}")
    if "success" not in answer.lower():
        raise GatewayRefused(f"{where} did not commit the CRL for {shown(crl_file)}: "
                             f"{shown(answer.strip(), 200) or 'no answer'}")
    if not haproxy_holds(socket_path, crl_file, pem):
        raise GatewayRefused(f"{where} does not hold the CRL just committed for "
                             f"{shown(crl_file)} (is it the crl-file of a bind line?)")


def haproxy_reloaded(command: str, socket_path: str, crl_file: Path, pem: bytes, *,
                     wait: float = RELOAD_WAIT) -> None:
    """Run HAProxy's reload command (CRLs too big for one runtime API command: the new
    process reads the file written), then wait until HAProxy holds them."""
    reload(command)
    deadline = time.monotonic() + wait
    while True:
        try:
            if haproxy_holds(socket_path, crl_file, pem):
                return
        except Unreachable:  # the new process is binding its runtime API socket
            pass
        if time.monotonic() > deadline:
            raise GatewayRefused(f"HAProxy at {shown(socket_path)} does not hold the CRL of "
                                 f"{shown(crl_file)} {wait:g} s after the reload command")
        time.sleep(0.1)


# --- one sync ----------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Target:
    out: Path
    url: str  # the chain bundle's URL
    reload_command: str | None = None
    nginx_pid: Path | None = None  # check that nginx's master took the reload
    reload_wait: float = RELOAD_WAIT  # seconds it has to start new workers
    haproxy_socket: str | None = None
    haproxy_bufsize: int = HAPROXY_BUFSIZE  # its tune.bufsize

    @property
    def gateway(self) -> str:
        return json.dumps([self.reload_command, self.haproxy_socket]
                          + ([str(self.nginx_pid)] if self.nginx_pid else []))


@dataclass(frozen=True, kw_only=True)
class Outcome:
    checked: Checked
    changed: bool  # the file was written, or the gateway given the CRL, in this run


def sync_once(target: Target, trusted: list[x509.Certificate], *,
              now: dt.datetime) -> Outcome:
    """Fetch (conditionally), check, write, and have the gateway take the CRL unless the
    record beside the file, or HAProxy itself, says it already has."""
    out = target.out
    current = read_current(out, trusted, now=now)
    record = read_applied(out)
    # validators only for the CRL on disk that the gateway took: anything else needs a body
    in_step = current is not None and record is not None and record.sha256 == digest(
        current.pem)
    fetched = fetch(target.url, etag=record.etag if in_step and record else None,
                    last_modified=record.last_modified if in_step and record else None)
    if fetched.pem is None and current is not None:  # 304: the CRL on disk is current
        checked = check(current.pem, trusted, now=now, previous=None)
    elif fetched.pem is None:  # the source misbehaves: not the caller's input
        raise Unreachable(f"Tegata at {masked(target.url)} answered 304 to an "
                          "unconditional request")
    else:
        checked = check(fetched.pem, trusted, now=now, previous=current)
    sha = digest(checked.pem)
    written = current is None or current.pem != checked.pem
    if written:
        try:
            write_atomically(out, checked.pem)
        except OSError as exc:
            raise ConfigError(f"cannot write {shown(out)}: {shown(exc.strerror or exc)}"
                              ) from None
    recorded = (not written and record is not None and record.sha256 == sha
                and record.gateway == target.gateway)
    given = False
    if target.haproxy_socket:
        # with HAProxy, the reload command is for CRLs too big for one runtime API command
        if not haproxy_holds(target.haproxy_socket, out, checked.pem):
            _give_haproxy(target, checked.pem)
            given = True
    elif target.reload_command and not recorded:
        if target.nginx_pid is not None:
            reload_nginx(target.reload_command, target.nginx_pid, wait=target.reload_wait)
        else:
            reload(target.reload_command)
        given = True
    # CRLs left out (a CA the bundle lacks): no validators, so that every run fetches the
    # chain again and repeats the warning until the operator gives the new bundle
    fresh = Applied(sha256=sha, gateway=target.gateway,
                    etag=None if checked.untrusted else fetched.etag,
                    last_modified=None if checked.untrusted else fetched.last_modified)
    if fresh != record:
        write_applied(out, fresh)
    return Outcome(checked=checked, changed=written or given)


def _give_haproxy(target: Target, pem: bytes) -> None:
    """Push the CRLs through the runtime API if one command can carry them; else run the
    reload command, which has HAProxy read the file written."""
    assert target.haproxy_socket is not None
    if haproxy_fits(target.out, pem, target.haproxy_bufsize):
        haproxy_push(target.haproxy_socket, target.out, pem)
    elif target.reload_command is None:
        raise GatewayRefused(
            f"the CRLs of {shown(target.out)} ({len(pem)} bytes) do not fit in one command "
            f"of HAProxy's runtime API (tune.bufsize {target.haproxy_bufsize}, less "
            f"{HAPROXY_SPARE} spare): written, not applied; give --reload with HAProxy's "
            "reload command (e.g. 'systemctl reload haproxy'), or raise tune.bufsize and "
            "--haproxy-bufsize")
    else:
        haproxy_reloaded(target.reload_command, target.haproxy_socket, target.out, pem,
                         wait=target.reload_wait)


def warn(message: str) -> None:
    sys.stderr.write(f"tegata: WARNING: {shown(message, 1000)}\n")
