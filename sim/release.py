"""The release a simulation rolls out: sizes, the store it lives in, and the oracle's bound.

With no ``--store``, the simulator stages a built-in sample (three releases of
:class:`fwdist.sample.SampleFirmware` under the :data:`fwdist.sample.DEVICE_MEDIAN`
model, whose deltas and compression match the median real device firmware pair;
the last release with deltas from the two before) into a cache directory keyed
by the sample's parameters, once; later runs reuse it. Its full-image pieces are
at most the simulated box's decoder RAM (:mod:`sim.box`).

The oracle's payload is the smallest delta any peer tool makes for the same
(running, target) pair: ``zstd -19 --long=27 --patch-from``, ``bsdiff`` and
``xdelta3 -9`` when they are installed, else python-zstandard at level 19 with
the old image as a raw-content dictionary. Which one won is reported.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from fwdist import keys
from fwdist.errors import FwdistError
from fwdist.manifest import Version
from fwdist.releases import load_manifest, plan, release_image, table_bytes
from fwdist.sample import DEVICE_MEDIAN, SampleFirmware
from fwdist.staging import FULL_ENCODER, StageOptions, stage
from fwdist.store import Store
from sim.box import DECODER_RAM, FULL_PIECES, box_payload
from sim.units import kib_text

SAMPLE_RELEASES = 3  # 1.0.0, 1.1.0, 1.2.0
_CACHE_FORMAT = 3  # 2: the DEVICE_MEDIAN model, full pieces sized for the MCU box; 3: deltas too


@dataclass(frozen=True)
class PeerDelta:
    tool: str
    size: int


@dataclass(frozen=True)
class ReleaseInfo:
    """Everything the strategies need to know about the rollout, computed once per simulation."""

    store: Path
    product: str
    target: str
    image_bytes: int
    sources: tuple[str, ...]  # running versions the scenario puts in the fleet
    oracle: dict[str, PeerDelta] = field(default_factory=dict)
    fwdist_full_air: int = 0
    fwdist_delta_air: dict[str, int] = field(default_factory=dict)
    sample: bool = False
    fwdist_delta_encoder: dict[str, str] = field(default_factory=dict)  # what the box takes

    @property
    def deltas_fit(self) -> bool:
        """Whether the simulated box takes a delta from every running version (not the full)."""
        return bool(self.fwdist_delta_encoder) and all(
            e != FULL_ENCODER for e in self.fwdist_delta_encoder.values()
        )

    @property
    def oracle_bytes(self) -> dict[str, int]:
        return {v: d.size for v, d in self.oracle.items()}

    def describe(self) -> list[str]:
        """The release's sizes for people, in the report's unit (:mod:`sim.units`)."""
        lines = [
            f"release {self.product}@{self.target}: image {kib_text(self.image_bytes)}"
            f"{' (built-in sample)' if self.sample else ''}, store {self.store}",
            "  fwdist full payload on the air (manifest + table + pieces): "
            f"{kib_text(self.fwdist_full_air)}",
        ]
        for v in self.sources:
            o = self.oracle[v]
            encoder = self.fwdist_delta_encoder.get(v)
            took = f" ({encoder})" if encoder else ""
            if encoder == FULL_ENCODER:
                took = f" (the full image: no delta decodes in the box's {kib_text(DECODER_RAM)})"
            lines.append(
                f"  from {v}: fwdist delta {kib_text(self.fwdist_delta_air.get(v, 0))}{took}; "
                f"oracle {kib_text(o.size)} ({o.tool})"
            )
        return lines


def _run_tool(argv: list[str], out: Path) -> int | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        subprocess.run(argv, check=True, capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stat().st_size if out.exists() else None


def peer_delta(old: bytes, new: bytes) -> PeerDelta:
    """The smallest delta the peer tools make for (old, new)."""
    results: list[PeerDelta] = []
    with tempfile.TemporaryDirectory(prefix="fwdist-sim-oracle-") as tmp:
        d = Path(tmp)
        (d / "old").write_bytes(old)
        (d / "new").write_bytes(new)
        tools: list[tuple[str, list[str], Path]] = [
            (
                "zstd -19 --long=27 --patch-from",
                [
                    "zstd",
                    "-q",
                    "-19",
                    "--long=27",
                    "--patch-from",
                    str(d / "old"),
                    str(d / "new"),
                    "-o",
                    str(d / "new.zst"),
                    "-f",
                ],
                d / "new.zst",
            ),
            (
                "bsdiff",
                ["bsdiff", str(d / "old"), str(d / "new"), str(d / "new.bsdiff")],
                d / "new.bsdiff",
            ),
            (
                "xdelta3 -9",
                [
                    "xdelta3",
                    "-9",
                    "-f",
                    "-e",
                    "-s",
                    str(d / "old"),
                    str(d / "new"),
                    str(d / "new.xd3"),
                ],
                d / "new.xd3",
            ),
        ]
        for name, argv, out in tools:
            size = _run_tool(argv, out)
            if size is not None:
                results.append(PeerDelta(name, size))
    if not results:
        params = zstandard.ZstdCompressionParameters.from_level(
            19, window_log=max(20, (len(old) + len(new)).bit_length())
        )
        dict_ = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        c = zstandard.ZstdCompressor(dict_data=dict_, compression_params=params)
        results.append(
            PeerDelta(
                "python-zstandard level 19, old image as raw dictionary", len(c.compress(new))
            )
        )
    return min(results, key=lambda r: (r.size, r.tool))


def cache_base() -> Path:
    """Where the simulator keeps what it derives (never inside a user's store)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fwdist"


def _staging_code_digest() -> str:
    """A digest of the code that decides what a staged sample holds, so a cache never goes stale."""
    import fwdist

    h = hashlib.sha256()
    pkg = Path(fwdist.__file__).parent
    delta = sorted(f"delta/{p.name}" for p in (pkg / "delta").glob("*.py"))  # a package
    for name in ("sample.py", "staging.py", *delta, "chunker.py", "manifest.py", "store.py"):
        try:
            h.update((pkg / name).read_bytes())
        except OSError:
            h.update(name.encode())
    return h.hexdigest()[:12]


def sample_store_dir(image_bytes: int, seed: int) -> Path:
    """Cache of the built-in sample, keyed by its parameters and the staging code."""
    return (
        cache_base() / f"sim-sample-v{_CACHE_FORMAT}-{image_bytes}-{seed}-{_staging_code_digest()}"
    )


def stage_sample(dest: Path, product: str, image_bytes: int, seed: int) -> Path:
    """Stage the built-in sample releases into ``dest`` (atomically: built aside, then renamed)."""
    if (dest / "store" / "fwdist-store").exists() and (dest / "release.key.pub").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=dest.name + ".tmp-", dir=dest.parent))
    try:
        sample = SampleFirmware(size=image_bytes, seed=seed, model=DEVICE_MEDIAN)
        key_path, _pub = keys.generate(work / "release.key")
        key = keys.load_private(key_path)
        store = Store.open(work / "store", create=True)
        versions = [sample.version(r) for r in range(SAMPLE_RELEASES)]
        for r, version in enumerate(versions):
            image = work / f"firmware-{version}.bin"
            image.write_bytes(sample.image(r))
            sources = (
                tuple(versions[:r]) if r == SAMPLE_RELEASES - 1 else versions[max(0, r - 1) : r]
            )
            opts = StageOptions(  # every payload sized for the simulated box's decoder
                product, version, sources=tuple(sources), now=0, chunker=FULL_PIECES,
                max_decoder_ram=DECODER_RAM,
            )
            stage(store, image, key, opts)
            image.unlink()
        try:
            os.rename(work, dest)
        except OSError:
            shutil.rmtree(work, ignore_errors=True)  # another process won the race: use theirs
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return dest


