"""live model access: keys per identity, limits, daily usage; grant-bound keys go

Keys made by the former grant-bound scheme for ``@identity`` grants are carried over by
their hash (same key, same prefix), so existing clients keep working; keys of ``#group``
grants belonged to no identity and are not carried over. Downgrading gives back an empty
``gateway_keys`` table: the keys' plain text was never kept, so none can be sealed again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    when = sa.DateTime(timezone=True)
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("expires_at", when, nullable=True),
        sa.Column("revoked_at", when, nullable=True),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["identities.id"],
            name=op.f("fk_api_keys_identity_id_identities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    with op.batch_alter_table("api_keys") as batch:
        batch.create_index(batch.f("ix_api_keys_identity_id"), ["identity_id"], unique=False)
    op.create_table(
        "access_limits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=130), nullable=False),
        sa.Column("tokens_per_day", sa.BigInteger(), nullable=True),
        sa.Column("tokens_per_week", sa.BigInteger(), nullable=True),
        sa.Column("tokens_per_month", sa.BigInteger(), nullable=True),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("concurrent_requests", sa.Integer(), nullable=True),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at", when, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_limits")),
        sa.UniqueConstraint("subject", name=op.f("uq_access_limits_subject")),
    )
    op.create_table(
        "usage_daily",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gateway", sa.String(length=128), nullable=False),
        sa.Column("identity", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("refused", sa.JSON(), nullable=False),
        sa.Column("updated_at", when, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_daily")),
        sa.UniqueConstraint(
            "gateway", "identity", "model", "day", name=op.f("uq_usage_daily_gateway")
        ),
    )
    with op.batch_alter_table("usage_daily") as batch:
        batch.create_index(batch.f("ix_usage_daily_day"), ["day"], unique=False)
    # The same key (by its hash) now belongs to the identity the grant named.
    op.execute(
        "INSERT INTO api_keys (identity_id, key_hash, prefix, created_by, created_at) "
        "SELECT identities.id, gateway_keys.key_hash, gateway_keys.key_prefix, "
        "model_grants.created_by, gateway_keys.created_at "
        "FROM gateway_keys "
        "JOIN model_grants ON model_grants.id = gateway_keys.grant_id "
        "JOIN identities ON model_grants.subject = '@' || identities.name "
        "ORDER BY gateway_keys.id"
    )
    op.drop_table("gateway_keys")


def downgrade() -> None:
    op.create_table(
        "gateway_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key_prefix", sa.String(length=16), nullable=False),
        sa.Column("allowed_models", sa.JSON(), nullable=False),
        sa.Column("sealed_key", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["model_grants.id"],
            name=op.f("fk_gateway_keys_grant_id_model_grants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_gateway_keys_key_hash")),
    )
    op.drop_table("usage_daily")
    op.drop_table("access_limits")
    op.drop_table("api_keys")
