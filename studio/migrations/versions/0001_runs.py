"""The runs table as the first registries had it (schema 1, before Alembic: SQLite files from older studios
are stamped with this revision when they have no `flag` column).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Text, primary_key=True), sa.Column("name", sa.Text),
        sa.Column("status", sa.Text, nullable=False), sa.Column("created", sa.Double), sa.Column("finished", sa.Double),
        sa.Column("pid", sa.Integer), sa.Column("host", sa.Text), sa.Column("model", sa.Text),
        sa.Column("method", sa.Text), sa.Column("dataset", sa.Text), sa.Column("config_hash", sa.Text),
        sa.Column("seed", sa.Integer), sa.Column("accuracy", sa.Double), sa.Column("f1_macro", sa.Double),
        sa.Column("f1_weighted", sa.Double), sa.Column("peak_memory_mb", sa.Double),
        sa.Column("train_seconds", sa.Double), sa.Column("trainable_params", sa.BigInteger),
        sa.Column("total_params", sa.BigInteger), sa.Column("message", sa.Text),
    )  # fmt: skip
    op.create_index("runs_created", "runs", ["created"])


def downgrade() -> None:
    op.drop_index("runs_created", table_name="runs")
    op.drop_table("runs")
