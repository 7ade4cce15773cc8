"""Device-side commands: an emulated lockbox in a real process, and a phone that pushes to it.

``fwdist lockbox init|serve|status`` keep a box in a state directory::

    STATE/box.json          what the box is: product, hardware, flash geometry (written last)
    STATE/trusted/ID.pub    the release key(s) the box trusts, as provisioned
    STATE/flash.bin         the whole NOR flash, every operation written and fsynced
    STATE/lock              held by ``serve``: one process drives a box at a time

Persistence is the box's own (journal and slots inside ``flash.bin``), so
``kill -9`` of ``serve`` at any instant is a power cut, and the next ``serve``
boots the box the way the firmware would. ``status`` reads a copy of the flash,
so it is safe while ``serve`` runs.

``fwdist app push`` is one session of a phone: connect, talk, walk away when
the release is delivered or when ``--max-bytes`` / ``--max-seconds`` run out.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio

from fwdist import keys, trio_link
from fwdist.app import App, PhoneCache
from fwdist.cli.output import emit_json, progress_bar
from fwdist.errors import FwdistError
from fwdist.flash import FileFlash, FlashError
from fwdist.lockbox import BoxConfig, Lockbox, LockboxError
from fwdist.manifest import Version, check_name, key_id
from fwdist.pump import BoxEndpoint
from fwdist.store import Store

STATE_FORMAT = "fwdist lockbox state v1"
DEFAULT_RAM = 4 << 20
DEFAULT_ACK_EVERY = 512


class DeviceError(FwdistError):
    """A lockbox state directory or a push cannot be used as asked."""


# ================================================================================
# The state directory
# ================================================================================


def _round_up(n: int, unit: int) -> int:
    return max(unit, math.ceil(n / unit) * unit)


def init_state(
    state: Path,
    product: str,
    pubkey: Path,
    image: Path,
    version: str,
    *,
    counter: int = 0,
    hardware: str | None = None,
    slot_size: int | None = None,
    staging_size: int | None = None,
    ram: int = DEFAULT_RAM,
    ack_every: int = DEFAULT_ACK_EVERY,
) -> dict[str, Any]:
    """Provision a box as it leaves the factory: ``image`` running in slot 0, ``pubkey`` trusted."""
    check_name("product", product)
    check_name("hardware", hardware or product)
    version = str(Version.parse(version))
    if counter < 0:
        raise DeviceError(f"--security-counter must be 0 or more, got {counter}")
    public = keys.load_public(pubkey)
    try:
        firmware = image.read_bytes()
    except OSError as e:
        raise DeviceError(f"cannot read image {image}: {e.strerror}") from None
    if not firmware:
        raise DeviceError(f"image {image} is empty")
    if state.exists() and (not state.is_dir() or any(state.iterdir())):
        raise DeviceError(f"{state} exists and is not empty; refusing to overwrite a box")
    # Room for releases to grow (a quarter more), and a staging area as big as a slot.
    slot = slot_size or _round_up(len(firmware) * 5 // 4, 64 * 1024)
    try:
        config = BoxConfig(product, hardware or product, slot_size=slot,
                           staging_size=staging_size or slot, ram_budget=ram, ack_every=ack_every)
    except LockboxError as e:
        raise DeviceError(str(e)) from None
    try:
        (state / "trusted").mkdir(parents=True, exist_ok=True)
        (state / "trusted" / f"{key_id(public).hex()}.pub").write_bytes(keys.public_pem(public))
        flash = FileFlash(state / "flash.bin", config.flash_size(), config.sector_size,
                          config.align)
        try:
            Lockbox.provision(flash, config, firmware, version, counter)
        finally:
            flash.close()
        _write_json(state / "box.json", {"format": STATE_FORMAT, "config": config.as_json()})
    except OSError as e:
        raise DeviceError(f"cannot write {state}: {e.strerror}") from None
    except (LockboxError, FlashError) as e:
        raise DeviceError(str(e)) from None
    return load_status(state)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_config(state: Path) -> BoxConfig:
    meta = state / "box.json"
    if not state.is_dir():
        raise DeviceError(f"{state} does not exist; make a box with `fwdist lockbox init`")
    try:
        raw = json.loads(meta.read_text())
    except FileNotFoundError:
        raise DeviceError(f"{state} is not a lockbox state directory (no box.json)") from None
    except (OSError, ValueError) as e:
        raise DeviceError(f"{meta} is unreadable: {e}") from None
    if not (isinstance(raw, dict) and raw.get("format") == STATE_FORMAT
            and isinstance(raw.get("config"), dict)):
        raise DeviceError(f"{meta} is not a {STATE_FORMAT} file")
    try:
        return BoxConfig(**raw["config"])
    except (TypeError, LockboxError) as e:
        raise DeviceError(f"{meta} holds a bad box configuration: {e}") from None


def trusted_keys(state: Path) -> dict[bytes, Any]:
    found = {}
    for path in sorted((state / "trusted").glob("*.pub")):
        k = keys.load_public(path)
        found[key_id(k)] = k
    if not found:
        raise DeviceError(f"{state} trusts no release key (trusted/ is empty)")
    return found


def open_box(state: Path, flash_path: Path | None = None) -> tuple[Lockbox, FileFlash]:
    """The box on its flash file (or a copy of it), not yet booted."""
    config = read_config(state)
    try:
        flash = FileFlash(flash_path or state / "flash.bin", config.flash_size(),
                          config.sector_size, config.align)
    except FlashError as e:
        raise DeviceError(str(e)) from None
    except OSError as e:
        raise DeviceError(f"cannot open the box's flash: {e.strerror}") from None
    return Lockbox(flash, config, trusted_keys(state)), flash


def load_status(state: Path) -> dict[str, Any]:
    """The box's status, read from a private copy of its flash (safe while ``serve`` runs)."""
    read_config(state)
    with tempfile.TemporaryDirectory(prefix="fwdist-status-") as tmp:
        copy = Path(tmp) / "flash.bin"
        try:
            shutil.copyfile(state / "flash.bin", copy)
        except OSError as e:
            raise DeviceError(f"cannot read {state / 'flash.bin'}: {e.strerror}") from None
        box, flash = open_box(state, copy)
        try:
            box.boot(int(time.time()))
            return box.status()
        finally:
            flash.close()


