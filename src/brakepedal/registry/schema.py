"""The registry's tables, beside the transparency log's (``brakepedal.tlog.sqlstore``).

Times are integer microseconds since 1970 (UTC), so they sort and compare the same way on
SQLite and PostgreSQL. A report's signed bytes are not stored twice: the log entry at
``reports.log_index`` is the envelope. Alembic migrations (``migrations/versions``) create
exactly these tables; ``tests/unit/registry/test_migrations.py`` compares the two.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)

__all__ = [
    "challenges",
    "cosigned_checkpoints",
    "credentials",
    "devices",
    "governance_files",
    "metadata",
    "rejections",
    "reports",
]

# SQLite wants INTEGER PRIMARY KEY for an autoincrementing rowid key.
_Serial = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

devices = Table(
    "devices",
    metadata,
    Column("device", Text, primary_key=True),
    Column("key_fingerprint", Text, nullable=False, unique=True),
    Column("public_key", Text, nullable=False),
    Column("accelerator", Text, nullable=False),
    Column("operator", Text, nullable=False),
    Column("site", Text, nullable=True),
    Column("manufacturer", Text, nullable=False),
    Column("serial", Text, nullable=False),
    Column("trust_level", Text, nullable=False),
    Column("enrolled_us", BigInteger, nullable=False),
    Column("log_index", BigInteger, nullable=False),
    Column("last_sequence", BigInteger, nullable=True),
    Column("last_digest", Text, nullable=True),
    Column("last_window_end_us", BigInteger, nullable=True),
)

reports = Table(
    "reports",
    metadata,
    Column("device", Text, primary_key=True),
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("digest", Text, nullable=False),
    Column("log_index", BigInteger, nullable=False, unique=True),
    Column("received_us", BigInteger, nullable=False),
    Column("window_start_us", BigInteger, nullable=False),
    Column("window_end_us", BigInteger, nullable=False),
    Column("busy_ms", BigInteger, nullable=False),
    Column("tensor_active_ms", BigInteger, nullable=True),
    Column("energy_mj", BigInteger, nullable=False),
    Column("operator", Text, nullable=False),
    Column("job", Text, nullable=True),
    Column("tenant", Text, nullable=True),
    Column("permit", Text, nullable=True),
    Column("workload", Text, nullable=False),
    Column("minute_root", Text, nullable=False),
    Column("minute_count", Integer, nullable=False),
)
Index("reports_window", reports.c.window_start_us)

rejections = Table(
    "rejections",
    metadata,
    Column("id", _Serial, primary_key=True, autoincrement=True),
    Column("received_us", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("device", Text, nullable=True),
    Column("sequence", BigInteger, nullable=True),
    Column("body_sha256", Text, nullable=False),
    Column("body_size", BigInteger, nullable=False),
    Column("body", LargeBinary, nullable=False),
)
Index("rejections_device", rejections.c.device, rejections.c.sequence)

credentials = Table(
    "credentials",
    metadata,
    Column("token_sha256", Text, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("role", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
)

challenges = Table(
    "challenges",
    metadata,
    Column("id", _Serial, primary_key=True, autoincrement=True),
    Column("device", Text, nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("requested_us", BigInteger, nullable=False),
    Column("answered_us", BigInteger, nullable=True),
    Column("response", LargeBinary, nullable=True),
)
Index("challenges_device", challenges.c.device, challenges.c.answered_us)

governance_files = Table(
    "governance_files",
    metadata,
    Column("path", Text, primary_key=True),
    Column("data", LargeBinary, nullable=False),
    Column("log_index", BigInteger, nullable=False),
)

cosigned_checkpoints = Table(
    "cosigned_checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("note", LargeBinary, nullable=False),
)
