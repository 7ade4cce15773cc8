"""A real ``fwdist server``: tokens, static-compatible objects (ETag, Range), publish, packs."""

from __future__ import annotations

import base64
import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fwdist.manifest import decode_table
from fwdist.server import auth, pack
from fwdist.server.auth import Scope
from fwdist.server.client import Client, object_path, publish, release_objects
from fwdist.store import Store, compress
from fwdist.testing import Releases, make_releases
from tests.server_helpers import RunningServer, db_url, fleet_server, start_server

__all__ = ["db_url", "fleet_server"]  # fixtures


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    return make_releases(tmp_path_factory.mktemp("publish"), count=2, size=24 * 1024, seed=1)


def fwdist(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fwdist", *args], capture_output=True,
                          text=True, timeout=120)


def publish_all(server: RunningServer, history: Releases) -> None:
    with Client(server.url, server.tokens[Scope.RELEASE]) as c:
        for r in history.releases:
            publish(c, history.store, "lockbox", r.version)


def test_writes_need_a_release_token(fleet_server: RunningServer) -> None:
    name = "00" * 32
    with fleet_server.client() as anon:
        r = anon.post(f"/v1/objects/{name}", content=b"x")
        assert (r.status_code, r.headers["www-authenticate"]) == (401, "Bearer")
        assert anon.get("/v1/releases").status_code == 401
    with fleet_server.client(Scope.APP) as app:
        r = app.post(f"/v1/objects/{name}", content=b"x")
        assert r.status_code == 403
        assert r.json() == {"error": "a app token may not do this (needs release)"}
    with fleet_server.client(token="fwd_release_" + "A" * 43) as forged:
        assert forged.post(f"/v1/objects/{name}", content=b"x").status_code == 401
    with fleet_server.client(Scope.READ) as reader:
        assert reader.get("/v1/releases").json() == {"releases": []}


def test_a_revoked_token_is_refused_within_the_revocation_delay(
        fleet_server: RunningServer) -> None:
    with fleet_server.client(Scope.READ) as reader:
        assert reader.get("/v1/releases").status_code == 200  # the server now caches it
        out = fwdist("token", "revoke", "--store", str(fleet_server.store), "--db",
                     fleet_server.db_url, "test-read")
        assert (out.returncode, out.stdout) == (0, "token test-read revoked\n")
        revoked = time.monotonic()
        while (r := reader.get("/v1/releases")).status_code == 200:
            assert time.monotonic() - revoked < auth.REVOCATION_DELAY_S + 1.0
            time.sleep(0.1)
        assert (r.status_code, r.json()) == (401, {"error": "the token is unknown or revoked"})
        for _ in range(3):  # and from then on
            assert reader.get("/v1/releases").status_code == 401


def test_publish_is_idempotent_and_lists_the_release(fleet_server: RunningServer,
                                                     history: Releases) -> None:
    total = len({*release_objects(history.store, "lockbox", "1.1.0"),
                 *release_objects(history.store, "lockbox", "1.0.0")})
    with Client(fleet_server.url, fleet_server.tokens[Scope.RELEASE]) as c:
        first = [publish(c, history.store, "lockbox", r.version) for r in history.releases]
        again = [publish(c, history.store, "lockbox", r.version) for r in history.releases]
    assert [r.created for r in first] == [True, True]
    assert sum(r.uploaded for r in first) == total  # shared pieces go up once
    assert [(r.created, r.uploaded) for r in again] == [(False, 0), (False, 0)]
    with fleet_server.client(Scope.READ) as reader:
        rels = reader.get("/v1/releases").json()["releases"]
    assert [(r["product"], r["version"], r["state"]) for r in rels] == [
        ("lockbox", "1.0.0", "published"), ("lockbox", "1.1.0", "published")]
    m = history.releases[1].manifest
    assert [(p["index"], p["from_version"], p["bytes"], p["pieces"]) for p in rels[1]["payloads"]
            ] == [(0, None, m.full.size, m.full.pieces),
                  (1, "1.0.0", m.deltas[0].size, m.deltas[0].pieces)]
    served = Store.open(fleet_server.store)
    assert served.get_manifest("lockbox", "1.1.0") == history.releases[1].wire
    assert served.get_air("lockbox", "1.1.0") == history.store.get_air("lockbox", "1.1.0")


