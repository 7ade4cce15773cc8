"""The box's signed report: what a box says about itself, carried home by whichever phone.

The phone is the only link a lockbox has, and it is often offline at the box; the
server hears from a box only when some phone that met it next has coverage, maybe
days later and maybe after another phone brought a newer report first. So a report
must stand on its own: it names its box, it is signed by that box's own Ed25519
device key (a phone cannot forge or edit it), and it carries a sequence number the
box never repeats (strictly increasing across power cuts), so the server can drop a
replay or a duplicate by ``(box id, seq)`` and order reports that arrive out of
order.

The wire form is ``body || signature``:

- **body**: canonical msgpack of one array (:class:`Report`'s fields in order, the
  format number first); decoding re-encodes and compares, so one report has exactly
  one encoding and a signature covers exactly one meaning;
- **signature**: 64 bytes of Ed25519 over :data:`SIGNING_CONTEXT` + body (the
  context keeps a report signature from meaning anything else the device key might
  ever sign, and no manifest signature from verifying as a report).

A report is at most :data:`MAX_REPORT_BYTES`; :func:`decode` refuses anything else
in one clear line (:class:`ReportError`). docs/wire-format.md gives the bytes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, TypeVar

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fwdist.errors import FwdistError, ManifestError
from fwdist.manifest import MAX_NAME, SIGNATURE_BYTES, Version, check_name
from fwdist.protocol import BoxState

FORMAT = 1
SIGNING_CONTEXT = b"fwdist box report v1\x00"
IMAGE_BYTES = 8
MAX_REPORT_BYTES = 512
"""Box id, product and hardware at their longest (64 characters each), two versions, every
integer at its widest and the signature come to well under this."""
MAX_SEQ = (1 << 63) - 1  # fits a signed 64-bit column (PostgreSQL BIGINT)
MAX_TIME = (1 << 63) - 1
MAX_REASON = 255


class ReportError(FwdistError):
    """A box report is malformed, too large, or not signed by the box it names."""


class Outcome(enum.IntEnum):
    """How the box's last install attempt ended (``Report.last``)."""

    INSTALLED = 1  # the new image passed its self-test and runs
    BUILD_FAILED = 2  # the verified pieces did not build the signed image
    SELF_TEST_FAILED = 3  # the new image booted and failed its self-test: the old one runs
    TRIALS_EXHAUSTED = 4  # reset during the test boot too often: the old one runs
    REFUSED = 5  # no longer passed the offer's rules when its turn came (``reason`` says which)
    UNUSABLE = 6  # its stored manifest or table no longer verifies: given up
    FAILED = 7  # given up, cause not recorded (a journal written before causes were)


@dataclass(frozen=True)
class TargetProgress:
    """The release the box works towards: its version and the payload bytes it holds of it."""

    version: str
    held: int
    total: int


@dataclass(frozen=True)
class LastResult:
    """The box's last install attempt: which version, how it ended, and the box's
    :class:`~fwdist.protocol.Reason` code when it refused (else 0)."""

    version: str
    outcome: Outcome
    reason: int = 0


@dataclass(frozen=True)
class Report:
    """What one box says about itself at one moment; ``seq`` is never repeated by that box.

    ``running_image`` is the first 8 bytes of the running image's SHA-256; ``clock`` the
    box's verified lower bound on the time (seconds since the epoch, 0 for none).
    """

    box_id: str
    seq: int
    product: str
    hardware: str
    running_version: str
    running_image: bytes
    target: TargetProgress | None
    battery: int
    state: BoxState
    last: LastResult | None
    clock: int


@dataclass(frozen=True)
class SignedReport:
    """A decoded report and the bytes its signature covers (not yet checked: :func:`verify`)."""

    report: Report
    body: bytes
    signature: bytes

    @property
    def wire(self) -> bytes:
        return self.body + self.signature


class DeviceSigner(Protocol):
    """What :func:`sign` needs of a device key: it signs bytes (:class:`fwdist.keys.Signer`
    is one; a real box's key never leaves its secure element)."""

    def sign(self, data: bytes) -> bytes: ...


def _int(v: object, lo: int, hi: int) -> bool:
    return type(v) is int and lo <= v <= hi


def _version(v: object) -> bool:
    if type(v) is not str:
        return False
    try:
        return str(Version.parse(v)) == v
    except ManifestError:
        return False


def _name(v: object) -> bool:
    if type(v) is not str:
        return False
    try:
        check_name("name", v)
    except ManifestError:
        return False
    return True


