"""Alembic environment: runs migrations on the connection the caller hands over."""

from __future__ import annotations

from alembic import context

from appliance.db import models  # noqa: F401  (registers every table on Base.metadata)
from appliance.db.base import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through appliance.db.migrate, which passes a connection")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
