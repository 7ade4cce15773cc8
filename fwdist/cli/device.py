"""Device-side commands: an emulated lockbox in a real process, and a phone that pushes to it.

``fwdist lockbox init|serve|status`` keep a box in a state directory (its format,
locking and serve loop are :mod:`fwdist.emulator`'s); ``fwdist app push`` is one
session of a phone: connect, talk, walk away when the release is delivered or
when ``--max-bytes`` / ``--max-seconds`` run out. This module parses arguments
and prints, nothing more.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import trio

from fwdist import hardware, trio_link
from fwdist.app import App, PhoneCache
from fwdist.cli.args import subcommand
from fwdist.cli.output import emit_json, progress_bar
from fwdist.emulator import (
    DEFAULT_ACK_EVERY,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_RAM,
    DeviceError,
    init_state,
    load_status,
    locked,
    read_config,
    registration,
    serve,
)
from fwdist.errors import RolloutError, TrustError
from fwdist.hardware import Profile
from fwdist.manifest import Version
from fwdist.outbox import Outbox
from fwdist.releases import load_trusted, phone_cache
from fwdist.report import Report
from fwdist.rollout import Answer, BoxView, SyncPolicy
from fwdist.store import Store


def _log(event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(event, sort_keys=True), flush=True)
    else:
        print("  ".join(f"{k}={v}" for k, v in event.items()), flush=True)


class RolloutRule:
    """``app push --cache``'s offer rule: the rollout policy of the cache's last sync, asked
    once the box has said who it is (:class:`fwdist.app.App`'s ``decide``), at the phone's
    clock (the phone enforces the windows too; the box enforces its signed ones)."""

    def __init__(self, policy: SyncPolicy, product: str, version: str) -> None:
        self.policy, self.product, self.version = policy, product, version
        self.answer: Answer | None = None

    def __call__(self, box: Report | None) -> bool:
        view = None if box is None else BoxView(
            box.box_id, targets_release=box.target is not None
            and box.target.version == self.version)
        self.answer = self.policy.answer(self.product, self.version, view, int(time.time()))
        return self.answer is Answer.OFFER


def cache_policy(cache: Path) -> SyncPolicy | None:
    """The policy ``fwdist app sync`` kept in the cache (None: a cache never synced)."""
    path = cache / SyncPolicy.FILE
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise DeviceError(f"cannot read {path}: {e}") from None
    try:
        return SyncPolicy.from_sync(doc)
    except RolloutError as e:
        raise DeviceError(f"{path}: {e}") from None


async def push(cache: PhoneCache, host: str, port: int, *, max_bytes: int | None,
               max_seconds: float | None, idle_seconds: float, rate: float | None,
               quiet: bool, rule: RolloutRule | None = None) -> dict[str, Any]:
    started = trio.current_time()
    with progress_bar(f"pushing {cache.manifest.product} {cache.manifest.version}", None,
                      quiet) as advance:
        report = await trio_link.push(App(cache, decide=rule), host, port, max_bytes=max_bytes,
                                      max_seconds=max_seconds, idle_seconds=idle_seconds,
                                      rate=rate, on_sent=advance)
    out = report.as_json()
    out["version"] = cache.manifest.version
    out["rollout"] = None if rule is None or rule.answer is None else rule.answer.value
    out["seconds"] = round(trio.current_time() - started, 3)
    return out


def _hostport(text: str) -> tuple[str, int]:
    try:
        return trio_link.parse_hostport(text)
    except ValueError as e:
        raise DeviceError(str(e)) from None


def _positive(kind: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise DeviceError(f"{kind} must be positive, got {value}")


def _profile(args: argparse.Namespace) -> tuple[str | None, Profile | None]:
    """(hardware id, profile) from ``--hardware`` (an id, or a profile file) and ``--store``."""
    name = args.hardware
    if args.store is not None:
        if name is None:
            raise DeviceError("--store gives the box a hardware profile: name it with --hardware")
        return None, hardware.require(Store.open(args.store), name)
    if name is not None and name.endswith(".json"):
        path = Path(name)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DeviceError(f"cannot read hardware profile {path}: {e.strerror}") from None
        return None, Profile.parse(data, str(path))
    return name, None


def cmd_init(args: argparse.Namespace) -> int:
    hw, profile = _profile(args)
    status = init_state(Path(args.state), args.product,
                        None if args.pubkey is None else Path(args.pubkey), Path(args.image),
                        args.version, root=None if args.root is None else Path(args.root),
                        counter=args.security_counter, hardware=hw,
                        slot_size=args.slot_size, ram=args.ram, ack_every=args.ack_every,
                        profile=profile, box_id=args.id)
    if args.json:
        emit_json(status)
    else:
        print(f"provisioned {status['product']} {status['running_version']} in {args.state} "
              f"as box {status['box_id']} (sha256 {status['running_sha256'][:16]}...)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    state = Path(args.state)
    host, port = _hostport(args.listen)
    if not 0 <= args.battery <= 100:
        raise DeviceError(f"--battery must be 0..100, got {args.battery}")
    _positive("--session-timeout", args.session_timeout)
    _positive("--idle-timeout", args.idle_timeout)
    read_config(state)
    with locked(state):
        try:
            return trio.run(lambda: serve(state, host, port, battery=args.battery,
                                          session_timeout=args.session_timeout,
                                          max_sessions=args.max_sessions,
                                          idle_timeout=args.idle_timeout,
                                          on_event=partial(_log, as_json=args.json),
                                          has_clock=not args.no_clock))
        except ConnectionError as e:
            raise DeviceError(str(e)) from None


def cmd_status(args: argparse.Namespace) -> int:
    status = load_status(Path(args.state))
    if args.json:
        emit_json(status)
    else:
        target = status["target_version"]
        line = f"{status['product']} runs {status['running_version']} ({status['state']})"
        if target:
            line += (f"; receiving {target}: {status['received_bytes']}/{status['needed_bytes']} "
                     f"bytes, {status['pieces_done']}/{status['pieces_total']} pieces")
        print(line)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    host, port = _hostport(args.to)
    if args.max_bytes is not None and args.max_bytes < 0:
        raise DeviceError(f"--max-bytes must be 0 or more, got {args.max_bytes}")
    _positive("--max-seconds", args.max_seconds)
    _positive("--idle-seconds", args.idle_seconds)
    _positive("--rate", args.rate)
    if args.store is None and args.cache is None:
        raise DeviceError("give the releases with --store DIR or a phone's --cache DIR")
    version = str(Version.parse(args.version)) if args.version else None
    # a phone's cache (`fwdist app sync`) is a store of the releases it fetched: no network
    store = Store.open(args.store or args.cache)
    if args.root is not None:  # the boxes' trust anchor: thresholds, the chain, the timestamp
        from fwdist import signoff  # (imported when used, as the server's parts)

        try:
            held = signoff.carried(store, Path(args.root).read_bytes(), args.product)
        except OSError as e:
            raise DeviceError(f"cannot read --root {args.root}: {e.strerror}") from None
        except TrustError as e:
            raise DeviceError(f"--root {args.root}: {e}") from None
        cache = phone_cache(store, args.product, version, released=held.released,
                            partial=args.store is None)
        cache = replace(cache, roots=held.links, timestamp=held.timestamp)
    else:
        trusted = load_trusted([Path(k) for k in args.pubkey]).values()
        cache = phone_cache(store, args.product, version, trusted, partial=args.store is None)
    policy = None if args.store is not None else cache_policy(Path(args.cache))
    m = cache.manifest
    rule = None if policy is None else RolloutRule(policy, m.product, m.version)
    try:
        out = trio.run(lambda: push(cache, host, port, max_bytes=args.max_bytes,
                                    max_seconds=args.max_seconds,
                                    idle_seconds=args.idle_seconds, rate=args.rate,
                                    quiet=args.json, rule=rule))
    except ConnectionError as e:
        raise DeviceError(str(e)) from None
    out["box_reports_kept"] = None
    if args.cache is not None:  # carried home: the next `fwdist app sync` uploads them
        outbox = Outbox(Path(args.cache))
        out["box_reports_kept"] = sum(outbox.add(bytes.fromhex(w)) for w in out["box_reports"])
    if args.json:
        emit_json(out)
    else:
        state = ("installed" if out["installed"] else "complete" if out["complete"]
                 else "in progress")
        print(f"sent {out['sent_bytes']} bytes, {out['acked_bytes']} acknowledged; "
              f"{out['version']} {state}" + (f" ({out['reason']})" if out["reason"] else ""))
    # a box that never answered, or that refused the release, is a failed push
    return 1 if out["box_version"] is None or out["rejected"] else 0


def cmd_sync(args: argparse.Namespace) -> int:
    if args.max_cache is not None and args.max_cache < 0:
        raise DeviceError(f"--max-cache must be 0 or more, got {args.max_cache}")
    from fwdist import sync  # (imported when run: httpx and the server's parts load slowly)
    from fwdist.server.client import Client

    trusted = load_trusted([Path(k) for k in args.pubkey])
    with Client(args.server, args.token) as client:
        result = sync.sync(client, Path(args.cache), trusted, args.max_cache)
    out = result.as_json()
    if args.json:
        emit_json(out)
    else:
        r = out["reports"]
        print(f"reports: {r['accepted']} accepted, {r['duplicate']} duplicate, "
              f"{r['rejected']} kept (rejected)")
        for rel in out["releases"]:
            states = ", ".join(f"{p['index']}:{p['state']}" for p in rel["payloads"])
            print(f"{rel['product']} {rel['version']}: payloads {states}")
        print(f"cache: {out['cache_bytes']} bytes")
    failed = [p for rel in out["releases"] for p in rel["payloads"] if p["state"] == "failed"]
    return 1 if failed else 0


def cmd_register(args: argparse.Namespace) -> int:
    from fwdist.server.client import Client  # (imported when run, as in cmd_sync)

    body = {**registration(Path(args.state)), "tags": args.tag}
    with Client(args.server, args.token) as client:
        r = client.request("POST", "/v1/boxes", ok=(200, 201), json=body)
    out = r.json()
    if args.json:
        emit_json(out)
    else:
        print(f"box {out['id']} ({out['product']}/{out['hardware']}) "
              f"{'registered' if r.status_code == 201 else 'was registered already'}")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    box = sub.add_parser("lockbox", help="an emulated lockbox: provision, serve over TCP, status",
                         description="An emulated lockbox kept in a state directory.")
    box_sub = box.add_subparsers(dest="lockbox_command", required=True, metavar="COMMAND")

    p = subcommand(box_sub, "init", cmd_init, "provision a box as it leaves the factory")
    p.add_argument("--state", required=True, metavar="DIR", help="new, empty state directory")
    p.add_argument("--product", required=True)
    p.add_argument("--hardware", metavar="ID|PROFILE.json",
                   help="hardware id (default: the product), or a hardware profile file "
                   "(ending in .json, as `fwdist hardware show --json` prints it); with --store, "
                   "the id of a profile in that store")
    p.add_argument("--store", metavar="DIR", help="take the --hardware profile from this store")
    trust_from = p.add_mutually_exclusive_group(required=True)
    trust_from.add_argument("--root", metavar="ROOT", help="signed root metadata to trust "
                            "(fwdist.trust: k-of-n release signers, rotatable)")
    trust_from.add_argument("--pubkey", metavar="KEYFILE.pub",
                            help="one release key to trust (legacy single-key root)")
    p.add_argument("--image", required=True, metavar="FILE", help="firmware the box runs")
    p.add_argument("--version", required=True, metavar="X.Y.Z", help="version of that firmware")
    p.add_argument("--security-counter", type=int, default=0, metavar="N")
    p.add_argument("--slot-size", type=int, metavar="BYTES",
                   help="size of each image slot (default: 5/4 of the image, in 64 KiB units)")
    p.add_argument("--ram", type=int, metavar="BYTES",
                   help=f"RAM the box can give a delta decoder (default {DEFAULT_RAM}; a "
                   "hardware profile says it instead)")
    p.add_argument("--ack-every", type=int, default=DEFAULT_ACK_EVERY, metavar="BYTES",
                   help="acknowledge persisted bytes this often")
    p.add_argument("--id", metavar="ID", help="the box's id in the fleet (default: the hex of "
                   "its new device key's 8-byte key id)")

    p = subcommand(box_sub, "serve", cmd_serve, "run the box on TCP, one session at a time")
    p.add_argument("--state", required=True, metavar="DIR")
    p.add_argument("--listen", required=True, metavar="HOST:PORT", help="port 0 picks a free one")
    p.add_argument("--battery", type=int, default=100, metavar="PCT")
    p.add_argument("--no-clock", action="store_true",
                   help="a box without a clock: only signed times (a relayed timestamp, an "
                   "accepted manifest's creation) tell it what time it is at least")
    p.add_argument("--session-timeout", type=float, default=60.0, metavar="S",
                   help="drop a phone that keeps a session open longer than this")
    p.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT, metavar="S",
                   help="drop a phone (waiting or in session) when no byte moved for S seconds")
    p.add_argument("--max-sessions", type=int, metavar="N", help="exit after N sessions")

    p = subcommand(box_sub, "status", cmd_status, "what the box runs and what it has received")
    p.add_argument("--state", required=True, metavar="DIR")

    app = sub.add_parser("app", help="the phone side: push a release to a box",
                         description="The phone side of the update.")
    app_sub = app.add_subparsers(dest="app_command", required=True, metavar="COMMAND")
    p = subcommand(app_sub, "push", cmd_push,
                "one session: push the newest verified release (or --version) to a box")
    p.add_argument("--store", metavar="DIR", help="take the release from this store")
    p.add_argument("--cache", metavar="DIR",
                   help="a phone's cache (`fwdist app sync`): keep the box's signed reports in "
                   "its outbox for the next sync, and without --store take the release from it")
    p.add_argument("--product", required=True)
    keys_from = p.add_mutually_exclusive_group(required=True)
    keys_from.add_argument("--root", metavar="ROOT", help="the boxes' trust anchor (signed "
                           "root metadata): only a release that meets the threshold of the "
                           "newest root the store's chain reaches from it is pushed, and only "
                           "the links and timestamp that verify are relayed")
    keys_from.add_argument("--pubkey", action="append", metavar="KEYFILE.pub",
                           help="legacy single-key stores: a public key releases must be "
                           "signed by (repeatable); only a release it verifies is pushed")
    p.add_argument("--version", metavar="X.Y.Z",
                   help="push this release (default: the newest that verifies)")
    p.add_argument("--to", "--connect", dest="to", required=True, metavar="HOST:PORT")
    p.add_argument("--max-bytes", type=int, metavar="N", help="walk away after sending N bytes")
    p.add_argument("--max-seconds", type=float, metavar="S", help="walk away after S seconds")
    p.add_argument("--idle-seconds", type=float, default=trio_link.PHONE_IDLE_SECONDS,
                   metavar="S", help="give up on a box that moved no byte for S seconds "
                   "(default: %(default)s)")
    p.add_argument("--rate", type=float, metavar="BYTES_PER_S", help="pace the link")

    p = subcommand(app_sub, "sync", cmd_sync,
                "with coverage: upload the box reports carried, fetch the releases boxes need")
    p.add_argument("--server", required=True, metavar="URL")
    p.add_argument("--token", required=True, metavar="TOKEN", help="an app-scope token")
    p.add_argument("--cache", required=True, metavar="DIR",
                   help="the phone's cache (made on first use; `app push --cache` reads it)")
    p.add_argument("--pubkey", required=True, action="append", metavar="KEYFILE.pub",
                   help="the release key releases must be signed by (repeatable): nothing "
                   "else enters the cache")
    p.add_argument("--max-cache", type=int, metavar="BYTES",
                   help="keep at most this many bytes of pieces and tables")

    reg = sub.add_parser("box", help="a box and the fleet server: register",
                         description="A box and the fleet server.")
    reg_sub = reg.add_subparsers(dest="box_command", required=True, metavar="COMMAND")
    p = subcommand(reg_sub, "register", cmd_register,
                "register an emulated box (id, product, hardware, device key) with the server")
    p.add_argument("--server", required=True, metavar="URL")
    p.add_argument("--token", required=True, metavar="TOKEN", help="a release-scope token")
    p.add_argument("--state", required=True, metavar="DIR", help="the box's state directory")
    p.add_argument("--tag", action="append", default=[], metavar="TAG",
                   help="a group the box belongs to (repeatable)")