def load_release(
    store_dir: Path,
    product: str,
    target: str,
    sources: tuple[str, ...],
    sample: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ReleaseInfo:
    """Measure the release: fwdist's payload sizes from the store, the oracle from peer tools.

    fwdist's delta air bytes are those of the payload the simulated box takes
    (:func:`sim.box.box_payload`: the full image when no delta fits its RAM).
    """
    store = Store.open(store_dir)
    try:
        m = load_manifest(store, product, target)
    except FwdistError:
        raise FwdistError(f"no release {product}@{target} in {store_dir}") from None
    Version.parse(target)
    new = release_image(store, m)
    oracle: dict[str, PeerDelta] = {}
    delta_air: dict[str, int] = {}
    delta_encoder: dict[str, str] = {}
    for v in sources:
        try:
            old_m = load_manifest(store, product, v)
        except FwdistError:
            raise FwdistError(
                f"the scenario's fleet runs {product}@{v}, which is not in "
                f"{store_dir}: stage it (the box's running image) first"
            ) from None
        if progress:
            progress(f"oracle delta {v} -> {target}")
        old = release_image(store, old_m)
        oracle[v] = _cached_peer_delta(old, new)
        ref = box_payload(m, hashlib.sha256(old).digest())
        if ref is not None and Version.parse(v) < Version.parse(target):  # else: refused
            manifest = len(store.get_manifest(product, target))
            delta_air[v] = manifest + len(table_bytes(store, ref)) + ref.size
            delta_encoder[v] = ref.encoder
    full_air = plan(store, product, "0.0.0", target).air_bytes
    return ReleaseInfo(
        store_dir, product, target, len(new), sources, oracle, full_air, delta_air, sample,
        delta_encoder,
    )


def _cached_peer_delta(old: bytes, new: bytes) -> PeerDelta:
    """Peer tools take seconds at -19; remember their answer next to the store."""
    key = hashlib.sha256(hashlib.sha256(old).digest() + hashlib.sha256(new).digest()).hexdigest()
    cache = cache_base() / "sim-oracle" / key[:32]
    try:
        tool, size = cache.read_text().rsplit("\t", 1)
        return PeerDelta(tool, int(size))
    except (OSError, ValueError):
        pass
    d = peer_delta(old, new)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}")
        tmp.write_text(f"{d.tool}\t{d.size}")
        os.replace(tmp, cache)
    except OSError:
        pass
    return d
