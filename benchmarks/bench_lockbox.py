"""The box's side: time and peak memory to apply a delta and verify; protocol bytes per session.

A real pair (orjson 3.10.6 -> 3.10.7, 265 KB: the size of a typical MCU image)
is staged, a lockbox is provisioned with the old image on a flash model, and
the phone (:class:`fwdist.app.App`) carries the release to it over sessions of
at most :data:`SESSION_BUDGET` bytes each, as agents who open the box and walk
away would. Then:

- **protocol overhead**: bytes on the air, both ways, that carried no
  manifest, table or piece content, per session (deterministic, held to a
  stored limit), and the number of sessions the release needed;
- **apply + verify**: the box's ``idle()`` step that rebuilds the new image
  into the inactive slot from the old slot and the delta, then hashes it. Its
  time is compared with ``bspatch`` and ``zstd -d --patch-from`` applying the
  same pair's patch; its peak memory (Python heap while it runs, traced with
  tracemalloc; the flash model is allocated before and not counted) with the
  peers' maximum resident set size. The peers hold whole images in RAM; the
  box streams, which is the point of the comparison.

Until ``fwdist.lockbox`` and ``fwdist.app`` are in the tree, every figure here
is a skipped record that says so; no number is made up in their place.
"""

from __future__ import annotations

import hashlib
import importlib.util
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import tools
from benchmarks.inputs import PAIRS, Pair, pair_files
from benchmarks.record import Record, skipped, without_peer

if TYPE_CHECKING:
    from fwdist.app import App, PhoneCache, SessionReport
    from fwdist.lockbox import Lockbox

NEEDS = ("fwdist.lockbox", "fwdist.app")
FIGURES = (
    ("lockbox/apply_verify_seconds", "s"),
    ("lockbox/apply_verify_peak_memory", "bytes"),
    ("protocol/overhead_bytes_per_session", "bytes"),
    ("protocol/sessions_to_complete", "sessions"),
    *((f"protocol/overhead_share_at_{b // 1000}k", "%") for b in (2000, 16_000, 64_000)),
    *((f"protocol/sessions_at_{b // 1000}k", "sessions") for b in (2000, 16_000, 64_000)),
    ("protocol/link_bytes_per_air_byte_at_16k", "x"),
    ("protocol/release_overhead_bytes", "bytes"),
)
BUDGETS = (2000, 16_000, 64_000)  # session budgets (bytes the phone sends) for the share figures
SESSION_BUDGET = 16 * 1024  # bytes the phone sends before the agent walks away
MAX_SESSIONS = 10_000
PAIR: Pair = PAIRS[0]
PEERS = ("bsdiff", "bspatch", "zstd", "time")


def missing_modules() -> list[str]:
    out = []
    for name in NEEDS:
        try:
            if importlib.util.find_spec(name) is None:
                out.append(name)
        except ImportError:
            out.append(name)
    return out


@dataclass(frozen=True)
class Delivery:
    sessions: int
    sent: int
    received: int
    overhead: int
    apply_seconds: float
    peak_bytes: int
    release_bytes: int = 0  # manifest + table the box staged (not payload)


def session(box: Lockbox, app: App, now: int, budget: int | None = None) -> SessionReport:
    """One session: the phone sends until done or until the agent walks away at the budget.

    The box is driven through its current surface (``open_session`` and
    ``receive_data`` return the bytes to send back); the phone is the real
    :class:`fwdist.app.App`. Returns the phone's :class:`~fwdist.app.SessionReport`.
    """

    def to_phone(data: bytes) -> None:
        if data:  # b"" would tell the phone the link dropped
            app.receive_data(data)

    budget = SESSION_BUDGET if budget is None else budget
    sent = 0
    to_phone(box.open_session(now))
    while (out := app.data_to_send()) or not app.session_over:
        if not out:
            raise RuntimeError(f"session {now} stalled: neither side has anything to send")
        if sent + len(out) > budget:  # the agent walks away, maybe mid-frame
            out = out[: budget - sent]
            sent += len(out)
            to_phone(box.receive_data(out, now))
            break
        sent += len(out)
        to_phone(box.receive_data(out, now))
    box.end_session(now)
    app.receive_data(b"")
    return app.report(sent_bytes=sent)


