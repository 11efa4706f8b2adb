"""The registry's tables: devices, reports, rejections (evidence), credentials, challenges,
governance files and cosigned checkpoints.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("device", sa.Text, primary_key=True),
        sa.Column("key_fingerprint", sa.Text, nullable=False, unique=True),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("accelerator", sa.Text, nullable=False),
        sa.Column("operator", sa.Text, nullable=False),
        sa.Column("site", sa.Text, nullable=True),
        sa.Column("manufacturer", sa.Text, nullable=False),
        sa.Column("serial", sa.Text, nullable=False),
        sa.Column("trust_level", sa.Text, nullable=False),
        sa.Column("enrolled_us", sa.BigInteger, nullable=False),
        sa.Column("log_index", sa.BigInteger, nullable=False),
        sa.Column("last_sequence", sa.BigInteger, nullable=True),
        sa.Column("last_digest", sa.Text, nullable=True),
        sa.Column("last_window_end_us", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "reports",
        sa.Column("device", sa.Text, primary_key=True),
        sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("digest", sa.Text, nullable=False),
        sa.Column("log_index", sa.BigInteger, nullable=False, unique=True),
        sa.Column("received_us", sa.BigInteger, nullable=False),
        sa.Column("window_start_us", sa.BigInteger, nullable=False),
        sa.Column("window_end_us", sa.BigInteger, nullable=False),
        sa.Column("busy_ms", sa.BigInteger, nullable=False),
        sa.Column("tensor_active_ms", sa.BigInteger, nullable=True),
        sa.Column("energy_mj", sa.BigInteger, nullable=False),
        sa.Column("operator", sa.Text, nullable=False),
        sa.Column("job", sa.Text, nullable=True),
        sa.Column("tenant", sa.Text, nullable=True),
        sa.Column("permit", sa.Text, nullable=True),
        sa.Column("workload", sa.Text, nullable=False),
        sa.Column("minute_root", sa.Text, nullable=False),
        sa.Column("minute_count", sa.Integer, nullable=False),
    )
    op.create_index("reports_window", "reports", ["window_start_us"])
    op.create_table(
        "rejections",
        sa.Column("id", _Serial, primary_key=True, autoincrement=True),
        sa.Column("received_us", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("device", sa.Text, nullable=True),
        sa.Column("sequence", sa.BigInteger, nullable=True),
        sa.Column("body_sha256", sa.Text, nullable=False),
        sa.Column("body_size", sa.BigInteger, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_index("rejections_device", "rejections", ["device", "sequence"])
    op.create_table(
        "credentials",
        sa.Column("token_sha256", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "challenges",
        sa.Column("id", _Serial, primary_key=True, autoincrement=True),
        sa.Column("device", sa.Text, nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("requested_us", sa.BigInteger, nullable=False),
        sa.Column("answered_us", sa.BigInteger, nullable=True),
        sa.Column("response", sa.LargeBinary, nullable=True),
    )
    op.create_index("challenges_device", "challenges", ["device", "answered_us"])
    op.create_table(
        "governance_files",
        sa.Column("path", sa.Text, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("log_index", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "cosigned_checkpoints",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("note", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "cosigned_checkpoints",
        "governance_files",
        "challenges",
        "credentials",
        "rejections",
        "reports",
        "devices",
    ):
        op.drop_table(table)
