"""Box reports round-trip canonically, fail to verify after any flipped bit, and decode-or-raise
on any input (fwdist.report)."""

from __future__ import annotations

import contextlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from fwdist import report as r
from fwdist.protocol import BoxState

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
versions = st.tuples(*[st.integers(0, 10**9 - 1)] * 3).map(lambda t: ".".join(map(str, t)))


@st.composite
def targets(draw: st.DrawFn) -> r.TargetProgress:
    total = draw(st.integers(0, r.MAX_TIME))
    return r.TargetProgress(draw(versions), draw(st.integers(0, total)), total)


lasts = st.builds(r.LastResult, versions, st.sampled_from(list(r.Outcome)),
                  st.integers(0, r.MAX_REASON))
reports = st.builds(
    r.Report, box_id=names, seq=st.integers(0, r.MAX_SEQ), product=names, hardware=names,
    running_version=versions, running_image=st.binary(min_size=8, max_size=8),
    target=st.none() | targets(), battery=st.integers(0, 100),
    state=st.sampled_from(list(BoxState)), last=st.none() | lasts,
    clock=st.integers(0, r.MAX_TIME))


@settings(max_examples=200)
@given(reports)
def test_round_trip_is_canonical_and_bounded(rep: r.Report) -> None:
    wire = r.sign(rep, KEY)
    assert len(wire) <= r.MAX_REPORT_BYTES
    assert r.verify(wire, KEY.public_key()) == rep
    sr = r.decode(wire)
    assert sr.wire == wire and sr.report == rep


@settings(max_examples=200)
@given(reports, st.data())
def test_any_flipped_bit_is_refused(rep: r.Report, data: st.DataObject) -> None:
    wire = bytearray(r.sign(rep, KEY))
    bit = data.draw(st.integers(0, len(wire) * 8 - 1))
    wire[bit // 8] ^= 1 << (bit % 8)
    try:
        r.verify(bytes(wire), KEY.public_key())
    except r.ReportError:
        return
    raise AssertionError(f"a report with bit {bit} flipped verified")


@settings(max_examples=100)
@given(reports)
def test_another_keys_signature_is_refused(rep: r.Report) -> None:
    wire = r.sign(rep, OTHER)
    try:
        r.verify(wire, KEY.public_key())
    except r.ReportError as e:
        assert "is not signed by that box's key" in str(e)
    else:
        raise AssertionError("verified under the wrong key")


@settings(max_examples=300)
@given(st.binary(max_size=r.MAX_REPORT_BYTES + 8))
def test_any_bytes_decode_canonically_or_raise(wire: bytes) -> None:
    sr = None
    with contextlib.suppress(r.ReportError):
        sr = r.decode(wire)
    if sr is not None:
        assert r.encode_body(sr.report) + sr.signature == wire


@settings(max_examples=200)
@given(reports, st.data())
def test_edited_bodies_decode_canonically_or_raise(rep: r.Report, data: st.DataObject) -> None:
    wire = bytearray(r.sign(rep, KEY))
    pos = data.draw(st.integers(0, len(wire) - 65))
    wire[pos : pos + 1] = data.draw(st.binary(min_size=0, max_size=3))
    sr = None
    with contextlib.suppress(r.ReportError):
        sr = r.decode(bytes(wire))
    if sr is not None:
        assert sr.wire == bytes(wire)
