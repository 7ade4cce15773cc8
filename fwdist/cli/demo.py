"""``fwdist demo``: the whole pipeline on embedded defaults, nothing to set up.

It makes a signing key, stages three releases of a generated sample firmware
(each with a delta from the one before), verifies the store, prints what a box on
the first release must receive for the second, and then lets an emulated lockbox
on the first release take the update the way it travels in the field: agents'
phones that walk away after ``--session-bytes`` bytes each, until the box has
every piece, builds the new image, installs it and confirms it.

Then the fleet (:mod:`fwdist.cli.demo_fleet`, skipped with ``--no-fleet``): a
fleet server on SQLite, ``--boxes`` boxes and two phones, the second release
rolled out in phases and the third, which fails on every third box, aborted by
its rollout; it prints each round and the dashboard's address.

Without ``--dir`` everything happens in a temporary directory that is deleted
at the end (it holds a private key). With ``--dir`` the demo works only in a
directory it may call its own: a new one, an empty one, or one an earlier demo
made (it leaves a marker file); it then replaces only the entries it writes.
A directory holding anything else is refused, because it is the user's.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fwdist import keys
from fwdist.app import App
from fwdist.cli import ExitCode, demo_fleet
from fwdist.cli.args import int_at_least, int_in
from fwdist.cli.output import emit_json
from fwdist.errors import FwdistError
from fwdist.lockbox import BoxConfig, IdleStep, Lockbox
from fwdist.manifest import Manifest, key_id
from fwdist.pump import pump_session
from fwdist.releases import load_manifest, phone_cache, plan, verify_store
from fwdist.sample import SampleFirmware
from fwdist.staging import StageOptions, stage
from fwdist.store import Store

PRODUCT = "lockbox-demo"
SAMPLE = SampleFirmware()  # versions only: the sizes come from --image-size
MARKER = ".fwdist-demo"
# Every entry the demo writes into its directory; nothing else is ever removed.
FLEET_ENTRIES = frozenset({"fleet", f"fw-{SAMPLE.version(2)}.bin"})
"""What only the fleet part writes (``--boxes 0`` writes none of it)."""
ENTRIES = frozenset(
    {MARKER, "release.key", "release.key.pub", "store"}
    | {f"fw-{SAMPLE.version(r)}.bin" for r in (0, 1)}
) | FLEET_ENTRIES
MIN_IMAGE, MAX_IMAGE = 4096, 4 << 20
# A session must carry the Hello and the whole signed manifest (about 340 bytes) to progress.
MIN_SESSION_BYTES = 512


def claim_workdir(path: Path) -> Path:
    """Make ``path`` the demo's own, or fail in one line without touching anything in it."""
    if path.exists() and not path.is_dir():
        raise FwdistError(f"--dir {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        found = {entry.name for entry in path.iterdir()}
    except OSError as e:
        raise FwdistError(f"--dir {path}: {e.strerror}") from None
    if found and MARKER not in found:
        raise FwdistError(
            f"--dir {path} is not empty and was not made by fwdist demo; "
            "give a new or empty directory"
        )
    if found - ENTRIES:
        raise FwdistError(
            f"--dir {path} holds files fwdist demo did not make "
            f"({', '.join(sorted(found - ENTRIES)[:3])}); give a new or empty directory"
        )
    try:
        for name in found:
            entry = path / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        (path / MARKER).write_text("made by fwdist demo, which may replace what it wrote here\n")
    except OSError as e:
        raise FwdistError(f"--dir {path}: {e.strerror}") from None
    return path


def box_config(release: Manifest, old_size: int) -> BoxConfig:
    """A box with room for ``release``: slots hold either image, staging its largest payload."""
    base = BoxConfig(product=PRODUCT, hardware=PRODUCT, ram_budget=4 << 20)
    ss = base.sector_size
    slot = -(-max(old_size, release.image_size) // ss) * ss
    payloads = (release.full, *release.deltas)
    staging = max(base.staging_sectors_for(ref.size, ref.pieces) for ref in payloads) * ss
    return dataclasses.replace(base, slot_size=slot, staging_size=staging)


def carry_update(
    store: Store,
    pubkey: Path,
    old: bytes,
    old_version: str,
    new_version: str,
    session_bytes: int,
    max_sessions: int = 10_000,
) -> dict[str, Any]:
    """An in-memory lockbox on ``old`` takes the newest release, one short session at a time."""
    public = keys.load_public(pubkey)
    cache = phone_cache(store, PRODUCT, new_version)
    cfg = box_config(cache.manifest, len(old))
    flash = cfg.make_flash()
    Lockbox.provision(flash, cfg, old, old_version)
    box = Lockbox(flash, cfg, {key_id(public): public})
    box.boot(0)
    sessions = sent = overhead = 0
    events: list[str] = []
    now = 0
    while sessions < max_sessions:
        sessions += 1
        now += 3600  # the next showing
        report = pump_session(box, App(cache), budget_bytes=session_bytes, now=now)
        sent += report.sent_bytes
        overhead += report.overhead_bytes
        while (outcome := box.idle(now)) is not None:
            events.append(f"session {sessions}: {outcome.value}")
            if outcome is not IdleStep.BUILT:
                break
        if box.status()["running_version"] == cache.manifest.version:
            break
    status = box.status()
    return {
        "sessions": sessions,
        "session_bytes": session_bytes,
        "sent_bytes": sent,
        "overhead_bytes": overhead,
        "events": events,
        "running_version": status["running_version"],
        "running_sha256": status["running_sha256"],
    }


def run_demo(workdir: Path, image_size: int, session_bytes: int, boxes: int = 0,
             fleet_session_bytes: int = 16_384,
             keep_serving: Callable[[str, str], None] | None = None) -> dict[str, Any]:
    """The pipeline, and with ``boxes`` the fleet loop (:func:`demo_fleet.run_fleet`)."""
    sample = SampleFirmware(size=image_size)
    key_path, pub_path = keys.generate(workdir / "release.key")
    key = keys.load_private(key_path)
    store = Store.open(workdir / "store", create=True)
    staged = []
    for release in (0, 1, 2) if boxes else (0, 1):
        image = workdir / f"fw-{sample.version(release)}.bin"
        image.write_bytes(sample.image(release))
        sources = (sample.version(release - 1),) if release else ()
        result = stage(
            store, image, key, StageOptions(PRODUCT, sample.version(release), sources=sources)
        )
        staged.append(result.manifest.version)
    report = verify_store(store, pub_path)
    p = plan(store, PRODUCT, staged[0], staged[1])
    full = plan(store, PRODUCT, "0.0.0", staged[1])
    box = carry_update(store, pub_path, sample.image(0), staged[0], staged[1], session_bytes)
    new_sha = hashlib.sha256(sample.image(1)).hexdigest()
    fleet = None
    if boxes:
        (workdir / "fleet").mkdir()
        newest = load_manifest(store, PRODUCT, staged[2])
        config = box_config(newest, max(len(sample.image(r)) for r in (0, 1, 2)))
        fleet = demo_fleet.run_fleet(
            workdir / "fleet", store, pub_path, PRODUCT, (staged[0], staged[1], staged[2]),
            (sample.image(0),), config, boxes=boxes,
            session_bytes=fleet_session_bytes, keep_serving=keep_serving)
    return {
        "fleet": fleet,
        "lockbox": box,
        "installed": box["running_version"] == staged[1] and box["running_sha256"] == new_sha,
        "workdir": str(workdir),
        "store": str(store.root),
        "pubkey": str(pub_path),
        "releases": staged,
        "verified": report.ok,
        "plan": p.as_json(),
        "full_air_bytes": full.air_bytes,
    }


def cmd_demo(args: argparse.Namespace) -> int:
    if args.dir:
        out = _run_in(claim_workdir(Path(args.dir)), args)
    else:
        with tempfile.TemporaryDirectory(prefix="fwdist-demo-") as tmp:
            out = _run_in(Path(tmp), args)
        out.update(workdir=None, store=None, pubkey=None)  # deleted with the private key
    fleet = out["fleet"]
    ok = out["verified"] and out["installed"] and (
        fleet is None or [r["state"] for r in fleet["rollouts"]] == ["completed", "aborted"])
    if args.json:
        emit_json(out)
        return ExitCode.OK if ok else ExitCode.ERROR
    p = out["plan"]
    where = out["store"] or "a temporary store (deleted at the end; --dir DIR keeps one)"
    print(f"staged {PRODUCT} {' and '.join(out['releases'])} into {where} "
          f"(verified: {out['verified']})")
    print(f"a box on {p['from']} must receive {p['air_bytes']} bytes to reach {p['to']}:")
    print(
        f"  manifest {p['manifest_bytes']} + piece table {p['table_bytes']} + "
        f"{p['encoder']} delta {p['payload_bytes']} in {p['pieces']} pieces"
    )
    print(
        f"  ({p['image_bytes'] / p['air_bytes']:.1f}x less than the {p['image_bytes']}-byte image; "
        f"a box on an unknown version takes the full payload: {out['full_air_bytes']} bytes)"
    )
    box = out["lockbox"]
    print(
        f"an emulated lockbox on {p['from']} took it in {box['sessions']} sessions of at most "
        f"{box['session_bytes']} bytes (ceil(air_bytes / session) = "
        f"{-(-p['air_bytes'] // box['session_bytes'])}; "
        f"protocol overhead {box['overhead_bytes']} bytes):"
    )
    for event in box["events"]:
        print(f"  {event}")
    print(
        f"  now running {box['running_version']}, sha256 {box['running_sha256'][:16]}... "
        f"({'the new image' if out['installed'] else 'NOT the new image'})"
    )
    if out["fleet"] is not None:
        print_fleet(out["fleet"])
    return ExitCode.OK if ok else ExitCode.ERROR


def _wait(dashboard: str, read_token: str) -> None:
    """``--keep-serving``: the fleet server stays up, with its dashboard, until Ctrl-C."""
    print(f"dashboard: {dashboard} (log in with the read token {read_token}); "
          "Ctrl-C stops the server", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)


def print_fleet(fleet: dict[str, Any]) -> None:
    print(f"a fleet server on SQLite ({fleet['server']}), {fleet['boxes']} boxes, two phones "
          "that sync with coverage and visit boxes offline:")
    for r in fleet["rollouts"]:
        print(f"  rollout {r['id']}:")
        for rd in r["rounds"]:
            versions = ", ".join(f"{n} on {v}" for v, n in rd["versions"].items())
            print(f"    round {rd['round']}: {rd['state']}, phase {rd['phase'] + 1} at "
                  f"{rd['share_bp'] / 100:g} %; boxes: {versions}")
        d = r["decision"] or {}
        print(f"    -> {r['state']}" + (f": {d['why']}" if d.get("why") else ""))
    versions = fleet["fleet"]["products"].get(PRODUCT, {}).get("versions", {})
    print(f"  the fleet as its reports tell it: {versions}; phones now offer "
          f"{', '.join(fleet['offered_after_abort']) or 'nothing'}")
    print(f"  dashboard: {fleet['dashboard']} (up while the demo ran; --keep-serving keeps it)")


def _run_in(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    try:
        return run_demo(workdir, args.image_size, args.session_bytes, args.boxes,
                        args.fleet_session_bytes, _wait if args.keep_serving else None)
    except OSError as e:
        raise FwdistError(f"cannot write in {workdir}: {e.strerror}") from None


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo", help="run the release pipeline end to end on a generated sample firmware"
    )
    p.set_defaults(handler=cmd_demo)
    p.add_argument(
        "--dir",
        metavar="DIR",
        help="keep everything in DIR: new, empty, or an earlier demo's (default: a temporary "
        "directory, deleted at the end)",
    )
    p.add_argument(
        "--image-size",
        type=int_in(MIN_IMAGE, MAX_IMAGE),
        default=256 * 1024,
        metavar="BYTES",
        help=f"size of the sample firmware, {MIN_IMAGE}..{MAX_IMAGE} (default 262144)",
    )
    p.add_argument(
        "--session-bytes",
        type=int_at_least(MIN_SESSION_BYTES),
        default=2000,
        metavar="BYTES",
        help="bytes an agent's phone gets across before walking away "
        f"(default 2000, at least {MIN_SESSION_BYTES}: the Hello and the manifest)",
    )
    p.add_argument(
        "--boxes",
        type=int_in(0, 200),
        default=24,
        metavar="N",
        help="boxes in the fleet part (a server, two phones, two rollouts); 0 skips it "
        "(default 24)",
    )
    p.add_argument(
        "--fleet-session-bytes",
        type=int_at_least(MIN_SESSION_BYTES),
        default=16_384,
        metavar="BYTES",
        help="bytes per showing in the fleet part (default 16384)",
    )
    p.add_argument("--keep-serving", action="store_true",
                   help="keep the fleet server and its dashboard up at the end, until Ctrl-C")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
