"""``python -m benchmarks [--quick] [--json PATH] [--markdown PATH]``: run, report, check limits.

Exit status: 0 when every limit holds, 1 when a limit is broken or a figure
could not be measured because something failed, 2 on a usage error. The
markdown table always goes to stdout (the CI log); progress goes to stderr.

``--update-limits`` lowers stored limits (and records new ones); it never
raises one. ``--update-limits --allow-worse-limits`` raises them too and
prints the ``Benchmark-limits-raised:`` line the commit message must carry.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks import (
    bench_chunking,
    bench_devices,
    bench_fleet,
    bench_lockbox,
    bench_pairs,
    bench_release,
    bench_staging,
    device_peers,
    tools,
)
from benchmarks.inputs import cache_dir
from benchmarks.limits import LIMITS_FILE, Limits, Move, check, updated, worse_trailer
from benchmarks.record import Machine, Record, failed, skipped
from benchmarks.report import document, markdown

SECTIONS = ("chunking", "staging", "pairs", "devices", "release", "lockbox", "sim", "fleet")
SIM_MODULE = "benchmarks.bench_sim"
SIM_FIGURES = (
    ("sim/accesses_per_second", "accesses/s"),
    ("sim/rmls-passive/accesses_p50", "accesses"),
)


def log(message: str) -> None:
    print(f"benchmarks: {message}", file=sys.stderr, flush=True)


def run_sim(quick: bool) -> list[Record]:
    """The simulator's own figures, from ``benchmarks/bench_sim.py`` when it exists.

    Its contract: ``run(quick: bool) -> list[dict]``, each dict with the fields
    of :class:`~benchmarks.record.Record` (name, value, unit, and optionally peer,
    peer_value, better, checked, skipped, error, note).
    """
    if importlib.util.find_spec(SIM_MODULE) is None:
        reason = "simulator benchmark not available: benchmarks/bench_sim.py not in this tree yet"
        return [skipped(name, unit, reason) for name, unit in SIM_FIGURES]
    module = importlib.import_module(SIM_MODULE)
    return [Record.from_dict(d) for d in module.run(quick)]


def peers_needed(sections: Sequence[str]) -> list[str]:
    needed: list[str] = []
    if "staging" in sections:
        needed += bench_staging.PEERS
    if "pairs" in sections:
        needed += bench_pairs.NEEDED
    if "devices" in sections:
        needed += device_peers.NEEDED
    if "lockbox" in sections:
        needed += bench_lockbox.PEERS
    return sorted(set(needed))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="fwdist next to its peers, same run, same inputs: print a markdown table, "
        "optionally write JSON, and check the stored limits (exit 1 if one is broken).",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="the CI run (< 5 min on 2 cores): small image, quick pairs only",
    )
    p.add_argument("--json", metavar="PATH", help="write every record as JSON")
    p.add_argument("--markdown", metavar="PATH", help="also write the markdown table here")
    p.add_argument(
        "--only",
        metavar="SECTION",
        action="append",
        choices=SECTIONS,
        help=f"run only these sections (repeatable): {', '.join(SECTIONS)}",
    )
    p.add_argument(
        "--cache",
        metavar="DIR",
        type=Path,
        help="input cache (default $FWDIST_BENCH_CACHE or .cache/benchmarks)",
    )
    p.add_argument(
        "--no-install",
        action="store_true",
        help="never apt-get missing peer tools; report them as skipped",
    )
    p.add_argument(
        "--limits",
        metavar="PATH",
        type=Path,
        default=LIMITS_FILE,
        help="stored limits (default benchmarks/limits.json)",
    )
    p.add_argument(
        "--update-limits",
        action="store_true",
        help="store this run's checked figures as the new limits where they are lower "
        "(or new), then check; a figure above its limit is refused and fails the check",
    )
    p.add_argument(
        "--allow-worse-limits",
        action="store_true",
        help="with --update-limits: raise limits too, and print the line the commit "
        "message must carry",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.allow_worse_limits and not args.update_limits:
        parser.error("--allow-worse-limits only makes sense with --update-limits")
    sections = args.only or list(SECTIONS)
    cache = args.cache or cache_dir()
    mode = "quick" if args.quick else "full"
    try:
        limits = Limits.load(args.limits)
    except ValueError as e:
        print(f"benchmarks: error: {e}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    machine = Machine().as_dict()
    log(f"{mode} run of {', '.join(sections)}; inputs cached in {cache}")

    peer_tools = tools.ensure(peers_needed(sections), install=not args.no_install)
    for line in peer_tools.log:
        log(line)
    for reason in peer_tools.missing.values():
        log(f"peer skipped: {reason}")
    machine["peers"] = {c: tools.version(c) for c in sorted(peer_tools.found)}

    runners: dict[str, Callable[[], list[Record]]] = {
        "chunking": lambda: bench_chunking.run(args.quick),
        "staging": lambda: bench_staging.run(args.quick, peer_tools, cache),
        "pairs": lambda: bench_pairs.run(args.quick, peer_tools, cache, progress=log),
        "devices": lambda: bench_devices.run(args.quick, peer_tools, cache, progress=log),
        "release": bench_release.run,
        "lockbox": lambda: bench_lockbox.run(args.quick, peer_tools, cache),
        "sim": lambda: run_sim(args.quick),
        "fleet": lambda: bench_fleet.run(args.quick),
    }
    records: list[Record] = []
    for section in SECTIONS:
        if section not in sections:
            continue
        log(f"running {section}")
        t = time.perf_counter()
        try:
            records += runners[section]()
        except Exception as e:  # a broken section is reported as a failed figure, not a crash
            traceback.print_exc(file=sys.stderr)
            records.append(failed(f"{section}/run", "-", f"{type(e).__name__}: {e}"))
        log(f"{section} done in {time.perf_counter() - t:.1f} s")

    if args.update_limits:
        update = updated(records, limits, allow_worse=args.allow_worse_limits)
        limits = update.limits
        limits.save(args.limits)
        log(f"stored limits updated in {args.limits}")
        for change in update.moved(Move.WORSE, stored=False):
            log(
                f"refused to raise a limit, {change.describe()}; "
                "pass --allow-worse-limits to make it worse on purpose"
            )
        raised = update.moved(Move.WORSE, stored=True)
        if raised:
            log("limits raised on purpose; put this line in the commit message:")
            print(worse_trailer(raised), file=sys.stderr, flush=True)
    result = check(records, limits)
    seconds = time.perf_counter() - started
    table = markdown(records, machine, mode, result, seconds)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        import json

        Path(args.json).write_text(
            json.dumps(document(records, machine, mode, result, seconds), indent=2) + "\n"
        )
    for failure in result.failures:
        print(f"benchmarks: FAIL: {failure}", file=sys.stderr)
    return 0 if result.ok else 1
