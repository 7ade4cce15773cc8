"""The box's signed reports: who the box is, and sequence numbers it never repeats.

A report (:mod:`fwdist.report`) reaches the server days later through whichever phone
carried it, maybe after a newer one; the server keeps a report once per ``(box id,
seq)`` and orders a box's reports by ``seq``. So a sequence number must never be signed
twice, whatever power cuts do: the box **reserves** numbers in the journal before it
signs with them (a :class:`~fwdist.lockbox._update.ReportSeq` record, persisted first),
:data:`SEQ_BLOCK` at a time, so that only one report in 16 writes flash. After a
reboot the box starts at the reserved limit: the numbers of the block that were not yet
used are skipped (a gap of at most ``SEQ_BLOCK - 1`` per reboot), never reused. A gap
tells the server nothing is lost; a repeat would make it drop a real report as a
duplicate, or refuse it as a forgery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fwdist import report
from fwdist.lockbox._state import PState
from fwdist.lockbox._update import Record, ReportSeq
from fwdist.manifest import check_name
from fwdist.protocol import BoxState

SEQ_BLOCK = 16
"""Report numbers reserved per journal record: one flash write per 16 reports, and at most
15 numbers skipped by a reboot."""


@dataclass(frozen=True)
class Identity:
    """Who a box is to the fleet: its id (a name, registered with the server) and the
    device key that signs its reports. A real box's key is made on the part and never
    leaves it; the emulated box keeps it in ``STATE/device.key``."""

    box_id: str
    key: report.DeviceSigner

    def __post_init__(self) -> None:
        check_name("box id", self.box_id)


@dataclass(frozen=True)
class Facts:
    """What the box knows about itself now, beyond its persistent state."""

    product: str
    hardware: str
    battery: int
    state: BoxState
    target: report.TargetProgress | None


def last_result(s: PState) -> report.LastResult | None:
    """The last install attempt as a report states it."""
    if s.last is None:
        return None
    version, ok = s.last
    if ok:
        return report.LastResult(version, report.Outcome.INSTALLED)
    outcome = report.Outcome(s.outcome) if s.outcome else report.Outcome.FAILED
    return report.LastResult(version, outcome, s.reason)


class Reporter:
    """Signs a box's reports; the next sequence number lives in RAM, its bound in the journal."""

    def __init__(self, identity: Identity, commit: Callable[[Record], None]) -> None:
        self.identity = identity
        self._commit = commit
        self.next_seq = 0

    def boot(self, s: PState) -> None:
        """After a reboot: numbers below the reserved limit may have been used; skip them."""
        self.next_seq = s.seq_limit

    def sign(self, s: PState, facts: Facts) -> bytes:
        """A new report of the box as it is, under a sequence number reserved on flash first."""
        if self.next_seq >= s.seq_limit:
            self._commit(ReportSeq(self.next_seq + SEQ_BLOCK))  # (a cut here: nothing signed)
        seq = self.next_seq
        self.next_seq += 1
        rep = report.Report(self.identity.box_id, seq, facts.product, facts.hardware,
                            s.running_version, s.running_sha256[: report.IMAGE_BYTES],
                            facts.target, max(0, min(100, facts.battery)), facts.state,
                            last_result(s), s.clock)
        return report.sign(rep, self.identity.key)
