"""The phone's rule: whether to offer a rollout's release to the box in front of it.

A phone holds, from its last sync, each rollout as a :class:`RolloutOffer`: the release,
the machine's state, the share offered, the windows and the retry policy. At the box it
has no network but it has a clock, so it enforces here what the box cannot: maintenance
windows (the box knows only a lower bound on the time) and retry back-off. The cohort test
needs nothing but the ids, so every phone decides as the server would. docs/rollouts.md
says which of these rules a box could enforce itself, and which it cannot yet.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fwdist.errors import RolloutError
from fwdist.rollout._cohort import in_cohort
from fwdist.rollout._machine import OFFERING, State
from fwdist.rollout._plan import WHOLE, RetryPolicy, Window
from fwdist.trust import in_windows


def in_window(windows: tuple[Window, ...], now: int) -> bool:
    """Whether the UTC time ``now`` (seconds) falls in one of the windows (none: always);
    the box's rule (:func:`fwdist.trust.in_windows`), so phone and box agree."""
    return in_windows([(w.start_minute, w.minutes) for w in windows], now)


def retry_at(policy: RetryPolicy, failures: int, last_failure_at: int) -> int | None:
    """When retry number ``failures`` may be offered, or None when the policy forbids it."""
    if failures > policy.count:
        return None
    return last_failure_at + policy.backoff_seconds * (1 << (failures - 1))


class Answer(enum.Enum):
    """The phone's answer for one box, with the reason when it is no."""

    OFFER = "offer"
    STOPPED = "stopped"  # pending, aborted (or yanked): nothing is offered
    PAUSED = "paused"  # only boxes already working on it continue
    NOT_IN_COHORT = "not_in_cohort"
    OUTSIDE_WINDOW = "outside_window"
    BACKING_OFF = "backing_off"
    NO_MORE_RETRIES = "no_more_retries"


@dataclass(frozen=True)
class BoxView:
    """What the phone knows of the box: its id, whether it already targets the release, and
    the failed installs of it the phone has seen (from the box's reports), the last when."""

    box_id: str
    targets_release: bool = False
    failures: int = 0
    last_failure_at: int = 0


@dataclass(frozen=True)
class RolloutOffer:
    """One rollout as ``/v1/sync`` sends it to phones."""

    rollout_id: str
    product: str
    version: str
    state: State
    share_bp: int
    windows: tuple[Window, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def answer(self, box: BoxView | None, now: int) -> Answer:
        """Offer or not, and why not: state, cohort, window, then retries.

        ``box`` None: a box that did not say who it is (no signed report: see
        :class:`fwdist.app.App`). It is in no cohort but the whole fleet's, since
        placing it needs its id, and it is taken as working on nothing, with no failures.
        """
        if self.state is State.PAUSED and not (box is not None and box.targets_release):
            return Answer.PAUSED
        if self.state not in OFFERING and self.state is not State.PAUSED:
            return Answer.STOPPED
        if box is None and self.share_bp < WHOLE:
            return Answer.NOT_IN_COHORT
        if box is not None and not in_cohort(self.rollout_id, box.box_id, self.share_bp):
            return Answer.NOT_IN_COHORT
        if not in_window(self.windows, now):
            return Answer.OUTSIDE_WINDOW
        if box is not None and box.failures:
            due = retry_at(self.retry, box.failures, box.last_failure_at)
            if due is None:
                return Answer.NO_MORE_RETRIES
            if now < due:
                return Answer.BACKING_OFF
        return Answer.OFFER

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.rollout_id,
            "product": self.product,
            "version": self.version,
            "state": self.state.value,
            "share_bp": self.share_bp,
            "windows": [str(w) for w in self.windows],
            "retry": {"count": self.retry.count, "backoff_seconds": self.retry.backoff_seconds},
        }

    @classmethod
    def from_json(cls, doc: Any) -> RolloutOffer:
        keys = ("id", "product", "version", "state", "share_bp", "windows", "retry")
        if not isinstance(doc, dict) or sorted(doc) != sorted(keys):
            raise RolloutError(f"malformed rollout offer: the fields are {', '.join(keys)}")
        try:
            retry = doc["retry"]
            if not isinstance(retry, dict) or sorted(retry) != ["backoff_seconds", "count"]:
                raise RolloutError("malformed rollout offer: retry is count, backoff_seconds")
            if not all(isinstance(doc[k], str) for k in ("id", "product", "version")):
                raise RolloutError("malformed rollout offer: id, product, version are strings")
            share = doc["share_bp"]
            if isinstance(share, bool) or not isinstance(share, int) or not 0 <= share <= 10_000:
                raise RolloutError(f"malformed rollout offer: share_bp {share!r}")
            return cls(
                doc["id"],
                doc["product"],
                doc["version"],
                State(doc["state"]),
                share,
                tuple(Window.parse(w) for w in doc["windows"]),
                RetryPolicy(**retry),
            )
        except (TypeError, ValueError, AttributeError) as e:
            raise RolloutError(f"malformed rollout offer: {e}") from None


def box_windows(offers: Iterable[RolloutOffer]) -> tuple[tuple[str, tuple[tuple[int, int], ...]],
                                                         ...]:
    """The install windows the signed timestamp should carry (:attr:`fwdist.trust.Timestamp.
    windows`), from the rollouts phones are told of: per product, the union of its live
    rollouts' windows. A timestamp's windows bind every install of a product, so a product
    with a live rollout that has none (any time), or with no live rollout, gets none."""
    live = [o for o in offers if o.state in OFFERING or o.state is State.PAUSED]
    out = []
    for product in sorted({o.product for o in live}):
        mine = [o.windows for o in live if o.product == product]
        if all(mine):
            out.append((product, tuple(sorted({(w.start_minute, w.minutes)
                                               for ws in mine for w in ws}))))
    return tuple(out)


@dataclass(frozen=True)
class SyncPolicy:
    """What a phone may offer, from its last ``/v1/sync``: the releases listed there (yanked
    ones and those whose every rollout was aborted are not) and the rollouts' rules.

    A release listed with no rollout is offered to every box, as before rollouts existed;
    a release under a rollout only where :meth:`RolloutOffer.answer` says so. A phone that
    has not synced since a yank still holds the old policy: the weaker, phone-side rule
    docs/rollouts.md describes.
    """

    releases: frozenset[tuple[str, str]]
    rollouts: tuple[RolloutOffer, ...] = ()

    FILE = "policy.json"
    """Where a phone's cache keeps the policy of its last sync (``fwdist app push --cache``
    applies it with no network): the sync document's ``releases`` and ``rollouts``."""

    @classmethod
    def from_sync(cls, doc: Any) -> SyncPolicy:
        try:
            listed = frozenset((r["product"], r["version"]) for r in doc["releases"])
            offers = tuple(RolloutOffer.from_json(o) for o in doc["rollouts"])
        except (TypeError, KeyError) as e:
            raise RolloutError(f"malformed sync document: {e}") from None
        return cls(listed, offers)

    def answer(self, product: str, version: str, box: BoxView | None, now: int) -> Answer:
        """Whether to offer ``product@version`` to ``box`` now, and why not."""
        if (product, version) not in self.releases:
            return Answer.STOPPED
        mine = [o for o in self.rollouts if (o.product, o.version) == (product, version)]
        if not mine:
            return Answer.OFFER
        return mine[-1].answer(box, now)  # the newest rollout of the release decides
