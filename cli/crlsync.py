"""`tegata gateway crl-sync`: keep a gateway's CRL file fresh.

Fetch the chain bundle (the tenant's CRL and the root's), check it (every CRL signed by a
CA of the trusted bundle, nextUpdate ahead, CRL Number never going backwards), write it
atomically, and run the reload command (nginx) or push it through HAProxy's runtime API,
only when the content changed. It warns loudly long before the file on the gateway would
expire: an expired CRL locks every user out.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca.errors import InvalidInput
from cli.output import shown

_PEM = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----\s*", re.S)
MAX_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class Checked:
    pem: bytes
    numbers: dict[str, int]  # issuer (RFC 4514) -> CRL Number
    next_update: dt.datetime  # the earliest of the bundle


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
    """The bundle, if every CRL in it is signed by a trusted CA, current, and not older
    than the one the gateway has, and every trusted CA has one (nginx refuses a chain with a
    CA whose CRL is missing). What is kept is the CRLs alone, re-encoded: text around or
    between them, which no signature covers, never reaches the gateway."""
    numbers: dict[str, int] = {}
    earliest: dt.datetime | None = None
    crls = split(pem)
    for crl in crls:
        issuer = next((ca for ca in trusted if ca.subject == crl.issuer), None)
        if issuer is None or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            raise InvalidInput(f"the CRL of {crl.issuer.rfc4514_string()} is not signed by a "
                               "CA of the trusted bundle")
        next_update = crl.next_update_utc
        if next_update is None or next_update <= now:
            raise InvalidInput(f"the CRL of {crl.issuer.rfc4514_string()} has expired "
                               f"(nextUpdate {next_update})")
        ext = crl.extensions.get_extension_for_class(x509.CRLNumber).value
        name = crl.issuer.rfc4514_string()
        if previous is not None and ext.crl_number < previous.numbers.get(name, 0):
            raise InvalidInput(f"the CRL of {name} has number {ext.crl_number}, older than "
                               f"the {previous.numbers[name]} the gateway has")
        numbers[name] = ext.crl_number
        earliest = next_update if earliest is None else min(earliest, next_update)
    assert earliest is not None
    missing = [ca.subject.rfc4514_string() for ca in trusted
               if ca.subject.rfc4514_string() not in numbers]
    if missing:
        raise InvalidInput(f"the bundle has no CRL of {', '.join(missing)}")
    clean = b"".join(crl.public_bytes(serialization.Encoding.PEM) for crl in crls)
    return Checked(pem=clean, numbers=numbers, next_update=earliest)


def read_current(path: Path, trusted: list[x509.Certificate], *,
                 now: dt.datetime) -> Checked | None:
    """What the gateway has now, if anything readable (expired or not)."""
    try:
        pem = path.read_bytes()
        crls = split(pem)
    except (OSError, InvalidInput):
        return None
    numbers = {}
    earliest = None
    for crl in crls:
        numbers[crl.issuer.rfc4514_string()] = crl.extensions.get_extension_for_class(
            x509.CRLNumber).value.crl_number
        if crl.next_update_utc is not None:
            earliest = crl.next_update_utc if earliest is None else min(earliest,
                                                                        crl.next_update_utc)
    return Checked(pem=pem, numbers=numbers, next_update=earliest or now)


def fetch(url: str, *, timeout: float = 30) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise InvalidInput(f"{shown(url, 80)} is not an http(s) URL")
    # the scheme is checked above: http(s) only, never file:
    request = urllib.request.Request(url, headers={"User-Agent": "tegata-crl-sync"})  # noqa: S310
    try:
        # justified: the scheme is checked above, http or https only (bandit B310)
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310  # nosec B310
            data: bytes = response.read(MAX_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a URL urllib will not send
        raise InvalidInput(f"cannot fetch {shown(url)}: {shown(exc)}") from None
    if len(data) > MAX_BYTES:
        raise InvalidInput(f"{shown(url)} is larger than {MAX_BYTES} bytes")
    return data


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


def reload(command: str) -> None:
    """Run the reload command (no shell: its words are split as a shell would)."""
    result = subprocess.run(shlex.split(command), capture_output=True, text=True,  # noqa: S603
                            timeout=60, check=False)
    if result.returncode != 0:
        raise InvalidInput(f"reload command failed ({result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()[:200]}")


_HAPROXY_UNSAFE = re.compile(r"[\s;#\\\x00-\x1f\x7f]")


def haproxy_push(socket_path: str, crl_file: Path, pem: bytes) -> None:
    """Replace the CRL in a running HAProxy (runtime API: set, then commit)."""
    if _HAPROXY_UNSAFE.search(str(crl_file)):
        # the runtime API splits words on spaces and commands on ';'
        raise InvalidInput(f"{shown(crl_file)}: HAProxy's runtime API cannot name a file "
                           "with spaces, ';', '#', '\\' or control characters")
    payload = pem.decode().strip()

    def send(command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(socket_path)
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")

    answer = send(f"set ssl crl-file {crl_file} <<\n{payload}\n")
    if "error" in answer.lower():
        raise InvalidInput(f"HAProxy refused the CRL: {answer.strip()[:200]}")
    answer = send(f"commit ssl crl-file {crl_file}")
    if "success" not in answer.lower():
        raise InvalidInput(f"HAProxy did not commit the CRL: {answer.strip()[:200]}")


def warn(message: str) -> None:
    sys.stderr.write(f"tegata: WARNING: {shown(message, 1000)}\n")
