"""Ed25519 keys in a PKCS#11 token (an HSM, a smart card, SoftHSM2): named by RFC 7512 URIs.

A release key that sits in a file can be copied by anyone who reads the disk once; a key made
in a token (sensitive, not extractable) signs only while the token is there and the PIN is
known, and is never seen by fwdist at all. :class:`Pkcs11Signer` is a :class:`fwdist.keys.Signer`:
it hands the token the bytes to sign (``CKM_EDDSA``, pure Ed25519) and takes back 64 bytes.

URIs (RFC 7512) name the token and the key, e.g.
``pkcs11:token=release;object=release-1`` or ``pkcs11:serial=79434490ee2bac73;id=%01%02``.
Path attributes fwdist understands: ``token``, ``manufacturer``, ``model``, ``serial``,
``slot-id`` (which token) and ``object``, ``id``, ``type`` (which key; ``type`` must be
``private`` or ``public``). Query attributes: ``module-path`` (the PKCS#11 library) and
``pin-source`` (``file:/path`` or a path: the file holding the PIN). ``pin-value`` is refused:
a PIN on a command line is in every process listing and in the shell's history.

The library (``python-pkcs11``) loads one PKCS#11 module per process, and the module reads
its configuration (SoftHSM2: ``SOFTHSM2_CONF``) when it is first loaded.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes

import pkcs11
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_named_curve_parameters

from fwdist.errors import SignerError

__all__ = [
    "DEFAULT_MODULE",
    "MODULE_ENV",
    "Pkcs11Signer",
    "Pkcs11Uri",
    "generate",
    "is_pkcs11_uri",
    "open_token",
]

# Debian's softhsm2 package; any PKCS#11 module that does CKM_EDDSA works.
DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
MODULE_ENV = "FWDIST_PKCS11_MODULE"
SCHEME = "pkcs11:"
ED25519_OID = "1.3.101.112"  # RFC 8410 id-Ed25519, the curve in CKA_EC_PARAMS

# RFC 7512 path attributes that pick the token, and those that pick the object.
TOKEN_ATTRS = ("token", "manufacturer", "model", "serial", "slot-id")
OBJECT_ATTRS = ("object", "id", "type")
QUERY_ATTRS = ("module-path", "pin-source")


def is_pkcs11_uri(spec: str) -> bool:
    return spec.startswith(SCHEME)


@dataclass(frozen=True)
class Pkcs11Uri:
    """An RFC 7512 URI, parsed: which token, which key, and where the module and PIN are."""

    token: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    slot_id: int | None = None
    object: str | None = None
    id: bytes | None = None
    type: str | None = None
    module_path: str | None = None
    pin_source: str | None = None

    @classmethod
    def parse(cls, text: str) -> Pkcs11Uri:
        """Parse or raise :class:`SignerError` naming the first thing wrong."""
        if not is_pkcs11_uri(text):
            raise SignerError(f"{text!r} is not a pkcs11: URI")
        path, _, query = text[len(SCHEME):].partition("?")
        fields: dict[str, Any] = {}
        parts = ((path, ";", TOKEN_ATTRS + OBJECT_ATTRS), (query, "&", QUERY_ATTRS))
        for part, sep, allowed in parts:
            for attr in filter(None, part.split(sep)):
                name, eq, value = attr.partition("=")
                if not eq:
                    raise SignerError(f"pkcs11 URI attribute {name!r} has no value ({text})")
                if name == "pin-value":
                    raise SignerError(
                        "pkcs11 URI has pin-value: a PIN on a command line is in every process "
                        "listing; use --pin-env, --pin-file or pin-source"
                    )
                if name not in allowed:
                    raise SignerError(f"pkcs11 URI attribute {name!r} is not one fwdist knows")
                key = name.replace("-", "_")
                if key in fields:
                    raise SignerError(f"pkcs11 URI names {name!r} twice ({text})")
                fields[key] = cls._value(name, value)
        uri = cls(**fields)
        if uri.type not in (None, "private", "public"):
            raise SignerError(f"pkcs11 URI type={uri.type}: a signing key is type=private")
        return uri

    @staticmethod
    def _value(name: str, value: str) -> Any:
        if name == "id":
            return unquote_to_bytes(value)
        try:
            text = unquote(value, errors="strict")
        except UnicodeDecodeError:
            raise SignerError(f"pkcs11 URI {name}= is not UTF-8 once decoded") from None
        if name == "slot-id":
            if not text.isdigit():
                raise SignerError(f"pkcs11 URI slot-id must be a number, got {text!r}")
            return int(text)
        return text

    def __str__(self) -> str:
        path = []
        for name in TOKEN_ATTRS + OBJECT_ATTRS:
            value = getattr(self, name.replace("-", "_"))
            if value is None:
                continue
            if isinstance(value, bytes):
                path.append(f"{name}=" + "".join(f"%{b:02x}" for b in value))
            else:
                path.append(f"{name}={quote(str(value), safe='')}")
        query = [
            f"{name}={quote(value, safe='/')}"
            for name in QUERY_ATTRS
            if (value := getattr(self, name.replace("-", "_"))) is not None
        ]
        return SCHEME + ";".join(path) + ("?" + "&".join(query) if query else "")

    def key_template(self) -> dict[Attribute, Any]:
        """The attributes the key objects must have; empty when the URI names no key."""
        template: dict[Attribute, Any] = {}
        if self.object is not None:
            template[Attribute.LABEL] = self.object
        if self.id is not None:
            template[Attribute.ID] = self.id
        return template


def module_path(uri: Pkcs11Uri, module: str | None = None) -> str:
    """Which module: ``--pkcs11-module``, else the URI's, else the environment's, else Debian's."""
    return module or uri.module_path or os.environ.get(MODULE_ENV) or DEFAULT_MODULE


