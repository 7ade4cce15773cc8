"""A content-addressed release store in a plain directory.

Layout (any static web server or CDN can serve it as is)::

    DIR/objects/ab/abcdef...      zstd frame of a piece or piece table, named by its SHA-256
    DIR/releases/PRODUCT/X.Y.Z    signed manifest bytes
    DIR/keys/KEYID.pub            public key of a signer seen at staging (verify checks against it)
    DIR/tmp/                      writes in progress; never read

Every file is written to ``tmp/`` and renamed into place, so a reader sees a
whole object or none. Manifests are fsynced one by one; piece objects, which
come by the thousand, are not (an fsync each made staging 15x slower): instead
the store syncs the file system once before the manifest that references them
lands. A release therefore becomes visible only after all its objects are
durable; a crash can leave unreferenced, possibly truncated objects, which
staging never trusts blindly (it re-checks an object it deduplicates against)
and ``gc`` removes.
Writers hold an exclusive ``flock`` on ``DIR/lock`` so ``gc`` never races a stage.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from fwdist.errors import StoreError
from fwdist.manifest import Version, check_name

_FORMAT_FILE = "fwdist-store"
_FORMAT_LINE = b"fwdist store v1\n"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "no space left on device"
    return e.strerror or str(e)


@dataclass
class Store:
    """A store directory. Create one with :meth:`create`, open one with :meth:`open`."""

    root: Path
    _created: list[Path] = field(default_factory=list, repr=False)
    _unsynced: bool = field(default=False, repr=False)

    # -- opening ---------------------------------------------------------------

    @classmethod
    def open(cls, root: Path | str, *, create: bool = False) -> Store:
        root = Path(root)
        marker = root / _FORMAT_FILE
        if not marker.exists():
            if not create:
                raise StoreError(f"{root} is not an fwdist store (no {_FORMAT_FILE} file)")
            if root.exists() and any(root.iterdir()):
                raise StoreError(f"{root} exists and is not empty; refusing to make it a store")
            try:
                for sub in ("objects", "releases", "keys", "tmp"):
                    (root / sub).mkdir(parents=True, exist_ok=True)
                marker.write_bytes(_FORMAT_LINE)
            except OSError as e:
                raise StoreError(f"cannot create store {root}: {_describe(e)}") from None
        elif marker.read_bytes() != _FORMAT_LINE:
            raise StoreError(f"{root} holds an unknown store format")
        return cls(root)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive writer lock (stage, gc)."""
        with open(self.root / "lock", "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- atomic files ------------------------------------------------------------

    def _write_atomic(self, dest: Path, data: bytes, durable: bool = True) -> None:
        tmp = self.root / "tmp" / f"{dest.name}.{secrets.token_hex(8)}"
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if durable:
                self.sync()
            with open(tmp, "wb") as f:
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
            raise StoreError(
                f"cannot write {dest.relative_to(self.root)}: {_describe(e)}"
            ) from None
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
        return self.object_path(object_id).exists()

    def put_frame(self, object_id: bytes, frame: bytes, durable: bool = True) -> bool:
        """Store a zstd frame whose content hashes to ``object_id``; False if already there.

        ``durable=False`` skips the per-file fsync; the next durable write (the
        manifest) syncs first, so nothing references an object before it is on disk.
        """
        path = self.object_path(object_id)
        if path.exists():
            return False
        self._write_atomic(path, frame, durable)
        return True

    def reuse_frame(self, object_id: bytes, fresh: bytes, max_size: int) -> bytes:
        """The stored frame for ``object_id`` when it is intact, else replace it by ``fresh``.

        Deduplication must not trust an object a crash may have truncated.
        """
        path = self.object_path(object_id)
        stored = self.get_frame(object_id)
        if stored == fresh:
            return stored
        try:
            if hashlib.sha256(decompress(stored, max_size)).digest() == object_id:
                return stored
        except StoreError:
            pass
        self._write_atomic(path, fresh, durable=False)
        self._created.remove(path)  # a repair, not a new object: an undo must keep it
        return fresh

    def put_content(self, content: bytes, level: int = 19) -> bytes:
        object_id = hashlib.sha256(content).digest()
        if not self.has(object_id):
            self.put_frame(object_id, compress(content, level))
        return object_id

    def get_frame(self, object_id: bytes) -> bytes:
        try:
            return self.object_path(object_id).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"object {object_id.hex()} is missing from the store") from None
        except OSError as e:
            raise StoreError(f"cannot read object {object_id.hex()}: {_describe(e)}") from None

    def get_content(self, object_id: bytes, max_size: int = 1 << 24) -> bytes:
        """The object's content, checked against its name."""
        content = decompress(self.get_frame(object_id), max_size, what=f"object {object_id.hex()}")
        if hashlib.sha256(content).digest() != object_id:
            raise StoreError(
                f"object {object_id.hex()} is damaged: its content does not match its name"
            )
        return content

    def object_ids(self) -> Iterator[bytes]:
        for sub in sorted((self.root / "objects").iterdir()):
            for f in sorted(sub.iterdir()):
                with contextlib.suppress(ValueError):
                    yield bytes.fromhex(f.name)

    def remove_object(self, object_id: bytes) -> int:
        path = self.object_path(object_id)
        size = path.stat().st_size
        path.unlink()
        return size

    # -- manifests -------------------------------------------------------------------

    def manifest_path(self, product: str, version: str) -> Path:
        check_name("product", product)
        return self.root / "releases" / product / str(Version.parse(version))

    def put_manifest(self, product: str, version: str, wire: bytes) -> None:
        path = self.manifest_path(product, version)
        if path.exists():
            raise StoreError(f"release {product}@{version} is already staged")
        self._write_atomic(path, wire)

    def get_manifest(self, product: str, version: str) -> bytes:
        try:
            return self.manifest_path(product, version).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"no release {product}@{version} in the store") from None

    def releases(self, product: str | None = None) -> list[tuple[str, str]]:
        """(product, version) of every staged release, oldest version first."""
        out = []
        base = self.root / "releases"
        for pdir in sorted(base.iterdir()) if base.exists() else []:
            if product is not None and pdir.name != product:
                continue
            for v in pdir.iterdir():
                with contextlib.suppress(Exception):
                    out.append((pdir.name, Version.parse(v.name)))
        return [(p, str(v)) for p, v in sorted(out)]

    # -- keys ------------------------------------------------------------------------

    def put_key(self, key_id: bytes, pem: bytes) -> None:
        path = self.root / "keys" / f"{key_id.hex()}.pub"
        if not path.exists():
            self._write_atomic(path, pem)

    def key_files(self) -> list[Path]:
        return sorted((self.root / "keys").glob("*.pub"))

    def clean_tmp(self) -> int:
        n = 0
        for f in (self.root / "tmp").iterdir():
            f.unlink()
            n += 1
        return n


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
