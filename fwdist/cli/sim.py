"""``fwdist sim``: how many accesses, and how many days, will this release take?

The only place fwdist reaches into the simulator (``sim/``). With no arguments
it runs the ``rmls-passive`` scenario on a built-in sample release (staged once
into ~/.cache/fwdist) and prints the strategy table.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

from fwdist.cli.args import int_at_least, positive_float
from fwdist.cli.output import check_output_dir, emit_json, show_progress
from fwdist.errors import FwdistError
from fwdist.manifest import Version

log = logging.getLogger(__name__)


def _parse_release(text: str) -> tuple[str, str]:
    product, sep, version = text.partition("@")
    if not sep or not product:
        raise FwdistError(f"--release must be NAME@X.Y.Z, got {text!r}")
    Version.parse(version)
    return product, version


def _progress(quiet: bool) -> Any:
    """A rich progress bar over boxes on a terminal, nothing otherwise."""
    if not show_progress(quiet):
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    )


def not_newer(product: str, target: str, running: dict[str, float]) -> str | None:
    """A warning when part of the fleet already runs ``target`` or something newer."""
    stale = sorted(v for v in running if Version.parse(v) >= Version.parse(target))
    if not stale:
        return None
    share = sum(running[v] for v in stale) / sum(running.values())
    return (
        f"{product}@{target} is not newer than what {share:.0%} of the fleet runs "
        f"({', '.join(stale)}): those boxes will not take it"
    )


def run_sim(args: argparse.Namespace) -> dict[str, Any]:
    # submodules, not the package's re-exports: see sim.scenario.SCENARIO_DIR
    from sim.release import load_release, sample_store_dir, stage_sample
    from sim.report import headline, text_table, write_report
    from sim.runner import simulate
    from sim.scenario import load as load_scenario
    from sim.store_prep import running_versions
    from sim.strategies import ALL

    if args.report:  # before minutes of simulation, not after them
        check_output_dir(Path(args.report), "--report")
    scenario = load_scenario(args.scenario or "rmls-passive")
    scenario = scenario.with_run(boxes=args.boxes, days=args.days, runs=args.runs, seed=args.seed)
    quiet = args.json

    def say(msg: str) -> None:
        if not quiet:
            log.info(msg)

    notes: list[str] = []
    if args.store:
        product, target = (
            _parse_release(args.release)
            if args.release
            else (scenario.release.product, scenario.release.target)
        )
        store_dir = Path(args.store)
        running, note = running_versions(store_dir, product, target, scenario.release.running)
        if note:
            notes.append(note)
        sample = False
    else:
        if args.release:
            raise FwdistError("--release needs --store (without it the built-in sample is used)")
        product, target = scenario.release.product, scenario.release.target
        size, seed = scenario.release.sample_image_bytes, scenario.release.sample_seed
        cache = sample_store_dir(size, seed)
        if not (cache / "store").exists():
            say(f"staging the built-in sample release into {cache} (once)...")
        store_dir = stage_sample(cache, product, size, seed) / "store"
        running = dict(scenario.release.running)
        sample = True
    if warning := not_newer(product, target, running):
        log.warning(warning)
        notes.append(warning)
    scenario = dataclasses.replace(
        scenario,
        release=dataclasses.replace(
            scenario.release, product=product, target=target, running=running
        ),
    )
    release = load_release(store_dir, product, target, tuple(running), sample=sample)

    names = tuple(args.strategies.split(",")) if args.strategies else ALL
    for name in names:
        if name not in ALL:
            raise FwdistError(f"unknown strategy {name!r}; known: {', '.join(ALL)}")

    bar = _progress(quiet)
    total = scenario.run.boxes * scenario.run.runs
    if bar is not None:
        with bar:
            task = bar.add_task(f"simulating {scenario.name}", total=total)
            result = simulate(
                scenario,
                release,
                names,
                workers=args.workers,
                fine=args.fine,
                progress=lambda n: bar.advance(task, n),
            )
    else:
        result = simulate(scenario, release, names, workers=args.workers, fine=args.fine)
    result.notes += notes
    out = result.as_json()
    if args.report:
        try:
            written = write_report(result, Path(args.report))
        except OSError as e:
            raise FwdistError(f"cannot write the report into {args.report}: {e.strerror}") from None
        say(f"report written: {', '.join(str(p) for p in written)}")
    if not quiet:
        print("\n".join(headline(result)))
        print()
        print(text_table(result))
        for n in result.notes:
            print(f"note: {n}")
    return out


def cmd_sim(args: argparse.Namespace) -> int:
    out = run_sim(args)
    if args.json:
        emit_json(out)
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sim",
        help="simulate a rollout: accesses and days until the fleet is updated",
        description="Simulate a release's rollout over a fleet in virtual time, comparing "
        "strategies on the same random draws. Built-in scenarios: rmls-passive "
        "(default), owner-manual, partial-caches, fleet-rollout.",
    )
    p.set_defaults(handler=cmd_sim)
    p.add_argument("scenario", nargs="?", help="scenario TOML file or built-in name")
    p.add_argument("--runs", type=int_at_least(1), metavar="N", help="Monte Carlo runs (pooled)")
    p.add_argument("--seed", type=int, help="seed of every random draw")
    p.add_argument("--boxes", type=int_at_least(1), metavar="N", help="boxes per run")
    p.add_argument("--days", type=positive_float, metavar="DAYS", help="virtual days to simulate")
    p.add_argument("--release", metavar="NAME@X.Y.Z", help="release to roll out (with --store)")
    p.add_argument("--store", metavar="DIR", help="store holding the release and the running ones")
    p.add_argument("--report", metavar="DIR", help="write report.md, result.json and PNG plots")
    p.add_argument("--json", action="store_true", help="print the result as JSON (quiet otherwise)")
    p.add_argument(
        "--workers",
        type=int_at_least(1),
        metavar="N",
        help="worker processes (default: one per core)",
    )
    p.add_argument(
        "--fine",
        action="store_true",
        help="run every session frame by frame on the trio link (slow; the same numbers)",
    )
    p.add_argument(
        "--strategies",
        help="comma-separated subset of: "
        + ",".join(
            ("restart", "offset-resume", "object-4k", "fwdist-full", "fwdist-delta", "oracle")
        ),
    )
