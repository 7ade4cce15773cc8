"""The emulated lockbox: a real :class:`~fwdist.lockbox.Lockbox` kept in a state directory.

This is what ``fwdist lockbox init|serve|status`` run; the CLI only parses
arguments and prints. A box lives in a state directory::

    STATE/box.json          what the box is: its id, product, hardware, flash geometry
                            (written last)
    STATE/trusted/ID.pub    the release key(s) the box trusts, as provisioned
    STATE/device.key        the box's own Ed25519 key (PKCS#8, 0600), which signs its reports;
    STATE/device.key.pub    its public half, what ``fwdist box register`` sends the server
    STATE/flash.bin         the whole NOR flash, every operation written and fsynced
    STATE/lock              held by ``serve``: one process drives a box at a time

Persistence is the box's own (journal and slots inside ``flash.bin``), so
``kill -9`` of ``serve`` at any instant is a power cut, and the next ``serve``
boots the box the way the firmware would. :func:`load_status` reads a copy of
the flash, so it is safe while ``serve`` runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import trio

from fwdist import keys, trio_link
from fwdist.errors import FwdistError, ManifestError
from fwdist.flash import FileFlash, FlashError
from fwdist.hardware import Profile
from fwdist.lockbox import BoxConfig, Identity, IdleStep, Lockbox, LockboxError
from fwdist.manifest import Version, check_name, key_id
from fwdist.pump import BoxEndpoint

STATE_FORMAT = "fwdist lockbox state v1"
DEFAULT_RAM = 4 << 20
DEFAULT_ACK_EVERY = 512
DEFAULT_IDLE_TIMEOUT = 5.0  # seconds without a byte either way before a phone is dropped
DEVICE_KEY = "device.key"


class DeviceError(FwdistError):
    """A lockbox state directory, or a device command's arguments, cannot be used as asked."""


def _round_up(n: int, unit: int) -> int:
    return max(unit, math.ceil(n / unit) * unit)


