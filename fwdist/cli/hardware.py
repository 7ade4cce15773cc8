"""``fwdist hardware set|show|list``: the hardware profiles kept in a store.

A profile says what a box model can decode and hold (:mod:`fwdist.hardware`);
every later stage for that hardware id uses it. This module parses arguments
and prints, nothing more: a bad value is one line and exit 1, and the store is
written only once the whole profile checks.
"""

from __future__ import annotations

import argparse
from typing import Any

from fwdist import delta, hardware
from fwdist.cli.args import subcommand
from fwdist.cli.output import emit_json, human_bytes
from fwdist.hardware import HardwareError, Profile
from fwdist.store import Store


def _formats(text: str | None) -> tuple[str, ...]:
    """``--formats a,b,c`` as a profile keeps them; omitted: every format fwdist has."""
    if text is None:
        return hardware.canonical_formats(delta.ENCODERS)
    names = [n.strip() for n in text.split(",")]
    if "" in names:
        raise HardwareError(f"--formats must be format names separated by commas, got {text!r}")
    return hardware.canonical_formats(names)


def _line(p: Profile) -> str:
    return (f"{p.id}: decoder RAM {human_bytes(p.decoder_ram)}, flash {human_bytes(p.flash_size)} "
            f"in {human_bytes(p.sector_size)} sectors (writes of {p.align} B), slots "
            f"{human_bytes(p.slot_size)}, staging {human_bytes(p.staging_size)}, "
            f"{p.arch.value}, formats {','.join(p.formats)}")


def cmd_set(args: argparse.Namespace) -> int:
    try:
        arch = delta.InstructionSet(args.arch)
    except ValueError:
        names = ", ".join(a.value for a in delta.InstructionSet)
        raise HardwareError(f"--arch must be one of {names}, got {args.arch!r}") from None
    profile = Profile(args.id, args.ram, args.flash, args.sector, args.align, args.slot,
                      args.staging, arch, _formats(args.formats))
    store = Store.open(args.store)
    hardware.save(store, profile)
    if args.json:
        emit_json(profile.as_json())
    else:
        print(f"set {_line(profile)}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    profile = hardware.require(Store.open(args.store), args.id)
    if args.json:
        emit_json(profile.as_json())
    else:
        print(_line(profile))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    found = hardware.profiles(Store.open(args.store))
    if args.json:
        emit_json({"profiles": [{k: v for k, v in p.as_json().items() if k != "schema"}
                                for p in found]})
    else:
        for p in found:
            print(_line(p))
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("hardware", help="hardware profiles: what a box model decodes and holds",
                           description="Hardware profiles kept in a store; every stage for a "
                           "hardware id that has one makes only payloads its boxes decode.")
    hw_sub = group.add_subparsers(dest="hardware_command", required=True, metavar="COMMAND")

    def command(name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        p = subcommand(hw_sub, name, handler, help)
        p.add_argument("--store", required=True, metavar="DIR")
        return p

    p = command("set", cmd_set, "create or replace a hardware profile")
    p.add_argument("id", metavar="ID", help="the hardware id releases are staged for")
    p.add_argument("--ram", type=int, required=True, metavar="BYTES",
                   help="RAM the box gives a payload decoder (every buffer it holds)")
    p.add_argument("--flash", type=int, required=True, metavar="BYTES", help="NOR flash size")
    p.add_argument("--sector", type=int, required=True, metavar="BYTES",
                   help="erase sector size (a power of two)")
    p.add_argument("--align", type=int, required=True, metavar="BYTES",
                   help="write alignment (a power of two, at most the sector and 256)")
    p.add_argument("--slot", type=int, required=True, metavar="BYTES",
                   help="size of each of the two image slots (whole sectors)")
    p.add_argument("--staging", type=int, required=True, metavar="BYTES",
                   help="size of the staging area for received pieces (whole sectors)")
    p.add_argument("--arch", default="none", metavar="{" + ",".join(
        a.value for a in delta.InstructionSet) + "}", help="instruction set of the box's code "
        "(default: none)")
    p.add_argument("--formats", metavar="A,B,C", help="payload formats the box's firmware "
                   "decodes: delta encoder names, and full (always included; default: every "
                   "format fwdist has)")

    p = command("show", cmd_show, "show one hardware profile")
    p.add_argument("id", metavar="ID")

    command("list", cmd_list, "list the store's hardware profiles")
