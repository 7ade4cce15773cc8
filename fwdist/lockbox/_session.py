"""The session machine: one conversation with one phone, as a table (h11-style).

:data:`TRANSITIONS` maps ``(state, event type)`` to the action that handles the
event and the states the action may lead to; anything not in the table is a
protocol error. The actions are the box's ``_on_<action>`` methods.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from fwdist import protocol as p
from fwdist import protocol_v2 as v2


class Session(enum.Enum):
    """States of one conversation."""

    CLOSED = "closed"  # no phone connected
    WAIT_HELLO = "wait_hello"  # connected, the box waits for the phone's Hello
    READY = "ready"  # status sent; offers and data welcome
    OFFERING = "offering"  # a manifest is arriving in chunks
    DONE = "done"  # the box ended the session (error or rejection); input is dropped

    # members are singletons compared by identity: hash them the same way, in C (Enum's
    # own __hash__ is a Python call, and every frame looks a (state, event) pair up)
    __hash__ = object.__hash__


class Action(enum.Enum):
    """What the box does with an event; ``Lockbox._on_<value>`` does it."""

    OPEN = "open"
    HELLO = "hello"
    OFFER = "offer"
    DATA = "data"
    TRUST = "trust"
    PEER_ERROR = "peer_error"
    END = "end"
    IGNORE = "ignore"

    __hash__ = object.__hash__  # (as Session's: each event looks its action up)


@dataclass(frozen=True)
class Open:
    """Local event: a phone connected (after the box has opened for the agent)."""


@dataclass(frozen=True)
class End:
    """Local event: the phone went away."""


S = Session
_LIVE = (S.WAIT_HELLO, S.READY, S.OFFERING)

TRANSITIONS: dict[tuple[Session, type], tuple[Action, frozenset[Session]]] = {
    (S.CLOSED, Open): (Action.OPEN, frozenset({S.WAIT_HELLO})),
    (S.WAIT_HELLO, p.Hello): (Action.HELLO, frozenset({S.READY, S.DONE})),
    (S.READY, p.Offer): (Action.OFFER, frozenset({S.OFFERING, S.READY, S.DONE})),
    (S.OFFERING, p.Offer): (Action.OFFER, frozenset({S.OFFERING, S.READY, S.DONE})),
    (S.READY, p.Data): (Action.DATA, frozenset({S.READY})),
    # trust (protocol 2 only: version 1's decoder has no such frames); between offers, never
    # inside one; the box answers each ASK, chain and timestamp with a TrustAnswer
    **{(S.READY, ev): (Action.TRUST, frozenset({S.READY}))
       for ev in (v2.TrustAsk, v2.TrustLink, v2.TrustStamp)},
    **{(st, p.Error): (Action.PEER_ERROR, frozenset({S.DONE})) for st in _LIVE},
    **{(st, End): (Action.END, frozenset({S.CLOSED})) for st in (*_LIVE, S.DONE)},
    **{(S.DONE, ev): (Action.IGNORE, frozenset({S.DONE})) for ev in p.EVENT_TYPES.values()},
}
"""Session transitions: (state, event type) -> (action, allowed next states)."""

SESSION_EVENTS: tuple[type, ...] = (Open, End, *p.EVENT_TYPES.values())
