"""Simulated phones for the fleet benchmark and fault tests: upload report batches, fetch objects.

A phone is one ``httpx.AsyncClient`` (its own connections, as a real phone has) driven
by trio. It does what the contract (``docs/fleet-api.md``) says a phone does, nothing
more: ``POST /v1/reports`` with the signed reports it carries, each prefixed by its
length as a LEB128 varint, and ``GET`` of content-addressed object paths. Every request
is timed, and every answer counted by outcome, so the benchmark's figures and the fault
tests' exact counts come from the same tally.

``retry``: a phone whose request fails at the transport (the server was killed, is
restarting, refused the connection) or gets a 5xx sends the same batch again until the
deadline; that is what a phone in the field does, and why ingest must be idempotent.
"""

from __future__ import annotations

import hashlib
import math
import ssl
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import trio

from fwdist.server.ingest import MEDIA_TYPE, frame_reports

RETRY_PAUSE_S = 0.1


def phone_client(url: str, tls: ssl.SSLContext, timeout: float) -> httpx.AsyncClient:
    """A phone: its own client and connections, sharing the run's one ``tls`` context.

    httpx otherwise loads the CA bundle for every client, about 55 ms of CPU each, which
    for hundreds of phones on loopback HTTP (no TLS at all) is the harness's cost, paid
    in the timed window on the cores the server needs.
    """
    return httpx.AsyncClient(base_url=url, timeout=timeout, verify=tls)


@dataclass
class Tally:
    """What all phones saw: latencies of the successful requests, report results by status,
    transport failures and HTTP errors, retries, bytes fetched and objects that mismatched."""

    latencies: list[float] = field(default_factory=list)
    results: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    bytes_fetched: int = 0
    corrupt: int = 0

    def percentile(self, q: float) -> float:
        """The ``q`` quantile (0..1) of the latencies, nearest rank, in seconds."""
        if not self.latencies:
            raise ValueError("no request succeeded: no latency to report")
        ordered = sorted(self.latencies)
        rank = min(len(ordered), max(1, math.ceil(q * len(ordered))))
        return ordered[rank - 1]


async def upload(
    client: httpx.AsyncClient,
    token: str,
    batches: Sequence[list[bytes]],
    tally: Tally,
    retry_until: float | None = None,
) -> None:
    """POST each batch in turn; with ``retry_until`` (a ``time.monotonic()`` deadline) resend a
    batch whose request failed until it is answered."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": MEDIA_TYPE}
    for batch in batches:
        body = frame_reports(batch)
        while True:
            t = time.perf_counter()
            try:
                r = await client.post("/v1/reports", content=body, headers=headers)
            except httpx.TransportError as e:
                tally.failures[type(e).__name__] += 1
                outcome = None
            else:
                outcome = r
                if r.status_code >= 500:
                    tally.failures[f"HTTP {r.status_code}"] += 1
                    outcome = None
            if outcome is not None:
                tally.latencies.append(time.perf_counter() - t)
                if outcome.status_code != 200:
                    tally.failures[f"HTTP {outcome.status_code}"] += 1
                else:
                    tally.results.update(x["status"] for x in outcome.json()["results"])
                break
            if retry_until is None or time.monotonic() > retry_until:
                break
            tally.retries += 1
            await trio.sleep(RETRY_PAUSE_S)


async def download(
    client: httpx.AsyncClient, paths: Sequence[str], sha256: Sequence[bytes], tally: Tally
) -> None:
    """GET every path; a body whose SHA-256 differs from the file's counts as corrupt."""
    for path, digest in zip(paths, sha256, strict=True):
        t = time.perf_counter()
        try:
            r = await client.get(path)
        except httpx.TransportError as e:
            tally.failures[type(e).__name__] += 1
            continue
        if r.status_code != 200:
            tally.failures[f"HTTP {r.status_code}"] += 1
            continue
        tally.latencies.append(time.perf_counter() - t)
        tally.bytes_fetched += len(r.content)
        if hashlib.sha256(r.content).digest() != digest:
            tally.corrupt += 1