def check(r: Report) -> None:
    """Raise :class:`ReportError` unless every field is of its type and in its range."""
    problems = [
        (_name(r.box_id), "box id"), (_int(r.seq, 0, MAX_SEQ), "seq"),
        (_name(r.product), "product"), (_name(r.hardware), "hardware"),
        (_version(r.running_version), "running version"),
        (type(r.running_image) is bytes and len(r.running_image) == IMAGE_BYTES, "running image"),
        (_int(r.battery, 0, 100), "battery"),
        (type(r.state) is BoxState, "state"), (_int(r.clock, 0, MAX_TIME), "clock"),
    ]
    t = r.target
    if t is not None:
        problems += [(type(t) is TargetProgress and _version(t.version), "target version"),
                     (_int(t.total, 0, MAX_TIME) and _int(t.held, 0, t.total), "target progress")]
    last = r.last
    if last is not None:
        problems += [(type(last) is LastResult and _version(last.version), "last version"),
                     (type(last.outcome) is Outcome, "last outcome"),
                     (_int(last.reason, 0, MAX_REASON), "last reason")]
    bad = [what for ok, what in problems if not ok]
    if bad:
        raise ReportError(f"box report has a bad {bad[0]}")


def encode_body(r: Report) -> bytes:
    """The canonical msgpack body of ``r`` (checked first)."""
    check(r)
    return _encode(r)


def _encode(r: Report) -> bytes:
    """The body of a checked report (:func:`decode` checks once, not twice: server ingest
    decodes every report a fleet sends)."""
    t = None if r.target is None else [r.target.version, r.target.held, r.target.total]
    last = None if r.last is None else [r.last.version, int(r.last.outcome), r.last.reason]
    fields = [FORMAT, r.box_id, r.seq, r.product, r.hardware, r.running_version,
              r.running_image, t, r.battery, int(r.state), last, r.clock]
    body: bytes = msgpack.packb(fields, use_bin_type=True)
    return body


def sign(r: Report, signer: DeviceSigner) -> bytes:
    """The wire bytes of ``r``, signed by the box's device key (anything with ``sign``)."""
    body = encode_body(r)
    sig = signer.sign(SIGNING_CONTEXT + body)
    if len(sig) != SIGNATURE_BYTES:
        raise ReportError(f"the device key gave a {len(sig)}-byte signature, not 64")
    return body + sig


def _unpack(body: bytes) -> object:
    try:
        return msgpack.unpackb(body, raw=False, use_list=True, max_bin_len=IMAGE_BYTES,
                               max_str_len=MAX_NAME * 4, max_array_len=12, max_map_len=0,
                               max_ext_len=0)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as e:
        raise ReportError(f"box report body is not valid msgpack: {type(e).__name__}") from None


_E = TypeVar("_E", bound=enum.IntEnum)


def _member(kind: type[_E], value: object) -> _E | None:
    if type(value) is not int:
        return None
    try:
        return kind(value)
    except ValueError:
        return None


def _from_fields(raw: object) -> Report:
    if not (type(raw) is list and len(raw) == 12):
        raise ReportError("box report body is not an array of 12 fields")
    fmt, box_id, seq, product, hardware, running, image, t, battery, state, last, clock = raw
    if fmt != FORMAT or type(fmt) is not int:
        raise ReportError(f"box report format {fmt!r} is not {FORMAT}")
    if not _int(state, 0, 255) or _member(BoxState, state) is None:
        raise ReportError("box report has a bad state")
    target = None
    if t is not None:
        if not (type(t) is list and len(t) == 3):
            raise ReportError("box report has a bad target")
        target = TargetProgress(*t)
    result = None
    if last is not None:
        outcome = _member(Outcome, last[1]) if type(last) is list and len(last) == 3 else None
        if outcome is None:
            raise ReportError("box report has a bad last outcome")
        result = LastResult(last[0], outcome, last[2])
    r = Report(box_id, seq, product, hardware, running, image, target, battery,
               BoxState(state), result, clock)
    check(r)
    return r


def decode(wire: bytes) -> SignedReport:
    """Parse a report's wire bytes strictly (size, types, ranges, canonical form) or raise
    :class:`ReportError`. The signature is not checked: that needs the box's key
    (:func:`verify`)."""
    if type(wire) is not bytes:
        wire = bytes(wire)
    if not SIGNATURE_BYTES < len(wire) <= MAX_REPORT_BYTES:
        raise ReportError(f"box report of {len(wire)} bytes is not "
                          f"{SIGNATURE_BYTES + 1}..{MAX_REPORT_BYTES}")
    body, sig = wire[:-SIGNATURE_BYTES], wire[-SIGNATURE_BYTES:]
    r = _from_fields(_unpack(body))  # checked
    if _encode(r) != body:
        raise ReportError("box report body is not in canonical form")
    return SignedReport(r, body, sig)


def verify(wire: bytes, public_key: Ed25519PublicKey) -> Report:
    """The report in ``wire`` if the device key ``public_key`` signed it, else
    :class:`ReportError`."""
    sr = decode(wire)
    try:
        public_key.verify(sr.signature, SIGNING_CONTEXT + sr.body)
    except InvalidSignature:
        raise ReportError(f"box report {sr.report.box_id}#{sr.report.seq} is not signed by "
                          "that box's key") from None
    return sr.report
