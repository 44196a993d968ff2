"""add training recipes

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 09:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A new table: the rows users already have are untouched; `catalog sync` brings the bundled
    # recipes in on the next open.
    op.create_table(
        "recipe",
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("user_modified", sa.Boolean(), nullable=False),
        sa.Column("slug", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("framework", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=True),
        sa.Column("precision", sa.String(length=16), nullable=True),
        sa.Column("optimizer", sa.String(length=24), nullable=True),
        sa.Column("optimizer_in_backward", sa.Boolean(), nullable=True),
        sa.Column("checkpointing", sa.String(length=16), nullable=True),
        sa.Column("loss", sa.String(length=16), nullable=True),
        sa.Column("offload", sa.String(length=24), nullable=True),
        sa.Column("lora_dtype", sa.String(length=8), nullable=True),
        sa.Column("lora_targets", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("lora_rank", sa.Integer(), nullable=True),
        sa.Column("attention", sa.String(length=8), nullable=True),
        sa.Column("parallel", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("batch", sa.Integer(), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recipe")),
    )
    with op.batch_alter_table("recipe", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recipe_slug"), ["slug"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("recipe", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recipe_slug"))
    op.drop_table("recipe")
