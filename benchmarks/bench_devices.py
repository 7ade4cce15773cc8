"""fwdist on real device firmware (issue 10 item 6), next to the embedded-delta peers.

Per pair: ``air_bytes`` (format 2 manifest + table + payload, what a protocol 2 box receives),
the decoder RAM the manifest declares, and the ``stage --from`` process's wall
seconds and peak RSS, each beside every peer's patch size, encode seconds and
peak RSS, measured in the same run (:mod:`benchmarks.device_peers`).

Two rules hold on every device pair (the issue's target), stored in
``benchmarks/limits.json`` so they can only tighten:

- ``air_bytes <= best peer + margin``: the margin is today's measured gap
  (``best_peer_margin``), to be lowered to :data:`~benchmarks.limits.MARGIN_TARGET`
  (160 B: what a signed manifest and piece table cost over a bare patch);
- ``decoder_ram``: a ``max`` at today's value, to be lowered to :data:`RAM_TARGET`.

Stage time against bsdiff (issue 10 item 4: within 2x of bsdiff's time, 1.5x its
peak memory) is two ratios per pair, both sides measured in the same run:
``stage_vs_bsdiff_seconds`` is the staging call's own seconds (``stage --json``'s
``seconds``, without interpreter start-up and imports) over the ``bsdiff`` CLI's
wall seconds, and ``stage_vs_bsdiff_rss`` the ``stage --from`` process's peak RSS
over bsdiff's.  They are timings, so never ``checked`` (``--update-limits``
does not follow their noise down); their stored ``max`` is a ceiling set by
hand with room for a loaded machine, lowered by hand when staging gets faster.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks import bench_pairs, device_peers, devices, tools
from benchmarks.inputs import InputError
from benchmarks.limits import MARGIN_TARGET
from benchmarks.record import Record, failed, without_peer

RAM_TARGET = 32_768
"""A lockbox MCU's decoder budget (issue 10): 32 KiB of RAM for every buffer."""


def budget_args() -> list[str]:
    """The stage options that hold fwdist to :data:`RAM_TARGET`, if this fwdist has them."""
    try:
        _, text = tools.timed(tools.fwdist("stage", "--help"))
    except tools.ToolError:
        return []
    return ["--max-decoder-ram", str(RAM_TARGET)] if "--max-decoder-ram" in text else []


def python_peer_missing(label: str) -> str | None:
    """Why a Python-package peer cannot run (its package is not installed), or None."""
    import importlib.util

    module = device_peers.PYTHON_PEERS.get(label)
    if module is None or importlib.util.find_spec(module) is not None:
        return None
    return f"{module} not installed (pip install -c constraints.txt -e '.[bench]')"


