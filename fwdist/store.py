"""A content-addressed release store in a plain directory.

Layout::

    DIR/fwdist-store              format marker ("fwdist store v1")
    DIR/objects/ab/abcdef...      zstd frame of a piece or piece table, named by its SHA-256
    DIR/releases/PRODUCT/X.Y.Z    signed manifest bytes (format 1: the whole release)
    DIR/releases/PRODUCT/X.Y.Z.air  its format 2 manifests, one per payload, signed
                                  (:func:`fwdist.air.encode_bundle`); a release staged
                                  before format 2 existed has none
    DIR/keys/KEYID.pub            public key of a signer seen at staging: a record, never a
                                  trust root (whoever can write the store can write here too)
    DIR/hardware/ID.json          a box model's hardware profile (:mod:`fwdist.hardware`);
                                  made by the first ``fwdist hardware set``
    DIR/trust/root/N              signed root metadata version N (:mod:`fwdist.trust`); the
                                  chain 1, 2, ... that phones carry to boxes
    DIR/trust/timestamp           the latest signed timestamp (replaced by each new one)
    DIR/tmp/NAME.HEX16            writes in progress; never read
    DIR/lock                      the writers' lock

Every file is written to ``tmp/`` and renamed into place, so a reader sees a
whole object or none. Manifests are fsynced one by one; piece objects, which
come by the thousand, are not (an fsync each made staging 15x slower): instead
the store syncs the file system once before the manifest that references them
lands. A release therefore becomes visible only after all its objects are
durable; a crash can leave unreferenced, possibly truncated objects, which
staging never trusts blindly (it re-checks every object it deduplicates against)
and ``gc`` removes.
Writers hold an exclusive ``flock`` on ``DIR/lock`` so ``gc`` never races a stage.

Other people may be able to write the store too (a shared directory, a synced
bucket). So the store never follows a symbolic link inside it (it refuses to
open, or to lock, a store that holds one), reads only regular files of bounded
size (a FIFO or a terabyte file cannot stall or exhaust a reader), and treats
anything its layout does not name as a *stray*: reported, never read, never
deleted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from fwdist import trust
from fwdist.errors import ManifestError, StoreError, TrustError
from fwdist.manifest import MAX_MANIFEST_BYTES, MAX_PIECE_SIZE, MAX_TABLE_BYTES, Version, check_name

_FORMAT_FILE = "fwdist-store"
_FORMAT_LINE = b"fwdist store v1\n"
_LAYOUT_DIRS = ("objects", "releases", "keys", "tmp")
_OPTIONAL_DIRS = ("hardware", "trust")
"""Made on first use, so stores made before hardware profiles existed open as they are."""
MAX_PROFILE_BYTES = 4096
"""Far above any profile fwdist writes (about 300 bytes): the most a profile read takes."""

MAX_OBJECT_BYTES = max(MAX_TABLE_BYTES, MAX_PIECE_SIZE)
"""No piece table or piece holds more: the most any stored object may decompress to."""
MAX_FRAME_BYTES = MAX_OBJECT_BYTES + (MAX_OBJECT_BYTES >> 7)
"""Above zstd's compression bound for MAX_OBJECT_BYTES: the largest object file fwdist writes."""

AIR_SUFFIX = ".air"
MAX_AIR_BYTES = 64 * 1024
"""No format 2 bundle is larger: at most 33 payloads of a few hundred bytes each."""

_FANOUT = re.compile(r"[0-9a-f]{2}")
_OBJECT = re.compile(r"[0-9a-f]{64}")
_KEY = re.compile(r"[0-9a-f]{16}\.pub")
_PROFILE_SUFFIX = ".json"
_TMP = re.compile(r".+\.[0-9a-f]{16}")
_ROOT_VERSION = re.compile(r"0|[1-9][0-9]{0,9}")
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "no space left on device"
    if e.errno == errno.ELOOP:
        return "it is a symbolic link"
    return e.strerror or str(e)


