"""The matcher: longest matches held to a naive search, exact covers where the best is known,
round trips for arbitrary pairs, and pinned output for a seeded pair."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fwdist.delta import _bsdiff, _match, encode_with
from fwdist.delta._match import Cover
from tests.delta_helpers import run
from tests.unit.test_delta import NEW, OLD


def naive_longest(old: bytes, new: bytes, i: int) -> int:
    """The longest prefix of new[i:] that occurs anywhere in old, by trying every start."""
    best = 0
    for p in range(len(old)):
        n = 0
        while p + n < len(old) and i + n < len(new) and old[p + n] == new[i + n]:
            n += 1
        best = max(best, n)
    return best


# small alphabets make long, overlapping and repeated matches likely
pairs = st.tuples(
    st.binary(max_size=60).map(lambda b: bytes(x % 3 for x in b)),
    st.binary(max_size=60).map(lambda b: bytes(x % 3 for x in b)),
)


@settings(max_examples=300, deadline=None)
@given(pairs)
def test_longest_matches_equal_a_naive_search(pair: tuple[bytes, bytes]) -> None:
    """Exact when old ends in a byte found nowhere else: no comparison runs past old's end."""
    old, new = pair[0] + b"\xff", pair[1]
    length, _ = _match.longest_matches(old, new)
    assert length.tolist() == [naive_longest(old, new, i) for i in range(len(new))]


@settings(max_examples=300, deadline=None)
@given(pairs)
def test_longest_matches_are_true_and_at_most_the_longest(pair: tuple[bytes, bytes]) -> None:
    """Near old's end a match may come out shorter than the longest (clamped), never false."""
    old, new = pair
    length, where = _match.longest_matches(old, new)
    naive = [naive_longest(old, new, i) for i in range(len(new))]
    for i, (n, p) in enumerate(zip(length.tolist(), where.tolist(), strict=True)):
        assert old[p : p + n] == new[i : i + n]
        assert n <= naive[i]
        assert n > 0 or naive[i] == 0


def check_covers(old: bytes, new: bytes, covers: list[Cover]) -> None:
    """Covers are in new order, disjoint, non-empty and inside both images."""
    end = 0
    for c in covers:
        assert c.length > 0 and c.new_start >= end
        assert c.old_start >= 0 and c.old_start + c.length <= len(old)
        end = c.new_start + c.length
    assert end <= len(new)


@settings(max_examples=150, deadline=None)
@given(pairs, st.sampled_from(["bsdiff-lzma", "bsdiff-zstd"]))
def test_round_trip_for_arbitrary_pairs(pair: tuple[bytes, bytes], encoder: str) -> None:
    old, new = pair
    check_covers(old, new, _match.covers(old, new))
    payload = encode_with(encoder, old, new)
    assert b"".join(run(encoder, old, payload, len(new))) == new


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(0, 64))
def test_round_trip_for_edited_code(seed: int, edits: int, insert: int) -> None:
    """Pairs like real releases: a block moved, bytes changed, bytes inserted."""
    rng = random.Random(seed)
    old = rng.randbytes(3000)
    new = bytearray(old[1000:2000] + old[:1000] + rng.randbytes(insert) + old[2000:])
    for _ in range(edits):
        new[rng.randrange(len(new))] = rng.randrange(256)
    check_covers(old, bytes(new), _match.covers(old, bytes(new)))
    payload = encode_with("bsdiff-lzma", old, bytes(new))
    assert b"".join(run("bsdiff-lzma", old, payload, len(new))) == new


RNG = random.Random(4)
BASE = RNG.randbytes(400)
INSERT = RNG.randbytes(20)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(BASE, BASE, [Cover(0, 0, 400)], id="identical"),
        pytest.param(
            BASE,
            BASE[:150] + INSERT + BASE[150:],
            [Cover(0, 0, 150), Cover(150, 170, 250)],
            id="insertion",
        ),
        pytest.param(
            BASE, BASE[200:] + BASE[:200], [Cover(200, 0, 200), Cover(0, 200, 200)], id="swap"
        ),
        pytest.param(
            # a pointer changed every 40 bytes: one cover carries the changes as diff bytes
            BASE,
            bytes(b ^ 0x5A if i % 40 == 7 else b for i, b in enumerate(BASE)),
            [Cover(0, 0, 400)],
            id="scattered-changes",
        ),
        pytest.param(
            BASE, BASE[:100] + BASE[300:], [Cover(0, 0, 100), Cover(300, 100, 100)], id="deletion"
        ),
        pytest.param(BASE, INSERT, [], id="unrelated"),
    ],
)
def test_exact_covers_for_hand_made_pairs(old: bytes, new: bytes, expected: list[Cover]) -> None:
    assert _match.covers(old, new) == expected


def test_cover_triples_spell_out_the_transform() -> None:
    old = bytes(range(10)) * 2
    new = b"xy" + old[5:15] + b"z" + bytes(range(3))
    covers = [Cover(5, 2, 10), Cover(0, 13, 3)]
    triples, diff, extra = _bsdiff.cover_triples(old, new, covers)
    assert triples == [(0, 0, 2), (5, 10, 1), (-15, 3, 0)]
    assert diff == bytes(13)
    assert extra == b"xyz"


def test_pinned_covers_for_the_seeded_pair() -> None:
    """Same input, same bytes: the matcher's transform of the seeded firmware pair, by hash."""
    triples, diff, extra = _bsdiff.cover_triples(OLD, NEW, _match.covers(OLD, NEW))
    assert len(triples) == 73
    digest = hashlib.sha256(repr(triples).encode() + diff + extra).hexdigest()
    assert digest == "52a786812701c57c76a8de432d50ba5a31bcba6f601c96403f4def1272ac487a"


def test_the_transform_that_compresses_smaller_is_kept() -> None:
    """On the seeded pair bsdiff's fewer, longer covers compress smaller than the matcher's."""
    bsdiffs = _bsdiff.bsdiff4_triples(OLD, NEW)
    matched = _bsdiff.cover_triples(OLD, NEW, _match.covers(OLD, NEW))
    assert (_bsdiff.proxy_size(bsdiffs), _bsdiff.proxy_size(matched)) == (3_906, 3_978)
    assert _bsdiff._triples(OLD, NEW) == bsdiffs


def test_huge_pairs_take_bsdiffs_transform(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above MAX_IMAGE the matcher's arrays would outgrow bsdiff's: it is not even run."""

    def refuse(old: bytes, new: bytes) -> list[Cover]:
        raise AssertionError("the matcher ran on a huge pair")

    monkeypatch.setattr(_match, "covers", refuse)
    monkeypatch.setattr(_match, "MAX_IMAGE", len(OLD) + len(NEW) - 1)
    assert _bsdiff._triples(OLD, NEW) == _bsdiff.bsdiff4_triples(OLD, NEW)
