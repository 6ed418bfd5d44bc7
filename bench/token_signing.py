"""Signatures per second of a CA key in a PKCS#11 token (SoftHSM2), against the same key
type as a key file, from 1 and from 4 threads.

A TokenStore serialises its session's operations (python-pkcs11 holds a lock per session
too), so more threads in one process do not sign faster: a deployment scales by workers,
each with its own session. Usage: python bench/token_signing.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchkit import machine
from ca.signer import FileSigner, Signer, generate_ca_key
from ca.token import TokenAccess, TokenStore

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
TBS = os.urandom(300)  # about a certificate's to-be-signed part


def rate(signer: Signer, threads: int, seconds: float) -> float:
    done = [0] * threads
    stop = time.monotonic() + seconds

    def work(slot: int) -> None:
        while time.monotonic() < stop:
            signer.sign_tbs(TBS)
            done[slot] += 1

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(done) / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        conf = Path(home) / "softhsm2.conf"
        (Path(home) / "tokens").mkdir()
        conf.write_text(f"directories.tokendir = {home}/tokens\nobjectstore.backend = file\n")
        os.environ["SOFTHSM2_CONF"] = str(conf)
        pin = secrets.token_hex(8)
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "bench",
                        "--pin", pin, "--so-pin", secrets.token_hex(8)], check=True,
                       capture_output=True)
        store = TokenStore(TokenAccess(module=MODULE, label="bench", pin_file=Path("-"),
                                       pin=pin))
        print(machine(f"SoftHSM2 module: {MODULE}"))
        print("| key | store | 1 thread signs/s | 4 threads signs/s |")
        print("|---|---|---|---|")
        for key_type in ("ec-p256", "ec-p384", "rsa-3072", "rsa-4096"):
            kinds: list[tuple[str, Signer]] = [
                ("token", store.generate(f"bench-{key_type}", key_type)),
                ("file", FileSigner("file", generate_ca_key(key_type)))]
            for kind, signer in kinds:
                print(f"| {key_type} | {kind} | {rate(signer, 1, args.seconds):,.0f} | "
                      f"{rate(signer, 4, args.seconds):,.0f} |", flush=True)


if __name__ == "__main__":
    main()
