"""add how cards combine and the default set

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 07:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every new column is nullable or has a server default, so rows the user added keep their
    # values and get their market's rule (null) and no place in the default set.
    with op.batch_alter_table("gpu", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_per_node", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("link", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("multi_node", sa.Boolean(), nullable=True))
        batch_op.add_column(
            sa.Column("default_set", sa.Boolean(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("default_set_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gpu", schema=None) as batch_op:
        batch_op.drop_column("default_set_reason")
        batch_op.drop_column("default_set")
        batch_op.drop_column("multi_node")
        batch_op.drop_column("link")
        batch_op.drop_column("max_per_node")