def test_publish_refuses_a_tampered_object_and_manifest(fleet_server: RunningServer,
                                                         history: Releases) -> None:
    r0 = history.releases[0]
    piece = r0.payloads[r0.manifest.full.table_sha256].table.pieces[0].id
    frame = history.store.get_frame(piece)
    with fleet_server.client(Scope.RELEASE) as c:
        other = compress(b"not the piece", 3)
        r = c.post(f"/v1/objects/{piece.hex()}", content=other)
        assert (r.status_code, r.json()["error"]) == (
            422, f"object {piece.hex()}: its content does not hash to its name")
        assert c.post(f"/v1/objects/{piece.hex()}", content=b"\x00" * 40).status_code == 422
        assert c.head(object_path(piece)).status_code == 404  # nothing stored
        assert c.post(f"/v1/objects/{piece.hex()}", content=frame).status_code == 201
        assert c.post(f"/v1/objects/{piece.hex()}", content=frame).status_code == 200
        # the manifest arrives before its other objects: refused, nothing visible
        body = {"manifest": base64.b64encode(r0.wire).decode(), "air": None}
        r = c.put("/v1/releases/lockbox/1.0.0", json=body)
        assert r.status_code == 422 and "is missing from the store" in r.json()["error"]
        flipped = bytearray(r0.wire)
        flipped[-1] ^= 1
        body["manifest"] = base64.b64encode(bytes(flipped)).decode()
        r = c.put("/v1/releases/lockbox/1.0.0", json=body)
        assert (r.status_code, r.json()) == (
            422, {"error": "manifest: manifest signature does not verify"})
        body["manifest"] = base64.b64encode(r0.wire).decode()
        r = c.put("/v1/releases/lockbox/9.9.9", json=body)
        assert r.status_code == 422  # a manifest published under another version
        assert c.put("/v1/releases/lockbox/1.0.0", content=b"{").status_code == 400
        assert c.get("/v1/releases").json() == {"releases": []}
    assert Store.open(fleet_server.store).releases() == []


def test_objects_are_served_as_a_cdn_would(fleet_server: RunningServer,
                                           history: Releases) -> None:
    publish_all(fleet_server, history)
    oid = history.releases[1].manifest.full.table_sha256
    frame = history.store.get_frame(oid)
    with fleet_server.client() as anon:  # static paths need no token
        r = anon.get(object_path(oid))
        assert (r.status_code, r.content) == (200, frame)
        assert r.headers["etag"] == f'"{oid.hex()}"'
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.headers["accept-ranges"] == "bytes"
        r = anon.get(object_path(oid), headers={"If-None-Match": f'"{oid.hex()}"'})
        assert (r.status_code, r.content) == (304, b"")
        r = anon.get(object_path(oid), headers={"Range": "bytes=10-19"})
        assert (r.status_code, r.content) == (206, frame[10:20])
        assert r.headers["content-range"] == f"bytes 10-19/{len(frame)}"
        r = anon.get(object_path(oid), headers={"Range": "bytes=-5"})
        assert (r.status_code, r.content) == (206, frame[-5:])
        r = anon.get(object_path(oid), headers={"Range": f"bytes={len(frame)}-"})
        assert (r.status_code, r.headers["content-range"]) == (416, f"bytes */{len(frame)}")
        r = anon.head(object_path(oid))
        assert (r.status_code, r.headers["content-length"], r.content) == (
            200, str(len(frame)), b"")
        wire = history.releases[1].wire
        r = anon.get("/releases/lockbox/1.1.0")
        assert (r.status_code, r.content) == (200, wire)
        assert r.headers["etag"] == f'"{hashlib.sha256(wire).hexdigest()}"'
        bundle = history.store.get_air("lockbox", "1.1.0")
        assert anon.get("/releases/lockbox/1.1.0.air").content == bundle
        for trick in ("/objects/../fleet.db", "/objects/ab/" + "ab" * 31 + "a",
                      f"/objects/00/{oid.hex()}", "/releases/lockbox/1.1", "/releases/..%2f/x",
                      "/trust/..%2f..%2ffleet.db", "/trust/timestamp"):
            assert anon.get(trick).status_code == 404, trick


