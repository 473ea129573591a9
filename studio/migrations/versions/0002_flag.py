"""The `flag` column: "collapsed", "diverged" or "untrained" when a run did not learn (studio/health.py).

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


def upgrade() -> None:
    op.add_column("runs", sa.Column("flag", sa.Text))


def downgrade() -> None:
    op.drop_column("runs", "flag")
