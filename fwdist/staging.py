"""Staging: turn a firmware image into a signed release in the store.

The image streams through the chunker in bounded memory; both cores compress
pieces (zstd releases the GIL) while the main thread hashes the whole image and
writes objects. Deltas need the old and new images in memory (the encoders are
suffix-array and window based), which is fine for firmware-sized images and
refused, with a clear error, above ``MAX_DELTA_INPUT``.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fwdist import air, delta, hardware
from fwdist.chunker import ChunkerParams, chunk_stream
from fwdist.errors import ManifestError, StagingError
from fwdist.hardware import Profile
from fwdist.keys import Signer, public_pem
from fwdist.lockbox import BoxConfig, misfit
from fwdist.manifest import (
    MAX_PIECE_SIZE,
    MAX_TABLE_BYTES,
    Manifest,
    PayloadRef,
    PieceEntry,
    PieceTable,
    Version,
    check_name,
    key_id,
    sign,
    sign_all,
)
from fwdist.releases import ReleaseScan, read_image, scan_releases
from fwdist.store import Store, compress

FULL_ENCODER = "zstd-pieces"
DELTA_PIECE_SIZE = 16 * 1024
MAX_DELTA_INPUT = 1 << 30
MIN_EXPIRES_DAYS = 1 / 24
"""One hour: a manifest must outlive its trip to a box; a shorter expiry is a typo."""
MAX_EXPIRES_DAYS = 3650
"""Ten years: past a box's service life; a longer expiry is a typo (or "never": omit it)."""
MAX_COUNTER = (1 << 32) - 1
_IN_FLIGHT = 16

Progress = Callable[[int], None]


@dataclass(frozen=True)
class StageOptions:
    """What a release engineer says about a release, beyond the image itself."""

    product: str
    version: str
    hardware: str | None = None
    security_counter: int | None = None
    required: bool = False
    min_battery: int = 0
    min_app: str = "0.0.0"
    expires_days: float | None = None
    sources: tuple[str, ...] = ()
    level: int = 19
    chunker: ChunkerParams = field(default_factory=ChunkerParams)
    delta_piece_size: int = DELTA_PIECE_SIZE
    encoders: tuple[str, ...] | None = None
    now: int | None = None
    max_decoder_ram: int | None = None  # this stage only: overrides the hardware profile's


@dataclass(frozen=True)
class StageResult:
    manifest: Manifest
    manifest_bytes: int
    new_objects: int
    new_object_bytes: int
    seconds: float
    ignored: tuple[str, ...] = ()  # staged manifests that do not verify, and so did not count
    skipped: tuple[str, ...] = ()  # deltas left out because the hardware cannot decode them


@dataclass(frozen=True)
class Fit:
    """What the release's payloads must fit: the hardware profile and this stage's override.

    With neither, payloads are made as for a box with RAM to spare (every encoder, the
    smallest wins). With a RAM budget, a full-image piece is never larger than it (a piece
    is decompressed whole) and a delta whose decoder needs more is never made; with a
    profile, only its formats are tried, for its instruction set, and every payload must
    also fit its pieces, staging and slot (the box's own rule: :func:`fwdist.lockbox.misfit`).
    """

    profile: Profile | None
    max_ram: int | None

    @classmethod
    def of(cls, store: Store, hw: str, opts: StageOptions) -> Fit:
        profile = hardware.load(store, hw)
        ram = opts.max_decoder_ram or (profile.decoder_ram if profile else None)
        return cls(profile, ram)

    @property
    def formats(self) -> tuple[str, ...] | None:
        return self.profile.delta_formats if self.profile else None

    @property
    def arch(self) -> delta.InstructionSet:
        return self.profile.arch if self.profile else delta.InstructionSet.NONE

    def chunker(self, params: ChunkerParams) -> ChunkerParams:
        return params if self.max_ram is None else hardware.chunker_within(params, self.max_ram)

    def box(self, product: str) -> BoxConfig | None:
        """The box the payloads are for (None without a profile: no flash limits are known)."""
        if self.profile is None or self.max_ram is None:
            return None
        return self.profile.box_config(product, ram_budget=self.max_ram)


