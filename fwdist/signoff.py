"""Sign-off over a store: which root is current, when a staged release counts as released,
adding release signatures one signer at a time, and the timestamps that say what is current.

:mod:`fwdist.trust` is the metadata and its rules; this is the vendor's side of them on a
store. A release is *released* only when the release role that covers its product and
hardware (in the current root) has a threshold of valid signatures on its format 1 manifest
and on every format 2 manifest of its bundle: until then it is a draft, which no timestamp
names as latest and which ``verify --root`` reports. Signers add their signatures offline
(``stage --unsigned``, then ``fwdist sign`` by each), so no machine ever holds a threshold
of keys.

Trust always starts at a root the user gives (a file they got from the root key holders):
the roots in the store's ``trust/root/`` count only as links of a chain from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fwdist import air, manifest, trust
from fwdist.errors import FwdistError, ManifestError, TrustError
from fwdist.keys import Signer
from fwdist.manifest import Version
from fwdist.releases import VerifyReport, check_objects, check_release, load_table
from fwdist.store import Store
from fwdist.trust import Root, Timestamp

__all__ = ["Carried", "ReleaseStatus", "TrustReport", "add_signature", "carried",
           "current_root", "next_timestamp", "release_status", "require_released",
           "verify_under_root"]


def current_root(store: Store, anchor: bytes, now: int = 0) -> tuple[Root, bytes]:
    """The newest root (and its wire) that the store's chain reaches from ``anchor``.

    ``anchor`` must carry a threshold of its own root keys; every later root in the
    store must follow by the rotation rule (:func:`fwdist.trust.verify_chain`).
    """
    root, wire = trust.verify_root(anchor), anchor
    links = store.root_chain(after=root.version)
    newer = trust.verify_chain(root, links, now)
    if newer:
        root, wire = newer[-1], links[len(newer) - 1]
    return root, wire


@dataclass(frozen=True)
class Carried:
    """What a phone may carry to boxes that trust ``anchor``: the root links after it that
    verify, the store's timestamp if the newest root's timestamp role signed it, and the
    product's releases that meet that root's release threshold (``app push --root``)."""

    root: Root
    links: tuple[bytes, ...]
    timestamp: bytes | None
    released: tuple[str, ...]


def carried(store: Store, anchor: bytes, product: str) -> Carried:
    """:class:`Carried` from ``store`` (a phone's cache) for boxes provisioned with ``anchor``
    (TrustError when the anchor or the store's chain does not verify)."""
    root, _ = current_root(store, anchor)
    first = trust.decode_root(anchor).root.version
    links = tuple(store.root_chain(after=first))[: root.version - first]
    stamp = store.get_timestamp()
    if stamp is not None:
        try:
            trust.verify_timestamp(root, stamp)
        except TrustError:
            stamp = None
    released = []
    for _, version in store.releases(product):
        try:
            require_released(store, root, product, version)
        except (FwdistError, TrustError):
            continue
        released.append(version)
    return Carried(root, links, stamp, tuple(released))


def _valid_format1(wire: bytes, keys: Mapping[bytes, Ed25519PublicKey]) -> int:
    sm = manifest.decode(wire)
    good = 0
    for kid, sig in sm.signatures:
        if kid in keys:
            try:
                keys[kid].verify(sig, manifest.SIGNING_CONTEXT + sm.body)
            except InvalidSignature:
                continue
            good += 1
    return good


@dataclass(frozen=True)
class ReleaseStatus:
    """How far a staged release is signed under one root."""

    product: str
    version: str
    hardware: str
    root_version: int
    need: int  # the covering release role's threshold
    have: int  # valid signatures of that role on the format 1 manifest
    have_air: int | None  # the fewest on any format 2 manifest; None: the release has none
    revoked: bool = False

    @property
    def released(self) -> bool:
        return (self.have >= self.need and (self.have_air is None or self.have_air >= self.need)
                and not self.revoked)

    @property
    def name(self) -> str:
        return f"{self.product}@{self.version}"

    def why_not(self) -> str | None:
        """One line saying why the release does not count, or None when it does."""
        if self.revoked:
            return f"{self.name} is revoked"
        if self.have < self.need:
            return (f"{self.name} carries {self.have} of the {self.need} release signatures "
                    f"root {self.root_version} requires; it is not released")
        if self.have_air is not None and self.have_air < self.need:
            return (f"{self.name}'s format 2 manifests carry {self.have_air} of the {self.need} "
                    f"release signatures root {self.root_version} requires; it is not released")
        return None


def release_status(store: Store, root: Root, product: str, version: str,
                   revoked: Iterable[tuple[str, str]] = ()) -> ReleaseStatus:
    wire = store.get_manifest(product, version)
    m = manifest.decode(wire).manifest
    if (m.product, m.version) != (product, version):
        raise ManifestError(f"{product}@{version} holds the manifest of {m.product}@{m.version}")
    keys, need = trust.release_policy(root, m.product, m.hardware)
    have_air = None
    bundle = store.get_air(product, version)
    if bundle is not None:
        have_air = min(len(air.signers(air.decode(w), keys)) for w in air.decode_bundle(bundle))
    return ReleaseStatus(product, version, m.hardware, root.version, need,
                         _valid_format1(wire, keys), have_air, (product, version) in set(revoked))


def require_released(store: Store, root: Root, product: str, version: str) -> ReleaseStatus:
    """The release's status, or :class:`ManifestError` saying why it is not released."""
    status = release_status(store, root, product, version)
    why = status.why_not()
    if why is not None:
        raise ManifestError(why)
    return status


def add_signature(store: Store, product: str, version: str, signer: Signer) -> None:
    """Add ``signer``'s signature to the release's format 1 manifest and to each of its
    format 2 manifests (making them, from the stored tables, when an unsigned stage left
    none). Refuses a key that already signed it."""
    with store.locked():
        wire = manifest.add_signature(store.get_manifest(product, version), signer)
        m = manifest.decode(wire).manifest
        bundle = store.get_air(product, version)
        if bundle is None:
            tables = {ref.table_sha256: load_table(store, ref) for ref in air.payload_refs(m)}
            wires = air.sign_release(m, tables, [signer])
        else:
            wires = tuple(air.add_signature(w, signer) for w in air.decode_bundle(bundle))
        store.put_signatures(product, version, wire, air.encode_bundle(wires))


def _latest(store: Store, root: Root, revoked: set[tuple[str, str]]) -> tuple[tuple[str, str],
                                                                             ...]:
    """Per product, the newest release that is released under ``root`` and not revoked."""
    best: dict[str, str] = {}
    for product, version in store.releases():
        if (product, version) in revoked:
            continue
        try:
            ok = release_status(store, root, product, version).released
        except (ManifestError, TrustError):
            continue
        if ok and (product not in best or Version.parse(version) > Version.parse(best[product])):
            best[product] = version
    return tuple(sorted(best.items()))


def next_timestamp(store: Store, root: Root, *, now: int, expires: int,
                   revoke: Iterable[tuple[str, str]] = (),
                   windows: Mapping[str, tuple[tuple[int, int], ...]] | None = None
                   ) -> Timestamp:
    """The timestamp after the store's: version + 1, the time never going back, the
    revocations so far plus ``revoke``, the latest released version of each product, and
    the previous install windows with ``windows``'s products replaced (``()``: any time).

    The previous timestamp is read for its version, time and revocations even if the
    current root no longer trusts its key (after a rotation of the timestamp role):
    a revocation, once issued, stays.
    """
    previous = store.get_timestamp()
    prev = trust.decode_timestamp(previous).timestamp if previous is not None else None
    revoked = set(prev.revoked if prev else ()) | set(revoke)
    time = max(now, prev.time if prev else 0)
    if expires <= time:
        raise TrustError(f"a timestamp expiring at {expires} has expired at its time {time}")
    kept = dict(prev.windows if prev else ())
    kept.update(windows or {})
    return Timestamp(version=prev.version + 1 if prev else 1, time=time, expires=expires,
                     latest=_latest(store, root, revoked), revoked=tuple(sorted(revoked)),
                     windows=tuple(sorted((p, tuple(sorted(set(w)))) for p, w in kept.items()
                                          if w)))


@dataclass
class TrustReport:
    """``fwdist verify --root``: the chain, the timestamp, and every release end to end."""

    root_version: int = 0
    timestamp_version: int | None = None
    revoked: list[str] = field(default_factory=list)
    drafts: list[str] = field(default_factory=list)  # staged, not yet at their threshold
    report: VerifyReport = field(default_factory=VerifyReport)

    @property
    def ok(self) -> bool:
        return self.report.ok


def verify_under_root(store: Store, anchor: bytes, only: tuple[str, str] | None = None,
                      now: int = 0) -> TrustReport:
    """Check the store's root chain from ``anchor``, its timestamp against the current
    root, and each release: signed by a threshold of its release role (format 1 and 2),
    its image and deltas rebuilt. A draft below its threshold is a problem; a revoked
    release is listed, not a problem (it is withdrawn, not broken)."""
    out = TrustReport()
    try:
        root, _ = current_root(store, anchor, now)
    except TrustError as e:
        out.report.problems.append(f"root chain: {e}")
        return out
    out.root_version = root.version
    revoked: tuple[tuple[str, str], ...] = ()
    ts_wire = store.get_timestamp()
    if ts_wire is not None:
        try:
            ts = trust.verify_timestamp(root, ts_wire, now=now)
            out.timestamp_version, revoked = ts.version, ts.revoked
        except TrustError as e:
            out.report.problems.append(f"timestamp: {e}")
    out.revoked = [f"{p}@{v}" for p, v in revoked]
    if only is None:
        check_objects(store, out.report)
    for product, version in [only] if only else store.releases():
        out.report.releases += 1
        try:
            status = release_status(store, root, product, version)
        except FwdistError as e:
            out.report.problems.append(f"{product}@{version}: {e}")
            continue
        why = status.why_not()
        if why is not None:
            out.drafts.append(status.name)
            out.report.problems.append(why)
            continue
        keys, _ = trust.release_policy(root, product, status.hardware)
        out.report.problems.extend(check_release(store, product, version, keys))
    return out
