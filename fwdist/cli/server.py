"""The fleet service's commands: ``server``, ``token``, ``publish`` and ``fleet``.

``server`` and ``token`` work on the server's own store and database (run them on the
server's machine); ``publish`` and ``fleet`` are clients that talk HTTP to a running
server with a token. Arguments and output only: the work is in ``fwdist.server``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from fwdist import keys
from fwdist.cli.key import add_secret_options, key_options
from fwdist.cli.output import emit_json, human_bytes, iso_time
from fwdist.cli.release import parse_release
from fwdist.errors import FwdistError
from fwdist.manifest import key_id
from fwdist.store import Store

# The server's stack (Starlette, Hypercorn, SQLAlchemy, Alembic, httpx) is imported by the
# handlers that use it, not here: every `fwdist` command builds this parser, and `fwdist app
# push` must not pay seconds of imports for a server it never starts.
SCOPES = ("release", "app", "read")

DEFAULT_LISTEN = "127.0.0.1:8080"


def _record_keys(store: Path, paths: list[str]) -> None:
    """Record the public keys the server is to trust in ``STORE/keys/``."""
    if not paths:
        return
    loaded = [keys.load_public(Path(p)) for p in paths]
    s = Store.open(store, create=True)
    with s.locked():
        for k in loaded:
            s.put_key(key_id(k), keys.public_pem(k))


def cmd_server(args: argparse.Namespace) -> int:
    from fwdist.server import process

    store = Path(args.store)
    process.parse_listen(args.listen)
    _record_keys(store, args.trust or [])
    if args.migrate_only:
        root = process.open_store(store)
        process.open_database(root, args.db).dispose()
        print(f"fwdist server: {args.db or 'the database'} is at the newest schema",
              flush=True)
        return 0
    stamper = None
    if args.timestamp_key is not None:
        from fwdist.server.stamping import Stamper
        from fwdist.signers import open_signer

        if args.timestamp_every < 60:
            raise FwdistError(f"--timestamp-every must be at least 60 seconds, got "
                              f"{args.timestamp_every}")
        stamper = Stamper(open_signer(args.timestamp_key, key_options(args)),
                          args.timestamp_every)
    return process.run(store, args.db, args.listen, stamper)


def _engine(args: argparse.Namespace) -> Any:
    """The server's database; the store must exist (``fwdist server`` makes it)."""
    from fwdist.server import process

    return process.open_database(Store.open(Path(args.store)).root, args.db)


def cmd_token_create(args: argparse.Namespace) -> int:
    from fwdist.server import auth

    auth.check_name(args.name)
    engine = _engine(args)
    try:
        secret = auth.create(engine, args.name, auth.Scope(args.scope), int(time.time()))
    finally:
        engine.dispose()
    if args.json:
        emit_json({"name": args.name, "scope": args.scope, "token": secret})
    else:
        print(secret)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from fwdist.server import auth

    engine = _engine(args)
    try:
        rows = auth.listing(engine)
    finally:
        engine.dispose()
    if args.json:
        emit_json({"tokens": [{"name": t.name, "scope": t.scope.value,
                               "created": t.created_at, "created_utc": iso_time(t.created_at),
                               "revoked": t.revoked_at, "revoked_utc": iso_time(t.revoked_at)}
                              for t in rows]})
    else:
        for t in rows:
            state = f"revoked {iso_time(t.revoked_at)}" if t.revoked_at else "live"
            print(f"{t.name}  {t.scope.value}  created {iso_time(t.created_at)}  {state}")
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from fwdist.server import auth

    engine = _engine(args)
    try:
        changed = auth.revoke(engine, args.name, int(time.time()))
    finally:
        engine.dispose()
    if args.json:
        emit_json({"name": args.name, "revoked": True, "changed": changed})
    else:
        print(f"token {args.name} " + ("revoked" if changed else "was revoked already"))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from fwdist import signoff
    from fwdist.server.client import Client, publish

    product, version = parse_release(args.release)
    store = Store.open(args.store)
    store.get_manifest(product, version)  # refused in one line before any request
    versions = store.root_versions()
    if versions:  # a draft below its root's threshold: the store's one line, nothing sent
        first = store.get_root(versions[0])
        assert first is not None  # (listed, so present)
        root, _ = signoff.current_root(store, first)
        signoff.require_released(store, root, product, version)
    with Client(args.server, args.token) as client:
        result = publish(client, store, product, version)
    if args.json:
        emit_json({"product": product, "version": version, "objects": result.objects,
                   "uploaded_objects": result.uploaded, "uploaded_bytes": result.uploaded_bytes,
                   "created": result.created})
    else:
        what = "published" if result.created else "was published already"
        print(f"{product}@{version} {what}: uploaded {result.uploaded} of {result.objects} "
              f"objects ({human_bytes(result.uploaded_bytes)})")
    return 0


def cmd_fleet_status(args: argparse.Namespace) -> int:
    from fwdist.server.client import Client

    with Client(args.server, args.token) as client:
        doc = client.get_json("/v1/fleet")
    if args.json:
        emit_json(doc)
        return 0
    for product, p in sorted(doc["products"].items()):
        versions = ", ".join(f"{v}: {n}" for v, n in p["versions"].items()) or "none heard"
        print(f"{product}: {p['boxes']} boxes, heard from {p['heard_from']}; {versions}; "
              f"{p['in_progress']} in progress, {p['failed']} failed")
    return 0


