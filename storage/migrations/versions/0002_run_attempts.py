"""The runs projection counts each run's HTTP attempts (more than one when the SDK retried).

Runs stored before it were not counted; like their end and error events, which read back as
``attempts`` 1, they are taken as sent once. A run still running has no count yet.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("synthora_runs", sa.Column("attempts", sa.Integer))
    op.execute("UPDATE synthora_runs SET attempts = 1 WHERE status <> 'running'")


def downgrade() -> None:
    with op.batch_alter_table("synthora_runs") as batch:
        batch.drop_column("attempts")
