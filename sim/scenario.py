"""Scenarios: what the fleet, the agents, the phones and the link look like.

A scenario is a TOML file of sections; every key has a documented default and
unit (the ``unit`` and ``doc`` metadata below, printed by the report), so a
scenario file only says what differs. Unknown sections or keys are errors, not
silently ignored: a typo in ``conected_s`` must not quietly run the default.
Numbers may be fixed values or distributions (see :mod:`sim.dists`).

Built-in scenarios live in ``sim/scenarios/NAME.toml``; :func:`load` takes a
name or a path.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.dists import Dist, ScenarioError, parse_dist


def _m(unit: str, doc: str) -> dict[str, str]:
    """A setting's unit and one line on what it means (both shown in reports)."""
    return {"unit": unit, "doc": doc}


_SINGULAR = {"boxes": "box", "runs": "run", "days": "day"}


def _unit_of(value: object, unit: str) -> str:
    """The unit as a report writes it after ``value``: "1 run", "2 runs"."""
    return _SINGULAR.get(unit, unit) if value == 1 else unit


def _uniform(lo: float, hi: float) -> Dist:
    return Dist("uniform", a=lo, b=hi)


def _lognormal(median: float, sigma: float, lo: float, hi: float) -> Dist:
    return Dist("lognormal", a=median, b=sigma, lo=lo, hi=hi)


# Distribution defaults (frozen, shared safely between instances)
_D1 = _uniform(0.5, 1.5)
_D2 = _lognormal(14.0, 0.5, 4.0, 120.0)
_D3 = Dist.fixed(4.0)
_D4 = Dist.fixed(1.5)
_D5 = _lognormal(2600.0, 0.45, 1100.0, 13000.0)
_D6 = Dist.fixed(0.5)
_D7 = Dist.fixed(7.0)
_D8 = Dist.fixed(900.0)
_D9 = _uniform(0.1, 1.0)
_D10 = _lognormal(10.0, 0.6, 1.0, 60.0)


@dataclass(frozen=True)
class RunSpec:
    boxes: int = field(
        default=1000, metadata=_m("boxes", "boxes in the fleet (legacy ones included)")
    )
    days: float = field(
        default=90.0, metadata=_m("days", "virtual time simulated after the release is published")
    )
    runs: int = field(
        default=2, metadata=_m("runs", "Monte Carlo runs (independent fleets); results are pooled")
    )
    seed: int = field(
        default=1, metadata=_m("", "seed of every random draw; same seed, same numbers")
    )


@dataclass(frozen=True)
class ReleaseSpec:
    product: str = field(default="lockbox-sample", metadata=_m("", "product name of the release"))
    target: str = field(default="1.2.0", metadata=_m("version", "the release being rolled out"))
    running: dict[str, float] = field(
        default_factory=lambda: {"1.1.0": 0.8, "1.0.0": 0.2},
        metadata=_m(
            "share",
            "versions the fleet runs before the rollout, with their shares (normalised)",
        ),
    )
    sample_image_bytes: int = field(
        default=262144, metadata=_m("bytes", "image size of the built-in sample release")
    )
    sample_seed: int = field(default=1, metadata=_m("", "seed of the built-in sample firmware"))


@dataclass(frozen=True)
class FleetSpec:
    legacy_share: float = field(
        default=0.0, metadata=_m("share", "boxes without Bluetooth: never updated passively")
    )


@dataclass(frozen=True)
class ShowingSpec:
    weekday_per_day: float = field(
        default=0.35, metadata=_m("showings/box/day", "mean showings of a box on a weekday")
    )
    weekend_per_day: float = field(
        default=0.8,
        metadata=_m("showings/box/day", "mean showings of a box on a Saturday or Sunday"),
    )
    popularity: Dist = field(
        default=_D1, metadata=_m("×", "per-box multiplier of the showing rates (listing demand)")
    )
    first_hour: float = field(default=9.0, metadata=_m("h", "earliest hour of a showing"))
    last_hour: float = field(default=20.0, metadata=_m("h", "latest hour of a showing"))


@dataclass(frozen=True)
class AccessSpec:
    connected_s: Dist = field(
        default=_D2, metadata=_m("s", "time the phone stays connected to the box during a showing")
    )
    open_s: Dist = field(
        default=_D3,
        metadata=_m(
            "s", "time the box spends opening (authorise, release the key) before the transfer"
        ),
    )
    setup_s: Dist = field(
        default=_D4,
        metadata=_m(
            "s", "BLE connection set-up, service discovery and MTU exchange for the update"
        ),
    )
    throughput_Bps: Dist = field(
        default=_D5, metadata=_m("bytes/s", "application bytes per second the phone's link carries")
    )
    max_frame: int = field(
        default=244,
        metadata=_m(
            "bytes",
            "largest fwdist frame (ATT MTU − 3): 244 for MTU 247, 182 for 185, 509 for 512",
        ),
    )


