"""Account roles: a module of its own so the command line can name them without loading
the database layer."""

from __future__ import annotations

import enum

__all__ = ["Role"]


class Role(enum.StrEnum):
    """What an account may do: admins change things, auditors read and export."""

    admin = "admin"
    auditor = "auditor"