@contextlib.contextmanager
def locked(state: Path) -> Iterator[None]:
    """Hold the state directory's lock (one ``serve`` per box), or fail with one line."""
    with open(state / "lock", "a+b") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DeviceError(f"another process is serving the box in {state}") from None
        yield


# ================================================================================
# serve: the emulated box on TCP
# ================================================================================


def _idle(box: Lockbox, now: int) -> list[str]:
    """Run the box's idle step until it has nothing more to do right now."""
    done: list[str] = []
    while (step := box.idle(now)) is not None and step not in done:
        done.append(step)
    return done


def _log(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, sort_keys=True), flush=True)
    else:
        print("  ".join(f"{k}={v}" for k, v in obj.items()), flush=True)


async def serve(state: Path, host: str, port: int, *, battery: int, session_timeout: float,
                max_sessions: int | None, as_json: bool) -> int:
    box, flash = open_box(state)
    try:
        box.battery = battery
        box.boot(int(time.time()))
        steps = _idle(box, int(time.time()))
        listener = await trio_link.open_listener(host, port)
        bound = trio_link.listener_port(listener)
        _log({"event": "listening", "address": f"{host}:{bound}", "idle": steps,
              **_brief(box)}, as_json)

        async def handle(stream: trio.SocketStream) -> None:
            now = int(time.time())
            try:
                endpoint = BoxEndpoint(box, now)
                stats = await trio_link.converse(stream, endpoint, max_seconds=session_timeout)
                steps = _idle(box, int(time.time()))
            except Exception as e:  # a firmware bug: log it and reset, like a watchdog
                await trio.aclose_forcefully(stream)
                _log({"event": "reset", "error": f"{type(e).__name__}: {e}"}, as_json)
                box.boot(int(time.time()))
                return
            end = stats.reason.value if stats.reason else None
            _log({"event": "session", "link_in": stats.received_bytes,
                  "link_out": stats.sent_bytes, "link_end": end, "idle": steps,
                  **_brief(box)}, as_json)

        async with listener:
            await trio_link.serve_box(listener, handle, max_sessions)
        return 0
    finally:
        flash.close()


def _brief(box: Lockbox) -> dict[str, Any]:
    s = box.status()
    return {k: s[k] for k in ("state", "running_version", "target_version", "received_bytes",
                              "needed_bytes")}


# ================================================================================
# push: one phone session
# ================================================================================


async def push(cache: PhoneCache, host: str, port: int, *, max_bytes: int | None,
               max_seconds: float | None, rate: float | None, quiet: bool) -> dict[str, Any]:
    started = trio.current_time()
    with progress_bar(f"pushing {cache.manifest.product} {cache.manifest.version}", None,
                      quiet) as advance:
        report = await trio_link.push(App(cache), host, port, max_bytes=max_bytes,
                                      max_seconds=max_seconds, rate=rate, on_sent=advance)
    out = report.as_json()
    out["version"] = cache.manifest.version
    out["seconds"] = round(trio.current_time() - started, 3)
    return out


# ================================================================================
# argument handlers
# ================================================================================


