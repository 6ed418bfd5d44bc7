"""Start-up refusals: an unsafe or broken setup stops ``tegata serve`` and ``tegata init`` with
one line naming the file or variable at fault, a non-zero exit, and nothing made half-way."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.processes import free_port, stop
from tests.support.cli import Cli, Env, Result
from tests.support.environment import PASSPHRASE

UNREACHABLE_DB = "postgresql+psycopg://postgres@127.0.0.1:1/test"
SERVE_DEADLINE = 20.0  # seconds; a refusal takes about one interpreter start-up


@dataclass(frozen=True)
class Served:
    code: int | None  # None: still running at the deadline (then stopped by the test)
    out: str
    err: str
    listened: bool
    seconds: float


def serve(cwd: Path, *, stop_when_listening: bool = False) -> Served:
    """Run ``tegata serve`` as a child process and watch its port while it runs."""
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
                            cwd=cwd, env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    listened = False
    try:
        while proc.poll() is None and time.monotonic() - started < SERVE_DEADLINE:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", port), timeout=0.2):
                listened = True
            if listened and stop_when_listening:
                break
            time.sleep(0.05)
        code = proc.poll()
    finally:
        stop(proc)
    out, err = proc.communicate(timeout=10)
    return Served(code=code, out=out, err=err, listened=listened,
                  seconds=time.monotonic() - started)


def root_key_file(env: Env) -> Path:
    (path,) = env.key_dir.glob("root-*.key.pem")
    return path


def passphrase_file(env: Env, mode: int, text: str = PASSPHRASE) -> Path:
    path = env.data_dir.parent / "passphrase"
    path.write_text(text + "\n", encoding="utf-8")
    path.chmod(mode)
    return path


# Each case breaks an initialised setup and returns what the message must name.
Breakage = Callable[[Env, pytest.MonkeyPatch], list[str]]


def _key_file_open_to_others(env: Env, mp: pytest.MonkeyPatch) -> list[str]:
    path = root_key_file(env)
    path.chmod(0o644)
    return [str(path), "0644"]


def _root_key_of_another_deployment(env: Env, mp: pytest.MonkeyPatch) -> list[str]:
    path = root_key_file(env)
    path.write_bytes(ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSPHRASE.encode())))
    return [str(path), "TEGATA_KEY_DIR"]


def _wrong_passphrase(env: Env, mp: pytest.MonkeyPatch) -> list[str]:
    mp.setenv("TEGATA_KEY_PASSPHRASE", "wrong-but-long-enough-passphrase")
    return ["TEGATA_KEY_PASSPHRASE"]


def _missing_passphrase(env: Env, mp: pytest.MonkeyPatch) -> list[str]:
    mp.delenv("TEGATA_KEY_PASSPHRASE")
    return ["TEGATA_KEY_PASSPHRASE"]


def _passphrase_file_open_to_others(env: Env, mp: pytest.MonkeyPatch) -> list[str]:
    mp.delenv("TEGATA_KEY_PASSPHRASE")
    path = passphrase_file(env, 0o644)
    mp.setenv("TEGATA_KEY_PASSPHRASE_FILE", str(path))
    return ["TEGATA_KEY_PASSPHRASE_FILE", str(path)]


def _wrong_passphrase_in_file(env: Env, mp: pytest.MonkeyPatch) -> list[str]:
    mp.delenv("TEGATA_KEY_PASSPHRASE")
    mp.setenv("TEGATA_KEY_PASSPHRASE_FILE",
              str(passphrase_file(env, 0o600, "wrong-but-long-enough-passphrase")))
    return ["TEGATA_KEY_PASSPHRASE_FILE"]


def _unreachable_database(env: Env, mp: pytest.MonkeyPatch) -> list[str]:
    mp.setenv("TEGATA_DATABASE_URL", UNREACHABLE_DB)
    return ["TEGATA_DATABASE_URL"]


SERVE_BREAKAGES: dict[str, Breakage] = {
    "key-file-0644": _key_file_open_to_others,
    "root-key-of-another-deployment": _root_key_of_another_deployment,
    "wrong-passphrase": _wrong_passphrase,
    "wrong-passphrase-in-file": _wrong_passphrase_in_file,
    "missing-passphrase": _missing_passphrase,
    "passphrase-file-0644": _passphrase_file_open_to_others,
    "unreachable-database": _unreachable_database,
}


def test_serve_starts_listening_when_the_setup_is_sound(ready_sqlite: Env) -> None:
    # the control for the refusals below: this harness does see a server that listens
    served = serve(ready_sqlite.data_dir.parent, stop_when_listening=True)
    assert served.listened, served.err
    assert PASSPHRASE not in served.out + served.err


@pytest.mark.parametrize("breakage", SERVE_BREAKAGES.values(), ids=SERVE_BREAKAGES.keys())
def test_serve_refuses_to_start_in_one_line_naming_the_fault(
        ready_sqlite: Env, monkeypatch: pytest.MonkeyPatch, breakage: Breakage) -> None:
    keys_before = ready_sqlite.key_files()
    names = breakage(ready_sqlite, monkeypatch)

    served = serve(ready_sqlite.data_dir.parent)

    assert served.code is not None, "tegata serve kept running"
    assert not served.listened
    assert served.seconds < 10
    message = Result(code=served.code, out=served.out, err=served.err).error()
    for name in names:
        assert name in message
    assert served.out == ""
    assert ready_sqlite.key_files() == keys_before
    for secret in {PASSPHRASE, os.environ.get("TEGATA_KEY_PASSPHRASE", PASSPHRASE)}:
        assert secret not in served.err


# --- tegata init on a fresh data directory --------------------------------------------------

InitBreakage = Callable[[Env, pytest.MonkeyPatch], str]


def _init_missing_passphrase(env: Env, mp: pytest.MonkeyPatch) -> str:
    mp.delenv("TEGATA_KEY_PASSPHRASE")
    return "TEGATA_KEY_PASSPHRASE"


def _init_passphrase_file_open_to_others(env: Env, mp: pytest.MonkeyPatch) -> str:
    mp.delenv("TEGATA_KEY_PASSPHRASE")
    mp.setenv("TEGATA_KEY_PASSPHRASE_FILE", str(passphrase_file(env, 0o640)))
    return "TEGATA_KEY_PASSPHRASE_FILE"


def _init_placeholder_file(env: Env, mp: pytest.MonkeyPatch) -> str:
    mp.delenv("TEGATA_KEY_PASSPHRASE")
    mp.setenv("TEGATA_KEY_PASSPHRASE_FILE", str(passphrase_file(env, 0o600, "changeme")))
    return "TEGATA_KEY_PASSPHRASE_FILE"


def _init_key_dir_open_to_others(env: Env, mp: pytest.MonkeyPatch) -> str:
    env.data_dir.mkdir(mode=0o700)
    env.key_dir.mkdir(mode=0o755)
    env.key_dir.chmod(0o755)  # whatever the umask
    return str(env.key_dir)


def _setting(name: str, value: str) -> InitBreakage:
    def apply(env: Env, mp: pytest.MonkeyPatch) -> str:
        mp.setenv(name, value)
        return name
    return apply


INIT_BREAKAGES: dict[str, InitBreakage] = {
    "missing-passphrase": _init_missing_passphrase,
    "placeholder-passphrase": _setting("TEGATA_KEY_PASSPHRASE", "changeme"),
    "placeholder-passphrase-any-case": _setting("TEGATA_KEY_PASSPHRASE", "  ChangeMe "),
    "short-passphrase": _setting("TEGATA_KEY_PASSPHRASE", "0123456789a"),
    "passphrase-file-0640": _init_passphrase_file_open_to_others,
    "placeholder-passphrase-file": _init_placeholder_file,
    "unknown-timezone": _setting("TEGATA_TIMEZONE", "Mars/Base"),
    "ftp-base-url": _setting("TEGATA_PUBLIC_BASE_URL", "ftp://x"),
    "unreachable-database": _setting("TEGATA_DATABASE_URL", UNREACHABLE_DB),
    "key-directory-0755": _init_key_dir_open_to_others,
}


@pytest.mark.parametrize("breakage", INIT_BREAKAGES.values(), ids=INIT_BREAKAGES.keys())
def test_init_refuses_in_one_line_naming_the_fault_and_creates_nothing(
        sqlite_env: Env, cli: Cli, monkeypatch: pytest.MonkeyPatch,
        breakage: InitBreakage) -> None:
    fault = breakage(sqlite_env, monkeypatch)

    message = cli("init", "--key-type", "ec-p256").error()

    assert fault in message
    assert sqlite_env.key_files() == []
    database = sqlite_env.sqlite_file
    assert database is not None
    if database.exists():
        assert sqlite_env.rows("authorities") == []