def run_pair(
    pair: devices.DevicePair,
    peer_tools: tools.Tools,
    cache: Path,
    apt: devices.Apt,
    quick: bool,
    stage_args: list[str],
) -> list[Record]:
    prefix = f"devices/{pair.name}"
    air, ram = f"{prefix}/air_bytes", f"{prefix}/decoder_ram"
    secs, rss = f"{prefix}/stage_seconds", f"{prefix}/stage_peak_rss"
    try:
        old, new = devices.pair_files(pair, cache, apt)
    except InputError as e:
        return [failed(air, "bytes", str(e), checked=True)]
    with tempfile.TemporaryDirectory(prefix=f"fwdist-bench-{pair.name}-") as tmp_:
        tmp = Path(tmp_)
        (tmp / "fwdist").mkdir()
        try:
            fw = bench_pairs.run_fwdist(pair.name, old, new, tmp / "fwdist", stage_args)
        except (tools.ToolError, ValueError, KeyError) as e:
            return [failed(air, "bytes", f"fwdist: {e}", checked=True)]
        budget = (
            f"staged with {' '.join(stage_args)}" if stage_args else "staged without a RAM budget"
        )
        # what a box speaking protocol 2 receives: the payload's format 2 manifest (and table,
        # past 16 pieces) and the payload; format 1's figure is in the note
        on_air = int(str(fw.plan["format2_overhead_bytes"])) + int(str(fw.plan["payload_bytes"]))
        records = [
            Record(
                f"{prefix}/new_image",
                new.stat().st_size,
                "bytes",
                note=f"{pair.old.source.label} -> {pair.new.source.label} ({pair.arch.value}); "
                f"fwdist air_bytes = format 2 manifest {fw.plan['format2_overhead_bytes']} + "
                f"payload (format 1: {fw.breakdown}); {budget}",
            ),
            Record(
                ram,
                fw.decoder_ram,
                "bytes",
                checked=True,
                note=f"target <= {RAM_TARGET} (issue 10); the stored limit is today's value",
            ),
        ]
        rows: dict[str, list[Record]] = {air: [], secs: [], rss: []}
        bsdiff_run: device_peers.PeerPatch | str = "bsdiff not run"
        for label, (commands, runner) in device_peers.PEERS.items():
            work = tmp / label.split()[0]
            work.mkdir()
            outcome: device_peers.PeerPatch | str
            why = peer_tools.why_missing(*commands) or python_peer_missing(label)
            if why is not None:
                outcome = why
            else:
                try:
                    outcome = runner(pair, old, new, work, quick)
                except (tools.ToolError, OSError) as e:
                    outcome = f"error: {e}"
            if label == BSDIFF:
                bsdiff_run = outcome
            values = (
                (air, on_air, "bytes"),
                (secs, round(fw.stage.seconds, 3), "s"),
                (rss, fw.stage.peak_rss, "bytes"),
            )
            if isinstance(outcome, str):
                for name, value, unit in values:
                    rows[name].append(
                        without_peer(name, value, unit, label, outcome, checked=name == air)
                    )
                continue
            peer_values = {
                air: outcome.size,
                secs: round(outcome.encode.seconds, 3),
                rss: outcome.encode.peak_rss,
            }
            for name, value, unit in values:
                note = outcome.note
                if name == air:
                    note += f"; target: fwdist <= best peer + {MARGIN_TARGET} B"
                else:
                    note = f"{label} encode vs fwdist stage --from (whole process)"
                rows[name].append(
                    Record(
                        name,
                        value,
                        unit,
                        peer=label,
                        peer_value=peer_values[name],
                        checked=name == air,
                        note=note,
                    )
                )
    return records + rows[air] + rows[secs] + rows[rss] + against_bsdiff(prefix, fw, bsdiff_run)


BSDIFF = "bsdiff"
"""The peer stage time is held against (:data:`device_peers.PEERS`' label for the C bsdiff)."""


def against_bsdiff(
    prefix: str, fw: bench_pairs.FwdistResult, bsdiff: device_peers.PeerPatch | str
) -> list[Record]:
    """fwdist's in-process stage seconds next to bsdiff's, and the two ratios (module docstring)."""
    secs = f"{prefix}/stage_seconds_in_process"
    ratios = (
        (f"{prefix}/stage_vs_bsdiff_seconds", "seconds", fw.stage_seconds),
        (f"{prefix}/stage_vs_bsdiff_rss", "peak RSS", fw.stage.peak_rss),
    )
    if isinstance(bsdiff, str):
        why = f"no bsdiff figure to divide by: {bsdiff}"
        return [without_peer(secs, round(fw.stage_seconds, 3), "s", BSDIFF, bsdiff)] + [
            failed(name, "x", why)
            if bsdiff.startswith("error: ")
            else Record(name, None, "x", skipped=why)
            for name, _, _ in ratios
        ]
    theirs = {"seconds": bsdiff.encode.seconds, "peak RSS": bsdiff.encode.peak_rss}
    out = [
        Record(
            secs,
            round(fw.stage_seconds, 3),
            "s",
            peer=BSDIFF,
            peer_value=round(bsdiff.encode.seconds, 3),
            note="stage --json seconds (the staging call, no start-up) vs the bsdiff CLI's wall",
        )
    ]
    for name, what, ours in ratios:
        ratio = ours / theirs[what] if theirs[what] > 0 else float("inf")
        out.append(
            Record(
                name,
                round(ratio, 2),
                "x",
                note=f"fwdist stage {what} / bsdiff {what} in this run; issue 10's target "
                f"is {TARGETS[what]}x; the stored max is a ceiling for a loaded machine",
            )
        )
    return out


TARGETS = {"seconds": 2.0, "peak RSS": 1.5}
"""Issue 10 item 4: stage time within 2x of bsdiff's, peak memory within 1.5x."""


def run(
    quick: bool,
    peer_tools: tools.Tools,
    cache: Path,
    progress: Callable[[str], None] = lambda s: None,
) -> list[Record]:
    apt = devices.Apt(cache / "devices" / "apt")
    stage_args = budget_args()
    records: list[Record] = []
    for pair in devices.pairs_for(quick):
        progress(f"device pair {pair.name}")
        records += run_pair(pair, peer_tools, cache, apt, quick, stage_args)
    return records
