"""Staging throughput of a large image next to ``zstd -3 -T0`` and ``casync make``.

Like with like: fwdist stages with ``--level 3`` (its pieces are zstd frames,
two compression threads), against zstd at the same level on all cores and
casync with its defaults (64 KiB average chunks, zstd). All three read the
same cached file and write into a fresh directory. fwdist's time is the
``seconds`` its ``stage --json`` reports (the staging work, without the
~0.2 s of interpreter start-up that a C tool does not pay); the peers' times
are their wall-clock run times.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from benchmarks import tools
from benchmarks.inputs import image_file
from benchmarks.record import Record, failed, without_peer

SEED = 5
PEERS = ("zstd", "casync")


def _dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def run(quick: bool, peer_tools: tools.Tools, cache: Path | None = None) -> list[Record]:
    size = (64 << 20) if quick else (1 << 30)
    mib = size / (1 << 20)
    image = image_file(size, SEED, cache)
    what = f"{mib:.0f} MiB firmware-like image (seed {SEED})"
    name = f"staging/{mib:.0f}MiB"
    records: list[Record] = []
    with tempfile.TemporaryDirectory(prefix="fwdist-bench-stage-") as tmp_:
        tmp = Path(tmp_)
        try:
            tools.timed(tools.fwdist("keygen", tmp / "key", "--json"))
            _, out = tools.timed(
                tools.fwdist(
                    "stage",
                    image,
                    "--store",
                    tmp / "store",
                    "--product",
                    "bench",
                    "--version",
                    "1.0.0",
                    "--key",
                    tmp / "key",
                    "--level",
                    "3",
                    "--init-store",
                    "--json",
                )
            )
            result = json.loads(out)
            seconds = float(result["seconds"])
            stored = int(result["new_object_bytes"])
        except (tools.ToolError, ValueError, KeyError) as e:
            return [failed(f"{name}/throughput", "MiB/s", f"fwdist stage: {e}")]
        shutil.rmtree(tmp / "store")
        fw_speed = round(mib / seconds, 1)

        peer_runs: dict[str, tuple[float, int] | str] = {}
        if (why := peer_tools.why_missing("zstd")) is None:
            try:
                secs, _ = tools.timed(
                    ["zstd", "-3", "-T0", "-q", "-f", image, "-o", tmp / "img.zst"]
                )
                peer_runs["zstd -3 -T0"] = (secs, (tmp / "img.zst").stat().st_size)
            except tools.ToolError as e:
                peer_runs["zstd -3 -T0"] = f"error: {e}"
            (tmp / "img.zst").unlink(missing_ok=True)
        else:
            peer_runs["zstd -3 -T0"] = why
        if (why := peer_tools.why_missing("casync")) is None:
            try:
                secs, _ = tools.timed(
                    ["casync", "make", f"--store={tmp / 'castr'}", tmp / "img.caibx", image]
                )
                peer_runs["casync make"] = (
                    secs,
                    _dir_bytes(tmp / "castr") + (tmp / "img.caibx").stat().st_size,
                )
            except tools.ToolError as e:
                peer_runs["casync make"] = f"error: {e}"
        else:
            peer_runs["casync make"] = why

    for peer, outcome in peer_runs.items():
        if isinstance(outcome, str):
            records.append(
                without_peer(
                    f"{name}/throughput", fw_speed, "MiB/s", peer, outcome, better="higher"
                )
            )
            records.append(without_peer(f"{name}/stored_bytes", stored, "bytes", peer, outcome))
            continue
        secs, out_bytes = outcome
        records.append(
            Record(
                f"{name}/throughput",
                fw_speed,
                "MiB/s",
                peer=peer,
                peer_value=round(mib / secs, 1),
                better="higher",
                note=f"{what}; fwdist stage --level 3 (library time {seconds:.2f} s)",
            )
        )
        records.append(
            Record(
                f"{name}/stored_bytes",
                stored,
                "bytes",
                peer=peer,
                peer_value=out_bytes,
                note="everything written: pieces, table, manifest, key",
            )
        )
    order = [f"{name}/throughput", f"{name}/stored_bytes"]
    return sorted(records, key=lambda r: order.index(r.name))  # stable: peers keep their order
