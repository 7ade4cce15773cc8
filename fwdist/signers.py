"""One way to name a signing key everywhere: a key file's path or a ``pkcs11:`` URI.

Every command that signs takes ``--key SPEC`` and calls :func:`open_signer`, so a release
engineer moves a key from a file into an HSM by changing one argument, and no command grows
its own idea of where keys live. The secret that unlocks a key (a file's passphrase, a
token's PIN) comes from an environment variable, a file, or a prompt on the terminal: never
from the command line, where every process listing and the shell history would keep it.
"""

from __future__ import annotations

import enum
import getpass
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fwdist import hsm, keys
from fwdist.errors import SignerError
from fwdist.keys import Signer

__all__ = ["KeyOptions", "Secret", "SecretSource", "generate_key", "open_signer", "public_key_of"]


class Secret(enum.Enum):
    """What unlocks a key; the value is how the CLI's options spell it (``--pin-env``)."""

    PASSPHRASE = "passphrase"
    PIN = "pin"

    @property
    def label(self) -> str:
        return "PIN" if self is Secret.PIN else "passphrase"


def _ask(prompt: str) -> str:
    return getpass.getpass(prompt)


@dataclass(frozen=True)
class SecretSource:
    """Where one secret comes from: ``env`` (a variable's name), else ``file``, else a prompt.

    The prompt is used only on a terminal; without one (a script, CI) the secret must come
    from a variable or a file, and not having one is one clear line, not a hang on stdin.
    """

    kind: Secret
    env: str | None = None
    file: Path | None = None
    prompt: Callable[[str], str] = field(default=_ask, compare=False)
    interactive: Callable[[], bool] = field(default=lambda: sys.stdin.isatty(), compare=False)

    def read(self, subject: str, confirm: bool = False) -> str:
        """The secret for ``subject`` (a key file or URI, named in prompts and errors)."""
        what = self.kind.label
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise SignerError(f"environment variable {self.env} (the {what}) is not set")
        elif self.file is not None:
            try:
                value = self.file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
                raise SignerError(f"cannot read the {what} file {self.file}: {reason}") from None
            value = value.removesuffix("\n").removesuffix("\r")
        else:
            if not self.interactive():
                flag = self.kind.value
                raise SignerError(f"{subject} needs a {what} and there is no terminal to ask on; "
                                  f"give --{flag}-env VAR or --{flag}-file FILE")
            value = self.prompt(f"{what} for {subject}: ")
            if confirm and self.prompt(f"{what} for {subject} again: ") != value:
                raise SignerError(f"the two {what}s for {subject} differ; nothing was written")
        if not value:
            raise SignerError(f"the {what} for {subject} is empty")
        return value


@dataclass(frozen=True)
class KeyOptions:
    """Everything besides the spec that opening a key may need."""

    passphrase: SecretSource = SecretSource(Secret.PASSPHRASE)
    pin: SecretSource = SecretSource(Secret.PIN)
    module: str | None = None  # PKCS#11 module; None: the URI's, $FWDIST_PKCS11_MODULE, Debian's

    def pin_for(self, uri: hsm.Pkcs11Uri) -> str:
        """An explicit --pin-env/--pin-file wins over the URI's pin-source, which wins over
        the prompt."""
        source = self.pin
        pin_file = hsm.read_pin_source(uri)
        if source.env is None and source.file is None and pin_file is not None:
            source = SecretSource(Secret.PIN, file=pin_file, prompt=source.prompt,
                                  interactive=source.interactive)
        return source.read(str(uri))


def open_signer(spec: str, options: KeyOptions = KeyOptions()) -> Signer:
    """The key ``spec`` names, ready to sign: a PKCS#11 URI or a private key file's path."""
    if hsm.is_pkcs11_uri(spec):
        uri = hsm.Pkcs11Uri.parse(spec)
        return hsm.Pkcs11Signer(uri, options.pin_for(uri), options.module)
    path = Path(spec)
    return keys.load_private(path, passphrase=lambda: options.passphrase.read(str(path)).encode())


def public_key_of(spec: str, options: KeyOptions = KeyOptions()) -> Ed25519PublicKey:
    """The public half of ``spec``; a ``.pub`` file (or a PEM public key) is read as is."""
    if not hsm.is_pkcs11_uri(spec):
        head = Path(spec)
        try:
            is_public = b"-----BEGIN PUBLIC KEY-----" in head.read_bytes()[:64]
        except OSError as e:
            raise SignerError(f"cannot read key {spec}: {e.strerror}") from None
        if is_public:
            return keys.load_public(head)
    return open_signer(spec, options).public_key()


def generate_key(
    spec: str, options: KeyOptions = KeyOptions(), encrypt: bool = False
) -> Ed25519PublicKey:
    """Make a new key where ``spec`` says: in the token, or in a file (encrypted if asked)."""
    if hsm.is_pkcs11_uri(spec):
        uri = hsm.Pkcs11Uri.parse(spec)
        return hsm.generate(uri, options.pin_for(uri), options.module)
    path = Path(spec)
    passphrase = options.passphrase.read(str(path), confirm=True).encode() if encrypt else None
    keys.generate(path, passphrase)
    return keys.load_public(path.with_name(path.name + ".pub"))