@dataclass(frozen=True)
class PhoneSpec:
    holds_release: float = field(
        default=0.9,
        metadata=_m(
            "probability", "the agent's phone holds the release (app and OS recent, downloaded)"
        ),
    )
    partial_share: float = field(
        default=0.0,
        metadata=_m(
            "probability", "of phones holding the release, share that hold only some pieces"
        ),
    )
    partial_fraction: Dist = field(
        default=_D6, metadata=_m("share", "fraction of pieces a partial phone holds")
    )


@dataclass(frozen=True)
class OwnerSpec:
    manual_share: float = field(
        default=0.0, metadata=_m("share", "owners who run the app's 'update firmware' tool")
    )
    manual_after_days: Dist = field(
        default=_D7,
        metadata=_m("days", "when such an owner runs it, after the release is published"),
    )
    patience_s: Dist = field(
        default=_D8,
        metadata=_m("s", "how long the owner keeps the manual session open (a cancel scope)"),
    )


@dataclass(frozen=True)
class BatterySpec:
    start: Dist = field(default=_D9, metadata=_m("fraction", "battery charge at the release"))
    per_open: float = field(
        default=1 / 4000, metadata=_m("fraction", "charge one opening costs (motor, latch)")
    )
    radio_per_s: float = field(
        default=2e-6, metadata=_m("fraction/s", "charge one second of BLE radio time costs")
    )
    install_cost: float = field(
        default=0.005, metadata=_m("fraction", "charge an installation costs (erase, write, boot)")
    )
    min_install: float = field(
        default=0.25,
        metadata=_m("fraction", "installation waits until the charge is at least this"),
    )
    replace_below: float = field(
        default=0.15, metadata=_m("fraction", "charge at which the box asks for new batteries")
    )
    replace_after_days: Dist = field(
        default=_D10, metadata=_m("days", "delay between the low-battery warning and new batteries")
    )


@dataclass(frozen=True)
class BaselineSpec:
    smp_frame_payload: int = field(
        default=480,
        metadata=_m("bytes", "image bytes per SMP upload request (offset-resume, restart)"),
    )
    smp_frame_overhead: int = field(
        default=28, metadata=_m("bytes", "SMP header, CBOR keys and response per request")
    )
    smp_session_bytes: int = field(
        default=96, metadata=_m("bytes", "image-state query and upload start per session")
    )
    dfu_object_bytes: int = field(
        default=4096, metadata=_m("bytes", "data object size (object-4k, Nordic Secure DFU)")
    )
    dfu_packet_payload: int = field(
        default=244, metadata=_m("bytes", "data bytes per write packet (MTU 247 − 3)")
    )
    dfu_packet_overhead: int = field(default=3, metadata=_m("bytes", "ATT header per packet"))
    dfu_object_overhead: int = field(
        default=40, metadata=_m("bytes", "create, CRC and execute requests/responses per object")
    )
    dfu_session_bytes: int = field(
        default=160, metadata=_m("bytes", "select command and init-packet check per session")
    )


SECTIONS: dict[str, type] = {
    "run": RunSpec,
    "release": ReleaseSpec,
    "fleet": FleetSpec,
    "showings": ShowingSpec,
    "access": AccessSpec,
    "phone": PhoneSpec,
    "owner": OwnerSpec,
    "battery": BatterySpec,
    "baselines": BaselineSpec,
}


