"""The pump and the trio link move bytes and nothing else: exact counts, cuts, pacing, turns.

The real box and phone are exercised over the same functions in test_app.py;
here two tiny endpoints make every count predictable: the box says b"go",
the phone answers with ``total`` bytes in ``frame``-byte frames and ends.
Scripted endpoints then hold :class:`fwdist.pump.Pump` to the two loops it
replaced (the demo's pump and the simulator's), call for call.
"""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from fwdist import pump, trio_link
from fwdist.lockbox import Session
from fwdist.pump import LinkEnd


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
) -> tuple[trio_link.LinkStats, trio_link.LinkStats]:
    a, b = trio.testing.memory_stream_pair()
    results: dict[str, trio_link.LinkStats] = {}

    async def run(
        name: str, stream: trio.abc.Stream, ep: pump.Endpoint, kw: dict[str, object]
    ) -> None:
        results[name] = await trio_link.converse(stream, ep, **kw)  # type: ignore[arg-type]

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
    assert (ps.sent_bytes, ps.reason) == (1000, LinkEnd.MAX_BYTES)
    # 4 whole frames and 40 bytes of the fifth: the box saw exactly the budget, then EOF.
    assert box.received == 1000 and box.got_eof
    assert bs.reason == LinkEnd.PEER_CLOSED


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
    assert (ps.sent_bytes, ps.reason) == (112, LinkEnd.MAX_SECONDS)
    assert box.received == 112 and box.got_eof and phone.got_eof
    assert bs.reason == LinkEnd.PEER_CLOSED


def test_sync_pump_counts_and_cuts() -> None:
    phone, box = Talker(10_000, 240), Listener(10_000)
    r = pump.run_session_sync(box, phone)
    assert r == pump.PumpResult(phone_sent=10_000, box_sent=2, cut_bytes=0, reason=None)
    phone, box = Talker(10_000, 240), Listener(10_000)
    r = pump.run_session_sync(box, phone, budget_bytes=1000)
    assert r == pump.PumpResult(phone_sent=1000, box_sent=2, cut_bytes=200,
                                     reason=LinkEnd.MAX_BYTES)
    assert box.received == 1000 and box.got_eof and phone.got_eof


def test_sync_pump_reports_a_stall() -> None:
    phone, box = Talker(100, 10), Listener(100)
    box.outbox = b"no"  # the phone never hears "go"; nobody has anything to say
    r = pump.run_session_sync(box, phone)
    assert r.reason == LinkEnd.STALLED and r.phone_sent == 0


class Greeter(Talker):
    """A phone stand-in that speaks first, as a phone does (its Hello): b"hi", then Talker."""

    def __init__(self, total: int, frame: int) -> None:
        super().__init__(total, frame)
        self.greeted = False

    def data_to_send(self) -> bytes:
        if not self.greeted:
            self.greeted = True
            return b"hi"
        return super().data_to_send()


async def test_tcp_one_session_at_a_time() -> None:
    listener = await trio_link.open_listener("127.0.0.1", 0)
    port = trio_link.listener_port(listener)
    boxes: list[Listener] = []
    firsts: list[bytes] = []

    async def handle(stream: trio.SocketStream, first: bytes) -> None:
        box = Listener(5002)
        boxes.append(box)
        firsts.append(first)
        await trio_link.converse(stream, box, first=first)

    async with trio.open_nursery() as n:
        n.start_soon(trio_link.serve_box, listener, handle, 2)
        for budget in (None, 777):
            stream = await trio_link.connect("127.0.0.1", port)
            stats = await trio_link.converse(stream, Greeter(5000, 240), max_send_bytes=budget)
            assert stats.sent_bytes == (budget or 5002)
    await listener.aclose()
    assert [b.received for b in boxes] == [5002, 777] and firsts == [b"hi", b"hi"]