def open_token(uri: Pkcs11Uri, module: str | None = None) -> pkcs11.Token:
    """The one token the URI names (any token attributes given must all match)."""
    path = module_path(uri, module)
    try:
        lib = pkcs11.lib(path)
    except p11.PKCS11Error as e:
        raise SignerError(f"cannot load PKCS#11 module {path}: {e}") from None
    except RuntimeError as e:  # python-pkcs11 loads one module per process
        raise SignerError(f"cannot load PKCS#11 module {path}: {e}") from None
    wanted = {
        "token": uri.token,
        "manufacturer": uri.manufacturer,
        "model": uri.model,
        "serial": uri.serial,
    }
    found = []
    for slot in lib.get_slots(token_present=True):
        if uri.slot_id is not None and slot.slot_id != uri.slot_id:
            continue
        token = slot.get_token()
        have = {
            "token": token.label,
            "manufacturer": token.manufacturer_id,
            "model": token.model,
            "serial": token.serial.decode("ascii", "replace"),
        }
        if all(v is None or have[k] == v for k, v in wanted.items()) and token.label:
            found.append(token)
    if not found:
        raise SignerError(f"no PKCS#11 token matches {uri} in {path}")
    if len(found) > 1:
        raise SignerError(f"{len(found)} PKCS#11 tokens match {uri}; add token= or serial=")
    return found[0]


@contextmanager
def session(token: pkcs11.Token, pin: str, uri: Pkcs11Uri, rw: bool = False) -> Iterator[Any]:
    """A logged-in session, its PKCS#11 errors turned into one line that names the token."""
    try:
        with token.open(user_pin=pin, rw=rw) as s:
            yield s
    except p11.PinIncorrect:
        raise SignerError(f"wrong PIN for PKCS#11 token {token.label!r}") from None
    except p11.PinLocked:
        raise SignerError(f"PKCS#11 token {token.label!r} is locked: too many wrong PINs") \
            from None
    except (p11.PinLenRange, p11.PinInvalid):
        raise SignerError(f"that PIN cannot be a PIN of PKCS#11 token {token.label!r}") from None
    except p11.PKCS11Error as e:
        raise SignerError(f"PKCS#11 token {token.label!r} failed on {uri}: "
                          f"{type(e).__name__} {e}".rstrip()) from None