def _setup(old: bytes, new: bytes, work: Path) -> tuple[Callable[[], Lockbox], PhoneCache]:
    """Stage the pair; (a maker of fresh boxes running the old image, the phone's cache)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from fwdist.lockbox import BoxConfig, Lockbox
    from fwdist.manifest import key_id
    from fwdist.releases import phone_cache
    from fwdist.staging import StageOptions, stage
    from fwdist.store import Store

    product = PAIR.product
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"fwdist benchmark key").digest())
    store = Store.open(work / "store", create=True)
    (work / "old.bin").write_bytes(old)
    (work / "new.bin").write_bytes(new)
    now = 1_700_000_000
    stage(store, work / "old.bin", key, StageOptions(product, "1.0.0", now=now))
    stage(store, work / "new.bin", key, StageOptions(product, "1.0.1", sources=("1.0.0",), now=now))

    ss = 4096
    slot = -(-max(len(old), len(new)) // ss) * ss
    config = BoxConfig(
        product=product,
        hardware=product,
        slot_size=slot,
        staging_size=2 * slot + 8 * ss,
        sector_size=ss,
    )
    pub = key.public_key()

    def fresh_box() -> Lockbox:
        flash = config.make_flash()
        Lockbox.provision(flash, config, old, "1.0.0", 0)
        box = Lockbox(flash, config, {key_id(pub): pub})
        box.boot(0)
        return box

    return fresh_box, phone_cache(store, product, "1.0.1")


def _carry(box: Lockbox, cache: PhoneCache, budget: int | None = None,
           version: int | None = None) -> Delivery:
    """Sessions of ``budget`` bytes (default :data:`SESSION_BUDGET`) until the box has it all,
    the phone speaking ``version`` (default: its highest)."""
    from fwdist.app import App

    sessions = sent = received = overhead = 0
    complete = False
    while not complete:
        if sessions >= MAX_SESSIONS:
            raise RuntimeError(f"release not delivered after {MAX_SESSIONS} sessions")
        sessions += 1
        app = App(cache) if version is None else App(cache, version=version)
        report = session(box, app, sessions, budget)
        sent += report.sent_bytes
        received += report.received_bytes
        overhead += report.overhead_bytes
        complete = report.complete
    return Delivery(sessions, sent, received, overhead, 0.0, 0, release_bytes(box))


def release_bytes(box: Lockbox) -> int:
    """The manifest and table bytes the box holds for its target: the per-release overhead."""
    from fwdist.protocol import TABLE

    t = box.s.target if box.s else None
    if t is None:
        raise RuntimeError("the box holds no target to measure")
    table = t.streams.get(TABLE)
    return t.mlen + (0 if table is None else table.received)


def air_bytes(cache: PhoneCache) -> int:
    """What the release must move for this pair over protocol 2: the delta's format 2
    manifest, its table of rows (none up to 16 pieces: they are in the manifest), its pieces."""
    from fwdist import air
    from fwdist.manifest import decode_table

    ref = cache.manifest.deltas[0]
    if not cache.air:
        return air_bytes_format_1(cache)
    table = decode_table(cache.tables[ref.table_sha256], ref.table_sha256)
    rows = air.rows_of(table)
    extra = 0 if len(rows) <= air.INLINE_PIECES else len(air.encode_table(rows, False))
    return len(cache.air[1]) + extra + ref.size


def air_bytes_format_1(cache: PhoneCache) -> int:
    """The same with format 1's manifest and msgpack table (what protocol 1 moves)."""
    ref = cache.manifest.deltas[0]
    return len(cache.manifest_wire) + len(cache.tables[ref.table_sha256]) + ref.size


def _deliver(old: bytes, new: bytes, work: Path, trace: bool) -> Delivery:
    """Stage the pair, carry it to a fresh box session by session, apply and verify on the box."""
    from fwdist.lockbox import IdleStep

    fresh_box, cache = _setup(old, new, work)
    box = fresh_box()
    carried = _carry(box, cache)
    sessions, sent, received, overhead = (carried.sessions, carried.sent, carried.received,
                                          carried.overhead)

    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    outcome = box.idle(sessions + 1)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    if trace:
        tracemalloc.stop()
    if outcome is not IdleStep.BUILT:
        raise RuntimeError(f"the box did not build the new image: idle() said {outcome!r}")
    if box.idle(sessions + 2) is not IdleStep.INSTALLED or box.running_image() != new:
        raise RuntimeError("the box did not install the new release")
    return Delivery(sessions, sent, received, overhead, seconds, peak)


