"""``fwdist key generate|show``, and the ``--key SPEC`` options every signing command shares.

A SPEC is a private key file's path or a ``pkcs11:`` URI (:mod:`fwdist.signers`). The
options that unlock it (``--passphrase-env/-file``, ``--pin-env/-file``, ``--pkcs11-module``)
are added by :func:`add_key_options` and read by :func:`signer_from_args`, so every command
that signs spells them the same way. There is deliberately no option that takes a
passphrase or PIN itself.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from fwdist import keys
from fwdist.cli.args import subcommand
from fwdist.cli.output import emit_json
from fwdist.errors import KeyFileError
from fwdist.keys import Signer
from fwdist.signers import (
    KeyOptions,
    Secret,
    SecretSource,
    generate_key,
    open_signer,
    public_key_of,
)

SPEC_HELP = "a private key file (from keygen) or a PKCS#11 URI (pkcs11:token=...;object=...)"


def add_secret_options(p: argparse.ArgumentParser) -> None:
    """How to unlock a key: passphrase and PIN sources, and the PKCS#11 module."""
    for kind in Secret:
        p.add_argument(f"--{kind.value}-env", metavar="VAR",
                       help=f"read the key's {kind.label} from environment variable VAR")
        p.add_argument(f"--{kind.value}-file", metavar="FILE", type=Path,
                       help=f"read the key's {kind.label} from FILE (one trailing newline is "
                       f"dropped); without either option fwdist asks on the terminal")
    p.add_argument("--pkcs11-module", metavar="LIB",
                   help="PKCS#11 module for pkcs11: keys (default: the URI's module-path, "
                   "$FWDIST_PKCS11_MODULE, else /usr/lib/softhsm/libsofthsm2.so)")


def add_key_options(p: argparse.ArgumentParser, help: str = SPEC_HELP,
                    required: bool = True) -> None:
    """``--key SPEC`` and the options that unlock it."""
    p.add_argument("--key", required=required, metavar="SPEC", help=help)
    add_secret_options(p)


def key_options(args: argparse.Namespace) -> KeyOptions:
    def source(kind: Secret) -> SecretSource:
        return SecretSource(kind, env=getattr(args, f"{kind.value}_env"),
                            file=getattr(args, f"{kind.value}_file"))

    return KeyOptions(source(Secret.PASSPHRASE), source(Secret.PIN), args.pkcs11_module)


def signer_from_args(args: argparse.Namespace) -> Signer:
    return open_signer(args.key, key_options(args))


def key_json(spec: str, public: Any) -> dict[str, Any]:
    return {
        "key": spec,
        "key_id": keys.key_id(public).hex(),
        "public_pem": keys.public_pem(public).decode("ascii"),
    }


def write_public(path: Path, public: Any) -> None:
    """Write a public key PEM for ``verify --pubkey`` and the box; never overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(keys.public_pem(public))
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite it") from None
    except OSError as e:
        raise KeyFileError(f"cannot write {path}: {e.strerror}") from None


def report(args: argparse.Namespace, verb: str, public: Any) -> None:
    if args.public_out is not None:
        write_public(args.public_out, public)
    if args.json:
        out = key_json(args.spec, public)
        out["public_out"] = str(args.public_out) if args.public_out else None
        emit_json(out)
        return
    print(f"{verb} {args.spec}: Ed25519 key id {keys.key_id(public).hex()}")
    if args.public_out is not None:
        print(f"wrote its public key to {args.public_out}")
    else:
        print(keys.public_pem(public).decode("ascii"), end="")


def cmd_generate(args: argparse.Namespace) -> int:
    if args.encrypt and args.spec.startswith("pkcs11:"):
        raise KeyFileError("--encrypt is for key files; a key in a token never leaves it")
    public = generate_key(args.spec, key_options(args), encrypt=args.encrypt)
    report(args, "made", public)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    report(args, "key", public_key_of(args.spec, key_options(args)))
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("key", help="signing keys in files or PKCS#11 tokens",
                           description="Make and show Ed25519 signing keys; a key is named by "
                           "a file path or a PKCS#11 URI wherever fwdist signs (--key SPEC).")
    key_sub = group.add_subparsers(dest="key_command", required=True, metavar="COMMAND")

    def command(name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        p = subcommand(key_sub, name, handler, help)
        p.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
        p.add_argument("--public-out", type=Path, metavar="FILE",
                       help="also write the public key (PEM) to FILE, never overwriting")
        add_secret_options(p)
        return p

    p = command("generate", cmd_generate,
                "make a key: in a file (SPEC and SPEC.pub) or in a PKCS#11 token "
                "(sensitive, never extractable)")
    p.add_argument("--encrypt", action="store_true",
                   help="encrypt the key file under a passphrase (PKCS#8)")
    command("show", cmd_show, "print a key's id and public key")
