"""Server keys: secrets that every server process on one database shares.

Revision ID: 0003_server_keys
Revises: 0002_rollouts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_server_keys"
down_revision = "0002_rollouts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "server_keys",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("secret", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("server_keys")
