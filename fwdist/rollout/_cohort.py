"""Cohorts: which boxes a phase offers the release to, decided by every phone alike.

A box's *point* is a keyed hash of its id, keyed by the rollout: HMAC-SHA-256 under a key
derived from the rollout id, its first 8 bytes read as an integer in ``[0, 2**64)``. The
box is in a phase of share ``s`` basis points when ``point * WHOLE < s * 2**64``, exact
integer arithmetic, so a phone offline for a week decides what the server would, and a box
in the 1 % is in the 10 % and in every later phase (the test is a threshold on one fixed
number). Another rollout, another key: the same boxes are not always first.
"""

from __future__ import annotations

import hashlib
import hmac

from fwdist.rollout._plan import WHOLE

SPACE = 1 << 64
DOMAIN = b"fwdist rollout cohort v1\x00"


def point(rollout_id: str, box_id: str) -> int:
    """The box's fixed place in ``[0, 2**64)`` for this rollout."""
    key = hashlib.sha256(DOMAIN + rollout_id.encode()).digest()
    mac = hmac.new(key, box_id.encode(), hashlib.sha256).digest()
    return int.from_bytes(mac[:8], "big")


def position(rollout_id: str, box_id: str) -> float:
    """The point as a fraction in ``[0, 1)``, for people (membership uses :func:`in_cohort`)."""
    return point(rollout_id, box_id) / SPACE


def in_cohort(rollout_id: str, box_id: str, share_bp: int) -> bool:
    """Whether the box is offered the release at ``share_bp`` basis points of the fleet."""
    return point(rollout_id, box_id) * WHOLE < share_bp * SPACE
