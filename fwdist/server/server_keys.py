"""Secrets the server keeps in its database, made once and shared by every process on it.

The dashboard signs its session cookies with one. A key drawn fresh at each start would log
everyone out at every restart, and two server processes on one database (Hypercorn workers,
or hosts behind one name) would each refuse the other's cookies. The database is the one
thing they all share, and the one a release engineer already backs up and guards: the store
is meant to be served as files, so no secret may live there.

The first process to need a key inserts it; one that loses that race reads the winner's.
"""

from __future__ import annotations

import enum
import secrets

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from fwdist.server.db import server_keys

KEY_BYTES = 32


class KeyName(enum.Enum):
    DASHBOARD_SESSIONS = "dashboard-sessions"


def get_or_create(engine: Engine, name: KeyName, now: int) -> bytes:
    """The key called ``name``: the stored one, or a fresh one stored now."""
    select = sa.select(server_keys.c.secret).where(server_keys.c.name == name.value)
    with engine.connect() as conn:
        found = conn.execute(select).scalar_one_or_none()
    if found is not None:
        return bytes(found)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(server_keys).values(
                name=name.value, secret=secrets.token_bytes(KEY_BYTES), created_at=now))
    except IntegrityError:  # another process stored it first: theirs is the key
        pass
    with engine.connect() as conn:
        return bytes(conn.execute(select).scalar_one())