def test_the_trust_timestamp_is_revalidated_and_roots_are_immutable(
        fleet_server: RunningServer) -> None:
    (fleet_server.store / "trust" / "root").mkdir(parents=True)
    (fleet_server.store / "trust" / "root" / "1").write_bytes(b"root one")
    (fleet_server.store / "trust" / "timestamp").write_bytes(b"ts")
    (fleet_server.store / "trust" / "link").symlink_to(fleet_server.store / "fleet.db")
    with fleet_server.client() as anon:
        r = anon.get("/trust/timestamp")
        assert (r.content, r.headers["cache-control"]) == (b"ts", "no-cache")
        r = anon.get("/trust/root/1")
        assert (r.content, r.headers["cache-control"]) == (
            b"root one", "public, max-age=31536000, immutable")
        assert anon.get("/trust/link").status_code == 404


def test_a_pack_holds_the_table_then_each_piece_and_resumes_by_range(
        fleet_server: RunningServer, history: Releases) -> None:
    publish_all(fleet_server, history)
    m = history.releases[1].manifest
    table = decode_table(history.store.get_content(m.deltas[0].table_sha256),
                         m.deltas[0].table_sha256)
    with fleet_server.client(Scope.APP) as phone:
        whole = phone.get("/v1/releases/lockbox/1.1.0/pack/1")
        assert whole.status_code == 200
        assert whole.headers["content-type"] == "application/x-fwdist-pack"
        got = pack.decode_pack(whole.content)
        ids = [m.deltas[0].table_sha256, *dict.fromkeys(e.id for e in table.pieces)]
        assert [name for name, _ in got.objects] == ids
        assert [f for _, f in got.objects] == [history.store.get_frame(i) for i in ids]
        cut = len(whole.content) // 3  # a phone that lost its connection there
        rest = phone.get("/v1/releases/lockbox/1.1.0/pack/1", headers={"Range": f"bytes={cut}-"})
        assert rest.status_code == 206
        assert whole.content[:cut] + rest.content == whole.content
        etag = whole.headers["etag"]
        assert etag == f'"pack1-{m.deltas[0].table_sha256.hex()}"'
        assert phone.get("/v1/releases/lockbox/1.1.0/pack/1",
                         headers={"If-None-Match": etag}).status_code == 304
        assert phone.get("/v1/releases/lockbox/1.1.0/pack/2").status_code == 404
    with fleet_server.client() as anon:
        assert anon.get("/v1/releases/lockbox/1.1.0/pack/0").status_code == 401


def test_a_download_resumes_across_a_server_kill(fleet_server: RunningServer,
                                                 history: Releases, tmp_path: Path) -> None:
    publish_all(fleet_server, history)
    path = "/v1/releases/lockbox/1.1.0/pack/0"
    with fleet_server.client(Scope.APP) as phone:
        whole = phone.get(path).content
    fleet_server.stop(signal.SIGKILL)
    again = start_server(fleet_server.store, fleet_server.db_url, tmp_path / "again.log")
    try:
        with again.client(token=fleet_server.tokens[Scope.APP]) as phone:
            rest = phone.get(path, headers={"Range": "bytes=1000-"})
        assert (rest.status_code, whole[:1000] + rest.content) == (206, whole)
    finally:
        again.stop()