def check_options(opts: StageOptions) -> Version:
    """Refuse options no box could use, before the store is touched; the release's version."""
    check_name("product", opts.product)
    check_name("hardware", opts.hardware or opts.product)
    version = Version.parse(opts.version)
    Version.parse(opts.min_app)
    if not 0 <= opts.min_battery <= 100:
        raise StagingError(f"--min-battery must be 0..100, got {opts.min_battery}")
    if opts.security_counter is not None and not 0 <= opts.security_counter <= MAX_COUNTER:
        raise StagingError(
            f"--security-counter must be 0..{MAX_COUNTER}, got {opts.security_counter}"
        )
    days = opts.expires_days
    if days is not None and not (MIN_EXPIRES_DAYS <= days <= MAX_EXPIRES_DAYS):  # NaN too
        raise StagingError(
            f"--expires must be from {MIN_EXPIRES_DAYS:.3f} (one hour) to {MAX_EXPIRES_DAYS} "
            f"days (omit it for a release that never expires), got {days:g}"
        )
    top = zstandard.MAX_COMPRESSION_LEVEL
    if not 1 <= opts.level <= top:
        raise StagingError(f"--level must be 1..{top} (zstd levels), got {opts.level}")
    if opts.chunker.max_size > MAX_PIECE_SIZE:
        raise StagingError(
            f"--max-piece must be at most {MAX_PIECE_SIZE} (the largest piece a box takes), "
            f"got {opts.chunker.max_size}"
        )
    if not 256 <= opts.delta_piece_size <= MAX_PIECE_SIZE:
        raise StagingError(f"delta piece size must be 256..{MAX_PIECE_SIZE} bytes")
    ram = opts.max_decoder_ram
    if ram is not None and not hardware.MIN_DECODER_RAM <= ram <= hardware.MAX_U32:
        raise StagingError(f"--max-decoder-ram must be {hardware.MIN_DECODER_RAM}.."
                           f"{hardware.MAX_U32} bytes, got {ram}")
    for source in opts.sources:
        if Version.parse(source) >= version:
            raise StagingError(f"delta source {source} is not older than {version}")
    return version


def _store_pieces(
    store: Store, chunks: Iterable[bytes], level: int, workers: int
) -> Iterator[tuple[bytes, bytes, bytes, bool]]:
    """Yield (content, piece id, zstd frame, newly written) in image order.

    Hashing, compressing and writing each piece run on ``workers`` threads: the
    first two release the GIL, and creating thousands of small files is
    syscall-bound, so both cores stay busy. At most ``_IN_FLIGHT`` pieces are in
    memory at once, whatever the image size.
    """

    def job(content: bytes) -> tuple[bytes, bytes, bool]:
        pid = hashlib.sha256(content).digest()
        frame = compress(content, level)
        return pid, frame, store.put_frame(pid, frame, durable=False)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fwdist-stage") as pool:
        pending: deque[tuple[bytes, Future[tuple[bytes, bytes, bool]]]] = deque()
        for content in chunks:
            pending.append((content, pool.submit(job, content)))
            if len(pending) >= _IN_FLIGHT:
                c, fut = pending.popleft()
                yield c, *fut.result()
        while pending:
            c, fut = pending.popleft()
            yield c, *fut.result()


def _stage_full(
    store: Store, image: Path, opts: StageOptions, chunker: ChunkerParams,
    progress: Progress | None
) -> tuple[PieceTable, bytes, int]:
    """Store the image's compressed pieces; return their table, the image SHA-256 and size."""
    whole = hashlib.sha256()
    size = 0
    entries: list[PieceEntry] = []
    workers = max(2, os.cpu_count() or 2)
    with open(image, "rb") as f:
        contents = (c.data for c in chunk_stream(f, chunker))
        for content, pid, frame, new in _store_pieces(store, contents, opts.level, workers):
            whole.update(content)
            size += len(content)
            if not new:  # deduplicated: keep the stored frame, unless a crash damaged it
                frame = store.reuse_frame(pid, frame, len(content))
            entries.append(PieceEntry(pid, len(content), len(frame)))
            if progress:
                progress(len(content))
    return PieceTable(True, tuple(entries)), whole.digest(), size


def _encode_delta(old: bytes, new: bytes, opts: StageOptions, fit: Fit) -> delta.Delta | None:
    """The smallest delta the box ``fit`` describes decodes, or None when no encoder's does."""
    names = [n for n in delta.ENCODERS
             if (opts.encoders is None or n in opts.encoders)
             and (fit.formats is None or n in fit.formats)]
    if not names:
        return None
    try:
        return delta.encode(old, new, max_ram=fit.max_ram, formats=names, arch=fit.arch)
    except delta.DeltaError:
        return None


