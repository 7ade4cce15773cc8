"""Ed25519 key files: PKCS#8 PEM private keys (mode 0600), SubjectPublicKeyInfo PEM public keys.

A private key file may be encrypted (PKCS#8 ``ENCRYPTED PRIVATE KEY``, under a passphrase):
a copied disk or backup then leaks nothing without the passphrase. Unencrypted files, which
every release before this one wrote, still load. Where a passphrase comes from (a prompt, an
environment variable, a file) is the caller's business (:mod:`fwdist.signers`): this module
only asks for it, through a callable, when the file turns out to be encrypted.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fwdist.errors import KeyFileError
from fwdist.manifest import key_id

__all__ = [
    "Signer",
    "generate",
    "is_encrypted",
    "key_id",
    "load_private",
    "load_public",
    "public_pem",
]

# The PEM label of an encrypted PKCS#8 key (RFC 7468 section 11).
ENCRYPTED_LABEL = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"


class Signer(Protocol):
    """What signs: anything holding an Ed25519 key that signs bytes, whether or not it can
    show the key. An ``Ed25519PrivateKey`` loaded from a file is one; a key in an HSM
    (PKCS#11) is another, and never leaves it. Everything that signs (manifests, trust
    metadata) takes a ``Signer``, so where a key lives is the key provider's business.
    """

    def public_key(self) -> Ed25519PublicKey: ...

    def sign(self, data: bytes) -> bytes: ...


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def generate(path: Path, passphrase: bytes | None = None) -> tuple[Path, Path]:
    """Write a new keypair to ``path`` (private, 0600) and ``path.pub``; never overwrite.

    With a ``passphrase`` the private key is written encrypted (PKCS#8, the best
    encryption ``cryptography`` offers: PBES2, PBKDF2-HMAC-SHA256 and AES-256-CBC).
    Both files are made with O_EXCL (no overwrite, not through a planted link);
    if the second cannot be written the first is removed: all or nothing.
    """
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise KeyFileError(f"key file name {str(path)!r} names no file")
    pub_path = path.with_name(path.name + ".pub")
    for p in (path, pub_path):
        if os.path.lexists(p):
            raise KeyFileError(f"{p} already exists; refusing to overwrite a key")
    if passphrase is not None and not passphrase:
        raise KeyFileError("an empty passphrase encrypts nothing; give a passphrase")
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    written: list[Path] = []
    try:
        for p, data, mode in ((path, pem, 0o600), (pub_path, public_pem(key.public_key()), 0o644)):
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            written.append(p)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    except OSError as e:
        for p in written:
            with contextlib.suppress(OSError):
                p.unlink()
        raise KeyFileError(f"cannot write key {e.filename or path}: {e.strerror}") from None
    return path, pub_path


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read key {path}: {e.strerror}") from None


def is_encrypted(path: Path) -> bool:
    """Whether the private key file at ``path`` needs a passphrase."""
    return ENCRYPTED_LABEL in _read(path)


def load_private(
    path: Path, passphrase: Callable[[], bytes] | None = None
) -> Ed25519PrivateKey:
    """The private key in ``path``; ``passphrase()`` is called only if the file is encrypted.

    A callable, not bytes, so nobody is prompted for a key that needs no passphrase.
    """
    data = _read(path)
    password: bytes | None = None
    if ENCRYPTED_LABEL in data:
        if passphrase is None:
            raise KeyFileError(f"{path} is encrypted and no passphrase was given")
        password = passphrase()
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError):
        if password is not None:
            raise KeyFileError(f"wrong passphrase for {path} (or the file is damaged)") from None
        raise KeyFileError(f"{path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(_read(path))
    except (ValueError, TypeError):
        raise KeyFileError(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path} is not an Ed25519 public key")
    return key