def _budget_records(by_budget: dict[int, Delivery], v1: dict[int, Delivery],
                    air: int) -> list[Record]:
    """Overhead share and sessions per session budget, next to protocol 1 (the overhead) and
    the ideal ``ceil(air / budget)`` (the sessions)."""
    out = []
    for budget, d in by_budget.items():
        link, old = d.sent + d.received, v1[budget]
        old_link = old.sent + old.received
        k = budget // 1000
        out.append(Record(
            f"protocol/overhead_share_at_{k}k", round(100 * d.overhead / link, 2), "%",
            peer="protocol 1", peer_value=round(100 * old.overhead / old_link, 2), checked=True,
            note=f"{d.overhead:,} of {link:,} B on the link both ways carried no manifest, table "
            f"or piece content; {d.sessions} sessions of <= {budget:,} B sent (protocol 1: "
            f"{old.overhead:,} of {old_link:,})"))
        out.append(Record(
            f"protocol/sessions_at_{k}k", d.sessions, "sessions", peer="ideal ceil(air/budget)",
            peer_value=-(-air // budget), checked=True,
            note=f"air_bytes {air:,} (manifest + table + delta) in sessions of <= {budget:,} B; "
            f"protocol 1 took {old.sessions}"))
        if budget == 16_000:
            out.append(Record(
                "protocol/link_bytes_per_air_byte_at_16k", round(link / air, 4), "x",
                peer="protocol 1", peer_value=round(old_link / air, 4), checked=True,
                note=f"every byte on the link both ways ({link:,}) per air byte ({air:,}: the "
                "format 2 manifest, its table if any, the delta)"))
            out.append(Record(
                "protocol/release_overhead_bytes", d.release_bytes, "bytes",
                peer="protocol 1 (format 1)", peer_value=old.release_bytes, checked=True,
                note="manifest + piece table the box received for the delta, measured on the "
                "box after the transfer (signature included)"))
    return out


def peer_apply(cmd: list[str | Path], out: Path, new_sha: str) -> tuple[float, int]:
    """(seconds, max RSS bytes) of ``cmd``, measured by GNU time (:func:`tools.measured`)."""
    run = tools.measured(cmd, out.with_suffix(".rss"))
    if hashlib.sha256(out.read_bytes()).hexdigest() != new_sha:
        raise tools.ToolError(f"{cmd[0]} did not rebuild the new release")
    return run.seconds, run.peak_rss


def process_floor(work: Path) -> int | None:
    """Max RSS of a process that does nothing (``true``) under GNU time: the peers' floor."""
    try:
        tools.timed(["time", "-f", "%M", "-o", work / "true.rss", "true"])
        return int((work / "true.rss").read_text().split()[-1]) * 1024
    except (tools.ToolError, OSError, ValueError):
        return None


def _peers(
    old_path: Path, new_path: Path, work: Path, peer_tools: tools.Tools, new_sha: str
) -> dict[str, tuple[float, int] | str]:
    """Each peer's (apply seconds, max RSS bytes), best of 3 by time; or why it did not run."""
    Peer = tuple[tuple[str, ...], list[str | Path], list[str | Path], Path]
    patches: dict[str, Peer] = {
        "bspatch": (
            ("bsdiff", "bspatch", "time"),
            ["bsdiff", old_path, new_path, work / "p.bsdiff"],
            ["bspatch", old_path, work / "bspatch.out", work / "p.bsdiff"],
            work / "bspatch.out",
        ),
        "zstd -d --patch-from": (
            ("zstd", "time"),
            [
                "zstd",
                "-19",
                "--long=27",
                f"--patch-from={old_path}",
                new_path,
                "-o",
                work / "p.zst",
                "-f",
                "-q",
            ],
            [
                "zstd",
                "-d",
                "--long=27",
                f"--patch-from={old_path}",
                work / "p.zst",
                "-o",
                work / "zstd.out",
                "-f",
                "-q",
            ],
            work / "zstd.out",
        ),
    }
    out: dict[str, tuple[float, int] | str] = {}
    for label, (needs, encode, apply, rebuilt) in patches.items():
        if (why := peer_tools.why_missing(*needs)) is not None:
            out[label] = why
            continue
        try:
            tools.timed(encode)
            out[label] = min(
                (peer_apply(apply, rebuilt, new_sha) for _ in range(3)), key=lambda x: x[0]
            )
        except (tools.ToolError, OSError, ValueError) as e:
            out[label] = f"error: {e}"
    return out


def run(
    quick: bool, peer_tools: tools.Tools | None = None, cache: Path | None = None
) -> list[Record]:
    missing = missing_modules()
    if missing:
        reason = f"lockbox not available: {', '.join(missing)} not in this tree yet"
        return [skipped(name, unit, reason) for name, unit in FIGURES]
    peer_tools = peer_tools or tools.Tools()
    old_path, new_path = pair_files(PAIR, cache)
    old, new = old_path.read_bytes(), new_path.read_bytes()
    new_sha = hashlib.sha256(new).hexdigest()
    with tempfile.TemporaryDirectory(prefix="fwdist-bench-lockbox-") as tmp_:
        tmp = Path(tmp_)
        runs = []
        for i in range(3):  # the best of three times; the memory run is traced separately
            (tmp / f"t{i}").mkdir()
            runs.append(_deliver(old, new, tmp / f"t{i}", trace=False))
        (tmp / "mem").mkdir()
        traced = _deliver(old, new, tmp / "mem", trace=True)
        (tmp / "budgets").mkdir()
        fresh_box, phone = _setup(old, new, tmp / "budgets")
        by_budget = {b: _carry(fresh_box(), phone, b) for b in BUDGETS}
        v1 = {b: _carry(fresh_box(), phone, b, version=1) for b in BUDGETS}
        air = air_bytes(phone)
        peers = _peers(old_path, new_path, tmp, peer_tools, new_sha)
        floor = process_floor(tmp) if peer_tools.why_missing("time") is None else None
    records = _budget_records(by_budget, v1, air)
    d = min(runs, key=lambda r: r.apply_seconds)
    what = f"{PAIR.old.label} -> {PAIR.new.version} on a lockbox flash model"
    for label, outcome in peers.items():
        if isinstance(outcome, str):
            records.append(
                without_peer(FIGURES[0][0], round(d.apply_seconds, 4), "s", label, outcome)
            )
            records.append(without_peer(FIGURES[1][0], traced.peak_bytes, "bytes", label, outcome))
            continue
        seconds, rss = outcome
        records.append(
            Record(
                FIGURES[0][0],
                round(d.apply_seconds, 4),
                "s",
                peer=label,
                peer_value=round(seconds, 4),
                note=f"{what}: idle() rebuilds into the inactive slot and hashes "
                "it; best of 3; peer: whole process",
            )
        )
        records.append(
            Record(
                FIGURES[1][0],
                traced.peak_bytes,
                "bytes",
                peer=label,
                peer_value=rss,
                note="fwdist: Python heap peak during idle() (tracemalloc; the flash model is "
                "not counted); peer: max resident set size of its process (GNU time)"
                + (f"; a do-nothing process (true) peaks at {floor:,} B" if floor else ""),
            )
        )
    records.sort(key=lambda r: r.name != FIGURES[0][0])  # stable: times first, then memory
    air = d.sent + d.received
    records.append(
        Record(
            FIGURES[2][0],
            round(d.overhead / d.sessions),
            "bytes",
            checked=True,
            note=f"{what}: {d.sessions} sessions of <= {SESSION_BUDGET} B sent; "
            f"{air:,} B on the air both ways, {d.overhead:,} B of it overhead "
            f"({d.overhead / air:.1%})",
        )
    )
    records.append(
        Record(
            FIGURES[3][0],
            d.sessions,
            "sessions",
            checked=True,
            note=f"sessions of at most {SESSION_BUDGET} B from the phone",
        )
    )
    return records
