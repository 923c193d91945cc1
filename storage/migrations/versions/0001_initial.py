"""The first schema: the append-only events table and the runs projection.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from synthora.storage.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "synthora_events",
        sa.Column("position", position, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("schema_version", sa.SmallInteger, nullable=False),
        sa.Column("node_name", sa.String(200), nullable=False),
        sa.Column("node_type", sa.String(16), nullable=False),
        sa.Column("node_path", sa.Text, nullable=False),
        sa.Column("parent_run_id", sa.String(36)),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("span_id", sa.String(16), nullable=False),
        sa.Column("model", sa.String(200)),
        sa.Column("body", sa.JSON().with_variant(JSONB(), "postgresql")),
        sa.Column("pack", sa.LargeBinary),
        sa.UniqueConstraint("run_id", "seq", name="uq_synthora_events_run_seq"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_synthora_events_ts", "synthora_events", ["ts"])
    op.create_table(
        "synthora_runs",
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("parent_run_id", sa.String(36)),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("node_name", sa.String(200), nullable=False),
        sa.Column("node_type", sa.String(16), nullable=False),
        sa.Column("node_path", sa.Text, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("ended_at", UTCDateTime),
        sa.Column("duration_s", sa.Float),
        sa.Column("time_to_first_token_s", sa.Float),
        sa.Column("input_tokens", sa.Integer),
        sa.Column("output_tokens", sa.Integer),
        sa.Column("finish_reason", sa.String(40)),
        sa.Column("error_type", sa.String(200)),
        sa.Column("error_message", sa.Text),
        sa.Column("status_code", sa.Integer),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("span_id", sa.String(16), nullable=False),
    )
    op.create_index("ix_synthora_runs_started_at", "synthora_runs", ["started_at"])
    op.create_index("ix_synthora_runs_model_started_at", "synthora_runs", ["model", "started_at"])
    op.create_index("ix_synthora_runs_node_path", "synthora_runs", ["node_path"])
    op.create_index("ix_synthora_runs_status_started_at", "synthora_runs", ["status", "started_at"])
    op.create_index("ix_synthora_runs_parent_run_id", "synthora_runs", ["parent_run_id"])


def downgrade() -> None:
    op.drop_table("synthora_runs")
    op.drop_table("synthora_events")