async def test_tcp_errors_are_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConnectionError, match="port is in use"):
            await trio_link.open_listener("127.0.0.1", port)
    with pytest.raises(ConnectionError, match="cannot reach a box"):
        await trio_link.connect("127.0.0.1", port)


def test_parse_hostport() -> None:
    assert trio_link.parse_hostport("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert trio_link.parse_hostport("[::1]:9") == ("::1", 9)
    for bad in ("127.0.0.1", ":80", "host:x", "host:70000"):
        with pytest.raises(ValueError):
            trio_link.parse_hostport(bad)


# -- the one pump, held to the two loops it replaced ---------------------------------------


class Scripted:
    """An endpoint whose answers are drawn in advance; every call it gets is logged.

    The i-th ``data_to_send`` returns ``outs[i]`` (b"" = nothing yet), so asking
    changes its state, as asking the App for its next batch does; each chunk it
    receives queues a reply of ``1 + len % echo`` bytes (none if ``echo`` is 0),
    as the box's acknowledgements are. It is over once its script is spent, if
    ``finishes``.
    """

    def __init__(self, name: str, log: list[tuple[str, str, bytes]], outs: list[bytes],
                 echo: int, finishes: bool) -> None:
        self.name, self.log, self.outs = name, log, list(outs)
        self.echo, self.finishes = echo, finishes
        self.queued = b""

    def receive_data(self, data: bytes) -> None:
        self.log.append((self.name, "receive", data))
        if data and self.echo:
            self.queued += bytes([len(data) % 251]) * (1 + len(data) % self.echo)

    def data_to_send(self) -> bytes:
        out = self.queued + (self.outs.pop(0) if self.outs else b"")
        self.queued = b""
        self.log.append((self.name, "send", out))
        return out

    @property
    def session_over(self) -> bool:
        return self.finishes and not self.outs


def _old_run_session_sync(box: pump.Endpoint, phone: pump.Endpoint, budget_bytes: int | None,
                          max_rounds: int) -> pump.PumpResult:
    """The demo's pump as it was before fwdist.pump (transport.run_session_sync), verbatim."""
    sent = back = cut = 0
    reason: LinkEnd | None = None
    for _ in range(max_rounds):
        moved = False
        out = phone.data_to_send()
        if out:
            if budget_bytes is not None and sent + len(out) > budget_bytes:
                room = max(0, budget_bytes - sent)
                if room:
                    box.receive_data(out[:room])
                sent += room
                cut = len(out) - room
                reason = LinkEnd.MAX_BYTES
                break
            box.receive_data(out)
            sent += len(out)
            moved = True
        reply = box.data_to_send()
        if reply:
            phone.receive_data(reply)
            back += len(reply)
            moved = True
        if not moved:
            if not (phone.session_over or box.session_over):
                reason = LinkEnd.STALLED
            break
    else:
        reason = LinkEnd.STALLED
    box.receive_data(b"")
    phone.receive_data(b"")
    return pump.PumpResult(sent, back, cut, reason)


def _old_sim_session(box: pump.Endpoint, phone: pump.Endpoint, budget: int) -> tuple[int, bytes]:
    """The simulator's copy (FwdistBox.access over FwdistSession), verbatim: (air, cut prefix)."""
    chunk, to_box, used, cut = b"", True, 0, b""
    while True:
        out = phone.data_to_send()
        if out:
            chunk, to_box = out, True
        else:
            reply = box.data_to_send()
            if not reply:
                break
            chunk, to_box = reply, False
        if used + len(chunk) > budget:
            cut = chunk[: budget - used]
            if cut:
                (box if to_box else phone).receive_data(cut)
            used = budget
            break
        (box if to_box else phone).receive_data(chunk)
        used += len(chunk)
    box.receive_data(b"")
    phone.receive_data(b"")
    return used, cut


_script = st.lists(st.binary(max_size=40), max_size=12)
_side = st.tuples(_script, st.integers(0, 5), st.booleans())


def _pair_of(log: list[tuple[str, str, bytes]], box: tuple[list[bytes], int, bool],
             phone: tuple[list[bytes], int, bool]) -> tuple[Scripted, Scripted]:
    return Scripted("box", log, *box), Scripted("phone", log, *phone)


@given(_side, _side, st.none() | st.integers(0, 400), st.integers(1, 60))
def test_rounds_pump_is_the_demo_pump_call_for_call(
    box: tuple[list[bytes], int, bool], phone: tuple[list[bytes], int, bool],
    budget: int | None, max_rounds: int,
) -> None:
    new_log: list[tuple[str, str, bytes]] = []
    old_log: list[tuple[str, str, bytes]] = []
    new = pump.Pump(*_pair_of(new_log, box, phone), pump.Turns.ROUNDS, max_rounds).run(budget)
    old = _old_run_session_sync(*_pair_of(old_log, box, phone), budget, max_rounds)
    assert new == old
    assert new_log == old_log


@given(_side, _side, st.integers(0, 400))
def test_phone_first_pump_is_the_simulators_link_call_for_call(
    box: tuple[list[bytes], int, bool], phone: tuple[list[bytes], int, bool], budget: int
) -> None:
    new_log: list[tuple[str, str, bytes]] = []
    old_log: list[tuple[str, str, bytes]] = []
    p = pump.Pump(*_pair_of(new_log, box, phone), pump.Turns.PHONE_FIRST)
    p.run(budget, pump.Charge.AIR)
    assert (p.air, p.cut_prefix) == _old_sim_session(*_pair_of(old_log, box, phone), budget)
    assert new_log == old_log


def test_turns_differ_only_after_the_phone_spoke() -> None:
    """The phone has two chunks queued, the box one reply per chunk: who is asked when."""
    for turns, order in (
        (pump.Turns.ROUNDS, ["phone", "box", "phone", "box", "phone", "box"]),
        (pump.Turns.PHONE_FIRST, ["phone", "phone", "phone", "box", "phone", "box"]),
    ):
        log: list[tuple[str, str, bytes]] = []
        box = Scripted("box", log, [], 2, True)
        phone = Scripted("phone", log, [b"ab", b"c"], 0, True)
        r = pump.Pump(box, phone, turns).run(pump.MAX_ROUNDS, pump.Charge.AIR)
        assert [who for who, what, _ in log if what == "send"] == order, turns
        assert r == pump.PumpResult(phone_sent=3, box_sent=3, cut_bytes=0, reason=None)


def test_charge_says_whose_bytes_the_budget_counts() -> None:
    """10 phone bytes, then a 2-byte reply per chunk; a budget of 11."""
    results = {}
    for charge in pump.Charge:
        box = Scripted("box", [], [], 3, True)  # 1 + 5 % 3 = 3 bytes per reply
        phone = Scripted("phone", [], [b"x" * 5, b"y" * 5, b"z" * 5], 0, True)
        results[charge] = pump.Pump(box, phone).run(11, charge)
    assert results[pump.Charge.PHONE] == pump.PumpResult(11, 6, 4, LinkEnd.MAX_BYTES)
    assert results[pump.Charge.AIR] == pump.PumpResult(8, 3, 2, LinkEnd.MAX_BYTES)


def test_a_pump_that_never_quietens_stalls_after_max_rounds() -> None:
    log: list[tuple[str, str, bytes]] = []
    box, phone = Scripted("box", log, [], 1, False), Scripted("phone", log, [b"p"] * 10, 0, False)
    p = pump.Pump(box, phone, pump.Turns.ROUNDS, max_rounds=3)
    assert p.run() == pump.PumpResult(3, 3, 0, LinkEnd.STALLED)
    assert sum(1 for who, what, _ in log if (who, what) == ("phone", "send")) == 3
    assert p.next_chunk() is None and p.closed


class _SessionOnly:
    """A lockbox stand-in with only the session surface BoxEndpoint uses."""

    def __init__(self) -> None:
        self.session = Session.CLOSED

    def open_session(self, now: int = 0) -> bytes:
        self.session = Session.WAIT_HELLO
        return b"hi"

    def receive_data(self, data: bytes, now: int = 0) -> bytes:
        return b""

    def end_session(self, now: int = 0) -> None:
        self.session = Session.CLOSED


def test_box_endpoint_is_over_when_the_box_session_is_done_or_ended() -> None:
    box = _SessionOnly()
    ep = pump.BoxEndpoint(box)
    over = {}
    for state in Session:
        box.session = state
        over[state] = ep.session_over
    assert [s for s, o in over.items() if o] == [Session.DONE]
    ep.receive_data(b"")
    assert ep.session_over and box.session is Session.CLOSED


def test_link_end_values_are_the_reports_words() -> None:
    assert {e: e.value for e in LinkEnd} == {
        LinkEnd.MAX_BYTES: "max-bytes",
        LinkEnd.MAX_SECONDS: "max-seconds",
        LinkEnd.PEER_CLOSED: "peer closed the link",
        LinkEnd.IDLE: "idle: no byte moved for the idle timeout",
        LinkEnd.STALLED: "stalled: neither side has anything to send",
    }
    assert [e for e in LinkEnd if e.walk_away] == [LinkEnd.MAX_BYTES, LinkEnd.MAX_SECONDS]


class Amplifier:
    """Box stand-in whose replies grow with what it hears (two bytes out per byte in), as
    the lockbox's Acks do for gap frames; it records the most it ever held unsent."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.held_max = 0

    def receive_data(self, data: bytes) -> None:
        self.out += data * 2
        self.held_max = max(self.held_max, len(self.out))

    def data_to_send(self) -> bytes:
        out = bytes(self.out)
        self.out.clear()
        return out

    @property
    def session_over(self) -> bool:
        return False


async def test_a_peer_that_never_reads_is_held_back_then_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Issue 9 item 3: a phone flooding without reading grows no buffer and is dropped."""
    phone_end, box_end = trio.testing.lockstep_stream_pair()  # no buffer in between
    box = Amplifier()
    flooded = 0

    async def flood() -> None:
        nonlocal flooded
        try:
            while flooded < 4 << 20:  # 4 MiB, never reading a byte
                await phone_end.send_all(b"\x00" * 4096)
                flooded += 4096
            await trio.sleep_forever()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    with trio.fail_after(60):
        async with trio.open_nursery() as n:
            n.start_soon(flood)
            started = trio.current_time()
            stats = await trio_link.converse(box_end, box, idle_seconds=5.0)
            n.cancel_scope.cancel()
    assert stats.reason is LinkEnd.IDLE and stats.sent_bytes == 0
    assert trio.current_time() - started == pytest.approx(5.0)
    # what it read while its first answer could not leave: the read-ahead bound, in
    # RECEIVE_SIZE steps; what it held: twice that (and the 4 MiB never came in)
    ahead = trio_link.MAX_READ_AHEAD + 2 * trio_link.RECEIVE_SIZE
    assert stats.received_bytes <= ahead and box.held_max <= 2 * ahead
    assert flooded <= ahead + 4096


async def test_a_silent_box_ends_the_session_after_the_idle_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Issue 9 item 5: a phone does not wait for ever on a box that says nothing."""
    phone_end, _box_end = trio.testing.memory_stream_pair()
    phone = Greeter(100, 10)
    started = trio.current_time()
    stats = await trio_link.converse(phone_end, phone, idle_seconds=trio_link.PHONE_IDLE_SECONDS)
    assert (stats.reason, stats.sent_bytes, stats.received_bytes) == (LinkEnd.IDLE, 2, 0)
    assert trio.current_time() - started == pytest.approx(10.0)
    assert phone.got_eof