def init_state(
    state: Path,
    product: str,
    pubkey: Path | None,
    image: Path,
    version: str,
    *,
    root: Path | None = None,
    counter: int = 0,
    hardware: str | None = None,
    slot_size: int | None = None,
    staging_size: int | None = None,
    ram: int | None = None,
    ack_every: int = DEFAULT_ACK_EVERY,
    profile: Profile | None = None,
    box_id: str | None = None,
) -> dict[str, Any]:
    """Provision a box as it leaves the factory: ``image`` running in slot 0, trusting the signed
    ``root`` (:mod:`fwdist.trust`, kept in its flash) or, the legacy way, the one key ``pubkey``.

    The box gets a device key of its own (``device.key``), made here as a real box makes
    it on the part, and an id: ``box_id``, or the hex of the device key's 8-byte key id.

    With a hardware ``profile`` the box is that model (its id, decoder RAM, formats, sector,
    alignment, slot and staging sizes), and the sizes may not also be given one by one.
    """
    check_name("product", product)
    if profile is not None:
        given = [flag for flag, value in (("--ram", ram), ("--slot-size", slot_size),
                                          ("--staging-size", staging_size)) if value is not None]
        if given:
            raise DeviceError(f"{given[0]} and the hardware profile {profile.id!r} both size "
                              "the box; give one of them")
        if hardware is not None and hardware != profile.id:
            raise DeviceError(f"hardware {hardware!r} is not the profile's {profile.id!r}")
    check_name("hardware", hardware or product)
    if box_id is not None:
        check_name("box id", box_id)
    version = str(Version.parse(version))
    if counter < 0:
        raise DeviceError(f"--security-counter must be 0 or more, got {counter}")
    for flag, value in (("--ram", ram), ("--ack-every", ack_every), ("--slot-size", slot_size),
                        ("--staging-size", staging_size)):
        if value is not None and value <= 0:
            raise DeviceError(f"{flag} must be positive, got {value}")
    if (pubkey is None) == (root is None):
        raise DeviceError("give the box a signed root (--root) or a release key (--pubkey)")
    public = None if pubkey is None else keys.load_public(pubkey)
    root_wire = None
    if root is not None:
        try:
            root_wire = root.read_bytes()
        except OSError as e:
            raise DeviceError(f"cannot read root {root}: {e.strerror}") from None
    try:
        firmware = image.read_bytes()
    except OSError as e:
        raise DeviceError(f"cannot read image {image}: {e.strerror}") from None
    if not firmware:
        raise DeviceError(f"image {image} is empty")
    if state.exists() and (not state.is_dir() or any(state.iterdir())):
        raise DeviceError(f"{state} exists and is not empty; refusing to overwrite a box")
    try:
        if profile is not None:
            config = profile.box_config(product, ack_every=ack_every)
        else:
            # Room for releases to grow (a quarter more), and a staging area as big as a slot.
            slot = slot_size or _round_up(len(firmware) * 5 // 4, 64 * 1024)
            config = BoxConfig(product, hardware or product, slot_size=slot,
                               staging_size=staging_size or slot, ram_budget=ram or DEFAULT_RAM,
                               ack_every=ack_every)
    except LockboxError as e:
        raise DeviceError(str(e)) from None
    # All or nothing: the box is made in a fresh sibling directory and renamed into place
    # once whole, so a failure leaves no half-made state (and an empty STATE as it was).
    try:
        state.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{state.name}.init-", dir=state.parent))
    except OSError as e:
        raise DeviceError(f"cannot write {state}: {e.strerror}") from None
    try:
        (work / "trusted").mkdir()
        if public is not None:
            (work / "trusted" / f"{key_id(public).hex()}.pub").write_bytes(
                keys.public_pem(public))
        keys.generate(work / DEVICE_KEY)
        device = keys.load_public(work / (DEVICE_KEY + ".pub"))
        flash = FileFlash(work / "flash.bin", config.flash_size(), config.sector_size,
                          config.align)
        try:
            Lockbox.provision(flash, config, firmware, version, counter, root=root_wire)
        finally:
            flash.close()
        meta: dict[str, Any] = {"format": STATE_FORMAT, "config": config.as_json(),
                                "id": box_id or key_id(device).hex()}
        if root_wire is not None:
            meta["root"] = True  # its trust is the root in its flash, not trusted/
        _write_json(work / "box.json", meta)
        if state.is_dir():
            state.rmdir()  # empty, checked above
        os.replace(work, state)
    except OSError as e:
        raise DeviceError(f"cannot write {state}: {e.strerror}") from None
    except (LockboxError, FlashError) as e:
        raise DeviceError(str(e)) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return load_status(state)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_meta(state: Path) -> dict[str, Any]:
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
    return raw


def read_config(state: Path) -> BoxConfig:
    try:
        return BoxConfig.from_json(_read_meta(state)["config"])
    except (TypeError, LockboxError) as e:
        raise DeviceError(f"{state / 'box.json'} holds a bad box configuration: {e}") from None


def read_identity(state: Path) -> Identity | None:
    """The box's id and device key; None for a box provisioned before boxes had them."""
    box_id = _read_meta(state).get("id")
    if box_id is None and not (state / DEVICE_KEY).exists():
        return None
    if not isinstance(box_id, str):
        raise DeviceError(f"{state / 'box.json'} holds no box id beside its device key")
    try:
        return Identity(box_id, keys.load_private(state / DEVICE_KEY))
    except ManifestError as e:
        raise DeviceError(f"{state / 'box.json'}: {e}") from None


def registration(state: Path) -> dict[str, Any]:
    """What the server's registry needs of this box (``POST /v1/boxes``): id, product,
    hardware and the device public key (32 raw bytes, hex)."""
    config, identity = read_config(state), read_identity(state)
    if identity is None:
        raise DeviceError(f"{state} has no device key (provisioned before boxes had one): "
                          "provision it again with `fwdist lockbox init`")
    public = keys.load_public(state / (DEVICE_KEY + ".pub")).public_bytes_raw()
    return {"id": identity.box_id, "product": config.product, "hardware": config.hardware,
            "public_key": public.hex()}


def trusted_keys(state: Path) -> dict[bytes, Any]:
    found = {}
    for path in sorted((state / "trusted").glob("*.pub")):
        k = keys.load_public(path)
        found[key_id(k)] = k
    if not found and not _has_root(state):
        raise DeviceError(f"{state} trusts no release key (trusted/ is empty)")
    return found


def _has_root(state: Path) -> bool:
    """Whether the box was provisioned with a signed root (its flash holds its trust)."""
    try:
        return json.loads((state / "box.json").read_text()).get("root") is True
    except (OSError, ValueError, AttributeError):
        return False


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
    return Lockbox(flash, config, trusted_keys(state), identity=read_identity(state)), flash


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
            ident = box.reporter.identity.box_id if box.reporter else None
            return {"box_id": ident, **box.status(), "trust": box.trust_status()}
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


def _idle(box: Lockbox, now: int) -> list[str]:
    """Run the box's idle step until it has nothing more to do right now."""
    done: list[IdleStep] = []
    while (step := box.idle(now)) is not None and step not in done:
        done.append(step)
    return [step.value for step in done]


def error_line(e: BaseException) -> str:
    """``Type: message`` of what really went wrong, out of trio's exception groups.

    A task that raises inside a nursery reaches us wrapped ("Exceptions from Trio
    nursery"), which says nothing; the log names each leaf instead.
    """
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(error_line(leaf) for leaf in e.exceptions)
    return f"{type(e).__name__}: {e}"


async def serve(state: Path, host: str, port: int, *, battery: int, session_timeout: float,
                max_sessions: int | None, on_event: Callable[[dict[str, Any]], None],
                idle_timeout: float = DEFAULT_IDLE_TIMEOUT, has_clock: bool = True) -> int:
    """Boot the box and serve phones on ``host:port``, one session at a time; return 0.

    Phones that wait meanwhile sit in :func:`fwdist.trio_link.serve_box`'s
    waiting room; one silent for ``idle_timeout`` (well under the session
    timeout) is dropped, waiting or in session, so idle connections cannot hold
    the box from an honest phone.

    ``on_event`` hears what happened, one dict per event: ``listening`` (once,
    with the bound address), ``session`` (after each one, with the bytes and
    how the link ended), ``dropped`` (a waiting connection hung up on, and why)
    and ``reset`` (the box raised: logged, rebooted, like a watchdog).

    ``has_clock=False`` is a box without a clock (``lockbox serve --no-clock``): it is told
    time 0, so only signed times (a relayed timestamp, an accepted manifest's creation) move
    the lower bound it checks expiry against.
    """

    def clock() -> int:
        return int(time.time()) if has_clock else 0

    box, flash = open_box(state)
    try:
        box.battery = battery
        box.boot(clock())
        steps = _idle(box, clock())
        listener = await trio_link.open_listener(host, port)
        bound = trio_link.listener_port(listener)
        on_event({"event": "listening", "address": f"{host}:{bound}", "idle": steps,
                  **_brief(box)})

        async def handle(stream: trio.SocketStream, first: bytes) -> None:
            now = clock()
            try:
                endpoint = BoxEndpoint(box, now)
                stats = await trio_link.converse(stream, endpoint, max_seconds=session_timeout,
                                                 idle_seconds=idle_timeout, first=first)
                steps = _idle(box, clock())
            except Exception as e:  # a firmware bug: log it and reset, like a watchdog
                await trio.aclose_forcefully(stream)
                on_event({"event": "reset", "error": error_line(e)})
                box.boot(clock())
                return
            end = stats.reason.value if stats.reason else None
            on_event({"event": "session", "link_in": stats.received_bytes,
                      "link_out": stats.sent_bytes, "link_end": end, "idle": steps,
                      **_brief(box)})

        async with listener:
            await trio_link.serve_box(
                listener, handle, max_sessions, greet_seconds=idle_timeout,
                on_drop=lambda why: on_event({"event": "dropped", "why": why}))
        return 0
    finally:
        flash.close()


def _brief(box: Lockbox) -> dict[str, Any]:
    s = box.status()
    return {k: s[k] for k in ("state", "running_version", "target_version", "received_bytes",
                              "needed_bytes")}
