"""What every benchmark shares: the machine line it prints first, free ports, stopping the
processes it started. Imported as a sibling (``.venv/bin/python bench/<name>.py``)."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path


def tool_version(argv: list[str]) -> str:
    if not shutil.which(argv[0]):
        return "not installed"
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "?"


def machine(*extra: str) -> str:
    """Host, cores, CPU model, Python, OpenSSL, ``extra`` versions, the load average: a
    figure means little without the machine, and these machines are shared and noisy."""
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    parts = [f"{os.cpu_count()} cores ({cpu})", f"Python {platform.python_version()}",
             *extra, tool_version(["openssl", "version"]),
             f"load average {os.getloadavg()[0]:.2f}"]
    return f"{platform.node()}: " + ", ".join(parts)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