def cmd_fleet_boxes(args: argparse.Namespace) -> int:
    from fwdist.server.client import Client

    params = {k: v for k, v in (("product", args.product), ("tag", args.tag)) if v}
    with Client(args.server, args.token) as client:
        doc = client.get_json("/v1/boxes", **params)
    if args.json:
        emit_json(doc)
        return 0
    for box in doc["boxes"]:
        last = box["last_report"]
        running = last["running_version"] if last else "not heard from"
        print(f"{box['id']}  {box['product']}  {running}")
    return 0


def cmd_fleet_box(args: argparse.Namespace) -> int:
    from fwdist.server.client import Client

    with Client(args.server, args.token) as client:
        doc = client.get_json(f"/v1/boxes/{args.id}", limit=str(args.limit))
    if args.json:
        emit_json(doc)
        return 0
    last = doc["last_report"]
    print(f"{doc['id']}: {doc['product']} on {doc['hardware']}, tags "
          f"{', '.join(doc['tags']) or 'none'}")
    if last is None:
        print("  not heard from")
    for r in doc["history"]:
        target = f" -> {r['target_version']}" if r["target_version"] else ""
        print(f"  #{r['seq']}  {r['running_version']}{target}  {r['state']}  {r['result']}")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("server", help="serve a store to phones and release engineers over HTTP",
                       description="Serve the store's releases, the box registry and the "
                       "reports API (docs/fleet-api.md); migrates the database first.")
    p.set_defaults(handler=cmd_server)
    p.add_argument("--store", required=True, metavar="DIR",
                   help="the store served (made if absent)")
    p.add_argument("--db", metavar="URL", help="database URL (default sqlite:///STORE/fleet.db; "
                   "postgresql://USER@HOST/DB for a large fleet)")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"address to serve on (default {DEFAULT_LISTEN}; port 0 picks one)")
    p.add_argument("--trust", action="append", metavar="KEY.pub",
                   help="a signing key whose releases may be published (recorded in "
                   "STORE/keys/; repeatable)")
    p.add_argument("--migrate-only", action="store_true",
                   help="upgrade the database to the newest schema and exit")
    p.add_argument("--timestamp-key", metavar="SPEC",
                   help="the online timestamp role's key (a file or a pkcs11: URI): the server "
                   "signs trust/timestamp when a release is published or yanked (a yank "
                   "becomes a signed revocation) and when the current one is a period old")
    p.add_argument("--timestamp-every", type=int, default=3600, metavar="SECONDS",
                   help="re-issue the timestamp this often (default %(default)s; each expires "
                   "four periods after it is signed)")
    add_secret_options(p)

    group = sub.add_parser("token", help="API tokens of a server: create, list, revoke",
                           description="Tokens are stored hashed; the secret is printed once.")
    t_sub = group.add_subparsers(dest="token_command", required=True, metavar="COMMAND")

    def token_command(name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        tp: argparse.ArgumentParser = t_sub.add_parser(name, help=help, description=help)
        tp.set_defaults(handler=handler)
        tp.add_argument("--store", required=True, metavar="DIR")
        tp.add_argument("--db", metavar="URL", help="database URL (default: STORE/fleet.db)")
        tp.add_argument("--json", action="store_true", help="print machine-readable JSON")
        return tp

    tp = token_command("create", cmd_token_create, "create a token and print its secret once")
    tp.add_argument("--scope", required=True, choices=SCOPES)
    tp.add_argument("name", metavar="NAME", help="a name to list and revoke it by")
    token_command("list", cmd_token_list, "list tokens (names and scopes, never secrets)")
    tp = token_command("revoke", cmd_token_revoke, "revoke a token: it is refused from now on")
    tp.add_argument("name", metavar="NAME")

    def client_options(cp: argparse.ArgumentParser) -> None:
        cp.add_argument("--server", required=True, metavar="URL", help="http://HOST:PORT")
        cp.add_argument("--token", required=True, metavar="TOKEN")
        cp.add_argument("--json", action="store_true", help="print machine-readable JSON")

    p = sub.add_parser("publish", help="upload a staged release to a server",
                       description="Upload the objects the server lacks, then the signed "
                       "manifests; the server re-verifies everything. Idempotent.")
    p.set_defaults(handler=cmd_publish)
    p.add_argument("--store", required=True, metavar="DIR", help="the local store it was staged in")
    client_options(p)
    p.add_argument("release", metavar="PRODUCT@X.Y.Z")

    group = sub.add_parser("fleet", help="what a server knows of the fleet: status, boxes, a box",
                           description="Read the fleet's state from a server (a read or "
                           "release token).")
    f_sub = group.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")
    p = f_sub.add_parser("status", help="boxes per version, in progress, failed, heard from")
    p.set_defaults(handler=cmd_fleet_status)
    client_options(p)
    p = f_sub.add_parser("boxes", help="the registry, with each box's last report")
    p.set_defaults(handler=cmd_fleet_boxes)
    client_options(p)
    p.add_argument("--product", metavar="NAME")
    p.add_argument("--tag", metavar="TAG")
    p = f_sub.add_parser("box", help="one box: registry row, last report, history")
    p.set_defaults(handler=cmd_fleet_box)
    client_options(p)
    p.add_argument("id", metavar="ID")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="history rows (default 20)")



