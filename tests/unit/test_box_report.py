"""The signed box report (fwdist.report): exact bytes, every refusal in one line."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fwdist import report as r
from fwdist.protocol import BoxState, Reason

KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"fwdist docs example device").digest())
REPORT = r.Report("0123456789abcdef", 17, "lockbox", "lb-r2", "1.0.0",
                  hashlib.sha256(b"example image 1.0.0").digest()[:8],
                  r.TargetProgress("1.1.0", 4096, 11368), 87, BoxState.RECEIVING,
                  r.LastResult("0.9.0", r.Outcome.INSTALLED), 1_700_000_000)


def test_the_example_report_is_79_body_bytes_and_a_signature() -> None:
    wire = r.sign(REPORT, KEY)
    assert len(wire) == 143
    assert wire[:-64].hex() == (
        "9c01b0303132333435363738396162636465661" "1a76c6f636b626f78a56c622d7232a5312e302e30"
        "c408683cafb6d2b02683" "93a5312e312e30cd1000cd2c68" "5701" "93a5302e392e300100"
        "ce6553f100")
    # Ed25519 is deterministic: the same report under the same key is the same bytes
    assert wire[-64:].hex().startswith("b9a80d205daa1fddbbd108c66ba2c9e4")


def test_the_signature_covers_the_context_and_the_body() -> None:
    wire = r.sign(REPORT, KEY)
    KEY.public_key().verify(wire[-64:], b"fwdist box report v1\x00" + wire[:-64])
    assert r.verify(wire, KEY.public_key()) == REPORT


def test_a_manifest_signature_over_the_same_body_does_not_verify() -> None:
    body = r.encode_body(REPORT)
    forged = body + KEY.sign(b"fwdist manifest v1\x00" + body)
    with pytest.raises(r.ReportError, match="0123456789abcdef#17 is not signed by that box's key"):
        r.verify(forged, KEY.public_key())


def test_the_smallest_report_has_no_target_and_no_last_result() -> None:
    rep = replace(REPORT, seq=0, target=None, last=None, clock=0, state=BoxState.IDLE)
    wire = r.sign(rep, KEY)
    assert len(wire) == 55 + 64
    assert r.decode(wire).report == rep


@pytest.mark.parametrize(("change", "message"), [
    ({"box_id": "-bad"}, "bad box id"),
    ({"seq": -1}, "bad seq"),
    ({"seq": 1 << 63}, "bad seq"),
    ({"seq": True}, "bad seq"),
    ({"running_version": "1.0"}, "bad running version"),
    ({"running_version": "01.0.0"}, "bad running version"),
    ({"running_image": bytes(7)}, "bad running image"),
    ({"battery": 101}, "bad battery"),
    ({"state": 1}, "bad state"),
    ({"target": r.TargetProgress("1.1.0", 5, 4)}, "bad target progress"),
    ({"last": r.LastResult("0.9.0", r.Outcome.REFUSED, 256)}, "bad last reason"),
    ({"clock": -5}, "bad clock"),
])
def test_a_report_with_a_bad_field_is_refused_before_signing(change: dict[str, object],
                                                             message: str) -> None:
    with pytest.raises(r.ReportError, match=message):
        r.sign(replace(REPORT, **change), KEY)  # type: ignore[arg-type]


def _wire(fields: list[object]) -> bytes:
    return msgpack.packb(fields, use_bin_type=True) + bytes(64)


GOOD = [1, "box1", 3, "lockbox", "lb-r2", "1.0.0", bytes(8), None, 50, 0, None, 0]


@pytest.mark.parametrize(("wire", "message"), [
    (b"", "report of 0 bytes is not 65..512"),
    (bytes(64), "report of 64 bytes is not 65..512"),
    (bytes(513), "report of 513 bytes is not 65..512"),
    (b"\xc1" + bytes(64), "not valid msgpack"),
    (_wire(GOOD[:11]), "not an array of 12 fields"),
    (_wire([2, *GOOD[1:]]), "format 2 is not 1"),
    (_wire([*GOOD[:9], 9, *GOOD[10:]]), "bad state"),
    (_wire([*GOOD[:10], ["1.0.0", 0, 0], 0]), "bad last outcome"),
    (_wire([*GOOD[:10], ["1.0.0", 8, 0], 0]), "bad last outcome"),
    (_wire([*GOOD[:7], ["1.1.0", 1], *GOOD[8:]]), "bad target"),
    (_wire([*GOOD[:6], bytes(9), *GOOD[7:]]), "not valid msgpack"),  # over the bin limit
    (msgpack.packb(GOOD, use_bin_type=True)[:-1] + b"\xcc\x00" + bytes(64), "canonical form"),
    (msgpack.packb({1: 2}) + bytes(64), "not valid msgpack"),
])
def test_bad_wire_bytes_are_refused_in_one_line(wire: bytes, message: str) -> None:
    with pytest.raises(r.ReportError, match=message) as e:
        r.decode(wire)
    assert "\n" not in str(e.value)


def test_a_refused_outcome_carries_the_reason_code() -> None:
    rep = replace(REPORT, last=r.LastResult("1.1.0", r.Outcome.REFUSED, int(Reason.EXPIRED)))
    got = r.decode(r.sign(rep, KEY)).report
    assert got.last == r.LastResult("1.1.0", r.Outcome.REFUSED, 6)