def _hostport(text: str) -> tuple[str, int]:
    try:
        return trio_link.parse_hostport(text)
    except ValueError as e:
        raise DeviceError(str(e)) from None


def _positive(kind: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise DeviceError(f"{kind} must be positive, got {value}")


def cmd_init(args: argparse.Namespace) -> int:
    status = init_state(Path(args.state), args.product, Path(args.pubkey), Path(args.image),
                        args.version, counter=args.security_counter, hardware=args.hardware,
                        slot_size=args.slot_size, ram=args.ram, ack_every=args.ack_every)
    if args.json:
        emit_json(status)
    else:
        print(f"provisioned {status['product']} {status['running_version']} in {args.state} "
              f"(sha256 {status['running_sha256'][:16]}...)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    state = Path(args.state)
    host, port = _hostport(args.listen)
    if not 0 <= args.battery <= 100:
        raise DeviceError(f"--battery must be 0..100, got {args.battery}")
    _positive("--session-timeout", args.session_timeout)
    read_config(state)
    with locked(state):
        try:
            return trio.run(lambda: serve(state, host, port, battery=args.battery,
                                          session_timeout=args.session_timeout,
                                          max_sessions=args.max_sessions, as_json=args.json))
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
    _positive("--rate", args.rate)
    cache = PhoneCache.from_store(Store.open(args.store), args.product)
    try:
        out = trio.run(lambda: push(cache, host, port, max_bytes=args.max_bytes,
                                    max_seconds=args.max_seconds, rate=args.rate,
                                    quiet=args.json))
    except ConnectionError as e:
        raise DeviceError(str(e)) from None
    if args.json:
        emit_json(out)
    else:
        state = ("installed" if out["installed"] else "complete" if out["complete"]
                 else "in progress")
        print(f"sent {out['sent_bytes']} bytes, {out['acked_bytes']} acknowledged; "
              f"{out['version']} {state}" + (f" ({out['reason']})" if out["reason"] else ""))
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    box = sub.add_parser("lockbox", help="an emulated lockbox: provision, serve over TCP, status",
                         description="An emulated lockbox kept in a state directory.")
    box_sub = box.add_subparsers(dest="lockbox_command", required=True, metavar="COMMAND")

    def command(group: Any, name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
        return p

    p = command(box_sub, "init", cmd_init, "provision a box as it leaves the factory")
    p.add_argument("--state", required=True, metavar="DIR", help="new, empty state directory")
    p.add_argument("--product", required=True)
    p.add_argument("--hardware", help="hardware id (default: the product)")
    p.add_argument("--pubkey", required=True, metavar="KEYFILE.pub", help="release key to trust")
    p.add_argument("--image", required=True, metavar="FILE", help="firmware the box runs")
    p.add_argument("--version", required=True, metavar="X.Y.Z", help="version of that firmware")
    p.add_argument("--security-counter", type=int, default=0, metavar="N")
    p.add_argument("--slot-size", type=int, metavar="BYTES",
                   help="size of each image slot (default: 5/4 of the image, in 64 KiB units)")
    p.add_argument("--ram", type=int, default=DEFAULT_RAM, metavar="BYTES",
                   help="RAM the box can give a delta decoder")
    p.add_argument("--ack-every", type=int, default=DEFAULT_ACK_EVERY, metavar="BYTES",
                   help="acknowledge persisted bytes this often")

    p = command(box_sub, "serve", cmd_serve, "run the box on TCP, one session at a time")
    p.add_argument("--state", required=True, metavar="DIR")
    p.add_argument("--listen", required=True, metavar="HOST:PORT", help="port 0 picks a free one")
    p.add_argument("--battery", type=int, default=100, metavar="PCT")
    p.add_argument("--session-timeout", type=float, default=60.0, metavar="S",
                   help="drop a phone that keeps a session open longer than this")
    p.add_argument("--max-sessions", type=int, metavar="N", help="exit after N sessions")

    p = command(box_sub, "status", cmd_status, "what the box runs and what it has received")
    p.add_argument("--state", required=True, metavar="DIR")

    app = sub.add_parser("app", help="the phone side: push a release to a box",
                         description="The phone side of the update.")
    app_sub = app.add_subparsers(dest="app_command", required=True, metavar="COMMAND")
    p = command(app_sub, "push", cmd_push, "one session: push the newest release to a box")
    p.add_argument("--store", required=True, metavar="DIR")
    p.add_argument("--product", required=True)
    p.add_argument("--to", required=True, metavar="HOST:PORT")
    p.add_argument("--max-bytes", type=int, metavar="N", help="walk away after sending N bytes")
    p.add_argument("--max-seconds", type=float, metavar="S", help="walk away after S seconds")
    p.add_argument("--rate", type=float, metavar="BYTES_PER_S", help="pace the link")

