"""The emulated box's serve loop in-process: what its log says when the box raises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from fwdist import emulator, keys, protocol, trio_link
from fwdist.journal import JournalError
from fwdist.lockbox import Lockbox
from fwdist.sample import SampleFirmware


async def test_a_box_that_raises_is_logged_by_its_real_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 9 item 8: the reset event names the box's error, not "Exceptions from Trio
    nursery" (the session's tasks run in a nursery, which wraps what they raise)."""
    _, pub = keys.generate(tmp_path / "k")
    image = tmp_path / "fw.bin"
    image.write_bytes(SampleFirmware(size=16 * 1024, seed=2).image(0))
    emulator.init_state(tmp_path / "box", "lockbox", pub, image, "1.0.0")

    real = Lockbox.receive_data
    calls = []

    def broken(self: Lockbox, data: bytes, now: int = 0) -> bytes:
        calls.append(data)
        if len(calls) == 1:  # the Hello (the greeting, read before the session's tasks)
            return real(self, data, now)
        raise JournalError("state snapshot of 4085 bytes does not fit a half")

    monkeypatch.setattr(Lockbox, "receive_data", broken)
    events: list[dict[str, Any]] = []
    listening = trio.Event()

    def on_event(event: dict[str, Any]) -> None:
        events.append(event)
        listening.set()

    async with trio.open_nursery() as n:
        n.start_soon(lambda: emulator.serve(tmp_path / "box", "127.0.0.1", 0, battery=100,
                                            session_timeout=10, max_sessions=1,
                                            on_event=on_event))
        await listening.wait()
        port = int(events[0]["address"].rsplit(":", 1)[1])
        stream = await trio_link.connect("127.0.0.1", port)
        await stream.send_all(protocol.encode(protocol.Hello(1, 244)))
        await stream.receive_some(4096)  # the Status: now the session's tasks read
        await stream.send_all(b"\x00")
        with trio.fail_after(10):
            while await stream.receive_some(4096):
                pass
    assert [e["event"] for e in events] == ["listening", "reset"]
    assert events[1]["error"] == "JournalError: state snapshot of 4085 bytes does not fit a half"


def test_error_line_names_every_leaf_of_nested_groups() -> None:
    group = ExceptionGroup("outer", [ValueError("a"), ExceptionGroup("inner", [KeyError("b")])])
    assert emulator.error_line(group) == "ValueError: a; KeyError: 'b'"
    assert emulator.error_line(OSError("disk")) == "OSError: disk"
