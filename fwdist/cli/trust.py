"""``fwdist root create|rotate|sign|publish|show``, ``timestamp issue``, ``revoke``, ``sign``.

The release engineer's trust workflow over :mod:`fwdist.trust` and :mod:`fwdist.signoff`:
a root is drafted (create, or rotate from the current one), signed offline by each key
holder in turn (``root sign FILE --key SPEC``: the file is the only thing that travels),
then published into the store, which takes it only with its thresholds. Releases are
signed the same way (``stage --unsigned``, then ``fwdist sign`` by each release signer).
Commands that need to know which root is current take ``--root FILE``: a root the user
trusts, from which the store's chain is followed; the store alone is never trusted.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from fwdist import keys, signoff, trust
from fwdist.cli.args import positive_float, subcommand
from fwdist.cli.key import add_key_options, add_secret_options, key_options, signer_from_args
from fwdist.cli.output import emit_json, iso_time
from fwdist.cli.release import parse_release
from fwdist.errors import FwdistError, RolloutError, StoreError, TrustError
from fwdist.keys import Signer
from fwdist.rollout import Window
from fwdist.signers import KeyOptions, public_key_of
from fwdist.store import Store
from fwdist.trust import ReleaseRole, Root, Threshold

DAY = 86400


# --------------------------------------------------------------------------- role arguments


def parse_role(text: str, options: KeyOptions) -> tuple[str | None, str | None, Threshold]:
    """``[PRODUCT[/HARDWARE]=]K:KEY,KEY,...`` -> (product, hardware, threshold of the keys).

    Each KEY is a public key file (or any key SPEC, whose public half is read).
    """
    scope, eq, rest = text.partition("=") if "=" in text.split(":", 1)[0] else ("", "", text)
    k, colon, names = rest.partition(":")
    if not colon or not k.isdigit() or not names:
        raise FwdistError(f"a role must look like [PRODUCT[/HARDWARE]=]K:KEY,KEY,..., got {text!r}")
    product, _, hardware = scope.partition("/") if eq else ("", "", "")
    publics = [public_key_of(name, options) for name in names.split(",")]
    return product or None, hardware or None, Threshold.of(int(k), publics)


def role_json(t: Threshold) -> dict[str, Any]:
    return {"threshold": t.threshold, "keys": [key.hex() for key in t.trusted()]}


def root_json(wire: bytes) -> dict[str, Any]:
    s = trust.decode_root(wire)
    r = s.root
    return {
        "version": r.version,
        "expires": r.expires,
        "expires_utc": iso_time(r.expires),
        "root": role_json(r.root),
        "timestamp": role_json(r.timestamp),
        "releases": [{"product": role.product, "hardware": role.hardware, **role_json(role.signers)}
                     for role in r.releases],
        "signatures": [kid.hex() for kid, _ in s.signatures],
        "root_signatures": trust.signed_by(s, r.root),
    }


def print_root(wire: bytes, what: str) -> None:
    j = root_json(wire)
    print(f"{what}: root {j['version']}, expires {j['expires_utc']}, "
          f"{len(j['signatures'])} signatures ({j['root_signatures']} of its "
          f"{j['root']['threshold']} root keys needed)")
    print(f"  root       {j['root']['threshold']} of {', '.join(j['root']['keys'])}")
    print(f"  timestamp  {j['timestamp']['threshold']} of {', '.join(j['timestamp']['keys'])}")
    for role in j["releases"]:
        scope = role["product"] or "any product"
        if role["hardware"]:
            scope += f"/{role['hardware']}"
        print(f"  releases   ({scope}) {role['threshold']} of {', '.join(role['keys'])}")


def write_new(path: Path, data: bytes) -> None:
    """Write a file that must not exist yet (a draft someone else may be signing)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except FileExistsError:
        raise FwdistError(f"{path} already exists; refusing to overwrite it") from None
    except OSError as e:
        raise FwdistError(f"cannot write {path}: {e.strerror}") from None


