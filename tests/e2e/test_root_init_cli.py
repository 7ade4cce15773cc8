"""`fwdist lockbox init --root`: a box provisioned with a signed 2-of-3 root, kept in its flash."""

from __future__ import annotations

from pathlib import Path

from fwdist import trust
from tests.e2e.test_device_cli import fwdist, fwdist_json
from tests.trust_helpers import EXPIRES, ROOT_KEYS, root_v1


def test_init_with_a_root_trusts_it_and_refuses_an_under_signed_one(tmp_path: Path) -> None:
    image = tmp_path / "fw.bin"
    image.write_bytes(bytes(range(256)) * 64)
    root = tmp_path / "root.1"
    root.write_bytes(trust.sign(root_v1(), ROOT_KEYS[:2]))
    status = fwdist_json("lockbox", "init", "--state", tmp_path / "box", "--product", "lockbox",
                         "--root", root, "--image", image, "--version", "1.0.0")
    assert status["trust"] == {"root_version": 1, "root_expires": EXPIRES, "time": 0,
                               "timestamp_version": None, "latest": None, "revoked": [],
                               "behind_latest": False, "windows": []}
    assert list((tmp_path / "box" / "trusted").iterdir()) == []
    assert fwdist_json("lockbox", "status", "--state", tmp_path / "box")["trust"][
        "root_version"] == 1
    weak = tmp_path / "weak"
    weak.write_bytes(trust.sign(root_v1(), ROOT_KEYS[:1]))
    proc = fwdist("lockbox", "init", "--state", tmp_path / "box2", "--product", "lockbox",
                  "--root", weak, "--image", image, "--version", "1.0.0", ok=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(
        "cannot provision with that root: root 1: 1 of the 2 signatures it needs verify")
    assert not (tmp_path / "box2").exists()
    both = fwdist("lockbox", "init", "--state", tmp_path / "box3", "--product", "lockbox",
                  "--root", root, "--pubkey", root, "--image", image, "--version", "1.0.0",
                  ok=False)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
