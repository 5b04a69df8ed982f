"""audit log: hash chain, head row, signed checkpoints

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))

    # Chain the events recorded before this revision, in the order they were written.
    # (The canonical form is appliance.audit.format as of this revision, kept here so the
    # migration never changes when that module does.)
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT id, at, actor, action, target, outcome, details, client FROM audit_events "
            "ORDER BY id"
        )
    ).fetchall()
    prev = GENESIS
    for seq, row in enumerate(rows, start=1):
        at = row.at if not isinstance(row.at, str) else _parse(row.at)
        details = row.details if isinstance(row.details, dict) else json.loads(row.details or "{}")
        fields = {
            "format": "appliance-audit-record/1",
            "seq": seq,
            "at": at.astimezone(UTC).isoformat(timespec="microseconds")
            if at.tzinfo
            else at.replace(tzinfo=UTC).isoformat(timespec="microseconds"),
            "actor": row.actor,
            "action": row.action,
            "target": row.target,
            "outcome": row.outcome,
            "client": row.client,
            "details": details,
            "prev_hash": prev,
        }
        digest = hashlib.sha256(
            json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
                "utf-8"
            )
        ).hexdigest()
        connection.execute(
            sa.text(
                "UPDATE audit_events SET seq = :seq, prev_hash = :prev, hash = :hash WHERE id = :id"
            ),
            {"seq": seq, "prev": prev, "hash": digest, "id": row.id},
        )
        prev = digest

    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("seq", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_audit_events_seq"), ["seq"])

    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.bulk_insert(head, [{"id": 1, "seq": len(rows), "hash": prev}])
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tree_size", sa.Integer(), nullable=False),
        sa.Column("root_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
    )
    with op.batch_alter_table("audit_checkpoints", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_checkpoints_tree_size"), ["tree_size"], unique=False
        )


def downgrade() -> None:
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_audit_events_seq"), type_="unique")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("seq")


def _parse(text: str):  # type: ignore[no-untyped-def]
    from datetime import datetime

    return datetime.fromisoformat(text)
