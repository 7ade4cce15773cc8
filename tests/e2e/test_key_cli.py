"""Signing keys as a release engineer uses them: encrypted files and a real SoftHSM2 token.

Every test that touches a token makes its own (temp ``SOFTHSM2_CONF``, ``softhsm2-util
--init-token``) and drives ``fwdist`` processes, since a PKCS#11 module is loaded once per
process with the configuration it saw then.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fwdist.sample import SampleFirmware
from tests.softhsm import PIN, SoftHsm, release_token

KEY_URI = "pkcs11:token=release;object=release-hsm"


def fwdist(*args: str | Path, env: dict[str, str] | None = None,
           ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "fwdist", *map(str, args)],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env={**(env or os.environ), "COLUMNS": "200"},
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def refused(proc: subprocess.CompletedProcess[str], line: str) -> None:
    """Exit 1, nothing on stdout, and exactly one line on stderr."""
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", f"fwdist: error: {line}\n")


@pytest.fixture
def hsm(tmp_path: Path) -> SoftHsm:
    return release_token(tmp_path / "hsm")


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "fw.bin"
    path.write_bytes(SampleFirmware(size=48 * 1024, seed=12).image(0))
    return path


def stage(image: Path, store: Path, *key_args: str | Path, env: dict[str, str] | None = None,
          ok: bool = True) -> subprocess.CompletedProcess[str]:
    return fwdist("stage", image, "--store", store, "--init-store", "--product", "lockbox",
                  "--version", "1.0.0", "--json", *key_args, env=env, ok=ok)


def test_a_release_signed_in_softhsm_verifies(hsm: SoftHsm, image: Path, tmp_path: Path) -> None:
    env, pin = hsm.env(), hsm.pin_file()
    made = json.loads(fwdist("key", "generate", KEY_URI, "--pin-file", pin, "--json",
                             "--public-out", tmp_path / "hsm.pub", env=env).stdout)
    shown = json.loads(fwdist("key", "show", f"{KEY_URI}?pin-source=file:{pin}", "--json",
                              env=env).stdout)
    assert shown["key_id"] == made["key_id"] and len(made["key_id"]) == 16
    assert (tmp_path / "hsm.pub").read_text() == made["public_pem"] == shown["public_pem"]

    stage(image, tmp_path / "store", "--key", KEY_URI, "--pin-file", pin, env=env)
    assert fwdist("verify", "--store", tmp_path / "store", "--pubkey",
                  tmp_path / "hsm.pub").stdout == "ok: 1 releases, 3 objects\n"
    # the store recorded the token's key, and no other key verifies the release
    assert os.listdir(tmp_path / "store" / "keys") == [f"{made['key_id']}.pub"]
    fwdist("keygen", tmp_path / "other")
    other = fwdist("verify", "--store", tmp_path / "store", "--pubkey", tmp_path / "other.pub",
                   ok=False)
    assert other.returncode == 1
    assert f"signed by unknown key {made['key_id']}" in other.stdout


def test_the_key_never_leaves_the_token(hsm: SoftHsm, tmp_path: Path) -> None:
    fwdist("key", "generate", KEY_URI, "--pin-file", hsm.pin_file(), env=hsm.env())
    probe = (
        "import pkcs11\n"
        "from pkcs11 import Attribute as A, ObjectClass as C\n"
        "t = pkcs11.lib('/usr/lib/softhsm/libsofthsm2.so').get_token(token_label='release')\n"
        f"with t.open(user_pin='{PIN}') as s:\n"
        "    k = s.get_key(object_class=C.PRIVATE_KEY, label='release-hsm')\n"
        "    print(k[A.SENSITIVE], k[A.EXTRACTABLE], k[A.TOKEN], k[A.ALWAYS_SENSITIVE],"
        " k[A.NEVER_EXTRACTABLE])\n"
        "    try:\n"
        "        k[A.VALUE]\n"
        "    except pkcs11.exceptions.AttributeSensitive:\n"
        "        print('value refused')\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], env=hsm.env(), capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out == "True False True True True\nvalue refused\n"


def test_a_second_key_of_the_same_name_is_refused(hsm: SoftHsm) -> None:
    env, pin = hsm.env(), hsm.pin_file()
    fwdist("key", "generate", KEY_URI, "--pin-file", pin, env=env)
    refused(fwdist("key", "generate", KEY_URI, "--pin-file", pin, env=env, ok=False),
            "token 'release' already holds 'release-hsm'; refusing to make a second key of "
            "that name")


def make_p256_key(hsm: SoftHsm, label: str) -> None:
    script = (
        "import pkcs11\n"
        "from pkcs11 import Attribute, KeyType, Mechanism\n"
        "from pkcs11.util.ec import encode_named_curve_parameters\n"
        "t = pkcs11.lib('/usr/lib/softhsm/libsofthsm2.so').get_token(token_label='release')\n"
        f"with t.open(user_pin='{PIN}', rw=True) as s:\n"
        "    p = s.create_domain_parameters(KeyType.EC, {Attribute.EC_PARAMS:"
        " encode_named_curve_parameters('secp256r1')}, local=True)\n"
        f"    p.generate_keypair(store=True, label='{label}',"
        " mechanism=Mechanism.EC_KEY_PAIR_GEN)\n"
    )
    subprocess.run([sys.executable, "-c", script], env=hsm.env(), check=True, timeout=60,
                   capture_output=True)


def test_token_refusals_are_one_line_and_write_nothing(hsm: SoftHsm, image: Path,
                                                       tmp_path: Path) -> None:
    env, pin = hsm.env(), hsm.pin_file()
    fwdist("key", "generate", KEY_URI, "--pin-file", pin, env=env)
    make_p256_key(hsm, "p256")
    store = tmp_path / "store"
    cases = [
        (["--key", KEY_URI, "--pin-file", hsm.pin_file("0000")],
         "wrong PIN for PKCS#11 token 'release'"),
        (["--key", "pkcs11:token=release;object=missing", "--pin-file", pin],
         "no private key matches pkcs11:token=release;object=missing in token 'release'"),
        (["--key", "pkcs11:token=release;object=p256", "--pin-file", pin],
         "pkcs11:token=release;object=p256 is not an Ed25519 key (its key type is EC)"),
        (["--key", "pkcs11:token=nosuch;object=release-hsm", "--pin-file", pin],
         "no PKCS#11 token matches pkcs11:token=nosuch;object=release-hsm in "
         "/usr/lib/softhsm/libsofthsm2.so"),
        (["--key", "pkcs11:token=release", "--pin-file", pin],
         "pkcs11:token=release names no key; add object=LABEL or id=%XX"),
        (["--key", KEY_URI],
         f"{KEY_URI} needs a PIN and there is no terminal to ask on; give --pin-env VAR or "
         "--pin-file FILE"),
        (["--key", KEY_URI, "--pin-file", pin, "--pkcs11-module", tmp_path / "no.so"],
         f"cannot load PKCS#11 module {tmp_path}/no.so: OS exception while loading "
         f"{tmp_path}/no.so: {tmp_path}/no.so: cannot open shared object file: No such file "
         "or directory"),
    ]
    for key_args, line in cases:
        refused(stage(image, store, *key_args, env=env, ok=False), line)
        assert not store.exists(), line


def test_module_from_the_environment(hsm: SoftHsm, tmp_path: Path) -> None:
    env = {**hsm.env(), "FWDIST_PKCS11_MODULE": str(tmp_path / "elsewhere.so")}
    proc = fwdist("key", "show", KEY_URI, "--pin-file", hsm.pin_file(), env=env, ok=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"fwdist: error: cannot load PKCS#11 module {tmp_path}/"
                                  "elsewhere.so: ")


def test_encrypted_key_file_through_the_cli(image: Path, tmp_path: Path) -> None:
    (tmp_path / "pass").write_text("correct horse battery staple\n")
    env = {**os.environ, "FWDIST_PASS": "correct horse battery staple"}
    made = json.loads(fwdist("keygen", tmp_path / "k", "--encrypt", "--passphrase-env",
                             "FWDIST_PASS", "--json", env=env).stdout)
    assert made["encrypted"] is True
    assert (tmp_path / "k").read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    store = tmp_path / "store"
    refused(stage(image, store, "--key", tmp_path / "k", ok=False),
            f"{tmp_path}/k needs a passphrase and there is no terminal to ask on; give "
            "--passphrase-env VAR or --passphrase-file FILE")
    (tmp_path / "wrong").write_text("wrong\n")
    refused(stage(image, store, "--key", tmp_path / "k", "--passphrase-file", tmp_path / "wrong",
                  ok=False),
            f"wrong passphrase for {tmp_path}/k (or the file is damaged)")
    assert not store.exists()
    stage(image, store, "--key", tmp_path / "k", "--passphrase-file", tmp_path / "pass")
    assert fwdist("verify", "--store", store, "--pubkey",
                  tmp_path / "k.pub").stdout == "ok: 1 releases, 3 objects\n"
    refused(fwdist("keygen", tmp_path / "k2", "--encrypt", ok=False),
            f"{tmp_path}/k2 needs a passphrase and there is no terminal to ask on; give "
            "--passphrase-env VAR or --passphrase-file FILE")
    assert not (tmp_path / "k2").exists()
