"""A simulated Bluetooth link in trio virtual time, frame by frame.

The agent walking away is a ``move_on_after`` around the session; each frame
takes ``size / rate`` seconds of air time, and the cancel can land inside any
frame: the bytes sent so far are on the air, and the frame is lost. Frame end
times are computed from the session's start and the cumulative byte count (not
by adding up per-frame sleeps) so the link agrees to the byte with the budget
arithmetic the coarse engine uses.
"""

from __future__ import annotations

import trio

from sim.draws import Access
from sim.strategy import FrameSession


async def run_session(session: FrameSession, a: Access) -> None:
    with trio.move_on_after(a.connected_s):
        await trio.sleep_until(a.transfer_start)
        t0 = trio.current_time()
        cum = 0
        while True:
            size = session.next_frame()
            if size is None:
                break
            try:
                await trio.sleep_until(t0 + (cum + size) / a.rate)
            except trio.Cancelled:
                sent = max(0, min(size - 1, int((trio.current_time() - t0) * a.rate) - cum))
                session.lost(sent)
                raise
            cum += size
            session.delivered()
    session.finish()
