"""Property tests for the dashboard's codecs and streams: the session cookie, the event
stream, and the curve's history built from reports in order of arrival."""

from __future__ import annotations

import json

import trio
from hypothesis import given
from hypothesis import strategies as st

from fwdist.dashboard import Principal
from fwdist.dashboard import _events as events
from fwdist.dashboard import _session as session
from fwdist.server.dashboard import history

KEY = b"\x07" * 32
NOW = 1_800_000_000

principals = st.builds(Principal, st.text(max_size=64), st.text(max_size=64))


@given(principals, st.integers(1, 10**6), st.integers(0, 10**6))
def test_a_cookie_decodes_to_its_principal_until_it_expires(
    who: Principal, lifetime: int, later: int
) -> None:
    cookie = session.encode(who, KEY, NOW, lifetime)
    got = session.decode(cookie, KEY, NOW + later)
    assert got == (who if later < lifetime else None)
    assert session.decode(cookie, b"\x08" * 32, NOW) is None  # another server's key


@given(principals, st.data())
def test_any_change_to_a_cookie_is_refused(who: Principal, data: st.DataObject) -> None:
    cookie = session.encode(who, KEY, NOW)
    i = data.draw(st.integers(0, len(cookie) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="
    other = data.draw(st.sampled_from(alphabet).filter(lambda c: c != cookie[i]))
    edited = cookie[:i] + other + cookie[i + 1 :]
    assert session.decode(edited, KEY, NOW) is None
    assert session.decode(cookie[:i], KEY, NOW) is None  # every truncation too


@given(st.text(max_size=2000))
def test_arbitrary_text_is_never_a_session(cookie: str) -> None:
    assert session.decode(cookie, KEY, NOW) is None


snapshots = st.lists(
    st.dictionaries(st.sampled_from(["fleet", "rollouts", "boxes"]), st.text(max_size=8),
                    min_size=3, max_size=3),
    min_size=1, max_size=12,
)  # fmt: skip


def run_stream(seq: list[dict[str, str]], keepalive: float) -> list[bytes]:
    """Every chunk the stream sends for these snapshots (then the session ends)."""
    feed = iter(seq)
    slept: list[float] = []

    async def snapshot() -> dict[str, str] | None:
        return next(feed, None)

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> list[bytes]:
        return [c async for c in events.stream(snapshot, sleep, 1.0, keepalive)]

    out = trio.run(main)
    assert slept == [1.0] * len(seq)
    return out


@given(snapshots)
def test_the_stream_sends_exactly_what_changed_and_a_client_rebuilds_each_snapshot(
    seq: list[dict[str, str]],
) -> None:
    chunks = run_stream(seq, keepalive=1000.0)
    assert chunks[0] == b"retry: 2000\n\n"
    page: dict[str, str] = {}
    sent = []
    for chunk in chunks[1:]:
        head, data = chunk.decode().split("\n", 1)
        assert head == "event: sections" and data.startswith("data: ") and data.endswith("\n\n")
        changed = json.loads(data.removeprefix("data: "))
        assert changed and all(page.get(k) != v for k, v in changed.items())
        page |= changed
        sent.append(dict(page))
    distinct = [s for i, s in enumerate(seq) if i == 0 or s != seq[i - 1]]
    assert sent == distinct


def test_a_quiet_stream_sends_a_keepalive_every_keepalive_seconds() -> None:
    same = [{"fleet": "a"}] * 7
    chunks = run_stream(same, keepalive=3.0)
    assert chunks[2:] == [b": keep-alive\n\n"] * 2  # after 3 s and 6 s of nothing new


def test_the_history_counts_each_box_by_its_highest_seq_received_so_far() -> None:
    rows = [("a", 1, 100, "1.0.0"), ("b", 1, 100, "1.0.0"), ("a", 3, 160, "1.1.0"),
            ("a", 2, 170, "1.0.0"),  # a late, older report: a stays on 1.1.0
            ("c", 1, 200, "1.1.0")]  # fmt: skip
    got = history(rows, samples=5)
    assert [(s.at, dict(s.versions)) for s in got] == [
        (100, {"1.0.0": 2}),
        (125, {"1.0.0": 2}),
        (150, {"1.0.0": 2}),
        (175, {"1.0.0": 1, "1.1.0": 1}),
        (200, {"1.0.0": 1, "1.1.0": 2}),
    ]
    assert history([]) == ()


@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers(1, 5), st.integers(0, 50),
                          st.sampled_from(["1.0.0", "1.1.0"])), min_size=1, max_size=40),
       st.integers(1, 60))  # fmt: skip
def test_the_history_never_loses_or_invents_a_box(
    rows: list[tuple[str, int, int, str]], samples: int
) -> None:
    rows.sort(key=lambda r: r[2])
    got = history(rows, samples)
    assert 1 <= len(got) <= samples and got[-1].at == rows[-1][2]
    for s in got:
        assert s.total == len({r[0] for r in rows if r[2] <= s.at})
    assert [s.at for s in got] == sorted({s.at for s in got})
