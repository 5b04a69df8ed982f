"""llm-gateway routing: every change of the site's routing document, kept

The newest row is the routing in force (``document`` NULL: routing off); no row at all is
routing off too. Older rows stay, for the auditors. Downgrading drops the table and with
it the history (the audit log keeps each change's document).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "routing_configs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_configs")),
    )


def downgrade() -> None:
    op.drop_table("routing_configs")
