"""add GGUF per-tensor quantization rules to quantization formats

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: a format the user added keeps its single bits-per-weight figure.
    with op.batch_alter_table("quant_format", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gguf_rules", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("quant_format", schema=None) as batch_op:
        batch_op.drop_column("gguf_rules")
