"""Bytes over the air for real consecutive releases, next to every delta peer, same run.

For each pair, fwdist runs the path a release engineer runs: ``fwdist keygen``,
``stage OLD``, ``stage NEW --from OLD``, and its figure is ``air_bytes`` from
``fwdist plan --json``: the signed manifest, the piece table and the delta
payload, i.e. everything a box must receive. The peers' figures are their patch
files alone (no signature, no metadata), so the comparison is strict against
fwdist. Each peer's patch is applied and the result compared with the new
release byte for byte: a peer figure counts only if the peer round-trips.

Times are the time to stage (fwdist: ``stage --json`` seconds, which include
staging the new image's full pieces at zstd -19; peers: encoding) and to apply
(fwdist: the library's ``apply_delta`` from the store; peers: their decoder),
reported as ratios against each peer.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import tools
from benchmarks.inputs import PAIRS, InputError, Pair, pair_files
from benchmarks.record import Record, failed, without_peer

APPLY_REPEATS = 3


@dataclass(frozen=True)
class PeerResult:
    air_bytes: int
    encode_seconds: float
    decode_seconds: float
    note: str = ""


def _best(fn: Callable[[], float], repeats: int) -> float:
    return min(fn() for _ in range(repeats))


def _decode_check(cmd: list[str | Path], out: Path, new_sha: str) -> float:
    secs, _ = tools.timed(cmd)
    if hashlib.sha256(out.read_bytes()).hexdigest() != new_sha:
        raise tools.ToolError(f"{cmd[0]} did not rebuild the new release")
    return secs


def bsdiff(old: Path, new: Path, work: Path, new_sha: str) -> PeerResult:
    patch, out = work / "bsdiff.patch", work / "bsdiff.out"
    enc, _ = tools.timed(["bsdiff", old, new, patch])
    dec = _best(lambda: _decode_check(["bspatch", old, out, patch], out, new_sha), APPLY_REPEATS)
    return PeerResult(patch.stat().st_size, enc, dec, "bsdiff 4.3 (bzip2)")


def xdelta3(old: Path, new: Path, work: Path, new_sha: str) -> PeerResult:
    patch, out = work / "xdelta3.patch", work / "xdelta3.out"
    enc, _ = tools.timed(["xdelta3", "-9", "-e", "-f", "-s", old, new, patch])
    dec = _best(
        lambda: _decode_check(["xdelta3", "-d", "-f", "-s", old, patch, out], out, new_sha),
        APPLY_REPEATS,
    )
    return PeerResult(patch.stat().st_size, enc, dec, "xdelta3 -9")


def zstd_patch_from(old: Path, new: Path, work: Path, new_sha: str) -> PeerResult:
    patch, out = work / "zstd.patch", work / "zstd.out"
    enc, _ = tools.timed(
        ["zstd", "-19", "--long=27", f"--patch-from={old}", new, "-o", patch, "-f", "-q"]
    )
    dec = _best(
        lambda: _decode_check(
            ["zstd", "-d", "--long=27", f"--patch-from={old}", patch, "-o", out, "-f", "-q"],
            out,
            new_sha,
        ),
        APPLY_REPEATS,
    )
    return PeerResult(patch.stat().st_size, enc, dec, "zstd -19 --long=27 --patch-from")


def casync(old: Path, new: Path, work: Path, new_sha: str) -> PeerResult:
    """Chunk reuse: the new release's chunks that the old one's store lacks, plus its index."""
    store = work / "casync.store"
    tools.timed(["casync", "make", f"--store={store}", work / "old.caibx", old])
    before = {p.name for p in store.rglob("*.cacnk")}
    enc, _ = tools.timed(["casync", "make", f"--store={store}", work / "new.caibx", new])
    fresh = [p for p in store.rglob("*.cacnk") if p.name not in before]
    index = (work / "new.caibx").stat().st_size
    sent = sum(p.stat().st_size for p in fresh) + index
    out = work / "casync.out"

    def extract() -> float:
        out.unlink(missing_ok=True)
        return _decode_check(
            ["casync", "extract", f"--store={store}", f"--seed={old}", work / "new.caibx", out],
            out,
            new_sha,
        )

    dec = _best(extract, APPLY_REPEATS)
    return PeerResult(
        sent,
        enc,
        dec,
        f"casync chunk reuse (64 KiB avg, zstd): {len(fresh)} new "
        f"chunks ({len(before)} in the old store) + {index} B index",
    )


def rdiff(old: Path, new: Path, work: Path, new_sha: str) -> PeerResult:
    sig, patch, out = work / "rdiff.sig", work / "rdiff.delta", work / "rdiff.out"
    sig_s, _ = tools.timed(["rdiff", "signature", old, sig])
    enc, _ = tools.timed(["rdiff", "delta", sig, new, patch])
    dec = _best(
        lambda: _decode_check(["rdiff", "-f", "patch", old, patch, out], out, new_sha),
        APPLY_REPEATS,
    )
    return PeerResult(
        patch.stat().st_size,
        sig_s + enc,
        dec,
        f"rdiff (librsync); the box would first upload a {sig.stat().st_size} B signature",
    )


# label -> (commands it needs, runner)
PEERS: dict[str, tuple[tuple[str, ...], Callable[[Path, Path, Path, str], PeerResult]]] = {
    "bsdiff": (("bsdiff", "bspatch"), bsdiff),
    "xdelta3 -9": (("xdelta3",), xdelta3),
    "zstd --patch-from": (("zstd",), zstd_patch_from),
    "casync": (("casync",), casync),
    "rdiff": (("rdiff",), rdiff),
}
NEEDED = sorted({c for cmds, _ in PEERS.values() for c in cmds} | {"time"})


@dataclass(frozen=True)
class FwdistResult:
    air_bytes: int
    stage_seconds: float  # as ``stage --json`` reports it
    apply_seconds: float
    plan: dict[str, object]  # `fwdist plan --json`, as printed
    stage: tools.Measured  # the ``stage --from`` process: wall seconds and peak RSS
    decoder_ram: int  # what the manifest declares the box's decoder needs

    @property
    def breakdown(self) -> str:
        p = self.plan
        return (
            f"encoder {p['encoder']}: manifest {p['manifest_bytes']} + piece table "
            f"{p['table_bytes']} + payload {p['payload_bytes']} B in {p['pieces']} pieces"
        )


def run_fwdist(
    product: str, old: Path, new: Path, work: Path, stage_args: Sequence[str] = ()
) -> FwdistResult:
    """Stage ``old`` then ``new --from old`` (with ``stage_args``) and check the delta."""
    from fwdist.manifest import Version
    from fwdist.releases import apply_delta, load_manifest
    from fwdist.store import Store

    store, key = work / "store", work / "key"
    old_v, new_v = "1.0.0", "1.0.1"
    common: list[str | Path] = ["--store", store, "--product", product, "--key", key, "--json"]
    tools.timed(tools.fwdist("keygen", key, "--json"))
    tools.timed(tools.fwdist("stage", old, "--version", old_v, "--init-store", *common))
    stage = tools.measured(
        tools.fwdist("stage", new, "--version", new_v, "--from", old_v, *common, *stage_args),
        work / "stage.rss",
    )
    stage_seconds = float(json.loads(stage.stdout)["seconds"])
    _, out = tools.timed(
        tools.fwdist(
            "plan",
            "--store",
            store,
            "--product",
            product,
            "--from",
            old_v,
            "--to",
            new_v,
            "--json",
        )
    )
    plan = json.loads(out)
    if plan["encoder"] == "zstd-pieces":
        raise tools.ToolError("fwdist plan chose the full image: no delta was staged")

    s = Store.open(store)
    m = load_manifest(s, product, str(Version.parse(new_v)))
    ref = m.delta_from(old_v)
    if ref is None:
        raise tools.ToolError(f"the manifest of {new_v} has no delta from {old_v}")
    old_bytes, new_sha = old.read_bytes(), hashlib.sha256(new.read_bytes()).digest()

    def apply_once() -> float:
        started = time.perf_counter()
        image = apply_delta(s, m, ref, old_bytes)
        seconds = time.perf_counter() - started
        if hashlib.sha256(image).digest() != new_sha:
            raise tools.ToolError("fwdist's delta did not rebuild the new release")
        return seconds

    return FwdistResult(
        int(plan["air_bytes"]),
        stage_seconds,
        _best(apply_once, APPLY_REPEATS),
        plan,
        stage,
        int(str(plan.get("decoder_ram", ref.decode_ram))),
    )


def run_pair(pair: Pair, peer_tools: tools.Tools, cache: Path | None = None) -> list[Record]:
    """Records for one pair: fwdist's breakdown, then air bytes, stage and apply time per peer."""
    prefix = f"pairs/{pair.name}"
    air, stage, apply = f"{prefix}/air_bytes", f"{prefix}/stage_seconds", f"{prefix}/apply_seconds"
    try:
        old, new = pair_files(pair, cache)
    except InputError as e:
        return [failed(air, "bytes", str(e), checked=True)]
    new_sha = hashlib.sha256(new.read_bytes()).hexdigest()
    rows: dict[str, list[Record]] = {air: [], stage: [], apply: []}
    with tempfile.TemporaryDirectory(prefix=f"fwdist-bench-{pair.product}-") as tmp_:
        tmp = Path(tmp_)
        (tmp / "fwdist").mkdir()
        try:
            fw = run_fwdist(pair.product, old, new, tmp / "fwdist")
        except (tools.ToolError, ValueError, KeyError) as e:
            return [failed(air, "bytes", f"fwdist: {e}", checked=True)]
        info = Record(
            f"{prefix}/new_image",
            new.stat().st_size,
            "bytes",
            note=f"{pair.old.label} -> {pair.new.version}; fwdist air_bytes = {fw.breakdown}",
        )
        for label, (commands, runner) in PEERS.items():
            work = tmp / label.split()[0]
            work.mkdir()
            why = peer_tools.why_missing(*commands)
            outcome: PeerResult | str
            if why is not None:
                outcome = why
            else:
                try:
                    outcome = runner(old, new, work, new_sha)
                except (tools.ToolError, OSError) as e:
                    outcome = f"error: {e}"
            if isinstance(outcome, str):
                rows[air].append(
                    without_peer(air, fw.air_bytes, "bytes", label, outcome, checked=True)
                )
                rows[stage].append(
                    without_peer(stage, round(fw.stage_seconds, 3), "s", label, outcome)
                )
                rows[apply].append(
                    without_peer(apply, round(fw.apply_seconds, 4), "s", label, outcome)
                )
                continue
            rows[air].append(
                Record(
                    air,
                    fw.air_bytes,
                    "bytes",
                    peer=label,
                    peer_value=outcome.air_bytes,
                    checked=True,
                    note=outcome.note,
                )
            )
            rows[stage].append(
                Record(
                    stage,
                    round(fw.stage_seconds, 3),
                    "s",
                    peer=label,
                    peer_value=round(outcome.encode_seconds, 3),
                    note="fwdist: stage NEW --from OLD (full pieces at -19 + delta)",
                )
            )
            rows[apply].append(
                Record(
                    apply,
                    round(fw.apply_seconds, 4),
                    "s",
                    peer=label,
                    peer_value=round(outcome.decode_seconds, 4),
                    note=f"best of {APPLY_REPEATS}; fwdist: library apply_delta",
                )
            )
    return [info, *rows[air], *rows[stage], *rows[apply]]


def run(
    quick: bool,
    peer_tools: tools.Tools,
    cache: Path | None = None,
    progress: Callable[[str], None] = lambda s: None,
) -> list[Record]:
    records: list[Record] = []
    for pair in pairs_for(quick):
        progress(f"pair {pair.name}")
        records += run_pair(pair, peer_tools, cache)
    return records


def pairs_for(quick: bool) -> list[Pair]:
    """The pairs a run covers: the quick ones in CI, all of them in a full run."""
    return [p for p in PAIRS if p.quick or not quick]
