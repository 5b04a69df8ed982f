"""break-glass windows

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATES = ("requested", "approved", "active", "expired", "revoked", "denied", "withdrawn")


def upgrade() -> None:
    when = sa.DateTime(timezone=True)
    op.create_table(
        "breakglass_windows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(*STATES, name="windowstate", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("requester", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("ticket", sa.String(length=128), nullable=False),
        sa.Column("scope", sa.JSON(), nullable=False),
        sa.Column("engineers", sa.JSON(), nullable=False),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        sa.Column("starts_at", when, nullable=True),
        sa.Column("extends_id", sa.Integer(), nullable=True),
        sa.Column("created_at", when, nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at", when, nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=False),
        sa.Column("activated_at", when, nullable=True),
        sa.Column("ends_at", when, nullable=True),
        sa.Column("boot_id", sa.String(length=64), nullable=True),
        sa.Column("deadline_boottime", sa.Float(), nullable=True),
        sa.Column("ended_at", when, nullable=True),
        sa.Column("ended_by", sa.String(length=64), nullable=True),
        sa.Column("end_reason", sa.String(length=64), nullable=False),
        sa.Column("cleanup_confirmed_at", when, nullable=True),
        sa.Column("ziti_objects", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["extends_id"],
            ["breakglass_windows.id"],
            name=op.f("fk_breakglass_windows_extends_id_breakglass_windows"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_breakglass_windows")),
    )
    with op.batch_alter_table("breakglass_windows", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_breakglass_windows_state"), ["state"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_breakglass_windows_extends_id"), ["extends_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("breakglass_windows")
