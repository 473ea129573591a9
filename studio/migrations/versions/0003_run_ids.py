"""The `run_ids` table: every run id handed out, so that two writers (two machines) cannot take the same one.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_ids",
        sa.Column("id", sa.Text, primary_key=True), sa.Column("token", sa.Text, nullable=False),
        sa.Column("claimed", sa.Double), sa.Column("host", sa.Text), sa.Column("pid", sa.Integer),
    )  # fmt: skip
    # Ids the runs already have are taken.
    op.execute("INSERT INTO run_ids (id, token, claimed, host, pid) "
               "SELECT id, 'migrated', created, host, pid FROM runs")  # fmt: skip


def downgrade() -> None:
    op.drop_table("run_ids")
