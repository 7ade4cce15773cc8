"""Release-side commands: keygen, stage, inspect, verify, plan, gc."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from fwdist import keys, signoff
from fwdist.chunker import ChunkerParams
from fwdist.cli.args import subcommand
from fwdist.cli.key import add_key_options, add_secret_options, key_options, signer_from_args
from fwdist.cli.output import emit_json, human_bytes, iso_time, progress_bar
from fwdist.errors import FwdistError, StagingError, StoreError
from fwdist.manifest import Manifest, PayloadRef, Version
from fwdist.releases import gc, load_manifest, plan, verify_store
from fwdist.staging import StageOptions, check_image, check_options, stage
from fwdist.store import Store


def warn(message: str) -> None:
    print(f"fwdist: warning: {message}", file=sys.stderr)


def parse_release(text: str) -> tuple[str, str]:
    """NAME@X.Y.Z -> (NAME, X.Y.Z)."""
    name, sep, version = text.rpartition("@")
    if not sep or not name:
        raise FwdistError(f"release must look like NAME@X.Y.Z, got {text!r}")
    return name, str(Version.parse(version))


def payload_json(ref: PayloadRef) -> dict[str, Any]:
    return {
        "encoder": ref.encoder,
        "size": ref.size,
        "pieces": ref.pieces,
        "table_sha256": ref.table_sha256.hex(),
        "decode_ram": ref.decode_ram,
        "from": ref.source_version,
        "from_sha256": ref.source_sha256.hex() if ref.source_sha256 else None,
    }


def manifest_json(m: Manifest, manifest_bytes: int) -> dict[str, Any]:
    return {
        "product": m.product,
        "hardware": m.hardware,
        "version": m.version,
        "security_counter": m.security_counter,
        "image_size": m.image_size,
        "image_sha256": m.image_sha256.hex(),
        "required": m.required,
        "min_battery": m.min_battery,
        "min_app": m.min_app,
        "created": m.created,
        "created_utc": iso_time(m.created),
        "expires": m.expires,
        "expires_utc": iso_time(m.expires),
        "manifest_bytes": manifest_bytes,
        "full": payload_json(m.full),
        "deltas": [payload_json(d) for d in m.deltas],
    }


def cmd_keygen(args: argparse.Namespace) -> int:
    passphrase = None
    if args.encrypt:
        passphrase = key_options(args).passphrase.read(args.keyfile, confirm=True).encode()
    private, public = keys.generate(Path(args.keyfile), passphrase)
    if args.json:
        emit_json({"private": str(private), "public": str(public), "encrypted": args.encrypt})
    else:
        how = "encrypted, 0600" if args.encrypt else "private, 0600"
        print(f"wrote {private} ({how}) and {public}")
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    image = Path(args.image)
    also_trust = [keys.load_public(Path(p)) for p in args.trust or ()]
    try:
        chunker = ChunkerParams(args.min_piece, args.avg_piece, args.max_piece)
    except ValueError as e:
        raise StagingError(str(e)) from None
    opts = StageOptions(
        product=args.product,
        version=args.version,
        hardware=args.hardware,
        security_counter=args.security_counter,
        required=args.required,
        min_battery=args.min_battery,
        min_app=args.min_app,
        expires_days=args.expires,
        sources=tuple(args.sources or ()),
        level=args.level,
        chunker=chunker,
        max_decoder_ram=args.max_decoder_ram,
    )
    check_options(opts)  # before a store is made: bad input writes nothing
    size = check_image(image)
    if not args.init_store and not Path(args.store).exists():
        raise StoreError(f"no store at {args.store} (stage --init-store creates one)")
    if (args.key is None) == (not args.unsigned):
        raise StagingError("stage takes --key SPEC, or --unsigned for an offline signing flow")
    # after the cheap checks, before the store is made
    key = signer_from_args(args) if args.key is not None else None
    store = Store.open(args.store, create=args.init_store)
    with progress_bar(f"staging {image.name}", size, args.json) as advance:
        result = stage(store, image, key, opts, progress=advance, also_trust=also_trust)
    for ignored in result.ignored:
        warn(f"ignoring {ignored}; only releases the staging key or a --trust key signed count")
    for skipped in result.skipped:
        warn(skipped)
    m = result.manifest
    if args.json:
        out = manifest_json(m, result.manifest_bytes)
        out.update(
            new_objects=result.new_objects,
            new_object_bytes=result.new_object_bytes,
            seconds=round(result.seconds, 3),
        )
        emit_json(out)
    else:
        print(
            f"staged {m.product}@{m.version}: {human_bytes(m.image_size)} image, "
            f"{m.full.pieces} pieces, {human_bytes(m.full.size)} compressed "
            f"({result.new_objects} new objects) in {result.seconds:.1f}s"
        )
        for d in m.deltas:
            print(
                f"  delta from {d.source_version}: {human_bytes(d.size)} "
                f"({d.encoder}, {d.pieces} pieces)"
            )
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    store = Store.open(args.store)
    product, version = parse_release(args.release)
    m = load_manifest(store, product, version)
    size = len(store.get_manifest(product, version))
    if args.json:
        emit_json(manifest_json(m, size))
        return 0
    print(f"{m.product}@{m.version}  hardware {m.hardware}  security counter {m.security_counter}")
    print(f"  image     {m.image_size} bytes  sha256 {m.image_sha256.hex()}")
    print(
        f"  policy    {'required' if m.required else 'optional'}, min battery {m.min_battery}%, "
        f"min app {m.min_app}, expires {iso_time(m.expires) or 'never'}"
    )
    print(f"  created   {iso_time(m.created)}")
    print(f"  manifest  {size} bytes")
    print(f"  full      {m.full.size} bytes in {m.full.pieces} pieces ({m.full.encoder}, "
          f"decoder RAM {m.full.decode_ram})")
    for d in m.deltas:
        print(
            f"  delta     from {d.source_version}: {d.size} bytes in {d.pieces} pieces "
            f"({d.encoder}, decoder RAM {d.decode_ram})"
        )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    store = Store.open(args.store)
    only = parse_release(args.release) if args.release else None
    if args.root is not None:
        return verify_root(args, store, only)
    report = verify_store(store, [Path(p) for p in args.pubkey], only)
    if args.json:
        emit_json(
            {
                "ok": report.ok,
                "releases": report.releases,
                "objects": report.objects,
                "problems": report.problems,
            }
        )
    else:
        for problem in report.problems:
            print(f"fwdist: verify: {problem}")
        if report.ok:
            print(f"ok: {report.releases} releases, {report.objects} objects")
    return 0 if report.ok else 1


def verify_root(args: argparse.Namespace, store: Store, only: tuple[str, str] | None) -> int:
    """``verify --root``: the chain from the user's root, the timestamp, each release's
    threshold (formats 1 and 2), images and deltas."""
    try:
        anchor = Path(args.root).read_bytes()
    except OSError as e:
        raise FwdistError(f"cannot read root {args.root}: {e.strerror}") from None
    tr = signoff.verify_under_root(store, anchor, only, now=int(time.time()))
    r = tr.report
    if args.json:
        emit_json({"ok": tr.ok, "releases": r.releases, "objects": r.objects,
                   "problems": r.problems, "root_version": tr.root_version,
                   "timestamp_version": tr.timestamp_version, "revoked": tr.revoked,
                   "drafts": tr.drafts})
    else:
        for problem in r.problems:
            print(f"fwdist: verify: {problem}")
        if tr.ok:
            ts = f"timestamp {tr.timestamp_version}" if tr.timestamp_version else "no timestamp"
            print(f"ok: root {tr.root_version}, {ts}, {r.releases} releases, {r.objects} objects"
                  + (f"; revoked: {', '.join(tr.revoked)}" if tr.revoked else ""))
    return 0 if tr.ok else 1


def cmd_plan(args: argparse.Namespace) -> int:
    store = Store.open(args.store)
    p = plan(store, args.product, str(Version.parse(args.source)), str(Version.parse(args.target)))
    if args.json:
        emit_json(p.as_json())
    else:
        print(
            f"{p.product} {p.source} -> {p.target}: {p.air_bytes} bytes over the air "
            f"({p.encoder}: manifest {p.manifest_bytes} + table {p.table_bytes} + "
            f"payload {p.payload_bytes} in {p.pieces} pieces) for a {p.image_bytes}-byte image; "
            f"its decoder needs {p.decoder_ram} bytes of RAM; "
            f"format 2 manifest and table: {p.format2_overhead_bytes} bytes "
            f"(now {p.overhead_bytes})"
        )
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    r = gc(Store.open(args.store))
    if args.json:
        emit_json(
            {
                "removed_objects": r.removed_objects,
                "removed_bytes": r.removed_bytes,
                "removed_tmp": r.removed_tmp,
                "kept_objects": r.kept_objects,
                "strays": list(r.strays),
                "skipped": list(r.skipped),
            }
        )
    else:
        for stray in r.strays:
            warn(f"{stray}: not part of an fwdist store; left alone")
        for skipped in r.skipped:
            print(f"fwdist: gc: cannot read {skipped}", file=sys.stderr)
        if r.skipped:
            print(
                "fwdist: gc: removed no objects: an unreadable release may need any of them "
                "(repair or remove it, then run gc again)",
                file=sys.stderr,
            )
        print(
            f"removed {r.removed_objects} objects ({r.removed_bytes} bytes) and "
            f"{r.removed_tmp} temporary files; kept {r.kept_objects}"
        )
    return 1 if r.skipped else 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subcommand(sub, "keygen", cmd_keygen,
                   "make an Ed25519 signing keypair: KEYFILE and KEYFILE.pub")
    p.add_argument("keyfile")
    p.add_argument("--encrypt", action="store_true",
                   help="encrypt KEYFILE under a passphrase (PKCS#8): from --passphrase-env, "
                   "--passphrase-file, else asked twice on the terminal")
    add_secret_options(p)

    p = subcommand(sub, "stage", cmd_stage, "stage an image as a signed release in a store")
    p.add_argument("image")
    p.add_argument("--store", required=True)
    p.add_argument("--product", required=True)
    p.add_argument("--version", required=True, help="X.Y.Z, newer than every staged release")
    add_key_options(p, required=False)
    p.add_argument("--unsigned", action="store_true",
                   help="stage without signing (no --key): release signers add their "
                   "signatures with fwdist sign, and the release counts once they reach "
                   "its role's threshold")
    p.add_argument(
        "--init-store", action="store_true", help="create the store if there is none yet"
    )
    p.add_argument(
        "--trust",
        action="append",
        metavar="PUBKEY",
        help="also count staged releases signed by this public key (after a key rotation; "
        "repeatable): only releases the staging key or these keys signed set the version, "
        "the security counter's floor and the delta sources",
    )
    p.add_argument("--hardware", help="hardware id the image runs on (default: the product); "
                   "when the store has a profile for it (fwdist hardware set), every payload is "
                   "made for that profile")
    p.add_argument("--max-decoder-ram", type=int, metavar="BYTES",
                   help="for this stage only: no payload whose decoder needs more RAM (overrides "
                   "the hardware profile's budget)")
    p.add_argument(
        "--security-counter",
        type=int,
        help="anti-rollback counter, 0..2^32-1 (default: the previous release's)",
    )
    p.add_argument("--required", action="store_true", help="mark the update as required")
    p.add_argument("--min-battery", type=int, default=0, metavar="PCT")
    p.add_argument("--min-app", default="0.0.0", metavar="X.Y.Z")
    p.add_argument(
        "--expires",
        type=float,
        metavar="DAYS",
        help="manifest expires this many days after staging (more than 0, at most 3650)",
    )
    p.add_argument(
        "--from",
        dest="sources",
        action="append",
        metavar="X.Y.Z",
        help="also make a delta for boxes on this staged version (repeatable)",
    )
    p.add_argument(
        "--level", type=int, default=19, help="zstd level for pieces, 1..22 (default 19)"
    )
    p.add_argument("--min-piece", type=int, default=ChunkerParams().min_size)
    p.add_argument("--avg-piece", type=int, default=ChunkerParams().avg_size)
    p.add_argument("--max-piece", type=int, default=ChunkerParams().max_size)

    p = subcommand(sub, "inspect", cmd_inspect, "show a staged release's manifest")
    p.add_argument("--store", required=True)
    p.add_argument("release", metavar="NAME@X.Y.Z")

    p = subcommand(sub, "verify", cmd_verify,
                   "re-hash every object and check every release end to end")
    p.add_argument("--store", required=True)
    trusted = p.add_mutually_exclusive_group(required=True)  # what to trust: a usage matter
    trusted.add_argument(
        "--pubkey",
        action="append",
        help="the public key releases must be signed by (repeatable); keys recorded in the "
        "store are never trusted, since anyone who can write the store can add one",
    )
    trusted.add_argument(
        "--root",
        metavar="FILE",
        help="instead of --pubkey: a root you trust; the store's root chain is followed from "
        "it, its timestamp checked, and each release must carry its role's threshold",
    )
    p.add_argument("release", nargs="?", metavar="NAME@X.Y.Z")

    p = subcommand(sub, "plan", cmd_plan, "what a box on one version must receive to reach another")
    p.add_argument("--store", required=True)
    p.add_argument("--product", required=True)
    p.add_argument("--from", dest="source", required=True, metavar="X.Y.Z")
    p.add_argument("--to", dest="target", required=True, metavar="X.Y.Z")

    p = subcommand(
        sub,
        "gc",
        cmd_gc,
        "remove objects no release references and leftovers of killed writes (never what "
        "fwdist did not write); while a release cannot be read it removes no objects and exits 1",
    )
    p.add_argument("--store", required=True)