def test_publish_cli_prints_what_it_uploaded(fleet_server: RunningServer,
                                             history: Releases) -> None:
    token = fleet_server.tokens[Scope.RELEASE]
    args = ["publish", "--store", str(history.store.root), "--server", fleet_server.url,
            "--token", token, "lockbox@1.0.0"]
    first = fwdist(*args)
    objects = len(set(release_objects(history.store, "lockbox", "1.0.0")))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"lockbox@1.0.0 published: uploaded {objects} of {objects} ")
    again = fwdist(*args)
    assert again.stdout.startswith(f"lockbox@1.0.0 was published already: uploaded 0 of {objects}")
    bad = fwdist(*args[:-1], "lockbox@7.0.0")
    assert (bad.returncode, bad.stderr) == (
        1, "fwdist: error: no release lockbox@7.0.0 in the store\n")
    wrong = fwdist(*args[:6], "fwd_release_" + "B" * 43, "lockbox@1.0.0")
    assert (wrong.returncode, wrong.stderr) == (
        1, "fwdist: error: GET /v1/releases/lockbox/1.0.0: 401 the token is unknown or revoked\n")


def test_publish_refuses_a_format_2_bundle_that_does_not_verify(fleet_server: RunningServer,
                                                                 history: Releases) -> None:
    r1 = history.releases[1]
    bundle = history.store.get_air("lockbox", "1.1.0")
    assert bundle is not None
    with fleet_server.client(Scope.RELEASE) as c:
        for oid in release_objects(history.store, "lockbox", "1.1.0"):
            assert c.post(f"/v1/objects/{oid.hex()}",
                          content=history.store.get_frame(oid)).status_code == 201
        flipped = bytearray(bundle)
        flipped[-1] ^= 1  # the last byte of the last format 2 manifest's signature
        body = {"manifest": base64.b64encode(r1.wire).decode(),
                "air": base64.b64encode(bytes(flipped)).decode()}
        r = c.put("/v1/releases/lockbox/1.1.0", json=body)
        assert (r.status_code, r.json()) == (
            422, {"error": "format 2 bundle: manifest signature does not verify"})
        assert c.get("/v1/releases/lockbox/1.1.0").status_code == 404
        body["air"] = base64.b64encode(bundle).decode()
        assert c.put("/v1/releases/lockbox/1.1.0", json=body).status_code == 201
        body["air"] = None  # the same version again with other bytes: refused
        r = c.put("/v1/releases/lockbox/1.1.0", json=body)
        assert (r.status_code, r.json()) == (
            409, {"error": "lockbox@1.1.0 is published with other bytes"})


def test_with_a_root_chain_a_release_needs_its_release_role_threshold(
        fleet_server: RunningServer, tmp_path: Path) -> None:
    from fwdist import air, manifest, trust
    from tests.trust_helpers import RELEASE_KEYS, ROOT_KEYS, root_v1

    Store.open(fleet_server.store).put_root(trust.sign(root_v1(), ROOT_KEYS[:2]))
    one = make_releases(tmp_path, count=1, size=16 * 1024, seed=4, key=RELEASE_KEYS[0])
    legacy = make_releases(tmp_path / "legacy", count=1, size=16 * 1024, seed=1)
    wire, bundle = one.releases[0].wire, one.store.get_air("lockbox", "1.0.0")
    assert bundle is not None
    with fleet_server.client(Scope.RELEASE) as c:
        for oid in release_objects(one.store, "lockbox", "1.0.0"):
            c.post(f"/v1/objects/{oid.hex()}", content=one.store.get_frame(oid))

        def put(m: bytes, b: bytes | None) -> httpx.Response:
            return c.put("/v1/releases/lockbox/1.0.0", json={
                "manifest": base64.b64encode(m).decode(),
                "air": None if b is None else base64.b64encode(b).decode()})

        # the key STORE/keys/ records no longer suffices once the store has a root
        legacy_wire = legacy.releases[0].wire
        r = put(legacy_wire, None)
        assert r.status_code == 422 and "signed by unknown key" in r.json()["error"]
        r = put(wire, bundle)  # one of the two release signatures root 1 asks for
        assert (r.status_code, r.json()) == (
            422, {"error": "manifest: manifest has 1 of the 2 signatures it needs"})
        both = manifest.add_signature(wire, RELEASE_KEYS[1])
        r = put(both, bundle)
        assert (r.status_code, r.json()) == (
            422, {"error": "format 2 bundle: manifest signature does not verify"})
        both_air = air.encode_bundle([air.add_signature(w, RELEASE_KEYS[1])
                                      for w in air.decode_bundle(bundle)])
        assert put(both, both_air).status_code == 201
