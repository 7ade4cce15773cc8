"""Trust metadata: who may sign what (Root) and what time it is (Timestamp), TUF-style.

A lockbox that trusts one key for life is lost when that key leaks. TUF's answer,
cut to a lockbox's size, is a few hundred bytes of metadata in two kinds:

- **Root** names three roles, each a threshold of Ed25519 keys (k-of-n): the
  offline *root* role (signs the next root), the *release* role(s) (sign release
  manifests; a role may be scoped to one product, or one product's hardware) and
  the *timestamp* role (signs the time and what is current). A root is versioned:
  root N+1 counts only when a threshold of root N's root keys *and* a threshold of
  its own root keys signed it (TUF's rotation rule), so a box holding root N walks
  a chain N+1, N+2, ... and each link is checked against the one before.
- **Timestamp** is the time (a box has no clock it can trust, so the highest
  verified time is its lower bound), the latest release per product (a box that
  knows "latest is 1.3.0" can tell it is kept on 1.2.0), the revoked releases, and
  per product the daily UTC maintenance windows a box may install in (none: any
  time). The windows ride on the timestamp because it is the online role's and
  already reaches every box: a rollout's windows change without a new root or
  release, and the box enforces them itself (docs/rollouts.md).

Both are canonical msgpack like the manifest (one value, one encoding; strictly
decoded, bounded sizes, unknown fields refused) in the envelope
``[FORMAT, kind, body, [[key_id, signature], ...]]``; each signature is Ed25519
over the kind's signing context + body, so a root signature never verifies a
timestamp or a manifest. Signatures are sorted by key id and distinct; an envelope
may hold none (a draft that signers sign one by one, offline, with
:func:`add_signature`) and counts only once a role's threshold verifies.

A box provisioned before roots (``lockbox init --pubkey``) holds
:func:`legacy_root`: version 0, one key in every role, never expiring. The vendor
rotates such a box to a real root with a root 1 signed by that key and the new
root keys, like any other link.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fwdist.errors import ManifestError, TrustError
from fwdist.keys import Signer
from fwdist.manifest import KEY_ID_BYTES, SIGNATURE_BYTES, Version, check_name, key_id

__all__ = [
    "MAX_META_BYTES", "Kind", "ReleaseRole", "Root", "Signed", "Threshold", "Timestamp",
    "add_signature", "decode_root", "decode_timestamp", "encode_body", "expired", "in_windows",
    "legacy_root", "release_policy", "sign", "verify_chain", "verify_root",
    "verify_timestamp",
]

FORMAT = 1
PUBLIC_KEY_BYTES = 32
MAX_KEYS = 8
"""Keys per role (and signatures per envelope)."""
MAX_RELEASE_ROLES = 4
MAX_ENTRIES = 16
MINUTES_A_DAY = 24 * 60
"""Products in a timestamp's latest list, and releases in its revoked list."""
MAX_META_BYTES = 3072
"""An envelope's bound: what a box keeps in one flash sector with its record header."""
_U32 = (1 << 32) - 1
NEVER = _U32
"""The expiry of a root that does not expire (the legacy single-key root)."""


class Kind(enum.IntEnum):
    """Which metadata an envelope holds; each has its own signing context."""

    ROOT = 1
    TIMESTAMP = 2


CONTEXTS: Mapping[Kind, bytes] = {
    Kind.ROOT: b"fwdist root v1\x00",
    Kind.TIMESTAMP: b"fwdist timestamp v1\x00",
}
"""Domain separation: distinct from each other and from ``fwdist manifest v1``/``v2``."""


