"""Seeded keys and a 2-of-3 root for the trust tests (the lockbox's and the codec's)."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fwdist import trust

EXPIRES = 2_000_000_000  # 2033-05-18
T0 = 1_700_000_000


def key(name: str) -> Ed25519PrivateKey:
    """A key from a name: the same key in every run."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"t1 " + name.encode()).digest())


ROOT_KEYS = [key(f"root{i}") for i in range(3)]
RELEASE_KEYS = [key(f"release{i}") for i in range(3)]
TIMESTAMP_KEY = key("timestamp")


def threshold(k: int, keys: list[Ed25519PrivateKey]) -> trust.Threshold:
    return trust.Threshold.of(k, [x.public_key() for x in keys])


def root_v1() -> trust.Root:
    """Root 1: 2-of-3 root keys, 2-of-3 release signers (any product), one timestamp key."""
    return trust.Root(1, EXPIRES, threshold(2, ROOT_KEYS), threshold(1, [TIMESTAMP_KEY]),
                      (trust.ReleaseRole(threshold(2, RELEASE_KEYS)),))


def timestamp(version: int, time: int, **kw: object) -> bytes:
    ts = trust.Timestamp(version, time, kw.pop("expires", time + 86_400),  # type: ignore[arg-type]
                         **kw)  # type: ignore[arg-type]
    return trust.sign(ts, [TIMESTAMP_KEY])
