"""Box report signatures, checked on the machine's other cores.

Ed25519 verification is most of what ingesting a report costs (about 0.17 ms each here),
and ``cryptography`` holds the GIL while it verifies: in the server's one process it
would share one core with HTTP, JSON and the database. :class:`Verifier` sends a
request's checks, all in one message, to worker processes and waits for the answer on
the request's worker thread (the event loop keeps serving meanwhile).

:func:`check` is the one function both paths run, so the pool and the inline path
answer alike by construction. A pool that broke (a worker killed) is replaced by
inline checks: a report is never refused because a helper process died. Workers ask
the kernel to kill them when the server dies (``PR_SET_PDEATHSIG``), so a ``kill -9``
of the server leaves nothing behind.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

Check = tuple[bytes, bytes, bytes]
"""One signature to check: (raw public key, signature, the signed message)."""

POOL_MIN_CHECKS = 8
"""Fewer checks than this are done inline: the round trip to a worker costs more."""
_PR_SET_PDEATHSIG = 1

log = logging.getLogger(__name__)


def check(checks: Sequence[Check]) -> list[bool]:
    """Whether each signature verifies under its key (a malformed key is a False)."""
    keys: dict[bytes, Ed25519PublicKey | None] = {}
    out = []
    for public, signature, message in checks:
        if public not in keys:
            try:
                keys[public] = Ed25519PublicKey.from_public_bytes(public)
            except ValueError:
                keys[public] = None
        key = keys[public]
        try:
            if key is None:
                raise InvalidSignature
            key.verify(signature, message)
        except InvalidSignature:
            out.append(False)
        else:
            out.append(True)
    return out


def _die_with_parent() -> None:
    """In a worker: be killed when the server process ends, however it ends."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops us, not a Ctrl-C


def _ready() -> int:
    return os.getpid()


class Verifier:
    """Checks signatures in ``workers`` processes (none: inline, on the calling thread)."""

    def __init__(self, workers: int = 0) -> None:
        self._pool: ProcessPoolExecutor | None = None
        if workers > 0:
            self._pool = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_die_with_parent)
            for f in [self._pool.submit(_ready) for _ in range(workers)]:
                f.result()  # started and importing now, not in the first request

    def __call__(self, checks: Sequence[Check]) -> list[bool]:
        pool = self._pool
        if pool is None or len(checks) < POOL_MIN_CHECKS:
            return check(checks)
        try:
            return pool.submit(check, list(checks)).result()
        except BrokenProcessPool:
            log.warning("a signature worker died; checking signatures inline from now on")
            self._pool = None
            return check(checks)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def default_workers() -> int:
    """One worker per core beyond the first, which the server's event loop keeps."""
    return max(0, (os.cpu_count() or 1) - 1)