def replace_file(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise FwdistError(f"cannot write {path}: {e.strerror}") from None


def read_file(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise FwdistError(f"cannot read {what} {path}: {e.strerror}") from None
    if len(data) > trust.MAX_META_BYTES:
        raise TrustError(f"{path} is {len(data)} bytes, more than any {what} "
                         f"({trust.MAX_META_BYTES})")
    return data


def roles_from(args: argparse.Namespace) -> dict[str, Any]:
    options = key_options(args)
    changes: dict[str, Any] = {}
    if args.root_role is not None:
        changes["root"] = _unscoped(args.root_role, options, "--root-keys")
    if args.timestamp_role is not None:
        changes["timestamp"] = _unscoped(args.timestamp_role, options, "--timestamp-keys")
    if args.release_roles:
        roles = []
        for text in args.release_roles:
            product, hardware, signers = parse_role(text, options)
            roles.append(ReleaseRole(signers, product, hardware))
        changes["releases"] = tuple(sorted(roles, key=lambda r: r.scope))
    if args.expires is not None:
        changes["expires"] = int(time.time()) + round(args.expires * DAY)
    return changes


def _unscoped(text: str, options: KeyOptions, option: str) -> Threshold:
    product, hardware, t = parse_role(text, options)
    if product or hardware:
        raise FwdistError(f"{option} takes K:KEY,...; only release roles have a scope")
    return t


# --------------------------------------------------------------------------- root


def cmd_root_create(args: argparse.Namespace) -> int:
    changes = roles_from(args)
    missing = [o for o, f in (("--root-keys", "root"), ("--timestamp-keys", "timestamp"),
                              ("--release-keys", "releases"), ("--expires", "expires"))
               if f not in changes]
    if missing:
        raise FwdistError(f"root create needs {', '.join(missing)}")
    draft = trust.sign(Root(version=1, **changes))
    write_new(Path(args.out), draft)
    return show_root(args, draft, f"drafted {args.out}")


def cmd_root_rotate(args: argparse.Namespace) -> int:
    store = Store.open(args.store)
    current, _ = signoff.current_root(store, read_file(Path(args.root), "root"))
    changes = roles_from(args)
    if "expires" not in changes:
        raise FwdistError("root rotate needs --expires DAYS (the new root's lifetime)")
    draft = trust.sign(trust.next_root(current, **changes))
    write_new(Path(args.out), draft)
    return show_root(args, draft, f"drafted {args.out} (after root {current.version})")


def cmd_root_sign(args: argparse.Namespace) -> int:
    path = Path(args.file)
    wire = trust.add_signature(read_file(path, "root"), signer_from_args(args))
    replace_file(path, wire)
    return show_root(args, wire, f"signed {path}")


def cmd_root_publish(args: argparse.Namespace) -> int:
    wire = read_file(Path(args.file), "root")
    store = Store.open(args.store)
    if args.root is None:
        if store.root_versions():
            raise TrustError("the store has roots: give --root FILE, the root you trust, so "
                             "the new one is checked against the chain")
        trust.verify_root(wire)
    else:
        current, _ = signoff.current_root(store, read_file(Path(args.root), "root"))
        if trust.decode_root(wire).root.version != current.version + 1:
            raise TrustError(f"root {trust.decode_root(wire).root.version} does not follow the "
                             f"current root {current.version}")
        trust.verify_chain(current, [wire], now=int(time.time()))
    with store.locked():
        version = store.put_root(wire)
    return show_root(args, wire, f"published root {version} in {args.store}")


def cmd_root_show(args: argparse.Namespace) -> int:
    if (args.file is None) == (args.store is None):
        raise FwdistError("root show takes a FILE or --store DIR (its newest root)")
    if args.file is not None:
        return show_root(args, read_file(Path(args.file), "root"), str(args.file))
    store = Store.open(args.store)
    versions = store.root_versions()
    wire = store.get_root(versions[-1]) if versions else None
    if wire is None:
        raise StoreError(f"no root in {args.store}")
    return show_root(args, wire, f"{args.store} (unverified: name --root elsewhere to check)")


def show_root(args: argparse.Namespace, wire: bytes, what: str) -> int:
    if args.json:
        emit_json(root_json(wire))
    else:
        print_root(wire, what)
    return 0


# --------------------------------------------------------------------------- timestamps


def parse_windows(given: list[str] | None) -> dict[str, tuple[tuple[int, int], ...]]:
    """``--window PRODUCT=HH:MM-HH:MM`` (repeatable; ``PRODUCT=always`` clears its windows)."""
    out: dict[str, list[tuple[int, int]]] = {}
    for text in given or ():
        product, sep, span = text.partition("=")
        if not sep or not product:
            raise TrustError(f"--window is PRODUCT=HH:MM-HH:MM (UTC) or PRODUCT=always, "
                             f"got {text!r}")
        ws = out.setdefault(product, [])
        if span != "always":
            try:
                w = Window.parse(span)
            except RolloutError as e:
                raise TrustError(str(e)) from None
            ws.append((w.start_minute, w.minutes))
    return {p: tuple(ws) for p, ws in out.items()}


def issue(args: argparse.Namespace, revoke: tuple[tuple[str, str], ...]) -> int:
    """Sign the store's next timestamp with ``--key``. A timestamp role of one key publishes
    it at once; one that needs K > 1 signatures writes a draft to ``--out`` for the other
    holders' ``timestamp sign``, the last of which publishes it."""
    store = Store.open(args.store)
    root, _ = signoff.current_root(store, read_file(Path(args.root), "root"))
    need = root.timestamp.threshold
    if need > 1 and args.out is None:
        raise TrustError(f"root {root.version}'s timestamp role needs {need} signatures: give "
                         "--out FILE for the draft, which each other holder signs with "
                         "`timestamp sign FILE`")
    signer = timestamp_signer(args, root)
    now = int(time.time())
    with store.locked():
        ts = signoff.next_timestamp(store, root, now=now, expires=now + round(args.expires * DAY),
                                    revoke=revoke, windows=parse_windows(args.window))
        wire = trust.sign(ts, [signer])
        if need > 1:
            write_new(Path(args.out), wire)
        else:
            trust.verify_timestamp(root, wire, now=now)
            store.put_timestamp(wire)
    return show_timestamp(args, root, wire, published=need == 1)


def timestamp_signer(args: argparse.Namespace, root: Root) -> Signer:
    signer = signer_from_args(args)
    if keys.key_id(signer.public_key()) not in root.timestamp.trusted():
        raise TrustError(f"{args.key} is not a timestamp key of root {root.version}")
    return signer


def show_timestamp(args: argparse.Namespace, root: Root, wire: bytes,
                   published: bool) -> int:
    ts = trust.decode_timestamp(wire).timestamp
    have = trust.signed_by(trust.decode_timestamp(wire), root.timestamp)
    if args.json:
        emit_json({
            "version": ts.version, "time": ts.time, "time_utc": iso_time(ts.time),
            "expires": ts.expires, "expires_utc": iso_time(ts.expires),
            "latest": {p: v for p, v in ts.latest},
            "revoked": [f"{p}@{v}" for p, v in ts.revoked], "root_version": root.version,
            "windows": {p: [trust.format_window(*w) for w in ws] for p, ws in ts.windows},
            "bytes": len(wire), "signatures": have, "threshold": root.timestamp.threshold,
            "published": published,
        })
    else:
        latest = ", ".join(f"{p}@{v}" for p, v in ts.latest) or "nothing released"
        state = "published" if published else (
            f"{have} of {root.timestamp.threshold} signatures, not published yet")
        print(f"timestamp {ts.version} at {iso_time(ts.time)}, expires {iso_time(ts.expires)}: "
              f"latest {latest}; {len(ts.revoked)} revoked; {state}"
              + "".join(f"; {p} installs {', '.join(trust.format_window(*w) for w in ws)} UTC"
                        for p, ws in ts.windows))
    return 0


def cmd_timestamp_sign(args: argparse.Namespace) -> int:
    """Add one timestamp holder's signature to a draft; at the threshold, publish it."""
    store = Store.open(args.store)
    root, _ = signoff.current_root(store, read_file(Path(args.root), "root"))
    signer = timestamp_signer(args, root)
    path = Path(args.file)
    wire = trust.add_signature(read_file(path, "timestamp"), signer)
    replace_file(path, wire)
    done = trust.signed_by(trust.decode_timestamp(wire), root.timestamp) >= root.timestamp.threshold
    if done:
        with store.locked():
            prev = store.get_timestamp()
            trust.verify_timestamp(root, wire, now=int(time.time()), previous=None if prev is None
                                   else trust.decode_timestamp(prev).timestamp)
            store.put_timestamp(wire)
    return show_timestamp(args, root, wire, published=done)


def cmd_timestamp_issue(args: argparse.Namespace) -> int:
    return issue(args, ())


def cmd_revoke(args: argparse.Namespace) -> int:
    product, version = parse_release(args.release)
    store = Store.open(args.store)
    store.get_manifest(product, version)  # a typo revokes nothing: the release must exist
    return issue(args, ((product, version),))


# --------------------------------------------------------------------------- release signing


def cmd_sign(args: argparse.Namespace) -> int:
    product, version = parse_release(args.release)
    store = Store.open(args.store)
    signer = signer_from_args(args)
    root = None
    if args.root is not None:
        root, _ = signoff.current_root(store, read_file(Path(args.root), "root"))
        hardware = signoff.release_status(store, root, product, version).hardware
        role_keys, _ = trust.release_policy(root, product, hardware)
        if keys.key_id(signer.public_key()) not in role_keys:
            raise TrustError(f"{args.key} is not a release signer of root {root.version} for "
                             f"{product}/{hardware}")
    signoff.add_signature(store, product, version, signer)
    out: dict[str, Any] = {"release": f"{product}@{version}",
                           "key_id": keys.key_id(signer.public_key()).hex()}
    if root is not None:
        status = signoff.release_status(store, root, product, version)
        out.update(root_version=root.version, signatures=status.have, threshold=status.need,
                   released=status.released)
    else:
        out.update(root_version=None, signatures=None, threshold=None, released=None)
    if args.json:
        emit_json(out)
    elif root is None:
        print(f"signed {out['release']} with {out['key_id']}")
    else:
        state = "released" if out["released"] else "not released yet"
        print(f"signed {out['release']} with {out['key_id']}: {out['signatures']} of "
              f"{out['threshold']} signatures under root {root.version}, {state}")
    return 0


# --------------------------------------------------------------------------- parsers


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def roles(p: argparse.ArgumentParser) -> None:
        p.add_argument("--root-keys", dest="root_role", metavar="K:KEY,...",
                       help="the root role: K of these public keys sign the next root")
        p.add_argument("--timestamp-keys", dest="timestamp_role", metavar="K:KEY,...",
                       help="the timestamp role (K > 1: `timestamp issue --out`, then "
                       "`timestamp sign`)")
        p.add_argument("--release-keys", dest="release_roles", action="append",
                       metavar="[PRODUCT[/HARDWARE]=]K:KEY,...",
                       help="a release role, optionally for one product or one product's "
                       "hardware (repeatable; on rotate, replaces every release role)")
        p.add_argument("--expires", type=positive_float, metavar="DAYS",
                       help="the root expires this many days from now")
        add_secret_options(p)

    def anchor(p: argparse.ArgumentParser, required: bool = True) -> None:
        p.add_argument("--root", required=required, metavar="FILE",
                       help="a root you trust (e.g. root 1 from its key holders); the store's "
                       "chain is followed from it")

    group = sub.add_parser("root", help="trust roots: who signs roots, releases, timestamps",
                           description="Draft, sign (offline, one key holder at a time), "
                           "publish and show roots.")
    rsub = group.add_subparsers(dest="root_command", required=True, metavar="COMMAND")
    p = subcommand(rsub, "create", cmd_root_create, "draft root 1 (unsigned) into OUT")
    p.add_argument("out", metavar="OUT")
    roles(p)
    p = subcommand(rsub, "rotate", cmd_root_rotate,
                "draft the next root into OUT: the current one with the roles given replaced")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--store", required=True)
    anchor(p)
    roles(p)
    p = subcommand(rsub, "sign", cmd_root_sign, "add one signature to a root draft FILE")
    p.add_argument("file", metavar="FILE")
    add_key_options(p)
    p = subcommand(rsub, "publish", cmd_root_publish,
                "put a signed root into the store: root 1 with a threshold of its own root "
                "keys, a later root with a threshold of the current root's and its own")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--store", required=True)
    anchor(p, required=False)
    p = subcommand(rsub, "show", cmd_root_show, "show a root file, or the store's newest root")
    p.add_argument("file", metavar="FILE", nargs="?")
    p.add_argument("--store")

    group = sub.add_parser("timestamp", help="signed time: what is current and what is revoked",
                           description="Issue the store's next signed timestamp.")
    tsub = group.add_subparsers(dest="timestamp_command", required=True, metavar="COMMAND")
    p = subcommand(tsub, "issue", cmd_timestamp_issue,
                "sign the next timestamp: now, the latest released version of each product, "
                "the revoked releases")
    for q in (p, subcommand(sub, "revoke", cmd_revoke,
                         "revoke a release: the next timestamp lists it, and boxes drop it")):
        q.add_argument("--store", required=True)
        anchor(q)
        add_key_options(q, help="the timestamp key (a file or a pkcs11: URI)")
        q.add_argument("--expires", type=positive_float, default=7.0, metavar="DAYS",
                       help="the timestamp expires this many days from now (default 7)")
        q.add_argument("--window", action="append", metavar="PRODUCT=HH:MM-HH:MM",
                       help="a daily UTC window the product's boxes may install in "
                            "(repeatable; PRODUCT=always: any time; others keep the "
                            "previous timestamp's)")
        q.add_argument("--out", metavar="FILE", help="a timestamp role of K > 1 keys: write "
                       "the draft here for the other holders' `timestamp sign`")
    q.add_argument("release", metavar="NAME@X.Y.Z")
    p = subcommand(tsub, "sign", cmd_timestamp_sign, "add a timestamp holder's signature to a "
                "draft (`issue --out`); the one that meets the threshold publishes it")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--store", required=True)
    anchor(p)
    add_key_options(p, help="the timestamp key (a file or a pkcs11: URI)")

    p = subcommand(sub, "sign", cmd_sign,
                "add one release signer's signature to a staged release (formats 1 and 2)")
    p.add_argument("release", metavar="NAME@X.Y.Z")
    p.add_argument("--store", required=True)
    anchor(p, required=False)
    add_key_options(p, help="a release signer's key (a file or a pkcs11: URI)")
