"""``fwdist rollout start|status|list|pause|resume|abort`` and ``fwdist release yank``.

Clients of a running server (``--server URL --token T``, a ``release`` token to change
anything); the model is ``fwdist.rollout`` and the work is the server's. Every command
takes ``--json``. The command line gives every phase the same criteria; the API takes a
plan with criteria per phase (docs/rollouts.md).
"""

from __future__ import annotations

import argparse
from typing import Any

from fwdist.cli.args import int_at_least
from fwdist.cli.output import emit_json, iso_time
from fwdist.cli.release import parse_release
from fwdist.errors import RolloutError
from fwdist.rollout import (
    AbortPolicy,
    Criteria,
    Phase,
    Plan,
    RetryPolicy,
    Window,
    format_share,
    parse_share,
)
from fwdist.server.client import Client


def _shares(text: str) -> list[int]:
    try:
        return [parse_share(part) for part in text.split(",")]
    except RolloutError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _share(text: str) -> int:
    return _shares(text)[0]


def _window(text: str) -> Window:
    try:
        return Window.parse(text)
    except RolloutError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def plan_from_args(args: argparse.Namespace) -> Plan:
    """The plan the options describe (refused in one line if it means nothing)."""
    product, version = parse_release(args.release)
    crit = Criteria(args.installed, args.min_heard, args.min_time, args.manual)
    return Plan(
        product,
        version,
        tuple(Phase(share, crit) for share in args.phases),
        tags=frozenset(args.tag or ()),
        rate_per_hour=args.rate,
        windows=tuple(args.window or ()),
        retry=RetryPolicy(args.retries, args.backoff),
        abort=AbortPolicy(args.abort_threshold, args.abort_min),
    )


def describe(doc: dict[str, Any]) -> list[str]:
    """A rollout's status as a person reads it: state, phase, and the latest decision."""
    phases = ", ".join(format_share(p["share_bp"]) for p in doc["plan"]["phases"])
    lines = [
        f"{doc['id']}: {doc['state']}, phase {doc['phase'] + 1} of {doc['phases']} ({phases}); "
        f"offered to {format_share(doc['share_bp'])} since {iso_time(doc['phase_began'])}"
    ]
    d = doc["decision"]
    if d:
        o = d["outcomes"]
        heard, eligible = d["heard"], d["eligible"]
        lines.append(
            f"  {d['offered']} offered of {eligible} eligible; heard from {heard} of {eligible} "
            f"since the phase began; {o.get('installed', 0)} installed, "
            f"{o.get('in_progress', 0)} in progress, {o.get('failed', 0)} failed, "
            f"{o.get('reverted', 0)} reverted, {o.get('rejected', 0)} rejected, "
            f"{d['not_heard']} not heard from"
        )
        lines.append(f"  decision: {d['verdict']} ({d['why']})")
    for ev in doc["events"]:
        lines.append(f"  {iso_time(ev['at'])}  phase {ev['phase'] + 1}  {ev['event']}: "
                     f"{ev['before']} -> {ev['after']}")
    return lines


def _show(args: argparse.Namespace, doc: dict[str, Any]) -> int:
    if args.json:
        emit_json(doc)
    else:
        print("\n".join(describe(doc)))
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    plan = plan_from_args(args)
    with Client(args.server, args.token) as client:
        doc = client.request("POST", "/v1/rollouts", ok=(201,), json=plan.to_json()).json()
    return _show(args, doc)


def cmd_status(args: argparse.Namespace) -> int:
    with Client(args.server, args.token) as client:
        return _show(args, client.get_json(f"/v1/rollouts/{args.id}"))


def cmd_list(args: argparse.Namespace) -> int:
    params = {k: v for k, v in (("product", args.product),) if v}
    with Client(args.server, args.token) as client:
        doc = client.get_json("/v1/rollouts", **params)
    if args.json:
        emit_json(doc)
    else:
        for rollout in doc["rollouts"]:
            print("\n".join(describe(rollout)))
        if not doc["rollouts"]:
            print("no rollouts")
    return 0


def cmd_command(args: argparse.Namespace) -> int:
    with Client(args.server, args.token) as client:
        doc = client.request("POST", f"/v1/rollouts/{args.id}/{args.rollout_command}").json()
    return _show(args, doc)


