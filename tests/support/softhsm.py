"""A SoftHSM2 token of one test's own: its token directory and configuration under the
test's tmp directory (SOFTHSM2_CONF), initialised with softhsm2-util, its user PIN in a
file of mode 0600. A missing SoftHSM2 is a skip on a laptop and a failure in CI."""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ca.token import TokenAccess, finalize_modules
from tests.support.environment import require_tool, unavailable

MODULES = (Path("/usr/lib/softhsm/libsofthsm2.so"),
           Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
           Path("/usr/local/lib/softhsm/libsofthsm2.so"))
LABEL = "tegata-ca"


def softhsm_module() -> Path:
    for module in MODULES:
        if module.is_file():
            return module
    unavailable("SoftHSM2's PKCS#11 module (Debian package softhsm2)")
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class SoftToken:
    module: Path
    label: str
    conf: Path
    pin_file: Path
    pin: str
    so_pin: str

    def env(self) -> dict[str, str]:
        """What a child process (``tegata ...``) needs to reach the token."""
        return {"SOFTHSM2_CONF": str(self.conf), "TEGATA_PKCS11_MODULE": str(self.module),
                "TEGATA_PKCS11_PIN_FILE": str(self.pin_file)}

    def access(self) -> TokenAccess:
        return TokenAccess(module=self.module, label=self.label, pin_file=self.pin_file,
                           pin=self.pin)


def make_token(directory: Path, label: str = LABEL) -> SoftToken:
    """A fresh token labelled ``label``; this process's SoftHSM2 is finalised first, so that
    it reads the new SOFTHSM2_CONF (the caller sets it in the environment)."""
    module = softhsm_module()
    util = require_tool("softhsm2-util")
    tokens = directory / "tokens"
    tokens.mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    "log.level = ERROR\nslots.removable = false\n")
    pin, so_pin = secrets.token_hex(8), secrets.token_hex(8)
    # test set-up only: softhsm2-util takes the PINs as arguments (python-pkcs11 has no
    # C_InitToken); the product reads its PIN from a file
    subprocess.run([util, "--init-token", "--free", "--label", label, "--pin", pin,
                    "--so-pin", so_pin], env={**os.environ, "SOFTHSM2_CONF": str(conf)},
                   check=True, capture_output=True, timeout=60)
    pin_file = directory / "pin"
    fd = os.open(pin_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(pin + "\n")
    finalize_modules()
    return SoftToken(module=module, label=label, conf=conf, pin_file=pin_file, pin=pin,
                     so_pin=so_pin)
