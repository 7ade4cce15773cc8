"""The fleet half of ``fwdist demo``: a server, boxes, phones and two phased rollouts.

What a release engineer does with a fleet, on one machine and on embedded defaults:

1. a real ``fwdist server`` process on 127.0.0.1 (SQLite beside its store), given the
   release key to re-verify what is published, and a token per role;
2. releases published to it (``fwdist publish``'s code), boxes registered, each an
   in-memory lockbox with its own device key that signs its reports;
3. two phones that sync when they have coverage (``fwdist app sync``'s code: reports up,
   releases down into a cache) and then visit boxes with no network, offering a release
   only where the rollout's cohort says so (:class:`fwdist.rollout.SyncPolicy`); a box
   that is not offered is still heard from (its signed report comes home);
4. release ``B`` rolls out 10 % -> 50 % -> 100 %, each phase passing when every box it
   offered has installed; release ``C`` fails its self-test on every third box, and its
   rollout aborts itself once the failures reach the threshold over enough boxes.

Every byte a box receives crosses the lockbox's real protocol (the in-memory pump), every
report is signed by the box and verified by the server, and every decision is the
server's. The boxes are in memory (thousands of real ones would be the simulator's job);
the server is a process, as it is in the field, and is stopped at the end unless
``--keep-serving`` asks to keep it (and its dashboard) up.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fwdist import keys, report, sync
from fwdist.app import App
from fwdist.errors import FwdistError
from fwdist.lockbox import BoxConfig, Identity, IdleStep, Lockbox
from fwdist.manifest import Manifest, key_id
from fwdist.outbox import Outbox
from fwdist.pump import pump_session
from fwdist.releases import phone_cache
from fwdist.rollout import AbortPolicy, Answer, BoxView, Criteria, Phase, Plan, SyncPolicy
from fwdist.server import auth
from fwdist.server.auth import Scope
from fwdist.server.client import Client, publish
from fwdist.server.process import ProcessError, ServerProcess, open_database
from fwdist.store import Store

FAILED = frozenset({report.Outcome.BUILD_FAILED, report.Outcome.SELF_TEST_FAILED,
                    report.Outcome.TRIALS_EXHAUSTED})
ROUNDS = 12
"""Rounds of showings a rollout may take before the demo gives up on it (it needs 3-5)."""


@dataclass
class FleetBox:
    """One emulated box: a real lockbox in memory, its id, and the key its reports carry."""

    box_id: str
    lockbox: Lockbox
    public_key: bytes  # raw Ed25519, as the registry takes it

    def registration(self, product: str, hardware: str) -> dict[str, object]:
        return {"id": self.box_id, "product": product, "hardware": hardware, "tags": [],
                "public_key": self.public_key.hex()}

    def running(self) -> str:
        return str(self.lockbox.status()["running_version"])


@dataclass
class Phone:
    """A phone: its cache directory (a store plus an outbox) and the policy of its last sync."""

    name: str
    cache: Path
    client: Client
    policy: SyncPolicy = field(default_factory=lambda: SyncPolicy(frozenset()))
    failures: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Per box, the version whose install it saw fail in the box's reports and how often."""

    def sync(self, trusted: dict[bytes, Any]) -> dict[str, Any]:
        result = sync.sync(self.client, self.cache, trusted)
        self.policy = SyncPolicy.from_sync(self.client.get_json("/v1/sync"))
        return result.as_json()

    def visit(self, box: FleetBox, product: str, session_bytes: int, now: int) -> str:
        """One showing: a session (offered or not, as the rollout says), the box's idle steps,
        its reports into the outbox. Returns how the session ended."""
        carried = phone_cache(Store.open(self.cache), product, partial=True)
        version = carried.manifest.version
        seen = self.failures.get(box.box_id)
        view = BoxView(box.box_id, failures=seen[1] if seen and seen[0] == version else 0)
        offer = self.policy.answer(product, version, view, now) is Answer.OFFER
        session = pump_session(box.lockbox, App(carried, offer=offer),
                               budget_bytes=session_bytes, now=now)
        while box.lockbox.idle(now) is IdleStep.BUILT:  # built: install it in the same visit
            pass
        outbox = Outbox(self.cache)
        for wire in session.box_reports:
            outbox.add(wire)
            last = report.decode(wire).report.last
            if last is not None and last.outcome in FAILED:
                count = self.failures.get(box.box_id, (last.version, 0))[1]
                self.failures[box.box_id] = (last.version, count + 1)
        return session.end.name.lower() if session.end else "walked away"


@contextmanager
def running_server(store: Path, log: Path) -> Iterator[str]:
    """A ``fwdist server`` process on a free loopback port, stopped (SIGTERM) on the way out."""
    try:
        server = ServerProcess.fwdist(store, log).start()
    except ProcessError as e:
        raise FwdistError(f"the demo's fleet server did not start: {e}") from None
    try:
        yield server.url
    finally:
        server.stop()


def _self_test(i: int, fails: Callable[[int, Manifest], bool]
               ) -> Callable[[Manifest, Callable[[int, int], bytes]], bool]:
    """Box ``i``'s self-test of a new image: it passes unless ``fails(i, manifest)``."""
    return lambda m, read: not fails(i, m)


