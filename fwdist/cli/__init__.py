"""The ``fwdist`` command: a thin layer of argument parsing and output over the library.

Each subcommand group lives in its own module and registers itself through
``add_commands(subparsers)``; a handler returns an exit code. Every way out of
``main`` has one documented code (:class:`ExitCode`, docs/cli.md) and, unless
``-v`` asks for more, at most one line on stderr: a user who gave bad input
needs the line, not our stack.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import importlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

import fwdist
from fwdist.errors import FwdistError

# Modules that add subcommands, in help order.
COMMAND_MODULES = (
    "fwdist.cli.release",
    "fwdist.cli.hardware",
    "fwdist.cli.demo",
    "fwdist.cli.sim",
    "fwdist.cli.device",
    "fwdist.cli.key",
    "fwdist.cli.trust",
    "fwdist.cli.server",
    "fwdist.cli.rollout",
)

# The module that adds each command: ``fwdist stage`` imports fwdist.cli.release and what it
# needs, not trio, the server or the fleet demo (half a second and tens of MB before any work,
# issue 10). A command missing here still works: its parser is built from every module.
# tests/unit/test_cli.py holds the table to what the modules add.
COMMAND_HOMES = {
    "keygen": "fwdist.cli.release",
    "stage": "fwdist.cli.release",
    "inspect": "fwdist.cli.release",
    "verify": "fwdist.cli.release",
    "plan": "fwdist.cli.release",
    "gc": "fwdist.cli.release",
    "hardware": "fwdist.cli.hardware",
    "demo": "fwdist.cli.demo",
    "sim": "fwdist.cli.sim",
    "lockbox": "fwdist.cli.device",
    "app": "fwdist.cli.device",
    "box": "fwdist.cli.device",
    "key": "fwdist.cli.key",
    "root": "fwdist.cli.trust",
    "timestamp": "fwdist.cli.trust",
    "revoke": "fwdist.cli.trust",
    "sign": "fwdist.cli.trust",
    "server": "fwdist.cli.server",
    "token": "fwdist.cli.server",
    "publish": "fwdist.cli.server",
    "fleet": "fwdist.cli.server",
    "rollout": "fwdist.cli.rollout",
    "release": "fwdist.cli.rollout",
}

# Loggers whose records -q/-v govern: the engine and the simulator.
LOGGERS = ("fwdist", "sim")

log = logging.getLogger(__name__)


class ExitCode(enum.IntEnum):
    """What a script can rely on after ``fwdist``; documented in docs/cli.md and the README."""

    OK = 0
    ERROR = 1  # the input, a file, the store or the box said no: one line says why
    USAGE = 2  # the command line itself is wrong (argparse)
    INTERNAL = 70  # a bug in fwdist (EX_SOFTWARE); -v prints the traceback
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
    BROKEN_PIPE = 141  # the reader of stdout went away, as `| head` does (128 + SIGPIPE)


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, not the usage banner and a line."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class CommandParser(Parser):
    """A subcommand's parser: takes -q/-v too, so ``fwdist demo -q`` means ``fwdist -q demo``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SUPPRESS: an absent option must not overwrite the top-level parser's count
        add_verbosity(self, default=argparse.SUPPRESS)


def add_verbosity(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=default,
        help="say less on stderr: -q warnings and errors only, -qq errors only",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default,
        help="say more on stderr: debug lines, and the traceback of an internal error",
    )


def command_modules(argv: Sequence[str]) -> Sequence[str]:
    """The modules to import to parse ``argv``: its command's home, or all of them.

    The command is the first word that is not an option (the top-level options take no
    value); no command, ``--help`` or a word not in :data:`COMMAND_HOMES` needs them all.
    """
    word = next((a for a in argv if not a.startswith("-")), None)
    home = COMMAND_HOMES.get(word) if word is not None else None
    return COMMAND_MODULES if home is None else (home,)


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = Parser(
        prog="fwdist",
        description="Stage, carry and install lockbox firmware updates, a few KB at a time. "
        "Exit codes: 0 ok, 1 error or rejection, 2 usage, 70 internal error, 130 interrupted, "
        "141 broken pipe (docs/cli.md).",
    )
    parser.add_argument("--version", action="version", version=f"fwdist {fwdist.__version__}")
    add_verbosity(parser, default=0)
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=CommandParser
    )
    for name in modules:
        importlib.import_module(name).add_commands(sub)
    return parser


def log_level(quiet: int, verbose: int) -> int:
    """INFO by default; each -v one level down, each -q one level up (ERROR at most)."""
    steps = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)
    return steps[max(0, min(len(steps) - 1, 1 + quiet - verbose))]


class _Formatter(logging.Formatter):
    """``fwdist: message`` for information; other levels say their name (``fwdist: warning: x``)."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno != logging.INFO:
            text = f"{record.levelname.lower()}: {text}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return f"fwdist: {text}"


@contextlib.contextmanager
def logging_to_stderr(level: int) -> Iterator[None]:
    """Send fwdist's log records to stderr at ``level`` while one command runs, then undo it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(level)
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, old in saved:
            logger.removeHandler(handler)
            logger.setLevel(old)


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's last flush cannot fail again.

    This is the recipe of Python's ``signal`` documentation ("Note on SIGPIPE").
    """
    with contextlib.suppress(AttributeError, OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    try:
        words = sys.argv[1:] if argv is None else argv
        args = build_parser(command_modules(words)).parse_args(words)
        with logging_to_stderr(log_level(args.quiet, args.verbose)):
            code = _run(args)
        sys.stdout.flush()  # inside the try: a closed pipe shows up here, not at exit
    except BrokenPipeError:
        _silence_stdout()
        return ExitCode.BROKEN_PIPE
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.handler(args))
    except FwdistError as e:
        print(f"fwdist: error: {e}", file=sys.stderr)
        return ExitCode.ERROR
    except KeyboardInterrupt:
        print("fwdist: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        raise
    except Exception as e:
        log.debug("internal error", exc_info=True)
        print(
            f"fwdist: internal error (a bug in fwdist): {type(e).__name__}: {e}"
            + ("" if log.isEnabledFor(logging.DEBUG) else "; run with -v for the traceback"),
            file=sys.stderr,
        )
        return ExitCode.INTERNAL


if __name__ == "__main__":
    sys.exit(main())
