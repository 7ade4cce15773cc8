"""``fwdist demo``: the whole release side on embedded defaults, nothing to set up.

It makes a signing key, stages two releases of a generated sample firmware (the
second with a delta from the first), verifies the store and prints what a box
on the old release must receive to reach the new one.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fwdist import keys
from fwdist.cli.output import emit_json
from fwdist.releases import plan, verify_store
from fwdist.sample import SampleFirmware
from fwdist.staging import StageOptions, stage
from fwdist.store import Store

PRODUCT = "lockbox-demo"


def run_demo(workdir: Path, image_size: int) -> dict[str, Any]:
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
    return {
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
    out = run_demo(workdir, args.image_size)
    if args.json:
        emit_json(out)
        return 0 if out["verified"] else 1
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
    return 0 if out["verified"] else 1


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo", help="run the release pipeline end to end on a generated sample firmware"
    )
    p.set_defaults(handler=cmd_demo)
    p.add_argument("--dir", help="work directory (replaced); default: a new temporary directory")
    p.add_argument("--image-size", type=int, default=256 * 1024)
    p.add_argument("--json", action="store_true")
