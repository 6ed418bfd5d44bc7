"""The external tools of the interop tests (openssl, pkilint) and the files they judge: a
CA's chain written as PEM, commands run side by side."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from ca.service import IssueRequest, Service
from tests.moments import MOMENTS
from tests.support.environment import unavailable

# openssl verify judges at this instant (-attime), not at the machine's clock, so that the
# chain of a FixedClock CA verifies on any day the suite runs
AT_START = str(int(MOMENTS.start.timestamp()))


def pkilint_tool(name: str) -> str:
    """pkilint's commands are installed next to this interpreter."""
    path = Path(sys.executable).parent / name
    if not path.is_file():
        unavailable(f"pkilint's {name} (pip install pkilint)")
    return str(path)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)


def run_all(commands: Sequence[Sequence[str]]) -> list[subprocess.CompletedProcess[str]]:
    """Run independent commands side by side (each pkilint run is half a second of start-up)."""
    procs = [(list(argv), subprocess.Popen(list(argv), stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True))
             for argv in commands]
    results = []
    for argv, proc in procs:
        out, err = proc.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
    return results


@dataclass(frozen=True)
class Chain:
    root: Path
    issuing: Path
    leaf: Path

    def files(self) -> dict[str, Path]:
        return {"root": self.root, "issuing": self.issuing, "leaf": self.leaf}


def write_pem(path: Path, pem: str) -> Path:
    path.write_text(pem, encoding="ascii")
    return path


def write_chain(service: Service, directory: Path, *, tenant: str = "default",
                login: str = "alice", expires: dt.date | None = None,
                timezone: str | None = None) -> Chain:
    """root.pem, issuing.pem and leaf.pem of ``tenant``, with a fresh certificate for ``login``
    (added with secure access and an e-mail address at example.com)."""
    directory.mkdir(parents=True, exist_ok=True)
    root, issuing = service.hierarchy.ca_certificates(tenant)
    service.users.add(tenant, login, email=f"{login}@example.com", allow=True)
    (leaf,) = service.certificates.issue(IssueRequest(tenant=tenant, logins=(login,),
                                                      expires=expires,
                                                      timezone=timezone))
    return Chain(root=write_pem(directory / "root.pem", root.pem),
                 issuing=write_pem(directory / "issuing.pem", issuing.pem),
                 leaf=write_pem(directory / "leaf.pem", leaf.pem))


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())