def _delta_ref(d: delta.Delta, step: int, source: Manifest) -> tuple[PayloadRef, PieceTable]:
    """The payload reference and piece table of delta ``d`` cut in ``step``-byte pieces."""
    entries = []
    for off in range(0, len(d.data), step):
        piece = d.data[off : off + step]
        entries.append(PieceEntry(hashlib.sha256(piece).digest(), len(piece), len(piece)))
    table = PieceTable(False, tuple(entries))
    ref = PayloadRef(d.encoder, table.wire_size, len(table.pieces), table.sha256,
                     decode_ram=delta.decode_ram(d.encoder, d.data[:64]),
                     source_version=source.version, source_sha256=source.image_sha256)
    return ref, table


def _store_delta(store: Store, d: delta.Delta, step: int, table: PieceTable) -> None:
    for off in range(0, len(d.data), step):
        store.put_content(d.data[off : off + step], level=1)
    store.put_content(table.encode(), level=3)


def check_image(image: Path) -> int:
    """The size of the image to stage; refused when it is missing, empty or not a file."""
    try:
        image_size = image.stat().st_size
    except OSError as e:
        raise StagingError(f"cannot read image {image}: {e.strerror}") from None
    if not image.is_file():
        raise StagingError(f"image {image} is not a regular file")
    if image_size == 0:
        raise StagingError(f"image {image} is empty")
    return image_size


def stage(
    store: Store,
    image: Path,
    key: Signer | None,
    opts: StageOptions,
    progress: Progress | None = None,
    *,
    also_trust: Sequence[Ed25519PublicKey] = (),
) -> StageResult:
    """Stage ``image`` as ``opts.product@opts.version``; all or nothing.

    With ``key`` None the release is staged unsigned (an offline signing flow's draft:
    ``fwdist sign`` adds each signature, and its format 2 manifests with the first).
    Only staged releases that verify against ``key`` (or a key in ``also_trust``,
    for a key rotation or a signing role) count: they set the version floor, the security counter's
    floor and the delta sources. Whatever else sits in the store is listed in
    ``StageResult.ignored``. The previous release is read under the store lock,
    so two concurrent stages see each other's results.
    """
    started = time.perf_counter()
    version = check_options(opts)
    hw = opts.hardware or opts.product
    image_size = check_image(image)
    trusted = [*([key.public_key()] if key is not None else []), *also_trust]
    now = int(time.time()) if opts.now is None else opts.now
    expires = None if opts.expires_days is None else now + math.ceil(opts.expires_days * 86400)
    with store.transaction():
        scan = scan_releases(store, opts.product, trusted)
        try:  # boxes are to tell products apart by a 4-byte id (format 2, fwdist.air)
            air.check_ids_distinct([*(name for name, _ in store.releases()), opts.product])
        except ManifestError as e:
            raise StagingError(str(e)) from None
        counter, sources = _check_history(scan, opts, version, hw, image_size)
        if os.path.lexists(store.manifest_path(opts.product, str(version))):
            raise StagingError(_in_the_way(opts.product, str(version), scan))
        fit = Fit.of(store, hw, opts)
        box = fit.box(opts.product)
        if box is not None and image_size > box.slot_size:
            raise StagingError(f"image {image} is {image_size} bytes, larger than the "
                               f"{box.slot_size}-byte slot of hardware {hw!r}")
        chunker = fit.chunker(opts.chunker)
        table, image_sha, size = _stage_full(store, image, opts, chunker, progress)
        if size != image_size:
            raise StagingError(f"image {image} changed while it was being staged")
        table_bytes = table.encode()
        if len(table_bytes) > MAX_TABLE_BYTES:
            raise StagingError(
                f"{len(table.pieces)} pieces make a {len(table_bytes)}-byte table, over the "
                f"{MAX_TABLE_BYTES}-byte limit: use larger pieces (--avg-piece, --max-piece)"
            )
        store.put_content(table_bytes, level=3)
        tables = {table.sha256: table}
        full = PayloadRef(
            FULL_ENCODER,
            table.wire_size,
            len(table.pieces),
            table.sha256,
            decode_ram=chunker.max_size,
        )
        if box is not None and (why := misfit(full, box)) is not None:
            raise StagingError(f"hardware {hw!r} cannot take the full image ({why.name}: "
                               f"{full.size} bytes in {full.pieces} pieces); every box must")
        deltas = []
        skipped = []
        if sources:
            new = image.read_bytes()
            for src in sources:
                old = b"".join(read_image(store, src))
                d = _encode_delta(old, new, opts, fit)
                if d is None:
                    skipped.append(f"no delta from {src.version} decodes in "
                                   f"{fit.max_ram} bytes of RAM with the formats of "
                                   f"{hw!r}: boxes on {src.version} take the full image")
                    continue
                ref, dtable = _delta_ref(d, opts.delta_piece_size, src)
                if box is not None and (why := misfit(ref, box)) is not None:
                    skipped.append(f"the delta from {src.version} does not fit hardware "
                                   f"{hw!r} ({why.name}): boxes on it take the full image")
                    continue
                _store_delta(store, d, opts.delta_piece_size, dtable)
                tables[dtable.sha256] = dtable
                deltas.append(ref)
        manifest = Manifest(
            product=opts.product,
            hardware=hw,
            version=str(version),
            security_counter=counter,
            image_size=size,
            image_sha256=image_sha,
            full=full,
            deltas=tuple(deltas),
            required=opts.required,
            min_battery=opts.min_battery,
            min_app=opts.min_app,
            created=now,
            expires=expires,
        )
        wire = sign(manifest, key) if key is not None else sign_all(manifest, [])
        if key is not None:
            try:  # what a box speaking protocol 2 is offered: one manifest per payload
                bundle = air.encode_bundle(air.sign_release(manifest, tables, [key]))
            except ManifestError as e:
                raise StagingError(f"cannot make the format 2 manifests: {e}") from None
            store.put_air(opts.product, str(version), bundle)
            store.put_key(key_id(key.public_key()), public_pem(key.public_key()))
        store.put_manifest(opts.product, str(version), wire)
        written = store.written_objects()
    return StageResult(
        manifest,
        len(wire),
        len(written),
        sum(p.stat().st_size for p in written),
        time.perf_counter() - started,
        scan.ignored,
        tuple(skipped),
    )


