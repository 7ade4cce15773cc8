"""The server's online timestamp role: re-issue ``trust/timestamp`` when what it says changes.

A timestamp (:class:`fwdist.trust.Timestamp`) is the one piece of trust metadata that must be
fresh: it carries the time a clockless box checks expiry against, the latest release of each
product (a box kept below it knows it is frozen) and the revoked releases. So a server given
the timestamp key (``fwdist server --timestamp-key SPEC``) signs the next one itself:

- when a release is published (``latest`` moves) or yanked (the release joins ``revoked``,
  and a box that holds it as its target drops it: a yank becomes a signed revocation);
- when the current one is older than the period (``--timestamp-every``), so the time it
  proves keeps up; each expires :data:`EXPIRY_PERIODS` periods after it is signed, so a
  server that is down for a while does not strand the phones' copies at once;
- when a rollout starts, pauses, resumes or is aborted: each issue carries the install
  windows of the live rollouts (:func:`rollout_windows`), so a maintenance window reaches
  boxes as signed policy, which a phone cannot leave out.

Phones fetch it at sync (its ETag changes) and relay it to boxes. Every issue goes through
:func:`current_timestamp`, the one function that decides what a timestamp says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from fwdist import keys, signoff, trust
from fwdist.errors import TrustError
from fwdist.keys import Signer
from fwdist.rollout import box_windows
from fwdist.server import catalog, rollouts
from fwdist.store import Store

Windows = Mapping[str, tuple[tuple[int, int], ...]]

DEFAULT_EVERY = 3600
EXPIRY_PERIODS = 4
"""A timestamp expires this many periods after it is signed."""


def store_root(store: Store) -> trust.Root:
    """The newest root the server store's chain reaches from its first root."""
    versions = store.root_versions()
    first = store.get_root(versions[0]) if versions else None
    if first is None:
        raise TrustError("the server's store holds no root (trust/root/N): a timestamp key "
                         "needs one")
    root, _ = signoff.current_root(store, first)
    return root


def rollout_windows(engine: Engine, now: int) -> dict[str, tuple[tuple[int, int], ...]]:
    """The install windows each product's timestamp entry should carry now: its live
    rollouts' (:func:`fwdist.rollout.box_windows`), or ``()`` (any time) for every other
    product the server holds releases of, so windows end with the rollouts that set them."""
    got = dict(box_windows(rollouts.offers(engine, now)))
    products = {r["product"] for r in catalog.list_releases(engine)} | set(got)
    return {p: got.get(p, ()) for p in sorted(products)}


def current_timestamp(store: Store, signer: Signer, now: int, every: int = DEFAULT_EVERY,
                      revoke: Iterable[tuple[str, str]] = (),
                      windows: Windows | None = None) -> bytes:
    """Sign and store the next timestamp: time ``now`` (never back), expiry
    :data:`EXPIRY_PERIODS` × ``every`` later, the latest released version of each product,
    every revocation so far plus ``revoke``, the previous install windows with
    ``windows``'s products replaced. Returns its bytes.

    Raises TrustError when ``signer`` alone cannot sign for the root's timestamp role (not
    in it, or a threshold above 1: an online server holds one key).
    """
    with store.locked():
        root = store_root(store)
        role = root.timestamp
        if keys.key_id(signer.public_key()) not in role.trusted() or role.threshold != 1:
            raise TrustError(f"the timestamp key is not root {root.version}'s timestamp role "
                             f"alone (its threshold is {role.threshold})")
        ts = signoff.next_timestamp(store, root, now=now, expires=now + EXPIRY_PERIODS * every,
                                    revoke=revoke, windows=windows)
        wire = trust.sign(ts, [signer])
        store.put_timestamp(wire)
    return wire


def due(store: Store, now: int, every: int) -> bool:
    """Whether the store's timestamp is missing or at least one period old."""
    wire = store.get_timestamp()
    if wire is None:
        return True
    return trust.decode_timestamp(wire).timestamp.time + every <= now


@dataclass(frozen=True)
class Stamper:
    """The server's timestamp key and period (None on a server without ``--timestamp-key``)."""

    signer: Signer
    every: int = DEFAULT_EVERY

    def issue(self, store: Store, now: int, revoke: Iterable[tuple[str, str]] = (),
              engine: Engine | None = None) -> bytes:
        """The next timestamp; with the fleet database (``engine``), carrying the live
        rollouts' install windows."""
        windows = None if engine is None else rollout_windows(engine, now)
        return current_timestamp(store, self.signer, now, self.every, revoke, windows)

    def refresh(self, store: Store, now: int, engine: Engine | None = None) -> bool:
        """Issue a timestamp if the current one is due; whether it did."""
        if not due(store, now, self.every):
            return False
        self.issue(store, now, engine=engine)
        return True
