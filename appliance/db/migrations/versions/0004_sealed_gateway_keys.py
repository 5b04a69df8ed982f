"""gateway keys sealed for the llm-gateway's configuration

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_keys") as batch:
        batch.add_column(sa.Column("sealed_key", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_keys") as batch:
        batch.drop_column("sealed_key")