def make_fleet(count: int, config: BoxConfig, image: bytes, version: str,
               trusted: dict[bytes, Any], fails: Callable[[int, Manifest], bool]
               ) -> list[FleetBox]:
    """``count`` boxes on ``image``; box ``i``'s self-test fails a release where ``fails``."""
    out = []
    for i in range(count):
        device = Ed25519PrivateKey.from_private_bytes(
            hashlib.sha256(f"fwdist demo box {i}".encode()).digest())
        flash = config.make_flash()
        Lockbox.provision(flash, config, image, version)
        box = Lockbox(flash, config, trusted, self_test=_self_test(i, fails),
                      identity=Identity(f"box-{i:02d}", device))
        box.boot(0)
        out.append(FleetBox(f"box-{i:02d}", box, device.public_key().public_bytes_raw()))
    return out


def rollout_plan(product: str, version: str, shares_bp: tuple[int, ...],
                 abort: AbortPolicy) -> Plan:
    """Phases that pass when every box they offered has installed and was heard from."""
    return Plan(product, version,
                tuple(Phase(s, Criteria(installed_bp=10_000, min_heard=1)) for s in shares_bp),
                abort=abort)


def drive(rollout_id: str, engineer: Client, phones: list[Phone], boxes: list[FleetBox],
          product: str, trusted: dict[bytes, Any], session_bytes: int, clock: list[int],
          until: frozenset[str]) -> list[dict[str, Any]]:
    """Rounds of showings until the rollout's state is in ``until``: each round every phone
    syncs, then visits its share of the boxes (the phones swap halves every round)."""
    rounds = []
    for n in range(ROUNDS):
        ends: dict[str, int] = {}
        for k, phone in enumerate(phones):
            phone.sync(trusted)
            for box in boxes[(k + n) % len(phones)::len(phones)]:
                clock[0] += 600  # ten minutes to the next showing
                end = phone.visit(box, product, session_bytes, clock[0])
                ends[end] = ends.get(end, 0) + 1
        for phone in phones:  # coverage again: the reports go home
            phone.sync(trusted)
        time.sleep(1.05)  # the server's clock counts seconds: a new phase begins after it
        doc = engineer.get_json(f"/v1/rollouts/{rollout_id}")
        versions: dict[str, int] = {}
        for box in boxes:
            versions[box.running()] = versions.get(box.running(), 0) + 1
        rounds.append({"round": n + 1, "state": doc["state"], "phase": doc["phase"],
                       "share_bp": doc["share_bp"], "sessions": dict(sorted(ends.items())),
                       "versions": dict(sorted(versions.items()))})
        if doc["state"] in until:
            break
    return rounds


def run_fleet(workdir: Path, store: Store, pubkey: Path, product: str,
              versions: tuple[str, str, str], images: tuple[bytes, ...],
              config: BoxConfig, *, boxes: int, session_bytes: int,
              keep_serving: Callable[[str, str], None] | None = None) -> dict[str, Any]:
    """Publish ``versions[1]`` and ``[2]`` to a fresh server and roll each out over ``boxes``
    boxes running ``versions[0]``; ``[2]`` fails its self-test on every third box."""
    public = keys.load_public(pubkey)
    trusted = {key_id(public): public}
    server_dir = workdir / "server"
    server_store = Store.open(server_dir, create=True)
    with server_store.locked():
        server_store.put_key(key_id(public), keys.public_pem(public))
    engine = open_database(server_dir, None)
    now = int(time.time())
    try:
        tokens = {s: auth.create(engine, f"demo-{s.value}", s, now) for s in Scope}
    finally:
        engine.dispose()
    fleet = make_fleet(boxes, config, images[0], versions[0], trusted,
                       lambda i, m: m.version == versions[2] and i % 3 == 0)
    clock = [now]
    with running_server(server_dir, workdir / "server.log") as url, \
            Client(url, tokens[Scope.RELEASE]) as engineer:
        for box in fleet:
            engineer.request("POST", "/v1/boxes", ok=(201,),
                             json=box.registration(product, config.hardware))
        phones = [Phone(f"phone-{k}", workdir / f"phone-{k}", Client(url, tokens[Scope.APP]))
                  for k in (1, 2)]
        try:
            out: dict[str, Any] = {"server": url, "dashboard": f"{url}/dashboard",
                                   "boxes": boxes, "rollouts": []}
            plans = (rollout_plan(product, versions[1], (1_000, 5_000, 10_000),
                                  AbortPolicy(2_000, 2)),
                     rollout_plan(product, versions[2], (2_500, 10_000),
                                  AbortPolicy(2_000, 2)))
            for plan in plans:
                publish(engineer, store, product, plan.version)
                started = engineer.request("POST", "/v1/rollouts", ok=(201,),
                                           json=plan.to_json()).json()
                rounds = drive(started["id"], engineer, phones, fleet, product, trusted,
                               session_bytes, clock, frozenset({"completed", "aborted"}))
                doc = engineer.get_json(f"/v1/rollouts/{started['id']}")
                out["rollouts"].append({"id": started["id"], "version": plan.version,
                                        "state": doc["state"], "rounds": rounds,
                                        "decision": doc["decision"],
                                        "events": [e["event"] for e in doc["events"]]})
            for phone in phones:
                phone.sync(trusted)
            out["fleet"] = engineer.get_json("/v1/fleet")
            out["offered_after_abort"] = sorted(
                v for p, v in phones[0].policy.releases if p == product)
            if keep_serving is not None:
                keep_serving(f"{url}/dashboard", tokens[Scope.READ])
        finally:
            for phone in phones:
                phone.client.close()
    return out