def raw_key(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Threshold:
    """k of these n keys (raw Ed25519 public keys, ascending, distinct)."""

    threshold: int
    keys: tuple[bytes, ...]

    @classmethod
    def of(cls, threshold: int, keys: Iterable[Ed25519PublicKey]) -> Threshold:
        return cls(threshold, tuple(sorted(raw_key(k) for k in keys)))

    def trusted(self) -> dict[bytes, Ed25519PublicKey]:
        """Key id -> key: what :func:`fwdist.air.verify` and :func:`fwdist.manifest.verify` take."""
        out = {}
        for raw in self.keys:
            public = Ed25519PublicKey.from_public_bytes(raw)
            out[key_id(public)] = public
        return out


@dataclass(frozen=True)
class ReleaseRole:
    """Who signs releases: of any product (no scope), one product, or one product's hardware."""

    signers: Threshold
    product: str | None = None
    hardware: str | None = None

    @property
    def scope(self) -> tuple[str, str]:
        """The sort key of roles in a root; ``""`` (any) sorts first."""
        return (self.product or "", self.hardware or "")

    def covers(self, product: str, hardware: str) -> bool:
        return self.product in (None, product) and self.hardware in (None, hardware)


@dataclass(frozen=True)
class Root:
    """Who may sign what: the root role (signs the next root), the timestamp role, and the
    release roles; version N+1 replaces N only through :func:`verify_chain`."""

    version: int
    expires: int
    root: Threshold
    timestamp: Threshold
    releases: tuple[ReleaseRole, ...]


@dataclass(frozen=True)
class Timestamp:
    """The signed time, the latest version of each product, and revoked (product, version)s."""

    version: int
    time: int
    expires: int
    latest: tuple[tuple[str, str], ...] = ()
    revoked: tuple[tuple[str, str], ...] = ()
    windows: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = ()
    """Per product (sorted), its daily UTC install windows as (start minute, minutes),
    sorted; a product not listed may install at any time."""

    def latest_for(self, product: str) -> str | None:
        return dict(self.latest).get(product)

    def windows_for(self, product: str) -> tuple[tuple[int, int], ...]:
        """The product's windows; () when it has none (it may install at any time)."""
        return dict(self.windows).get(product, ())

    def is_revoked(self, product: str, version: str) -> bool:
        return (product, version) in self.revoked


@dataclass(frozen=True)
class Signed:
    """A decoded envelope: its metadata, the signed body and (key id, signature) pairs."""

    kind: Kind
    meta: Root | Timestamp
    body: bytes
    signatures: tuple[tuple[bytes, bytes], ...]

    @property
    def wire(self) -> bytes:
        return _pack([FORMAT, int(self.kind), self.body, [list(s) for s in self.signatures]])

    @property
    def root(self) -> Root:
        if not isinstance(self.meta, Root):
            raise TrustError("metadata is not a root")
        return self.meta

    @property
    def timestamp(self) -> Timestamp:
        if not isinstance(self.meta, Timestamp):
            raise TrustError("metadata is not a timestamp")
        return self.meta


def legacy_root(public: Ed25519PublicKey, *more: Ed25519PublicKey) -> Root:
    """The root of a box provisioned with keys (usually one): any one of them, in every role."""
    any_one = Threshold.of(1, [public, *more])
    return Root(0, NEVER, any_one, any_one, (ReleaseRole(any_one),))


# --------------------------------------------------------------------------- encoding

# Field keys; the table is the spec (docs/wire-format.md, "Trust metadata").
_R_VERSION, _R_EXPIRES, _R_ROOT, _R_TIMESTAMP, _R_RELEASES = 1, 2, 3, 4, 5
_T_VERSION, _T_TIME, _T_EXPIRES, _T_LATEST, _T_REVOKED, _T_WINDOWS = 1, 2, 3, 4, 5, 6


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _threshold_list(t: Threshold) -> list[Any]:
    return [t.threshold, list(t.keys)]


def encode_body(meta: Root | Timestamp) -> bytes:
    """Canonical body bytes (every field present, integer keys ascending)."""
    _validate(meta)
    if isinstance(meta, Root):
        body: dict[int, Any] = {
            _R_VERSION: meta.version,
            _R_EXPIRES: meta.expires,
            _R_ROOT: _threshold_list(meta.root),
            _R_TIMESTAMP: _threshold_list(meta.timestamp),
            _R_RELEASES: [[*_threshold_list(r.signers), r.product, r.hardware]
                          for r in meta.releases],
        }
    else:
        body = {
            _T_VERSION: meta.version,
            _T_TIME: meta.time,
            _T_EXPIRES: meta.expires,
            _T_LATEST: [list(e) for e in meta.latest],
            _T_REVOKED: [list(e) for e in meta.revoked],
        }
        if meta.windows:  # (absent when there are none: a timestamp's bytes as before them)
            body[_T_WINDOWS] = [[prod, [list(w) for w in ws]] for prod, ws in meta.windows]
    return _pack(body)


def _kind(meta: Root | Timestamp) -> Kind:
    return Kind.ROOT if isinstance(meta, Root) else Kind.TIMESTAMP


def _signature(kind: Kind, body: bytes, signer: Signer) -> tuple[bytes, bytes]:
    return key_id(signer.public_key()), signer.sign(CONTEXTS[kind] + body)


def _envelope(kind: Kind, meta: Root | Timestamp, body: bytes,
              sigs: Iterable[tuple[bytes, bytes]]) -> bytes:
    ordered = tuple(sorted(sigs))
    if len(ordered) > MAX_KEYS:
        raise TrustError(f"metadata carries at most {MAX_KEYS} signatures")
    if any(a[0] == b[0] for a, b in itertools.pairwise(ordered)):
        raise TrustError("metadata already carries a signature of that key")
    wire = Signed(kind, meta, body, ordered).wire
    if len(wire) > MAX_META_BYTES:
        raise TrustError(f"metadata is {len(wire)} bytes, over the {MAX_META_BYTES}-byte limit")
    return wire


def sign(meta: Root | Timestamp, signers: Sequence[Signer] = ()) -> bytes:
    """The envelope's wire bytes, signed by each signer (none: an unsigned draft)."""
    kind = _kind(meta)
    body = encode_body(meta)
    return _envelope(kind, meta, body, (_signature(kind, body, s) for s in signers))


def add_signature(wire: bytes, signer: Signer) -> bytes:
    """The same envelope with one more signature (offline signing, one signer at a time)."""
    s = _decode(wire, None)
    return _envelope(s.kind, s.meta, s.body, (*s.signatures, _signature(s.kind, s.body, signer)))


# --------------------------------------------------------------------------- decoding


def _unpack(data: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(
            data, raw=False, strict_map_key=False, use_list=True,
            max_bin_len=MAX_META_BYTES, max_str_len=64, max_array_len=MAX_ENTRIES,
            max_map_len=8, max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise TrustError(f"{what} is not valid msgpack: {type(e).__name__}") from None


def _int(v: Any, what: str) -> int:
    if type(v) is not int or not 0 <= v <= _U32:
        raise TrustError(f"{what} must be an integer 0..2^32-1")
    return v


def _threshold(raw: Any, what: str) -> Threshold:
    if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[1], list)):
        raise TrustError(f"{what} must be [threshold, keys]")
    if not all(isinstance(k, bytes) for k in raw[1]):
        raise TrustError(f"{what} keys must be byte strings")
    return Threshold(_int(raw[0], f"{what} threshold"), tuple(raw[1]))


def _entries(raw: Any, what: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list) or not all(
            isinstance(e, list) and len(e) == 2 and all(type(v) is str for v in e) for e in raw):
        raise TrustError(f"{what} must be a list of [product, version]")
    return tuple((e[0], e[1]) for e in raw)


def _root_from(f: dict[Any, Any]) -> Root:
    if set(f) != {_R_VERSION, _R_EXPIRES, _R_ROOT, _R_TIMESTAMP, _R_RELEASES}:
        raise TrustError("root must have exactly fields 1-5")
    roles_raw = f[_R_RELEASES]
    if not isinstance(roles_raw, list):
        raise TrustError("root release roles must be a list")
    roles = []
    for r in roles_raw:
        if not (isinstance(r, list) and len(r) == 4):
            raise TrustError("a release role must be [threshold, keys, product, hardware]")
        if not all(v is None or type(v) is str for v in r[2:]):
            raise TrustError("a release role's scope must be names or nil")
        roles.append(ReleaseRole(_threshold(r[:2], "release role"), r[2], r[3]))
    return Root(_int(f[_R_VERSION], "root version"), _int(f[_R_EXPIRES], "root expiry"),
                _threshold(f[_R_ROOT], "root role"), _threshold(f[_R_TIMESTAMP], "timestamp role"),
                tuple(roles))


def _windows(raw: Any) -> tuple[tuple[str, tuple[tuple[int, int], ...]], ...]:
    """Field 6: ``[[product, [[start minute, minutes], ...]], ...]``, never empty when there."""
    shape = "windows must be a non-empty list of [product, [[start, minutes], ...]]"
    if not isinstance(raw, list) or not raw:
        raise TrustError(shape)
    out = []
    for e in raw:
        if not (isinstance(e, list) and len(e) == 2 and type(e[0]) is str
                and isinstance(e[1], list)):
            raise TrustError(shape)
        if not all(isinstance(w, list) and len(w) == 2 for w in e[1]):
            raise TrustError(shape)
        out.append((e[0], tuple((_int(w[0], "window start"), _int(w[1], "window length"))
                                for w in e[1])))
    return tuple(out)


def _timestamp_from(f: dict[Any, Any]) -> Timestamp:
    fields = {_T_VERSION, _T_TIME, _T_EXPIRES, _T_LATEST, _T_REVOKED}
    if set(f) not in (fields, fields | {_T_WINDOWS}):
        raise TrustError("timestamp must have exactly fields 1-5, or 1-6")
    windows = _windows(f[_T_WINDOWS]) if _T_WINDOWS in f else ()
    return Timestamp(_int(f[_T_VERSION], "timestamp version"), _int(f[_T_TIME], "time"),
                     _int(f[_T_EXPIRES], "timestamp expiry"),
                     _entries(f[_T_LATEST], "latest"), _entries(f[_T_REVOKED], "revoked"),
                     windows)


def _decode(wire: bytes, expect: Kind | None) -> Signed:
    if not isinstance(wire, bytes | bytearray | memoryview):
        raise TrustError("metadata must be bytes")
    wire = bytes(wire)
    if len(wire) > MAX_META_BYTES:
        raise TrustError(f"metadata is {len(wire)} bytes, over the {MAX_META_BYTES}-byte limit")
    env = _unpack(wire, "metadata")
    if not (isinstance(env, list) and len(env) == 4):
        raise TrustError("metadata envelope must be a 4-element array")
    fmt, kind, body, sigs = env
    if type(fmt) is not int or fmt != FORMAT:
        raise TrustError(f"unknown metadata format (this fwdist reads format {FORMAT})")
    if type(kind) is not int or kind not in tuple(Kind):
        raise TrustError("unknown metadata kind")
    if expect is not None and kind != expect:
        raise TrustError(f"metadata is a {Kind(kind).name.lower()}, not a {expect.name.lower()}")
    if not isinstance(body, bytes) or not isinstance(sigs, list) or len(sigs) > MAX_KEYS:
        raise TrustError(f"metadata must be [format, kind, body, up to {MAX_KEYS} signatures]")
    pairs = []
    for s in sigs:
        if not (isinstance(s, list) and len(s) == 2 and all(isinstance(v, bytes) for v in s)
                and len(s[0]) == KEY_ID_BYTES and len(s[1]) == SIGNATURE_BYTES):
            raise TrustError("a metadata signature must be [8-byte key id, 64-byte signature]")
        pairs.append((s[0], s[1]))
    if any(a[0] >= b[0] for a, b in itertools.pairwise(pairs)):
        raise TrustError("metadata signatures are not in ascending key id order, or repeat")
    fields = _unpack(body, "metadata body")
    if not isinstance(fields, dict):
        raise TrustError("metadata body must be a map")
    meta = _root_from(fields) if kind == Kind.ROOT else _timestamp_from(fields)
    if encode_body(meta) != body:
        raise TrustError("metadata body is not in canonical form")
    signed = Signed(Kind(kind), meta, body, tuple(pairs))
    if signed.wire != wire:
        raise TrustError("metadata envelope is not in canonical form")
    return signed


def decode_root(wire: bytes) -> Signed:
    """Strictly decode a root envelope (signatures not checked); raise :class:`TrustError`."""
    return _decode(wire, Kind.ROOT)


def decode_timestamp(wire: bytes) -> Signed:
    """Strictly decode a timestamp envelope (signatures not checked)."""
    return _decode(wire, Kind.TIMESTAMP)


# --------------------------------------------------------------------------- rules


def _check_threshold(t: Threshold, what: str) -> None:
    if not 0 < len(t.keys) <= MAX_KEYS or not 0 < t.threshold <= len(t.keys):
        raise TrustError(f"{what} needs 1..{MAX_KEYS} keys and a threshold of 1..their count")
    if any(len(k) != PUBLIC_KEY_BYTES for k in t.keys):
        raise TrustError(f"{what} keys must be 32-byte Ed25519 public keys")
    if any(a >= b for a, b in itertools.pairwise(t.keys)):
        raise TrustError(f"{what} keys must be distinct and in ascending order")
    for raw in t.keys:
        try:
            Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise TrustError(f"{what} holds a key that is not an Ed25519 public key") from None


def _name(kind: str, text: str) -> None:
    try:
        check_name(kind, text)
    except ManifestError as e:
        raise TrustError(str(e)) from None


def _check_entries(entries: tuple[tuple[str, str], ...], what: str, unique_product: bool) -> None:
    if len(entries) > MAX_ENTRIES:
        raise TrustError(f"a timestamp lists at most {MAX_ENTRIES} {what} entries")
    for product, version in entries:
        _name("product", product)
        try:
            Version.parse(version)
        except ManifestError as e:
            raise TrustError(str(e)) from None
    order: list[Any] = [e[0] for e in entries] if unique_product else list(entries)
    if any(a >= b for a, b in itertools.pairwise(order)):
        raise TrustError(f"timestamp {what} entries must be sorted and distinct")


def _validate(meta: Root | Timestamp) -> None:
    if isinstance(meta, Root):
        for v in (meta.version, meta.expires):
            _int(v, "root version and expiry")
        _check_threshold(meta.root, "root role")
        _check_threshold(meta.timestamp, "timestamp role")
        if not 0 < len(meta.releases) <= MAX_RELEASE_ROLES:
            raise TrustError(f"a root names 1..{MAX_RELEASE_ROLES} release roles")
        for r in meta.releases:
            _check_threshold(r.signers, "release role")
            if r.product is not None:
                _name("product", r.product)
            if r.hardware is not None:
                if r.product is None:
                    raise TrustError("a release role scoped to hardware names its product too")
                _name("hardware", r.hardware)
        if any(a.scope >= b.scope for a, b in itertools.pairwise(meta.releases)):
            raise TrustError("release roles must have distinct scopes, in ascending order")
    else:
        for v in (meta.version, meta.time, meta.expires):
            _int(v, "timestamp version, time and expiry")
        if meta.expires < meta.time:
            raise TrustError("a timestamp expires no earlier than its time")
        _check_entries(meta.latest, "latest", unique_product=True)
        _check_entries(meta.revoked, "revoked", unique_product=False)
        _check_windows(meta.windows)


def _check_windows(windows: tuple[tuple[str, tuple[tuple[int, int], ...]], ...]) -> None:
    if len(windows) > MAX_ENTRIES:
        raise TrustError(f"a timestamp gives windows for at most {MAX_ENTRIES} products")
    for product, ws in windows:
        _name("product", product)
        if not 0 < len(ws) <= MAX_ENTRIES:
            raise TrustError(f"a product has 1..{MAX_ENTRIES} windows (none: leave it out)")
        for start, minutes in ws:
            if not (0 <= start < MINUTES_A_DAY and 0 < minutes <= MINUTES_A_DAY):
                raise TrustError(f"a window starts at minute 0..{MINUTES_A_DAY - 1} of the "
                                 f"day and lasts 1..{MINUTES_A_DAY} minutes")
        if any(a >= b for a, b in itertools.pairwise(ws)):
            raise TrustError(f"{product}'s windows must be sorted and distinct")
    if any(a[0] >= b[0] for a, b in itertools.pairwise(windows)):
        raise TrustError("timestamp windows must be sorted by product, one entry each")


def format_window(start: int, minutes: int) -> str:
    """``HH:MM-HH:MM`` (UTC) of a window; the end may be past midnight."""
    end = (start + minutes) % MINUTES_A_DAY
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


def in_windows(windows: Sequence[tuple[int, int]], now: int) -> bool:
    """Whether the UTC time ``now`` (seconds since the epoch) falls in one of the daily
    windows (start minute, minutes), which may run past midnight; none: always."""
    if not windows:
        return True
    minute = (now % 86_400) // 60
    return any((minute - start) % MINUTES_A_DAY < minutes for start, minutes in windows)


def signed_by(s: Signed, role: Threshold) -> int:
    """How many distinct keys of ``role`` signed ``s``'s body (valid signatures only)."""
    trusted = role.trusted()
    message = CONTEXTS[s.kind] + s.body
    count = 0
    for kid, sig in s.signatures:
        key = trusted.get(kid)
        if key is None:
            continue
        try:
            key.verify(sig, message)
        except InvalidSignature:
            continue
        count += 1
    return count


def _require(s: Signed, role: Threshold, what: str) -> None:
    got = signed_by(s, role)
    if got < role.threshold:
        raise TrustError(f"{what}: {got} of the {role.threshold} signatures it needs verify")


def expired(meta: Root | Timestamp, now: int) -> bool:
    """Whether ``meta`` has expired at ``now`` (a box's lower bound on the time)."""
    return meta.expires <= now


def verify_root(wire: bytes) -> Root:
    """A root that a threshold of its own root keys signed (what a box is provisioned with)."""
    s = decode_root(wire)
    _require(s, s.root.root, f"root {s.root.version}")
    return s.root


def verify_chain(trusted: Root, links: Sequence[bytes], now: int = 0) -> tuple[Root, ...]:
    """The roots after ``trusted`` that ``links`` carry, each checked against the one before.

    Link N+1 must be version N+1 and signed by a threshold of root N's root role *and*
    of its own (TUF). Links at or below ``trusted``'s version are skipped (a phone may
    carry the whole chain). The last root must not have expired at ``now``; an expired
    root in the middle is fine (the chain moves past it). Raises on the first bad link;
    returns the new roots in order (none if the box is current).
    """
    current = trusted
    out: list[Root] = []
    for wire in links:
        s = decode_root(wire)
        new = s.root
        if new.version <= current.version:
            continue
        if new.version != current.version + 1:
            raise TrustError(f"root chain skips from version {current.version} to {new.version}")
        _require(s, current.root, f"root {new.version} by root {current.version}'s keys")
        _require(s, new.root, f"root {new.version} by its own keys")
        out.append(new)
        current = new
    if out and expired(current, now):
        raise TrustError(f"root {current.version} expired at {current.expires}")
    return tuple(out)


def verify_timestamp(root: Root, wire: bytes, *, previous: Timestamp | None = None,
                     now: int = 0) -> Timestamp:
    """A timestamp the root's timestamp role signed, newer than ``previous``, unexpired.

    Its version must exceed ``previous``'s and its time must not go back (a replayed old
    timestamp is refused); it must not have expired at ``now`` or at its own time.
    """
    s = decode_timestamp(wire)
    ts = s.timestamp
    _require(s, root.timestamp, f"timestamp {ts.version}")
    if previous is not None and (ts.version <= previous.version or ts.time < previous.time):
        raise TrustError(f"timestamp {ts.version} (time {ts.time}) is not newer than "
                         f"{previous.version} (time {previous.time})")
    if expired(ts, max(now, ts.time)):
        raise TrustError(f"timestamp {ts.version} expired at {ts.expires}")
    return ts


def release_policy(root: Root, product: str,
                   hardware: str) -> tuple[dict[bytes, Ed25519PublicKey], int]:
    """The keys (by key id) and threshold that sign ``product`` on ``hardware``.

    The most specific role that covers it wins (product and hardware, then product,
    then unscoped); a root with no role for it trusts no key for it.
    """
    roles = [r for r in root.releases if r.covers(product, hardware)]
    if not roles:
        raise TrustError(f"root {root.version} names no release signers for {product}/{hardware}")
    best = max(roles, key=lambda r: (r.product is not None, r.hardware is not None))
    return best.signers.trusted(), best.signers.threshold


def next_root(current: Root, /, **changes: Any) -> Root:
    """``current`` with ``changes`` and the next version: the draft of a rotation."""
    return replace(current, version=current.version + 1, **changes)
