"""``fwdist demo``: the whole pipeline on embedded defaults, nothing to set up.

It makes a signing key, stages two releases of a generated sample firmware (the
second with a delta from the first), verifies the store, prints what a box on
the old release must receive, and then lets an emulated lockbox on the old
release take the update the way it travels in the field: agents' phones that
walk away after ``--session-bytes`` bytes each, until the box has every piece,
builds the new image, installs it and confirms it.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fwdist import keys
from fwdist.app import App, PhoneCache
from fwdist.cli.output import emit_json
from fwdist.lockbox import BoxConfig, Lockbox
from fwdist.manifest import key_id
from fwdist.pump import pump_session
from fwdist.releases import plan, verify_store
from fwdist.sample import SampleFirmware
from fwdist.staging import StageOptions, stage
from fwdist.store import Store

PRODUCT = "lockbox-demo"


def carry_update(
    store: Store,
    pubkey: Path,
    old: bytes,
    old_version: str,
    session_bytes: int,
    max_sessions: int = 10_000,
) -> dict[str, Any]:
    """An in-memory lockbox on ``old`` takes the newest release, one short session at a time."""
    public = keys.load_public(pubkey)
    slot = -(-max(len(old), 2 * session_bytes) // 4096) * 4096 * 2
    cfg = BoxConfig(
        product=PRODUCT, hardware=PRODUCT, slot_size=slot, staging_size=slot, ram_budget=4 << 20
    )
    flash = cfg.make_flash()
    Lockbox.provision(flash, cfg, old, old_version)
    box = Lockbox(flash, cfg, {key_id(public): public})
    box.boot(0)
    cache = PhoneCache.from_store(store, PRODUCT)
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
            events.append(f"session {sessions}: {outcome}")
            if outcome in ("installed", "reverted", "failed", "wait_battery"):
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


def run_demo(workdir: Path, image_size: int, session_bytes: int) -> dict[str, Any]:
    sample = SampleFirmware(size=image_size)
    key_path, pub_path = keys.generate(workdir / "release.key")
    key = keys.load_private(key_path)
    store = Store.open(workdir / "store", create=True)
    staged = []
    for release in (0, 1):
        image = workdir / f"firmware-{sample.version(release)}.bin"
        image.write_bytes(sample.image(release))
        sources = (sample.version(release - 1),) if release else ()
        result = stage(
            store, image, key, StageOptions(PRODUCT, sample.version(release), sources=sources)
        )
        staged.append(result.manifest.version)
    report = verify_store(store, pub_path)
    p = plan(store, PRODUCT, staged[0], staged[1])
    full = plan(store, PRODUCT, "0.0.0", staged[1])
    box = carry_update(store, pub_path, sample.image(0), staged[0], session_bytes)
    new_sha = hashlib.sha256(sample.image(1)).hexdigest()
    return {
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
        workdir = Path(args.dir)
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="fwdist-demo-"))
    out = run_demo(workdir, args.image_size, args.session_bytes)
    ok = out["verified"] and out["installed"]
    if args.json:
        emit_json(out)
        return 0 if ok else 1
    p = out["plan"]
    print(
        f"staged {PRODUCT} {' and '.join(out['releases'])} into {out['store']} "
        f"(verified: {out['verified']})"
    )
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
    return 0 if ok else 1


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo", help="run the release pipeline end to end on a generated sample firmware"
    )
    p.set_defaults(handler=cmd_demo)
    p.add_argument("--dir", help="work directory (replaced); default: a new temporary directory")
    p.add_argument("--image-size", type=int, default=256 * 1024)
    p.add_argument(
        "--session-bytes",
        type=int,
        default=2000,
        help="bytes an agent's phone gets across before walking away (default 2000)",
    )
    p.add_argument("--json", action="store_true")
