"""The lockbox: a sans-I/O state machine that receives, verifies and installs releases.

Two machines live here, each a table in a small module of its own:

* the **session** (one conversation with one phone, :mod:`._session`):
  ``(state, event type) -> (action, allowed next states)`` in :data:`TRANSITIONS`,
  h11-style: anything not in the table is a protocol error;
* the **update** (what the box holds across sessions, phones and power cuts,
  :mod:`._update`): :class:`PState`, changed only by journal records
  (:func:`apply_record`), each allowed or refused by :data:`PHASES` of
  ``(phase, record) -> phase``, so the state after a reboot is exactly the replay
  of what reached flash.

``tests/unit/test_lockbox.py`` checks every cell of both tables. Around them:
:mod:`._config` (what a box is, its flash layout), :mod:`._state` (the persistent
state and its snapshot form), :mod:`._staging` (the staging sectors, staged writes
and reads), :mod:`._accept` (whether an offered manifest is taken), :mod:`._receive`
(the target in RAM, data frames into its streams, pieces and table checked),
:mod:`._build` (piece hashes, building the new image, provisioning), and
:mod:`._box`, the :class:`Lockbox` that joins them. Only this package's names are
public; the modules behind them are not.
"""

from fwdist.lockbox._accept import misfit
from fwdist.lockbox._box import IdleStep, Lockbox, SelfTest
from fwdist.lockbox._config import BoxConfig, Layout, LockboxError
from fwdist.lockbox._reports import SEQ_BLOCK, Identity
from fwdist.lockbox._session import SESSION_EVENTS, TRANSITIONS, Action, End, Open, Session
from fwdist.lockbox._staging import Staging, StagingFull
from fwdist.lockbox._state import Prev, PState, Stream, TargetRec
from fwdist.lockbox._update import (
    PHASES,
    RECORD_TYPES,
    TABLE,
    UPDATE_PHASES,
    Alloc,
    Built,
    Clock,
    Confirm,
    Done,
    DropPrev,
    Fail,
    GiveUp,
    Keep,
    Progress,
    Rec,
    Record,
    Replace,
    ReportSeq,
    Reset,
    Revert,
    Rollback,
    Target,
    Trial,
    Trim,
    apply_record,
    phase_of,
    record_from_wire,
    record_wire,
)

__all__ = [
    "PHASES",
    "RECORD_TYPES",
    "SEQ_BLOCK",
    "SESSION_EVENTS",
    "TABLE",
    "TRANSITIONS",
    "UPDATE_PHASES",
    "Action",
    "Alloc",
    "BoxConfig",
    "Built",
    "Clock",
    "Confirm",
    "Done",
    "DropPrev",
    "End",
    "Fail",
    "GiveUp",
    "Identity",
    "IdleStep",
    "Keep",
    "Layout",
    "Lockbox",
    "LockboxError",
    "Open",
    "PState",
    "Prev",
    "Progress",
    "Rec",
    "Record",
    "Replace",
    "ReportSeq",
    "Reset",
    "Revert",
    "Rollback",
    "SelfTest",
    "Session",
    "Staging",
    "StagingFull",
    "Stream",
    "Target",
    "TargetRec",
    "Trial",
    "Trim",
    "apply_record",
    "misfit",
    "phase_of",
    "record_from_wire",
    "record_wire",
]