def cmd_yank(args: argparse.Namespace) -> int:
    product, version = parse_release(args.release)
    with Client(args.server, args.token) as client:
        doc = client.request("POST", f"/v1/releases/{product}/{version}/yank").json()
    if args.json:
        emit_json(doc)
    else:
        stopped = ", ".join(doc["rollouts_stopped"]) or "none"
        print(f"{product}@{version} yanked: phones stop offering it at their next sync; "
              f"rollouts stopped: {stopped}")
    return 0


def _client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", required=True, metavar="URL", help="http://HOST:PORT")
    p.add_argument("--token", required=True, metavar="TOKEN")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("rollout", help="phased rollouts on a server: start, status, "
                           "pause, resume, abort",
                           description="Offer a published release to a growing share of the "
                           "fleet, phase by phase, stopping on failure evidence "
                           "(docs/rollouts.md).")
    r_sub = group.add_subparsers(dest="rollout_command", required=True, metavar="COMMAND")
    p = r_sub.add_parser("start", help="start a rollout of a published release",
                         description="Start a rollout; each phase begins when the last met "
                         "its criteria (or, with --manual, when you resume it).")
    p.set_defaults(handler=cmd_start)
    _client_options(p)
    p.add_argument("release", metavar="PRODUCT@X.Y.Z")
    p.add_argument("--phases", type=_shares, required=True, metavar="PCT,PCT,...",
                   help="shares of the eligible boxes, growing (e.g. 1,10,100)")
    p.add_argument("--installed", type=_share, default=9000, metavar="PCT",
                   help="a phase succeeds once this share of its boxes runs the release "
                   "(default 90)")
    p.add_argument("--min-heard", type=int_at_least(0), default=1, metavar="N",
                   help="... and at least N of its boxes were heard from (default 1)")
    p.add_argument("--min-time", type=int_at_least(0), default=0, metavar="SECONDS",
                   help="... and it ran at least this long (default 0)")
    p.add_argument("--manual", action="store_true",
                   help="pause after each phase's success until `rollout resume`")
    p.add_argument("--tag", action="append", metavar="TAG",
                   help="only boxes with this tag (repeatable: every tag)")
    p.add_argument("--rate", type=int_at_least(1), metavar="BOXES",
                   help="offer at most this many more boxes per hour")
    p.add_argument("--window", type=_window, action="append", metavar="HH:MM-HH:MM",
                   help="a daily UTC maintenance window (repeatable; default: any time)")
    p.add_argument("--retries", type=int_at_least(0), default=0, metavar="N",
                   help="offer a box whose install failed N more times (default 0)")
    p.add_argument("--backoff", type=int_at_least(0), default=86_400, metavar="SECONDS",
                   help="first retry after this long, doubling (default 86400)")
    p.add_argument("--abort-threshold", type=_share, default=2000, metavar="PCT",
                   help="abort when this share of finished boxes failed (default 20)")
    p.add_argument("--abort-min", type=int_at_least(1), default=10, metavar="N",
                   help="... once at least N boxes finished (default 10)")

    p = r_sub.add_parser("status", help="one rollout: state, latest decision, history")
    p.set_defaults(handler=cmd_status)
    _client_options(p)
    p.add_argument("id", metavar="ID", help="a rollout id (PRODUCT@X.Y.Z-N)")
    p = r_sub.add_parser("list", help="every rollout, oldest first")
    p.set_defaults(handler=cmd_list)
    _client_options(p)
    p.add_argument("--product", metavar="NAME")
    for what, text in (("pause", "stop offering to new boxes"),
                       ("resume", "go on after a pause, or to the next phase after --manual"),
                       ("abort", "stop the rollout for good")):
        p = r_sub.add_parser(what, help=text, description=text)
        p.set_defaults(handler=cmd_command)
        _client_options(p)
        p.add_argument("id", metavar="ID")

    group = sub.add_parser("release", help="releases on a server: yank",
                           description="Act on a published release on a server.")
    rel_sub = group.add_subparsers(dest="release_command", required=True, metavar="COMMAND")
    p = rel_sub.add_parser("yank", help="withdraw a release: phones stop offering it",
                           description="Withdraw a published release: phones stop offering it "
                           "at their next sync, and its rollouts stop.")
    p.set_defaults(handler=cmd_yank)
    _client_options(p)
    p.add_argument("release", metavar="PRODUCT@X.Y.Z")
