"""The fleet's first schema: tokens, releases and their payloads, boxes, tags, reports.

Revision ID: 0001_fleet
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_fleet"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("secret_sha256", sa.LargeBinary(32), nullable=False, unique=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "releases",
        sa.Column("product", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(32), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("published_at", sa.BigInteger, nullable=False),
        sa.Column("manifest_sha256", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "payloads",
        sa.Column("product", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(32), primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("from_version", sa.String(32), nullable=True),
        sa.Column("encoder", sa.String(64), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("pieces", sa.Integer, nullable=False),
        sa.Column("table_sha256", sa.LargeBinary(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["product", "version"], ["releases.product", "releases.version"],
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "boxes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("product", sa.String(64), nullable=False),
        sa.Column("hardware", sa.String(64), nullable=False),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("registered_at", sa.BigInteger, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_boxes_product", "boxes", ["product"])
    op.create_table(
        "box_tags",
        sa.Column("box_id", sa.String(64), sa.ForeignKey("boxes.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("tag", sa.String(64), primary_key=True),
    )
    op.create_index("ix_box_tags_tag", "box_tags", ["tag"])
    op.create_table(
        "reports",
        sa.Column("box_id", sa.String(64), sa.ForeignKey("boxes.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("wire", sa.LargeBinary, nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
        sa.Column("running_version", sa.String(32), nullable=False),
        sa.Column("running_image", sa.LargeBinary(8), nullable=False),
        sa.Column("target_version", sa.String(32), nullable=True),
        sa.Column("held", sa.BigInteger, nullable=True),
        sa.Column("total", sa.BigInteger, nullable=True),
        sa.Column("battery", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("last_version", sa.String(32), nullable=True),
        sa.Column("last_outcome", sa.String(24), nullable=True),
        sa.Column("last_reason", sa.Integer, nullable=True),
        sa.Column("clock", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("reports", "box_tags", "boxes", "payloads", "releases", "tokens"):
        op.drop_table(table)