@dataclass(frozen=True)
class Scenario:
    name: str = "custom"
    description: str = ""
    run: RunSpec = field(default_factory=RunSpec)
    release: ReleaseSpec = field(default_factory=ReleaseSpec)
    fleet: FleetSpec = field(default_factory=FleetSpec)
    showings: ShowingSpec = field(default_factory=ShowingSpec)
    access: AccessSpec = field(default_factory=AccessSpec)
    phone: PhoneSpec = field(default_factory=PhoneSpec)
    owner: OwnerSpec = field(default_factory=OwnerSpec)
    battery: BatterySpec = field(default_factory=BatterySpec)
    baselines: BaselineSpec = field(default_factory=BaselineSpec)
    source: str = "<defaults>"
    notes: str = ""  # the comment block at the top of the file: assumptions and their sources

    def with_run(self, **changes: Any) -> Scenario:
        """A copy with some ``[run]`` values replaced (--boxes, --days, --runs, --seed)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, run=dataclasses.replace(self.run, **changes))

    def assumptions(self) -> list[tuple[str, str, str]]:
        """(key, value with unit, what it means) for every setting, for the report."""
        rows = []
        for section in SECTIONS:
            spec = getattr(self, section)
            for f in dataclasses.fields(spec):
                v = getattr(spec, f.name)
                unit = f.metadata["unit"]
                if isinstance(v, Dist):
                    text = v.describe(_unit_of(v.a, unit) if v.kind == "fixed" else unit)
                elif isinstance(v, dict):  # release.running, written as in the TOML file
                    text = ", ".join(f"{k} = {x:g}" for k, x in v.items())
                else:
                    text = f"{v} {_unit_of(v, unit)}".strip()
                rows.append((f"{section}.{f.name}", text, f.metadata["doc"]))
        return rows


def _build_section(cls: type, raw: Any, section: str) -> Any:
    if not isinstance(raw, dict):
        raise ScenarioError(f"[{section}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(fields)
    if unknown:
        raise ScenarioError(f"[{section}]: unknown keys {sorted(unknown)}; known: {sorted(fields)}")
    defaults = cls()
    values: dict[str, Any] = {}
    for name, value in raw.items():
        default = getattr(defaults, name)
        what = f"{section}.{name}"
        if isinstance(default, Dist):
            values[name] = parse_dist(value, what)
        elif isinstance(default, dict):
            if not (
                isinstance(value, dict)
                and value
                and all(
                    isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
                    for v in value.values()
                )
                and sum(value.values()) > 0
            ):
                raise ScenarioError(f"{what}: expected a table of version = share (non-negative)")
            values[name] = {str(k): float(v) for k, v in value.items()}
        elif isinstance(default, bool) or type(value) is bool:
            raise ScenarioError(f"{what}: booleans are not accepted here")
        elif isinstance(default, int):
            if not isinstance(value, int):
                raise ScenarioError(f"{what}: expected an integer, got {value!r}")
            values[name] = value
        elif isinstance(default, float):
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ScenarioError(f"{what}: expected a number, got {value!r}")
            values[name] = float(value)
        else:
            if not isinstance(value, str):
                raise ScenarioError(f"{what}: expected a string, got {value!r}")
            values[name] = value
    return cls(**values)


def _validate(s: Scenario) -> None:
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ScenarioError(msg)

    need(s.run.boxes >= 1, "run.boxes must be at least 1")
    need(0 < s.run.days <= 3650, "run.days must be in (0, 3650]")
    need(s.run.runs >= 1, "run.runs must be at least 1")
    need(s.run.seed >= 0, "run.seed must be non-negative")
    for what, p in (
        ("fleet.legacy_share", s.fleet.legacy_share),
        ("phone.holds_release", s.phone.holds_release),
        ("phone.partial_share", s.phone.partial_share),
        ("owner.manual_share", s.owner.manual_share),
        ("battery.min_install", s.battery.min_install),
        ("battery.replace_below", s.battery.replace_below),
    ):
        need(0.0 <= p <= 1.0, f"{what} must be between 0 and 1, got {p}")
    need(
        s.showings.weekday_per_day >= 0 and s.showings.weekend_per_day >= 0,
        "showing rates must be non-negative",
    )
    need(
        0 <= s.showings.first_hour < s.showings.last_hour <= 24,
        "showings.first_hour < last_hour, both within 0..24",
    )
    b = s.baselines
    need(
        b.smp_frame_payload > 0 and b.dfu_packet_payload > 0 and b.dfu_object_bytes > 0,
        "baseline frame and object sizes must be positive",
    )
    need(
        min(
            b.smp_frame_overhead,
            b.smp_session_bytes,
            b.dfu_packet_overhead,
            b.dfu_object_overhead,
            b.dfu_session_bytes,
        )
        >= 0,
        "baseline overheads must be >= 0",
    )
    need(
        128 <= s.access.max_frame <= 4096,
        "access.max_frame must be 128..4096 (the protocol's range)",
    )
    need(s.release.sample_image_bytes >= 4096, "release.sample_image_bytes must be >= 4096")


def parse(text: str, source: str = "<string>") -> Scenario:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{source}: not valid TOML: {e}") from None
    top: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("name", "description"):
            if not isinstance(value, str):
                raise ScenarioError(f"{source}: {key} must be a string")
            top[key] = value
        elif key in SECTIONS:
            sections[key] = _build_section(SECTIONS[key], value, key)
        else:
            raise ScenarioError(
                f"{source}: unknown section or key {key!r}; known: "
                f"name, description, {', '.join(SECTIONS)}"
            )
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line[1:].removeprefix(" "))
    s = Scenario(**top, **sections, source=source, notes="\n".join(header).strip())
    _validate(s)
    return s


# Next to this module, not importlib.resources: an editable install made before
# sim/__init__.py existed maps ``sim`` as a namespace package, and resources
# cannot list a namespace package's files.
SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"


def builtin_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def load(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name (``rmls-passive``) or a TOML file by path."""
    text_name = str(name_or_path)
    path = Path(text_name)
    if path.suffix == ".toml" or path.exists():
        try:
            text = path.read_text()
        except OSError as e:
            raise ScenarioError(f"cannot read scenario {path}: {e.strerror}") from None
        return parse(text, str(path))
    if text_name in builtin_names():
        return parse((SCENARIO_DIR / f"{text_name}.toml").read_text(), f"builtin:{text_name}")
    raise ScenarioError(
        f"no scenario {text_name!r}: not a file, and the built-in ones are "
        f"{', '.join(builtin_names())}"
    )
