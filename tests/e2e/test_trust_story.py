"""Issue 12's story with the CLI and real ``lockbox serve`` processes, every step through a phone.

Boxes provisioned with a 2-of-3 root (``lockbox init --root``); lockbox 1.1.0 staged
unsigned and signed by two of three release signers, one key in SoftHSM2; a leaked
release key signs the largest version and counter there are, and the box installs
nothing of it; 1.1.0 installs. Then, through phones (``app push --root``, which relays the
store's root links and timestamp before it offers): the root rotates twice to remove the
leaked key while the boxes are offline, and a box catches up both rotations in one
session and installs a release only the new signers signed; the leaked key and a good one
together install nothing; a revoked release a box was receiving is dropped; a box without
a clock refuses an expired release once a phone relayed a signed timestamp.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fwdist import staging
from fwdist.sample import SampleFirmware
from fwdist.store import Store
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
    for r in range(6):
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

    later_chapters(run, d, store, boxes, pin)


def ans(sent: str, root: int, stamp: int | None = None, reason: str | None = None,
        dropped: bool = False) -> dict[str, Any]:
    """A trust answer as `app push --json` prints it, less the time (checked apart)."""
    return {"sent": sent, "reason": reason, "root_version": root, "timestamp_version": stamp,
            "dropped": dropped}


def answers(out: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in a.items() if k != "time"} for a in out["trust"]]


def later_chapters(run: Any, d: Path, store: Path, boxes: list[Box], pin: Path) -> None:
    """Rotation, catch-up, revocation and signed time, each through `app push`."""
    def status(state: Path) -> Any:
        return run("lockbox", "status", "--state", state, "--json")

    def signed(version: str, image: str, *signers: str | Path) -> None:
        run("stage", d / image, "--store", store, "--product", "lockbox", "--version", version,
            "--unsigned")
        for key in signers:
            run("sign", f"lockbox@{version}", "--store", store, "--key", key,
                *(("--pin-file", pin) if str(key).startswith("pkcs11:") else ()))

    honest = ("app", "push", "--store", store, "--product", "lockbox", "--root", d / "root1")

    # the boxes go offline; root 2 drops the leaked key a for a new c, root 3 renews root 2
    for box in boxes:
        box.kill()
    run("keygen", d / "c")
    run("root", "rotate", d / "root2", "--store", store, "--root", d / "root1",
        "--release-keys", f"2:{d}/b.pub,{d}/hsm.pub,{d}/c.pub", "--expires", "365")
    for holder in ("r1", "r3"):
        run("root", "sign", d / "root2", "--key", d / holder)
    run("root", "publish", d / "root2", "--store", store, "--root", d / "root1")
    run("root", "rotate", d / "root3", "--store", store, "--root", d / "root1",
        "--expires", "730")
    for holder in ("r2", "r3"):
        run("root", "sign", d / "root3", "--key", d / holder)
    run("root", "publish", d / "root3", "--store", store, "--root", d / "root1")
    stamp1 = run("timestamp", "issue", "--store", store, "--root", d / "root1", "--key",
                 d / "ts", "--json")
    assert (stamp1["version"], stamp1["root_version"]) == (1, 3)
    signed("1.2.0", "fw3.bin", d / "b", d / "c")

    # box 1, two rotations behind, catches up in one session and installs 1.2.0 (b and c)
    box1 = boxes[1]
    box1.start()
    first = run(*honest, "--to", box1.address, "--json")
    assert answers(first) == [ans("ask", 1), ans("root_chain", 3), ans("timestamp", 3, 1)]
    assert first["trust"][2]["time"] == stamp1["time"]
    for _ in range(6):
        if first["installed"]:
            break
        first = run(*honest, "--to", box1.address, "--json")
    st = status(box1.state)
    assert (st["running_version"], st["trust"]["root_version"], st["trust"]["timestamp_version"],
            st["trust"]["time"]) == ("1.2.0", 3, 1, stamp1["time"])

    # the leaked key a with the good key b: one valid signature of the two root 3 asks for
    signed("1.2.1", "fw4.bin", d / "a", d / "b")
    box0 = boxes[0]
    box0.start()
    hostile = ("app", "push", "--store", store, "--product", "lockbox", "--pubkey", d / "a.pub",
               "--pubkey", d / "b.pub", "--version", "1.2.1", "--json")
    proc = run(*hostile, "--to", box0.address, ok=False)
    out = json.loads(proc.stdout)
    assert (proc.returncode, out["rejected"], out["installed"]) == (1, "BAD_SIGNATURE", False)
    assert answers(out) == [ans("ask", 1), ans("root_chain", 3), ans("timestamp", 3, 1)]
    st = status(box0.state)
    assert (st["running_version"], st["target_version"], st["trust"]["root_version"]) == (
        "1.1.0", None, 3)

    # a revoked release is dropped: box 0 receives part of 1.3.0, then 1.3.0 is revoked
    signed("1.3.0", "fw5.bin", d / "b", HSM_KEY)
    run(*honest, "--to", box0.address, "--version", "1.3.0", "--max-bytes", "1500", "--json")
    assert (status(box0.state)["target_version"], status(box0.state)["state"]) == (
        "1.3.0", "receiving")
    stamp2 = run("revoke", "lockbox@1.3.0", "--store", store, "--root", d / "root1", "--key",
                 d / "ts", "--json")
    assert (stamp2["version"], stamp2["revoked"]) == (2, ["lockbox@1.3.0"])
    proc = run(*honest, "--to", box0.address, "--version", "1.3.0", "--json", ok=False)
    out = json.loads(proc.stdout)
    assert (proc.returncode, out["rejected"], out["payload_sent"] > 0) == (1, "REVOKED", True)
    assert answers(out) == [ans("ask", 3, 1), ans("timestamp", 3, 2, dropped=True)]
    st = status(box0.state)
    assert (st["running_version"], st["target_version"], st["state"]) == ("1.1.0", None, "idle")
    assert (st["trust"]["revoked"], st["trust"]["timestamp_version"]) == (["1.3.0"], 2)

    # a box without a clock: 1.4.0 was staged two hours ago and expired an hour later (staged
    # in-process: the CLI's clock is now's); the next timestamp proves the time to the box
    run("lockbox", "init", "--state", d / "box2", "--product", "lockbox", "--root",
        d / "root1", "--image", d / "fw0.bin", "--version", "1.0.0", "--json")
    box2 = Box(d / "box2", 0, "--no-clock")
    box2.start()
    boxes.append(box2)
    staging.stage(Store.open(store), d / "fw2.bin", None, staging.StageOptions(
        "lockbox", "1.4.0", expires_days=1 / 24, now=int(time.time()) - 7200))
    for key in (d / "b", d / "c"):
        run("sign", "lockbox@1.4.0", "--store", store, "--key", key)
    expires = run("inspect", "lockbox@1.4.0", "--store", store, "--json")["expires"]
    stamp3 = run("timestamp", "issue", "--store", store, "--root", d / "root1", "--key",
                 d / "ts", "--json")
    assert stamp3["time"] > expires
    before = status(box2.state)["trust"]["time"]
    assert before < expires  # (the box on its own does not know 1.4.0 expired)
    proc = run(*honest, "--to", box2.address, "--version", "1.4.0", "--json", ok=False)
    out = json.loads(proc.stdout)
    assert (proc.returncode, out["rejected"]) == (1, "EXPIRED")
    assert answers(out) == [ans("ask", 1), ans("root_chain", 3), ans("timestamp", 3, 3)]
    st = status(box2.state)
    assert (st["running_version"], st["target_version"], st["trust"]["time"],
            st["trust"]["timestamp_version"]) == ("1.0.0", None, stamp3["time"], 3)
