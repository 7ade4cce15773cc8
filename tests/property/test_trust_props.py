"""Trust metadata round-trips canonically, decodes-or-raises on any bytes, and no flipped bit
of a signed root or timestamp still verifies."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from fwdist import trust
from fwdist.errors import TrustError
from tests.trust_helpers import RELEASE_KEYS, ROOT_KEYS, TIMESTAMP_KEY, root_v1, threshold

KEYS = [*ROOT_KEYS, *RELEASE_KEYS, TIMESTAMP_KEY]
names = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
versions = st.tuples(*[st.integers(0, 999)] * 3).map(lambda t: ".".join(map(str, t)))
u32 = st.integers(0, 2**32 - 1)


@st.composite
def thresholds(draw: st.DrawFn) -> trust.Threshold:
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique_by=id))
    return threshold(draw(st.integers(1, len(keys))), keys)


@st.composite
def roots(draw: st.DrawFn) -> trust.Root:
    scopes = draw(st.lists(st.one_of(st.just((None, None)), st.tuples(names, st.none()),
                                     st.tuples(names, names)), min_size=1, max_size=4,
                           unique_by=lambda s: (s[0] or "", s[1] or "")))
    scopes.sort(key=lambda s: (s[0] or "", s[1] or ""))
    roles = tuple(trust.ReleaseRole(draw(thresholds()), p, h) for p, h in scopes)
    return trust.Root(draw(u32), draw(u32), draw(thresholds()), draw(thresholds()), roles)


@st.composite
def timestamps(draw: st.DrawFn) -> trust.Timestamp:
    time = draw(st.integers(0, 2**31))
    latest = sorted(draw(st.dictionaries(names, versions, max_size=4)).items())
    revoked = sorted(set(draw(st.lists(st.tuples(names, versions), max_size=4))))
    return trust.Timestamp(draw(u32), time, draw(st.integers(time, 2**32 - 1)),
                           tuple(latest), tuple(revoked))


@settings(max_examples=60, deadline=None)
@given(st.one_of(roots(), timestamps()), st.lists(st.sampled_from(KEYS), max_size=3, unique_by=id))
def test_metadata_round_trips_canonically(meta: trust.Root | trust.Timestamp,
                                          signers: list[object]) -> None:
    wire = trust.sign(meta, signers)  # type: ignore[arg-type]
    s = (trust.decode_root if isinstance(meta, trust.Root) else trust.decode_timestamp)(wire)
    assert s.meta == meta and s.wire == wire and len(s.signatures) == len(signers)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_decode_or_raise(data: bytes) -> None:
    for decode in (trust.decode_root, trust.decode_timestamp):
        with contextlib.suppress(TrustError):
            decode(data)


ROOT_WIRE = trust.sign(root_v1(), ROOT_KEYS[:2])
TS_WIRE = trust.sign(trust.Timestamp(3, 1_700_000_000, 1_800_000_000, (("lock", "1.3.0"),),
                                     (("lock", "1.2.0"),)), [TIMESTAMP_KEY])


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(ROOT_WIRE) * 8 - 1), st.integers(0, len(TS_WIRE) * 8 - 1))
def test_no_flipped_bit_verifies(root_bit: int, ts_bit: int) -> None:
    bad_root = bytearray(ROOT_WIRE)
    bad_root[root_bit // 8] ^= 1 << root_bit % 8
    bad_ts = bytearray(TS_WIRE)
    bad_ts[ts_bit // 8] ^= 1 << ts_bit % 8
    try:
        trust.verify_root(bytes(bad_root))
    except TrustError:
        pass
    else:
        raise AssertionError(f"root with bit {root_bit} flipped verified")
    try:
        trust.verify_timestamp(root_v1(), bytes(bad_ts))
    except TrustError:
        pass
    else:
        raise AssertionError(f"timestamp with bit {ts_bit} flipped verified")
