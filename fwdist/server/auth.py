"""Scoped API tokens: made and revoked with the CLI, stored only as their SHA-256.

A token is ``fwd_<scope>_<43 url-safe characters>`` (256 random bits): the scope in the
text lets a person (and a secret scanner) see what a leaked token can do; the server
trusts only the scope stored beside the hash. The secret is printed once, at creation;
the database holds its SHA-256, so a copy of the database lets no one call the API.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fwdist.errors import FwdistError
from fwdist.server.db import tokens

REVOCATION_DELAY_S = 2.0
"""How long a running server may still accept a token after ``fwdist token revoke``: the
lifetime of a live token's entry in :class:`TokenCache`."""
MAX_CACHED_TOKENS = 4096

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SECRET = re.compile(r"fwd_(release|app|read)_[A-Za-z0-9_-]{43}")


class Scope(enum.Enum):
    """What a token may do. ``release``: publish, register boxes, rollouts, yank (and read);
    ``app``: a phone's sync and report upload; ``read``: GET of the API and dashboard."""

    RELEASE = "release"
    APP = "app"
    READ = "read"


@dataclass(frozen=True)
class TokenInfo:
    name: str
    scope: Scope
    created_at: int
    revoked_at: int | None


def secret_sha256(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_secret(scope: Scope) -> str:
    return f"fwd_{scope.value}_{secrets.token_urlsafe(32)}"


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise FwdistError(
            f"token name {name!r} must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def create(engine: Engine, name: str, scope: Scope, now: int) -> str:
    """Store a new token's hash under ``name``; return the secret (shown once, never stored)."""
    check_name(name)
    secret = new_secret(scope)
    try:
        with engine.begin() as conn:
            conn.execute(tokens.insert().values(
                name=name, scope=scope.value, secret_sha256=secret_sha256(secret),
                created_at=now, revoked_at=None))
    except sa.exc.IntegrityError:
        raise FwdistError(f"a token named {name!r} exists already") from None
    return secret


def revoke(engine: Engine, name: str, now: int) -> bool:
    """Revoke ``name``; False when it was revoked already. Unknown names are an error."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(tokens.c.revoked_at).where(tokens.c.name == name)).first()
        if row is None:
            raise FwdistError(f"no token named {name!r}")
        if row.revoked_at is not None:
            return False
        conn.execute(tokens.update().where(tokens.c.name == name).values(revoked_at=now))
    return True


def listing(engine: Engine) -> list[TokenInfo]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(tokens).order_by(tokens.c.name)).all()
    return [TokenInfo(r.name, Scope(r.scope), r.created_at, r.revoked_at) for r in rows]


def scope_of(engine: Engine, secret: str) -> Scope | None:
    """The scope of a live token, or None for anything else (malformed, unknown, revoked)."""
    if not _SECRET.fullmatch(secret):
        return None
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(tokens.c.scope, tokens.c.revoked_at).where(
                tokens.c.secret_sha256 == secret_sha256(secret))
        ).first()
    if row is None or row.revoked_at is not None:
        return None
    return Scope(row.scope)


@dataclass
class TokenCache:
    """Live tokens' scopes, remembered for :data:`REVOCATION_DELAY_S` seconds.

    Every API call checks its token; without this each request costs a database query
    and a trip to a worker thread before its work starts (a phone's sync makes several
    calls within a second). A revocation is seen once the entry expires, so a revoked
    token works for at most ``ttl`` seconds more. Only live tokens are kept: an unknown
    or revoked one is asked of the database every time (a token made a moment ago works
    at once, and guessing fills nothing). Keyed by the secret's SHA-256, as stored.
    Touched only from the server's event loop, never from a worker thread.
    """

    ttl: float = REVOCATION_DELAY_S
    max_entries: int = MAX_CACHED_TOKENS
    _live: dict[bytes, tuple[Scope, float]] = field(default_factory=dict)

    def get(self, secret: str, now: float) -> Scope | None:
        """The cached scope of ``secret``, or None when it must be asked of the database."""
        hit = self._live.get(secret_sha256(secret))
        if hit is None or now >= hit[1]:
            return None
        return hit[0]

    def put(self, secret: str, scope: Scope, now: float) -> None:
        if len(self._live) >= self.max_entries:
            self._live = {k: v for k, v in self._live.items() if now < v[1]}
            if len(self._live) >= self.max_entries:
                self._live.clear()
        self._live[secret_sha256(secret)] = (scope, now + self.ttl)
