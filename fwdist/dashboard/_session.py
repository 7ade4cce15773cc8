"""Dashboard sessions in a signed cookie: who logged in, until when, and nothing else.

The cookie holds the token's id and name and an expiry, MACed with a key only the server
process holds (HMAC-SHA256 over a domain-separated context), so the server keeps no session
table and a forged or edited cookie is refused. The token's secret never goes into the
cookie: each request asks the :class:`~fwdist.dashboard.model.Authenticator` whether the
token still stands, so ``fwdist token revoke`` ends its sessions at their next request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from fwdist.dashboard._model import Principal

CONTEXT = b"fwdist dashboard session v1\0"
MAX_COOKIE = 1024  # a real cookie is ~150 characters; anything longer is refused unread
LIFETIME = 8 * 3600  # a working day: long enough to watch a rollout, short enough to expire


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, CONTEXT + payload, hashlib.sha256).digest()


def encode(principal: Principal, key: bytes, now: int, lifetime: int = LIFETIME) -> str:
    payload = json.dumps(
        {"t": principal.token_id, "n": principal.name, "e": now + lifetime},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return f"{_b64(payload)}.{_b64(_mac(key, payload))}"


def decode(cookie: str, key: bytes, now: int) -> Principal | None:
    """The session's principal, or None for a cookie that is forged, edited, odd or expired."""
    if len(cookie) > MAX_COOKIE or cookie.count(".") != 1:
        return None
    body, mac = cookie.split(".")
    try:
        payload, tag = _unb64(body), _unb64(mac)
    except (binascii.Error, ValueError):
        return None
    if _b64(payload) != body or _b64(tag) != mac:  # one spelling per cookie: no malleability
        return None
    if not hmac.compare_digest(tag, _mac(key, payload)):
        return None
    try:
        fields = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(fields, dict) or sorted(fields) != ["e", "n", "t"]:
        return None
    token_id, name, expires = fields["t"], fields["n"], fields["e"]
    if not (isinstance(token_id, str) and isinstance(name, str) and type(expires) is int):
        return None
    return Principal(token_id, name) if now < expires else None
