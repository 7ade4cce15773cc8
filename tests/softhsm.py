"""A real SoftHSM2 token for tests: its own config and token directory under a temp dir.

SoftHSM2 reads ``SOFTHSM2_CONF`` when the module is loaded, and python-pkcs11 loads one
module per process, so tests that sign with a token do it through ``fwdist`` processes
given :meth:`SoftHsm.env`: every test gets its own token and nothing leaks between them.
Without ``softhsm2-util`` the tests skip, except under ``CI`` where it is a failure
(``.ci/run`` installs the Debian package).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from fwdist.hsm import DEFAULT_MODULE

PIN = "4321"  # test tokens only
SO_PIN = "87654321"


def require_softhsm() -> None:
    missing = [what for what, ok in (("softhsm2-util", shutil.which("softhsm2-util")),
                                     (DEFAULT_MODULE, os.path.exists(DEFAULT_MODULE))) if not ok]
    if not missing:
        return
    reason = f"SoftHSM2 is not installed ({', '.join(missing)} missing; apt-get install softhsm2)"
    if os.environ.get("CI"):
        pytest.fail(reason + " and CI is set: .ci/run installs it")
    pytest.skip(reason)


@dataclass(frozen=True)
class SoftHsm:
    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "softhsm2.conf"

    def env(self) -> dict[str, str]:
        return {**os.environ, "SOFTHSM2_CONF": str(self.conf)}

    def init_token(self, label: str, pin: str = PIN) -> None:
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin,
             "--so-pin", SO_PIN],
            env=self.env(), check=True, capture_output=True, timeout=60,
        )

    def pin_file(self, pin: str = PIN) -> Path:
        path = self.root / f"pin-{pin}"
        path.write_text(pin + "\n")
        return path


def make_softhsm(root: Path) -> SoftHsm:
    require_softhsm()
    tokens = root / "tokens"
    tokens.mkdir(parents=True)
    hsm = SoftHsm(root)
    hsm.conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                        "log.level = ERROR\n")
    return hsm


def release_token(root: Path, label: str = "release") -> SoftHsm:
    """A SoftHSM2 under ``root`` with one initialised token (user PIN :data:`PIN`)."""
    hsm = make_softhsm(root)
    hsm.init_token(label)
    return hsm
