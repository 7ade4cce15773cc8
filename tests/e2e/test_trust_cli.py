"""The release engineer's trust workflow through the CLI, on a store and a real SoftHSM2 token.

2-of-3 root keys, 2-of-3 release signers (one of them in the token), one timestamp key:
root 1 drafted and signed offline one holder at a time, a release staged unsigned and
signed by two signers, a leaked release key that signs nothing that counts, a rotation
that removes it, a revocation. Every refusal is one line and exit 1.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from fwdist import trust
from fwdist.sample import SampleFirmware
from tests.e2e.test_cli_conventions import documented_fields
from tests.e2e.test_key_cli import fwdist, refused
from tests.softhsm import SoftHsm, release_token

HSM_KEY = "pkcs11:token=release;object=release-hsm"
SAMPLE = SampleFirmware(size=48 * 1024, seed=33)


class Engineer:
    """One working directory: key files, the token, the store, and fwdist run in it."""

    def __init__(self, d: Path, hsm: SoftHsm) -> None:
        self.d, self.hsm, self.store = d, hsm, d / "store"
        self.pin = hsm.pin_file()

    def run(self, *args: str | Path, ok: bool = True) -> Any:
        proc = fwdist(*args, env=self.hsm.env(), ok=ok)
        return json.loads(proc.stdout) if ok and "--json" in args else proc

    def key_id(self, name: str) -> str:
        return str(self.run("key", "show", self.d / f"{name}.pub", "--json")["key_id"])

    def sign(self, version: str, key: str | Path, ok: bool = True) -> Any:
        return self.run("sign", f"lockbox@{version}", "--store", self.store, "--root",
                        self.d / "root1", "--key", key, "--pin-file", self.pin, "--json", ok=ok)

    def verify(self, *extra: str) -> Any:
        proc = self.run("verify", "--store", self.store, "--root", self.d / "root1", "--json",
                        *extra, ok=False)
        return proc.returncode, json.loads(proc.stdout)

    def root1_and_store(self) -> None:
        """Root 1 (2 of r1..r3, timestamp key ts, release key a, 30 days), signed by r1 and
        r2, and a store with lockbox 1.0.0 signed by a."""
        d = self.d
        self.run("root", "create", d / "root1", "--root-keys",
                 f"2:{d}/r1.pub,{d}/r2.pub,{d}/r3.pub", "--timestamp-keys", f"1:{d}/ts.pub",
                 "--release-keys", f"1:{d}/a.pub", "--expires", "30")
        for k in ("r1", "r2"):
            self.run("root", "sign", d / "root1", "--key", d / k)
        self.run("stage", d / "fw0.bin", "--store", self.store, "--init-store", "--product",
                 "lockbox", "--version", "1.0.0", "--key", d / "a")

    def timestamp(self, *args: str) -> Any:
        return self.run(*args, "--store", self.store, "--root", self.d / "root1", "--key",
                        self.d / "ts", "--json")


@pytest.fixture
def eng(tmp_path: Path) -> Engineer:
    e = Engineer(tmp_path, release_token(tmp_path / "hsm"))
    for name in ("r1", "r2", "r3", "a", "b", "c", "ts"):
        e.run("keygen", tmp_path / name)
    e.run("key", "generate", HSM_KEY, "--pin-file", e.pin, "--public-out", tmp_path / "hsm.pub")
    for version in range(2):
        (tmp_path / f"fw{version}.bin").write_bytes(SAMPLE.image(version))
    return e


def test_the_trust_workflow(eng: Engineer) -> None:
    d = eng.d
    made = eng.run("root", "create", d / "root1", "--root-keys", f"2:{d}/r1.pub,{d}/r2.pub,"
                   f"{d}/r3.pub", "--timestamp-keys", f"1:{d}/ts.pub", "--release-keys",
                   f"2:{d}/a.pub,{d}/b.pub,{d}/hsm.pub", "--expires", "365", "--json")
    assert (made["version"], made["signatures"], made["root_signatures"]) == (1, [], 0)
    assert made["root"]["threshold"] == 2
    assert sorted(made["root"]["keys"]) == sorted(eng.key_id(n) for n in ("r1", "r2", "r3"))
    assert made["releases"][0]["product"] is None
    assert sorted(made["releases"][0]["keys"]) == sorted(eng.key_id(n) for n in ("a", "b", "hsm"))

    publish = ("root", "publish", d / "root1", "--store", eng.store)
    eng.run("stage", d / "fw0.bin", "--store", eng.store, "--init-store", "--product",
            "lockbox", "--version", "1.1.0", "--unsigned")
    refused(eng.run(*publish, ok=False), "root 1: 0 of the 2 signatures it needs verify")
    eng.run("root", "sign", d / "root1", "--key", d / "r1")
    refused(eng.run("root", "sign", d / "root1", "--key", d / "r1", ok=False),
            "metadata already carries a signature of that key")
    refused(eng.run(*publish, ok=False), "root 1: 1 of the 2 signatures it needs verify")
    assert eng.run("root", "sign", d / "root1", "--key", d / "r2", "--json")["root_signatures"] == 2
    eng.run(*publish)
    assert sorted(p.name for p in (eng.store / "trust" / "root").iterdir()) == ["1"]

    # an unsigned stage is a draft: not released, no format 2 manifests, named by no timestamp
    rc, out = eng.verify()
    assert (rc, out["problems"], out["drafts"]) == (
        1, ["lockbox@1.1.0 carries 0 of the 2 release signatures root 1 requires; it is not "
            "released"], ["lockbox@1.1.0"])
    assert not (eng.store / "releases" / "lockbox" / "1.1.0.air").exists()
    assert eng.timestamp("timestamp", "issue")["latest"] == {}
    signed = eng.sign("1.1.0", d / "a")
    assert (signed["signatures"], signed["threshold"], signed["released"]) == (1, 2, False)
    # a draft below its threshold is not published: the store's line, before any request
    # (port 9, discard, where no server listens: a request would fail with another line)
    refused(eng.run("publish", "--store", eng.store, "--server", "http://127.0.0.1:9",
                    "--token", "fwd_release_" + "A" * 43, "lockbox@1.1.0", ok=False),
            "lockbox@1.1.0 carries 1 of the 2 release signatures root 1 requires; it is not "
            "released")
    refused(eng.sign("1.1.0", d / "c", ok=False),
            f"{d}/c is not a release signer of root 1 for lockbox/lockbox")
    assert eng.sign("1.1.0", HSM_KEY)["released"] is True
    rc, out = eng.verify()
    assert (rc, out["problems"], out["drafts"], out["root_version"]) == (0, [], [], 1)
    ts = eng.timestamp("timestamp", "issue")
    assert (ts["version"], ts["latest"], ts["revoked"]) == (2, {"lockbox": "1.1.0"}, [])

    # the leaked key alone: the biggest version and counter there are, and it counts for nothing
    eng.run("stage", d / "fw1.bin", "--store", eng.store, "--product", "lockbox", "--version",
            "999999999.999999999.999999999", "--security-counter", "4294967295", "--key", d / "a")
    rc, out = eng.verify()
    assert (rc, out["drafts"]) == (1, ["lockbox@999999999.999999999.999999999"])
    assert eng.timestamp("timestamp", "issue")["latest"] == {"lockbox": "1.1.0"}

    # rotate: the root keys stay, release key a is replaced by c
    eng.run("root", "rotate", d / "root2", "--store", eng.store, "--root", d / "root1",
            "--release-keys", f"2:{d}/b.pub,{d}/hsm.pub,{d}/c.pub", "--expires", "365")
    eng.run("root", "sign", d / "root2", "--key", d / "r1")
    publish2 = ("root", "publish", d / "root2", "--store", eng.store, "--root", d / "root1")
    refused(eng.run(*publish2, ok=False), "root 2 by root 1's keys: 1 of the 2 signatures it "
            "needs verify")
    eng.run("root", "sign", d / "root2", "--key", d / "r3")
    eng.run(*publish2)
    rc, out = eng.verify()
    assert (rc, out["root_version"]) == (1, 2)
    assert out["problems"] == [
        "lockbox@1.1.0 carries 1 of the 2 release signatures root 2 requires; it is not released",
        "lockbox@999999999.999999999.999999999 carries 0 of the 2 release signatures root 2 "
        "requires; it is not released",
    ]
    refused(eng.sign("1.1.0", d / "a", ok=False),
            f"{d}/a is not a release signer of root 2 for lockbox/lockbox")
    assert eng.sign("1.1.0", d / "c")["released"] is True

    # revoke: the next timestamp lists it, and nothing is latest any more
    revoked = eng.timestamp("revoke", "lockbox@1.1.0")
    assert (revoked["version"], revoked["revoked"], revoked["latest"]) == (
        4, ["lockbox@1.1.0"], {})
    rc, out = eng.verify("lockbox@1.1.0")
    assert (rc, out["problems"], out["revoked"], out["timestamp_version"]) == (
        0, [], ["lockbox@1.1.0"], 4)
    refused(eng.run("revoke", "lockbox@1.2.0", "--store", eng.store, "--root", d / "root1",
                    "--key", d / "ts", ok=False), "no release lockbox@1.2.0 in the store")
    refused(eng.run("timestamp", "issue", "--store", eng.store, "--root", d / "root1", "--key",
                    d / "a", ok=False), f"{d}/a is not a timestamp key of root 2")


def test_a_chain_with_a_bad_link_trusts_nothing_past_it(eng: Engineer) -> None:
    d = eng.d
    eng.root1_and_store()
    eng.run("root", "publish", d / "root1", "--store", eng.store)
    # someone with write access plants root 2 signed by one root key and their own
    eng.run("root", "rotate", d / "root2", "--store", eng.store, "--root", d / "root1",
            "--root-keys", f"1:{d}/c.pub", "--release-keys", f"1:{d}/c.pub", "--expires", "30")
    for k in ("r1", "c"):
        eng.run("root", "sign", d / "root2", "--key", d / k)
    shutil.copy(d / "root2", eng.store / "trust" / "root" / "2")
    rc, out = eng.verify()
    assert (rc, out["problems"], out["root_version"]) == (
        1, ["root chain: root 2 by root 1's keys: 1 of the 2 signatures it needs verify"], 0)


def test_a_timestamp_role_of_two_keys_signs_in_two_steps(eng: Engineer) -> None:
    """K = 2 timestamp keys (ts and the HSM key): issue drafts, the second signer publishes."""
    d = eng.d
    eng.run("root", "create", d / "root1", "--root-keys", f"1:{d}/r1.pub",
            "--timestamp-keys", f"2:{d}/ts.pub,{d}/hsm.pub", "--release-keys", f"1:{d}/a.pub",
            "--expires", "30")
    eng.run("root", "sign", d / "root1", "--key", d / "r1")
    eng.run("stage", d / "fw0.bin", "--store", eng.store, "--init-store", "--product",
            "lockbox", "--version", "1.0.0", "--key", d / "a")
    eng.run("root", "publish", d / "root1", "--store", eng.store)
    issue = ("timestamp", "issue", "--store", eng.store, "--root", d / "root1")
    refused(eng.run(*issue, "--key", d / "ts", ok=False),
            "root 1's timestamp role needs 2 signatures: give --out FILE for the draft, which "
            "each other holder signs with `timestamp sign FILE`")
    draft = eng.run(*issue, "--key", d / "ts", "--out", d / "ts.draft", "--json")
    assert (draft["version"], draft["signatures"], draft["threshold"], draft["published"]) == (
        1, 1, 2, False)
    assert not (eng.store / "trust" / "timestamp").exists()
    sign = ("timestamp", "sign", d / "ts.draft", "--store", eng.store, "--root", d / "root1")
    refused(eng.run(*sign, "--key", d / "a", ok=False),
            f"{d}/a is not a timestamp key of root 1")
    done = eng.run(*sign, "--key", HSM_KEY, "--pin-file", eng.pin, "--json")
    assert set(done) == documented_fields()["timestamp sign"] == set(draft)
    assert (done["signatures"], done["published"], done["latest"]) == (
        2, True, {"lockbox": "1.0.0"})
    assert (eng.store / "trust" / "timestamp").read_bytes() == (d / "ts.draft").read_bytes()
    rc, out = eng.verify()
    assert (rc, out["problems"], out["timestamp_version"]) == (0, [], 1)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--root-keys", "2:{d}/r1.pub", "--expires", "1"],
         "root create needs --timestamp-keys, --release-keys"),
        (["--root-keys", "two:{d}/r1.pub", "--timestamp-keys", "1:{d}/ts.pub",
          "--release-keys", "1:{d}/a.pub", "--expires", "1"],
         "a role must look like [PRODUCT[/HARDWARE]=]K:KEY,KEY,..., got 'two:{d}/r1.pub'"),
        (["--root-keys", "lockbox=1:{d}/r1.pub", "--timestamp-keys", "1:{d}/ts.pub",
          "--release-keys", "1:{d}/a.pub", "--expires", "1"],
         "--root-keys takes K:KEY,...; only release roles have a scope"),
    ],
)
def test_root_create_refusals_write_nothing(eng: Engineer, args: list[str], line: str) -> None:
    d = eng.d
    proc = eng.run("root", "create", d / "draft", *(a.format(d=d) for a in args), ok=False)
    refused(proc, line.format(d=d))
    assert not (d / "draft").exists()


def test_release_roles_by_product_and_hardware(eng: Engineer) -> None:
    d = eng.d
    made = eng.run("root", "create", d / "root1", "--root-keys", f"1:{d}/r1.pub",
                   "--timestamp-keys", f"1:{d}/ts.pub", "--release-keys",
                   f"lockbox/lb-r2=1:{d}/c.pub", "--release-keys", f"2:{d}/a.pub,{d}/b.pub",
                   "--release-keys", f"lockbox=1:{d}/b.pub", "--expires", "30", "--json")
    roles = [(r["product"], r["hardware"], r["threshold"], sorted(r["keys"]))
             for r in made["releases"]]
    assert roles == [
        (None, None, 2, sorted([eng.key_id("a"), eng.key_id("b")])),
        ("lockbox", None, 1, [eng.key_id("b")]),
        ("lockbox", "lb-r2", 1, [eng.key_id("c")]),
    ]
    eng.run("root", "sign", d / "root1", "--key", d / "r1")
    eng.run("stage", d / "fw0.bin", "--store", eng.store, "--init-store", "--product",
            "lockbox", "--hardware", "lb-r2", "--version", "1.0.0", "--unsigned")
    # b signs every lockbox, but lb-r2's own role is the most specific: only c counts there
    refused(eng.sign("1.0.0", d / "b", ok=False),
            f"{d}/b is not a release signer of root 1 for lockbox/lb-r2")
    assert eng.sign("1.0.0", d / "c")["released"] is True


def test_timestamp_issue_signs_install_windows_per_product(eng: Engineer) -> None:
    """Issue 14: `--window PRODUCT=HH:MM-HH:MM` (repeatable) puts daily UTC install windows in
    the signed timestamp; the next timestamp keeps them unless told, `PRODUCT=always` clears."""
    d = eng.d
    eng.root1_and_store()
    plain = eng.timestamp("timestamp", "issue")
    assert plain["windows"] == {}
    ts = eng.timestamp("timestamp", "issue", "--window", "lockbox=23:30-00:30",
                       "--window", "lockbox=02:00-03:00", "--window", "gate=12:00-12:15")
    assert (ts["version"], ts["windows"]) == (
        2, {"gate": ["12:00-12:15"], "lockbox": ["02:00-03:00", "23:30-00:30"]})
    assert ts["bytes"] - plain["bytes"] == 32  # field 6: 2 products, 3 windows
    signed = trust.decode_timestamp((eng.store / "trust" / "timestamp").read_bytes())
    assert signed.timestamp.windows == (("gate", ((720, 15),)),
                                        ("lockbox", ((120, 60), (1410, 60))))
    kept = eng.timestamp("timestamp", "issue", "--window", "gate=always")
    assert (kept["version"], kept["windows"]) == (3, {"lockbox": ["02:00-03:00", "23:30-00:30"]})
    for bad, why in (("lockbox=25:00-26:00", "a window is HH:MM-HH:MM (UTC), got '25:00-26:00'"),
                     ("lockbox", "--window is PRODUCT=HH:MM-HH:MM (UTC) or PRODUCT=always, "
                                 "got 'lockbox'")):
        refused(eng.run("timestamp", "issue", "--store", eng.store, "--root", d / "root1",
                        "--key", d / "ts", "--window", bad, ok=False), why)
    assert trust.decode_timestamp((eng.store / "trust" / "timestamp").read_bytes()).timestamp \
        .version == 3  # a refused issue signs nothing
