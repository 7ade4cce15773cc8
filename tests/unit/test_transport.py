"""The transport moves bytes and nothing else: exact counts, cuts and pacing, stand-in endpoints.

The real box and phone are exercised over the same functions in test_app.py;
here two tiny endpoints make every count predictable: the box says b"go",
the phone answers with ``total`` bytes in ``frame``-byte frames and ends.
"""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from fwdist import transport


class Talker:
    """Phone stand-in: after b"go" it sends ``total`` bytes in ``frame``-byte frames, then ends."""

    def __init__(self, total: int, frame: int) -> None:
        self.total, self.frame = total, frame
        self.started = False
        self.queued = 0
        self.got_eof = False
        self.received = b""

    def receive_data(self, data: bytes) -> None:
        if not data:
            self.got_eof = True
        self.received += data
        if self.received.startswith(b"go"):
            self.started = True

    def data_to_send(self) -> bytes:
        if not self.started or self.got_eof or self.queued >= self.total:
            return b""
        n = min(self.frame, self.total - self.queued)
        self.queued += n
        return bytes([self.queued % 251]) * n

    @property
    def session_over(self) -> bool:
        return self.got_eof or (self.started and self.queued >= self.total)


class Listener:
    """Box stand-in: opens with b"go", collects bytes, ends at ``expect`` bytes or EOF."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.outbox = b"go"
        self.received = 0
        self.got_eof = False

    def receive_data(self, data: bytes) -> None:
        if not data:
            self.got_eof = True
        self.received += len(data)

    def data_to_send(self) -> bytes:
        out, self.outbox = self.outbox, b""
        return out

    @property
    def session_over(self) -> bool:
        return self.got_eof or self.received >= self.expect


async def _pair(
    phone: Talker, box: Listener, **phone_kw: object
) -> tuple[transport.LinkStats, transport.LinkStats]:
    a, b = trio.testing.memory_stream_pair()
    results: dict[str, transport.LinkStats] = {}

    async def run(
        name: str, stream: trio.abc.Stream, ep: transport.Endpoint, kw: dict[str, object]
    ) -> None:
        results[name] = await transport.converse(stream, ep, **kw)  # type: ignore[arg-type]

    async with trio.open_nursery() as n:
        n.start_soon(run, "phone", a, phone, phone_kw)
        n.start_soon(run, "box", b, box, {})
    return results["phone"], results["box"]


async def test_whole_conversation_over_memory_streams() -> None:
    phone, box = Talker(10_000, 240), Listener(10_000)
    ps, bs = await _pair(phone, box)
    assert (ps.sent_bytes, ps.received_bytes, ps.reason) == (10_000, 2, None)
    assert (bs.sent_bytes, bs.received_bytes, bs.reason) == (2, 10_000, None)
    assert box.received == 10_000 and box.got_eof and phone.got_eof


async def test_byte_budget_cuts_mid_frame() -> None:
    phone, box = Talker(10_000, 240), Listener(10_000)
    ps, bs = await _pair(phone, box, max_send_bytes=1000)
    assert (ps.sent_bytes, ps.reason) == (1000, transport.REASON_MAX_BYTES)
    # 4 whole frames and 40 bytes of the fifth: the box saw exactly the budget, then EOF.
    assert box.received == 1000 and box.got_eof
    assert bs.reason == transport.REASON_PEER_CLOSED


async def test_rate_paces_in_slices(autojump_clock: trio.testing.MockClock) -> None:
    phone, box = Talker(1000, 240), Listener(1000)
    start = trio.current_time()
    ps, _ = await _pair(phone, box, rate=100)
    # 16-byte slices at 100 B/s: 63 slices, the last one leaves at 62 * 0.16 s.
    assert ps.sent_bytes == 1000 and box.received == 1000
    assert trio.current_time() - start == pytest.approx(62 * 0.16, abs=1e-9)


async def test_walk_away_after_seconds_lands_mid_frame(
    autojump_clock: trio.testing.MockClock,
) -> None:
    phone, box = Talker(10_000, 240), Listener(10_000)
    ps, bs = await _pair(phone, box, rate=100, max_seconds=1.0)
    # slices leave at 0, 0.16, ..., 0.96 s: 7 x 16 bytes, inside the first 240-byte frame.
    assert (ps.sent_bytes, ps.reason) == (112, transport.REASON_MAX_SECONDS)
    assert box.received == 112 and box.got_eof and phone.got_eof
    assert bs.reason == transport.REASON_PEER_CLOSED


def test_sync_pump_counts_and_cuts() -> None:
    phone, box = Talker(10_000, 240), Listener(10_000)
    r = transport.run_session_sync(box, phone)
    assert r == transport.PumpResult(phone_sent=10_000, box_sent=2, cut_bytes=0, reason=None)
    phone, box = Talker(10_000, 240), Listener(10_000)
    r = transport.run_session_sync(box, phone, budget_bytes=1000)
    assert r == transport.PumpResult(phone_sent=1000, box_sent=2, cut_bytes=200,
                                     reason=transport.REASON_MAX_BYTES)
    assert box.received == 1000 and box.got_eof and phone.got_eof


def test_sync_pump_reports_a_stall() -> None:
    phone, box = Talker(100, 10), Listener(100)
    box.outbox = b"no"  # the phone never hears "go"; nobody has anything to say
    r = transport.run_session_sync(box, phone)
    assert r.reason == transport.REASON_STALLED and r.phone_sent == 0


async def test_tcp_one_session_at_a_time() -> None:
    listener = await transport.open_listener("127.0.0.1", 0)
    port = transport.listener_port(listener)
    boxes: list[Listener] = []

    async def handle(stream: trio.SocketStream) -> None:
        box = Listener(5000)
        boxes.append(box)
        await transport.converse(stream, box)

    async with trio.open_nursery() as n:
        n.start_soon(transport.serve_box, listener, handle, 2)
        for budget in (None, 777):
            stream = await transport.connect("127.0.0.1", port)
            stats = await transport.converse(stream, Talker(5000, 240), max_send_bytes=budget)
            assert stats.sent_bytes == (budget or 5000)
    await listener.aclose()
    assert [b.received for b in boxes] == [5000, 777]


async def test_tcp_errors_are_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConnectionError, match="port is in use"):
            await transport.open_listener("127.0.0.1", port)
    with pytest.raises(ConnectionError, match="cannot reach a box"):
        await transport.connect("127.0.0.1", port)


def test_parse_hostport() -> None:
    assert transport.parse_hostport("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert transport.parse_hostport("[::1]:9") == ("::1", 9)
    for bad in ("127.0.0.1", ":80", "host:x", "host:70000"):
        with pytest.raises(ValueError):
            transport.parse_hostport(bad)
