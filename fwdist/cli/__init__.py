"""The ``fwdist`` command: a thin layer of argument parsing and output over the library.

Each subcommand group lives in its own module and registers itself through
``add_commands(subparsers)``; a handler returns an exit code. Errors a user can
cause (:class:`~fwdist.errors.FwdistError`) become one line on stderr and exit 1;
usage errors exit 2 (argparse); nothing prints a traceback for them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from fwdist.errors import FwdistError

# Modules that add subcommands, in help order.
COMMAND_MODULES = ("fwdist.cli.release", "fwdist.cli.demo", "fwdist.cli.sim", "fwdist.cli.device")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fwdist",
        description="Stage, carry and install lockbox firmware updates, a few KB at a time.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except FwdistError as e:
        print(f"fwdist: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fwdist: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