def _read_regular(path: Path, limit: int, what: str, kind: str) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    Raises FileNotFoundError when it is missing and StoreError when it is
    anything else than a regular file of at most ``limit`` bytes. Never follows
    a final symbolic link and never waits on a FIFO.
    """
    try:
        fd = os.open(path, _READ)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise StoreError(f"cannot read {what}: {_describe(e)}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"{what} is not a regular file")
        if st.st_size > limit:
            raise StoreError(f"{what} is {st.st_size} bytes, larger than any {kind} fwdist writes")
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise StoreError(f"cannot read {what}: {_describe(e)}") from None
    if len(data) > limit:  # grew since fstat
        raise StoreError(f"{what} is larger than any {kind} fwdist writes")
    return data


def _entries(path: Path) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name)


def _is_version(name: str) -> bool:
    try:
        return str(Version.parse(name)) == name
    except ManifestError:
        return False


def _is_name(name: str) -> bool:
    """Whether ``name`` is a valid product or hardware id (the two share one rule)."""
    try:
        check_name("product", name)
    except ManifestError:
        return False
    return True


@dataclass
class Store:
    """A store directory. Create one with ``open(..., create=True)``, open one with :meth:`open`."""

    root: Path
    _created: list[Path] = field(default_factory=list, repr=False)
    _unsynced: bool = field(default=False, repr=False)

    # -- opening ---------------------------------------------------------------

    @classmethod
    def open(cls, root: Path | str, *, create: bool = False) -> Store:
        """Open the store at ``root``; with ``create``, make one there if there is none.

        ``root`` itself may be a symbolic link (the user named it); nothing inside may.
        """
        root = Path(root)
        try:
            if not root.exists():
                if not create:
                    raise StoreError(f"no store at {root}")
                cls._create(root)
            elif not root.is_dir():
                raise StoreError(f"{root} is not a directory")
            elif not os.path.lexists(root / _FORMAT_FILE):
                if not create:
                    raise StoreError(f"{root} is not an fwdist store (no {_FORMAT_FILE} file)")
                if any(root.iterdir()):
                    raise StoreError(f"{root} exists and is not empty; refusing to make it a store")
                cls._create(root)
        except OSError as e:
            raise StoreError(f"cannot open store {root}: {_describe(e)}") from None
        store = cls(root)
        store._check_layout()
        marker = _read_regular(root / _FORMAT_FILE, 64, f"{root}/{_FORMAT_FILE}", "marker")
        if marker != _FORMAT_LINE:
            raise StoreError(f"{root} holds an unknown store format")
        return store

    @staticmethod
    def _create(root: Path) -> None:
        """Make the layout, the marker last; on failure remove what this call made."""
        made: list[Path] = []
        try:
            if not root.exists():
                root.mkdir(parents=True)
                made.append(root)
            for sub in _LAYOUT_DIRS:
                (root / sub).mkdir()
                made.append(root / sub)
            (root / _FORMAT_FILE).write_bytes(_FORMAT_LINE)
        except OSError as e:
            for path in reversed(made):
                with contextlib.suppress(OSError):
                    path.rmdir()
            raise StoreError(f"cannot create store {root}: {_describe(e)}") from None

    def _check_layout(self) -> None:
        """Refuse a store that lacks a layout directory or holds a symbolic link anywhere in it."""
        for name in (_FORMAT_FILE, "lock", *_LAYOUT_DIRS, *_OPTIONAL_DIRS):
            if (self.root / name).is_symlink():
                self._refuse_link(name)
        present = [s for s in _OPTIONAL_DIRS if os.path.lexists(self.root / s)]
        for sub in (*_LAYOUT_DIRS, *present):
            if not (self.root / sub).is_dir():
                raise StoreError(
                    f"store {self.root} is damaged: {sub} is missing or not a directory"
                )
        pending = [self.root / sub for sub in (*_LAYOUT_DIRS, *present)]
        try:
            while pending:
                for entry in _entries(pending.pop()):
                    if entry.is_symlink():
                        self._refuse_link(str(Path(entry.path).relative_to(self.root)))
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
        except OSError as e:
            raise StoreError(f"cannot read store {self.root}: {_describe(e)}") from None

    def _refuse_link(self, rel: str) -> None:
        raise StoreError(
            f"store {self.root}: {rel} is a symbolic link; fwdist never follows links out of "
            "a store (replace it with what it points to)"
        )

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive writer lock (stage, gc), then a fresh check that no link was planted."""
        try:
            fd = os.open(
                self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
            )
        except OSError as e:
            raise StoreError(
                f"cannot lock store {self.root}: {_describe(e)} "
                "(stage and gc need a writable store)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._check_layout()
            yield
        finally:
            os.close(fd)  # releases the lock

    # -- atomic files ------------------------------------------------------------

    def _write_atomic(self, dest: Path, data: bytes, durable: bool = True) -> None:
        tmp = self.root / "tmp" / f"{dest.name}.{secrets.token_hex(8)}"
        rel = dest.relative_to(self.root)
        try:
            dest.parent.mkdir(exist_ok=True)
            if dest.parent.is_symlink():
                self._refuse_link(str(rel.parent))
            if durable:
                self.sync()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, dest)
            if durable:
                _fsync_dir(dest.parent)
            else:
                self._unsynced = True
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StoreError(f"cannot write {rel}: {_describe(e)}") from None
        self._created.append(dest)

    def sync(self) -> None:
        """Make every earlier non-durable write durable (one file-system sync)."""
        if self._unsynced:
            os.sync()
            self._unsynced = False

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Undo every file this block created if it raises: the store stays as it was."""
        self._created = []
        try:
            with self.locked():
                yield
        except BaseException:
            for path in reversed(self._created):
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        finally:
            self._created = []

    def written_objects(self) -> list[Path]:
        """Objects the current transaction created (new pieces and tables)."""
        objects = self.root / "objects"
        return sorted({p for p in self._created if p.parent.parent == objects})

    # -- objects -------------------------------------------------------------------

    def object_path(self, object_id: bytes) -> Path:
        h = object_id.hex()
        return self.root / "objects" / h[:2] / h

    def has(self, object_id: bytes) -> bool:
        return os.path.lexists(self.object_path(object_id))

    def put_frame(self, object_id: bytes, frame: bytes, durable: bool = True) -> bool:
        """Store a zstd frame whose content hashes to ``object_id``; False if already there.

        ``durable=False`` skips the per-file fsync; the next durable write (the
        manifest) syncs first, so nothing references an object before it is on disk.
        An object already there is not checked here: see :meth:`reuse_frame`.
        """
        if self.has(object_id):
            return False
        self._write_atomic(self.object_path(object_id), frame, durable)
        return True

    def reuse_frame(self, object_id: bytes, fresh: bytes, max_size: int) -> bytes:
        """The stored frame for ``object_id`` when it is intact, else replace it by ``fresh``.

        Deduplication must not trust an object a crash (or a peer) may have damaged.
        """
        stored = self.get_frame(object_id)
        if stored == fresh or self._holds(stored, object_id, max_size):
            return stored
        self._repair(object_id, fresh)
        return fresh

    def put_content(self, content: bytes, level: int = 19) -> bytes:
        """Store ``content`` unless an intact copy is there; repair a damaged one."""
        object_id = hashlib.sha256(content).digest()
        if not self.has(object_id):
            self.put_frame(object_id, compress(content, level))
        elif not self._holds(self.get_frame(object_id), object_id, len(content)):
            self._repair(object_id, compress(content, level))
        return object_id

    @staticmethod
    def _holds(frame: bytes, object_id: bytes, max_size: int) -> bool:
        try:
            return hashlib.sha256(decompress(frame, max_size)).digest() == object_id
        except StoreError:
            return False

    def _repair(self, object_id: bytes, frame: bytes) -> None:
        path = self.object_path(object_id)
        self._write_atomic(path, frame, durable=False)
        self._created.remove(path)  # a repair, not a new object: an undo must keep it

    def get_frame(self, object_id: bytes) -> bytes:
        what = f"object {object_id.hex()}"
        try:
            return _read_regular(self.object_path(object_id), MAX_FRAME_BYTES, what, "object")
        except FileNotFoundError:
            raise StoreError(f"{what} is missing from the store") from None

    def get_content(self, object_id: bytes, max_size: int = MAX_OBJECT_BYTES) -> bytes:
        """The object's content, checked against its name."""
        content = decompress(self.get_frame(object_id), max_size, what=f"object {object_id.hex()}")
        if hashlib.sha256(content).digest() != object_id:
            raise StoreError(
                f"object {object_id.hex()} is damaged: its content does not match its name"
            )
        return content

    def object_ids(self) -> Iterator[bytes]:
        """Every object, in name order; strays (see :meth:`strays`) are not objects."""
        for sub in self._scan("objects"):
            if sub.is_dir(follow_symlinks=False) and _FANOUT.fullmatch(sub.name):
                for f in _entries(Path(sub.path)):
                    if self._is_object(sub.name, f):
                        yield bytes.fromhex(f.name)

    @staticmethod
    def _is_object(fanout: str, f: os.DirEntry[str]) -> bool:
        return (
            f.is_file(follow_symlinks=False)
            and _OBJECT.fullmatch(f.name) is not None
            and f.name.startswith(fanout)
        )

    def remove_object(self, object_id: bytes) -> int:
        path = self.object_path(object_id)
        try:
            size = path.lstat().st_size
            path.unlink()
        except OSError as e:
            raise StoreError(f"cannot remove object {object_id.hex()}: {_describe(e)}") from None
        return size

    # -- manifests -------------------------------------------------------------------

    def manifest_path(self, product: str, version: str) -> Path:
        check_name("product", product)
        return self.root / "releases" / product / str(Version.parse(version))

    def put_manifest(self, product: str, version: str, wire: bytes) -> None:
        path = self.manifest_path(product, version)
        if os.path.lexists(path):
            raise StoreError(f"release {product}@{version} is already staged")
        self._write_atomic(path, wire)

    def air_path(self, product: str, version: str) -> Path:
        path = self.manifest_path(product, version)
        return path.with_name(path.name + AIR_SUFFIX)

    def put_air(self, product: str, version: str, bundle: bytes) -> None:
        """The release's format 2 manifests; written before its manifest, which makes the
        release visible (a leftover of a killed stage is replaced, never read alone)."""
        self._write_atomic(self.air_path(product, version), bundle)

    def get_air(self, product: str, version: str) -> bytes | None:
        """The release's format 2 bundle, or None for a release staged before format 2."""
        path = self.air_path(product, version)
        what = str(path.relative_to(self.root))
        try:
            return _read_regular(path, MAX_AIR_BYTES, what, "format 2 bundle")
        except FileNotFoundError:
            return None

    def get_manifest(self, product: str, version: str) -> bytes:
        path = self.manifest_path(product, version)
        what = str(path.relative_to(self.root))
        try:
            return _read_regular(path, MAX_MANIFEST_BYTES, what, "manifest")
        except FileNotFoundError:
            raise StoreError(f"no release {product}@{version} in the store") from None

    def releases(self, product: str | None = None) -> list[tuple[str, str]]:
        """(product, version) of every staged release, oldest version first."""
        out = []
        for pdir in self._scan("releases"):
            if product is not None and pdir.name != product:
                continue
            if pdir.is_dir(follow_symlinks=False) and _is_name(pdir.name):
                for v in _entries(Path(pdir.path)):
                    if v.is_file(follow_symlinks=False) and _is_version(v.name):
                        out.append((pdir.name, Version.parse(v.name)))
        return [(p, str(v)) for p, v in sorted(out)]

    # -- keys ------------------------------------------------------------------------

    def put_key(self, key_id: bytes, pem: bytes) -> None:
        path = self.root / "keys" / f"{key_id.hex()}.pub"
        if not os.path.lexists(path):
            self._write_atomic(path, pem)

    def key_files(self) -> list[Path]:
        return [
            Path(e.path)
            for e in self._scan("keys")
            if e.is_file(follow_symlinks=False) and _KEY.fullmatch(e.name)
        ]

    # -- hardware profiles -----------------------------------------------------------

    def profile_path(self, hardware: str) -> Path:
        check_name("hardware", hardware)
        return self.root / "hardware" / f"{hardware}{_PROFILE_SUFFIX}"

    def put_profile(self, hardware: str, data: bytes) -> None:
        """Write (or replace) ``hardware``'s profile, atomically and durably.

        Call it under :meth:`locked`. A replacement is not an object a failed
        transaction may undo, so it is not recorded as created.
        """
        path = self.profile_path(hardware)
        self._write_atomic(path, data)
        self._created.remove(path)

    def get_profile(self, hardware: str) -> bytes | None:
        """The stored profile bytes of ``hardware``, or None when it has none."""
        path = self.profile_path(hardware)
        what = str(path.relative_to(self.root))
        try:
            return _read_regular(path, MAX_PROFILE_BYTES, what, "hardware profile")
        except FileNotFoundError:
            return None

    def profile_ids(self) -> list[str]:
        """The hardware ids that have a profile, in name order."""
        return [e.name[: -len(_PROFILE_SUFFIX)] for e in self._optional("hardware")
                if self._is_profile(e)]

    @staticmethod
    def _is_profile(e: os.DirEntry[str]) -> bool:
        name = e.name[: -len(_PROFILE_SUFFIX)]
        return (e.is_file(follow_symlinks=False) and e.name.endswith(_PROFILE_SUFFIX)
                and _is_name(name))

    def _optional(self, sub: str) -> list[os.DirEntry[str]]:
        """The entries of an optional layout directory (none while it was never made)."""
        if not os.path.lexists(self.root / sub):
            return []
        return self._scan(sub)

    # -- trust metadata --------------------------------------------------------------

    def put_root(self, wire: bytes) -> int:
        """Store a signed root as ``trust/root/N`` (N its version); returns N.

        A version is written once: the same bytes again is a no-op, other bytes are
        refused (a root version names one root forever, as the chain needs). Signatures
        are the signer's business (:func:`fwdist.trust.verify_chain`), not the store's.
        """
        try:
            version = trust.decode_root(wire).root.version
        except TrustError as e:
            raise StoreError(f"not a root: {e}") from None
        path = self.root / "trust" / "root" / str(version)
        if os.path.lexists(path):
            if self.get_root(version) == wire:
                return version
            raise StoreError(f"root {version} is already in the store, with other bytes")
        (self.root / "trust").mkdir(exist_ok=True)
        self._write_atomic(path, wire)
        return version

    def get_root(self, version: int) -> bytes | None:
        path = self.root / "trust" / "root" / str(version)
        try:
            return _read_regular(path, trust.MAX_META_BYTES, f"trust/root/{version}", "root")
        except FileNotFoundError:
            return None

    def root_versions(self) -> list[int]:
        """The versions under ``trust/root/``, ascending."""
        if not os.path.lexists(self.root / "trust" / "root"):
            return []
        return sorted(int(e.name) for e in self._scan("trust/root") if self._is_root(e))

    def root_chain(self, after: int = 0) -> list[bytes]:
        """The stored roots above version ``after``, in order (what a box at ``after`` needs)."""
        out = []
        for v in self.root_versions():
            wire = self.get_root(v) if v > after else None
            if wire is not None:
                out.append(wire)
        return out

    def put_timestamp(self, wire: bytes) -> None:
        """Replace ``trust/timestamp`` (atomically, durably); like a profile, not undone."""
        try:
            trust.decode_timestamp(wire)
        except TrustError as e:
            raise StoreError(f"not a timestamp: {e}") from None
        (self.root / "trust").mkdir(exist_ok=True)
        path = self.root / "trust" / "timestamp"
        self._write_atomic(path, wire)
        self._created.remove(path)

    def get_timestamp(self) -> bytes | None:
        try:
            return _read_regular(self.root / "trust" / "timestamp", trust.MAX_META_BYTES,
                                 "trust/timestamp", "timestamp")
        except FileNotFoundError:
            return None

    @staticmethod
    def _is_root(e: os.DirEntry[str]) -> bool:
        return e.is_file(follow_symlinks=False) and _ROOT_VERSION.fullmatch(e.name) is not None

    # -- what is not ours ------------------------------------------------------------

    def strays(self) -> list[str]:
        """Paths (relative to the root) in the layout's directories that fwdist did not write."""
        out: list[str] = []

        def stray(entry: os.DirEntry[str]) -> None:
            out.append(str(Path(entry.path).relative_to(self.root)))

        for sub in self._scan("objects"):
            if not (sub.is_dir(follow_symlinks=False) and _FANOUT.fullmatch(sub.name)):
                stray(sub)
                continue
            for f in _entries(Path(sub.path)):
                if not self._is_object(sub.name, f):
                    stray(f)
        for pdir in self._scan("releases"):
            if not (pdir.is_dir(follow_symlinks=False) and _is_name(pdir.name)):
                stray(pdir)
                continue
            for v in _entries(Path(pdir.path)):
                name = v.name.removesuffix(AIR_SUFFIX)
                if not (v.is_file(follow_symlinks=False) and _is_version(name)):
                    stray(v)
        for e in self._scan("keys"):
            if not (e.is_file(follow_symlinks=False) and _KEY.fullmatch(e.name)):
                stray(e)
        for e in self._scan("tmp"):
            if not self._is_leftover(e):
                stray(e)
        for e in self._optional("hardware"):
            if not self._is_profile(e):
                stray(e)
        for e in self._optional("trust"):
            if e.name == "root" and e.is_dir(follow_symlinks=False):
                for r in _entries(Path(e.path)):
                    if not self._is_root(r):
                        stray(r)
            elif not (e.name == "timestamp" and e.is_file(follow_symlinks=False)):
                stray(e)
        return sorted(out)

    @staticmethod
    def _is_leftover(e: os.DirEntry[str]) -> bool:
        return e.is_file(follow_symlinks=False) and _TMP.fullmatch(e.name) is not None

    def clean_tmp(self) -> int:
        """Remove what killed writes left in ``tmp/`` (files named as fwdist names them)."""
        n = 0
        for e in self._scan("tmp"):
            if self._is_leftover(e):
                try:
                    os.unlink(e.path)
                except OSError as err:
                    raise StoreError(f"cannot remove tmp/{e.name}: {_describe(err)}") from None
                n += 1
        return n

    def _scan(self, sub: str) -> list[os.DirEntry[str]]:
        try:
            return _entries(self.root / sub)
        except OSError as e:
            raise StoreError(f"cannot read {sub}/ of store {self.root}: {_describe(e)}") from None


def compress(content: bytes, level: int) -> bytes:
    """One zstd frame with the content size in its header and no checksum (ids are SHA-256)."""
    params = zstandard.ZstdCompressionParameters.from_level(
        level, source_size=len(content), write_content_size=True, write_checksum=False
    )
    return zstandard.ZstdCompressor(compression_params=params).compress(content)


def decompress(frame: bytes, max_size: int, *, what: str = "frame") -> bytes:
    """Decompress one zstd frame, refusing more than ``max_size`` bytes of output.

    The declared content size is checked before anything is allocated, so a
    hostile frame cannot make us allocate without bound.
    """
    try:
        size = zstandard.frame_content_size(frame)
        if size < 0 or size > max_size:
            raise StoreError(f"{what} declares no size or more than {max_size} bytes")
        out = zstandard.ZstdDecompressor().decompress(frame, max_output_size=max_size)
    except zstandard.ZstdError as e:
        raise StoreError(f"{what} is not a valid zstd frame: {e}") from None
    if len(out) != size:
        raise StoreError(f"{what} does not decompress to its declared size")
    return out