def _public_from_point(point: bytes, uri: Pkcs11Uri) -> Ed25519PublicKey:
    # PKCS#11 v3.0 asks for the point DER-wrapped (OCTET STRING, 04 20 ...); some tokens
    # give the 32 raw bytes. Both are the RFC 8032 public key.
    if len(point) == 34 and point[:2] == b"\x04\x20":
        point = point[2:]
    if len(point) != 32:
        raise SignerError(f"{uri}: the public key is not an Ed25519 point ({len(point)} bytes)")
    return Ed25519PublicKey.from_public_bytes(point)


def _one_key(s: Any, uri: Pkcs11Uri, cls: ObjectClass) -> Any:
    what = "private key" if cls == ObjectClass.PRIVATE_KEY else "public key"
    template = uri.key_template()
    if not template:
        raise SignerError(f"{uri} names no key; add object=LABEL or id=%XX")
    objs = list(s.get_objects({Attribute.CLASS: cls, **template}))
    if not objs:
        raise SignerError(f"no {what} matches {uri} in token {s.token.label!r}")
    if len(objs) > 1:
        raise SignerError(f"{len(objs)} {what}s match {uri}; add id= to pick one")
    obj = objs[0]
    key_type = obj[Attribute.KEY_TYPE]
    if key_type != KeyType.EC_EDWARDS:
        name = getattr(key_type, "name", f"0x{key_type:x}")
        raise SignerError(f"{uri} is not an Ed25519 key (its key type is {name})")
    return obj


class Pkcs11Signer:
    """Signs with an Ed25519 private key that stays in a PKCS#11 token.

    Opening checks everything a signature will need (the token, the PIN, one private
    key of the right type and its public key), so a bad URI or PIN fails before any work
    is done, not after a long stage. Each signature opens its own session: nothing is
    left logged in between them.
    """

    def __init__(self, uri: Pkcs11Uri, pin: str, module: str | None = None) -> None:
        self.uri = uri
        self._pin = pin
        self._token = open_token(uri, module)
        with session(self._token, pin, uri) as s:
            _one_key(s, uri, ObjectClass.PRIVATE_KEY)
            public = _one_key(s, uri, ObjectClass.PUBLIC_KEY)
            self._public = _public_from_point(public[Attribute.EC_POINT], uri)

    def public_key(self) -> Ed25519PublicKey:
        return self._public

    def sign(self, data: bytes) -> bytes:
        with session(self._token, self._pin, self.uri) as s:
            key = _one_key(s, self.uri, ObjectClass.PRIVATE_KEY)
            signature = bytes(key.sign(data, mechanism=Mechanism.EDDSA))
        if len(signature) != 64:
            raise SignerError(f"{self.uri} returned a {len(signature)}-byte signature, not 64")
        return signature


def generate(uri: Pkcs11Uri, pin: str, module: str | None = None) -> Ed25519PublicKey:
    """Make an Ed25519 keypair in the token, labelled ``object=`` (never a second one).

    The private key is sensitive and not extractable: the token signs with it and never
    lets it out, not even wrapped. The pair shares a random 8-byte CKA_ID so either can
    be named by ``id=`` too.
    """
    if uri.object is None:
        raise SignerError(f"{uri}: give object=LABEL to name the new key")
    token = open_token(uri, module)
    with session(token, pin, uri, rw=True) as s:
        if list(s.get_objects({Attribute.LABEL: uri.object})):
            raise SignerError(f"token {token.label!r} already holds {uri.object!r}; "
                              "refusing to make a second key of that name")
        params = s.create_domain_parameters(
            KeyType.EC_EDWARDS,
            {Attribute.EC_PARAMS: encode_named_curve_parameters(ED25519_OID)},
            local=True,
        )
        public, _private = params.generate_keypair(
            mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
            store=True,
            label=uri.object,
            id=uri.id if uri.id is not None else secrets.token_bytes(8),
            public_template={Attribute.VERIFY: True},
            private_template={
                Attribute.SIGN: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.PRIVATE: True,
            },
        )
        return _public_from_point(public[Attribute.EC_POINT], uri)


def read_pin_source(uri: Pkcs11Uri) -> Path | None:
    """The file a URI's ``pin-source`` names (``file:/p`` or ``/p``), if it names one."""
    if uri.pin_source is None:
        return None
    return Path(uri.pin_source.removeprefix("file:"))