def _check_history(
    scan: ReleaseScan,
    opts: StageOptions,
    version: Version,
    hardware: str,
    image_size: int,
) -> tuple[int, list[Manifest]]:
    """The new release's security counter and delta sources, checked against the verified ones."""
    previous = scan.verified[-1] if scan.verified else None
    if previous is not None:
        if previous.parsed_version >= version:
            raise StagingError(
                f"{opts.product}@{version} is not newer than the staged {previous.version}"
            )
        if previous.hardware != hardware:
            raise StagingError(
                f"hardware {hardware!r} differs from the staged releases' {previous.hardware!r}"
            )
    floor = previous.security_counter if previous else 0
    counter = floor if opts.security_counter is None else opts.security_counter
    if counter < floor:
        raise StagingError(
            f"security counter {counter} is lower than {floor}, the staged releases' counter"
        )
    sources = []
    for v in dict.fromkeys(str(Version.parse(v)) for v in opts.sources):
        found = next((m for m in scan.verified if m.version == v), None)
        if found is None:
            reason = _ignored(scan, opts.product, v)
            raise StagingError(
                f"delta source {opts.product}@{v}: {reason}"
                if reason
                else f"no release {opts.product}@{v} in the store"
            )
        if image_size + found.image_size > MAX_DELTA_INPUT:
            raise StagingError(
                f"a delta needs both images in memory; {found.version} + {version} exceed "
                f"{MAX_DELTA_INPUT >> 20} MiB"
            )
        sources.append(found)
    return counter, sources


def _ignored(scan: ReleaseScan, product: str, version: str) -> str | None:
    """Why ``product@version``'s manifest did not verify, if it is one of the ignored."""
    prefix = f"{product}@{version}: "
    return next((i[len(prefix) :] for i in scan.ignored if i.startswith(prefix)), None)


def _in_the_way(product: str, version: str, scan: ReleaseScan) -> str:
    """What to say when the new manifest's path is taken by something that does not verify."""
    path = f"releases/{product}/{version}"
    reason = _ignored(scan, product, version)
    if reason is None:
        return f"release {product}@{version} is already staged: {path} is not a manifest"
    return (
        f"release {product}@{version} is already staged, by a manifest that does not verify "
        f"({reason}); remove {path} to stage it"
    )
