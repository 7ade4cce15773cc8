"""Issue 12's story with the CLI and real ``lockbox serve`` processes (as far as the box goes).

Boxes provisioned with a 2-of-3 root (``lockbox init --root``); lockbox 1.1.0 staged
unsigned and signed by two of three release signers, one key in SoftHSM2; a leaked
release key signs the largest version and counter there are, and the box installs
nothing of it; 1.1.0 installs. Rotation through a phone, the timestamp relay and the
clockless expiry check need the phone to carry roots and timestamps (t1's protocol work),
which this branch does not have yet: their store side is in ``test_trust_cli.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fwdist.sample import SampleFirmware
from tests.e2e.test_device_cli import Box
from tests.e2e.test_key_cli import fwdist
from tests.softhsm import release_token

HSM_KEY = "pkcs11:token=release;object=release-hsm"
SAMPLE = SampleFirmware(size=96 * 1024, seed=12)
LEAKED = "999999999.999999999.999999999"


@pytest.fixture
def boxes(tmp_path: Path) -> Iterator[list[Box]]:
    made: list[Box] = []
    yield made
    for b in made:
        b.kill()


def test_the_trust_story(tmp_path: Path, boxes: list[Box]) -> None:
    hsm = release_token(tmp_path / "hsm")
    d, env, pin = tmp_path, hsm.env(), hsm.pin_file()

    def run(*args: str | Path, ok: bool = True) -> Any:
        proc = fwdist(*args, env=env, ok=ok)
        return json.loads(proc.stdout) if ok and "--json" in args else proc

    for name in ("r1", "r2", "r3", "a", "b"):
        run("keygen", d / name)
    run("keygen", d / "ts")
    run("key", "generate", HSM_KEY, "--pin-file", pin, "--public-out", d / "hsm.pub")
    for r in range(3):
        (d / f"fw{r}.bin").write_bytes(SAMPLE.image(r))
    store = d / "store"

    # a 2-of-3 root, signed by two holders one after the other, then published
    run("root", "create", d / "root1", "--root-keys", f"2:{d}/r1.pub,{d}/r2.pub,{d}/r3.pub",
        "--timestamp-keys", f"1:{d}/ts.pub", "--release-keys",
        f"2:{d}/a.pub,{d}/b.pub,{d}/hsm.pub", "--expires", "365")
    for holder in ("r1", "r2"):
        run("root", "sign", d / "root1", "--key", d / holder)

    # 1.0.0 is what the boxes leave the factory with; 1.1.0 is signed offline by a and the HSM
    run("stage", d / "fw0.bin", "--store", store, "--init-store", "--product", "lockbox",
        "--version", "1.0.0", "--unsigned")
    run("root", "publish", d / "root1", "--store", store)
    run("stage", d / "fw1.bin", "--store", store, "--product", "lockbox", "--version", "1.1.0",
        "--unsigned", "--trust", d / "a.pub")
    first = run("sign", "lockbox@1.1.0", "--store", store, "--root", d / "root1", "--key",
                d / "a", "--json")
    assert (first["signatures"], first["released"]) == (1, False)
    second = run("sign", "lockbox@1.1.0", "--store", store, "--root", d / "root1", "--key",
                 HSM_KEY, "--pin-file", pin, "--json")
    assert (second["signatures"], second["released"]) == (2, True)
    for n in range(2):
        status = run("lockbox", "init", "--state", d / f"box{n}", "--product", "lockbox",
                     "--root", d / "root1", "--image", d / "fw0.bin", "--version", "1.0.0",
                     "--json")
        assert status["trust"]["root_version"] == 1
        box = Box(d / f"box{n}")
        box.start()
        boxes.append(box)

    # key a leaks: the biggest version and counter there are, signed by a alone
    run("stage", d / "fw2.bin", "--store", store, "--product", "lockbox", "--version", LEAKED,
        "--security-counter", "4294967295", "--key", d / "a")
    phone = ("app", "push", "--store", store, "--product", "lockbox", "--pubkey", d / "a.pub",
             "--pubkey", d / "b.pub", "--pubkey", d / "hsm.pub")
    proc = run(*phone, "--to", boxes[0].address, "--version", LEAKED, "--json", ok=False)
    leak = json.loads(proc.stdout)
    assert (proc.returncode, leak["installed"], leak["rejected"], leak["target_version"]) == (
        1, False, "BAD_SIGNATURE", None)
    after = run("lockbox", "status", "--state", d / "box0", "--json")
    assert (after["running_version"], after["target_version"], after["running_counter"]) == (
        "1.0.0", None, 0)

    # 1.1.0, two signatures of three, installs on both boxes
    for box in boxes:
        for _ in range(6):
            if run(*phone, "--to", box.address, "--version", "1.1.0", "--json")["installed"]:
                break
        status = run("lockbox", "status", "--state", box.state, "--json")
        assert (status["running_version"], status["running_sha256"]) == (
            "1.1.0", hashlib.sha256(SAMPLE.image(1)).hexdigest())
