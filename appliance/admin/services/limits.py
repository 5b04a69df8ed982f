"""Budgets and rate limits per identity (``@name``) or group (``#attribute``).

Five limits, each optional (None: no limit of that kind): tokens (prompt + completion) per
day, ISO week and calendar month in the site's timezone, requests per minute, concurrent
requests. The access proxies enforce them; this module keeps them and audits every change
(``limit.set`` with the values before and after, ``limit.delete``).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.admin.services.access_errors import AccessError, AccessNotFoundError
from appliance.admin.services.identities import IDENTITY_NAME, ROLE_ATTRIBUTE
from appliance.audit.record import record_event
from appliance.db.models import AccessLimit, Identity, utcnow

__all__ = ["LIMIT_FIELDS", "delete_limit", "limit_values", "list_limits", "set_limit"]

#: The limits' names, as the policy, the API and the access proxies spell them.
LIMIT_FIELDS = (
    "tokens_per_day",
    "tokens_per_week",
    "tokens_per_month",
    "requests_per_minute",
    "concurrent_requests",
)
_MAX_VALUE = 2**53  # JSON numbers stay exact up to here


def list_limits(db: Session) -> list[AccessLimit]:
    """Every limit row, by subject."""
    return list(db.scalars(select(AccessLimit).order_by(AccessLimit.subject)))


def limit_values(row: AccessLimit) -> dict[str, int | None]:
    """The five limits of ``row`` by name."""
    return {name: getattr(row, name) for name in LIMIT_FIELDS}


def set_limit(
    db: Session,
    subject: str,
    values: Mapping[str, int | None],
    *,
    actor: str,
    client: str,
) -> AccessLimit:
    """Create or replace the limits of ``subject``: every field not given is no limit."""
    kind, name = subject[:1], subject[1:]
    if kind == "@" and IDENTITY_NAME.match(name):
        if db.scalar(select(Identity).where(Identity.name == subject[1:])) is None:
            raise AccessNotFoundError(f"no identity named {subject[1:]!r} (subject {subject})")
    elif not (kind == "#" and ROLE_ATTRIBUTE.match(name)):
        raise AccessError(f"subject: expected @identity-name or #attribute, found {subject!r}")
    unknown = sorted(set(values) - set(LIMIT_FIELDS))
    if unknown:
        raise AccessError(f"limits: expected some of {', '.join(LIMIT_FIELDS)}, found {unknown}")
    wanted: dict[str, int | None] = {name: values.get(name) for name in LIMIT_FIELDS}
    for name, value in wanted.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_VALUE
        ):
            raise AccessError(
                f"{name}: expected a whole number from 1 to {_MAX_VALUE} or null, found {value!r}"
            )
    row = db.scalar(select(AccessLimit).where(AccessLimit.subject == subject))
    before = limit_values(row) if row is not None else None
    if row is None:
        row = AccessLimit(subject=subject)
        db.add(row)
    for name, value in wanted.items():
        setattr(row, name, value)
    row.updated_by = actor
    row.updated_at = utcnow()
    db.flush()
    record_event(
        db,
        actor=actor,
        action="limit.set",
        target=subject,
        client=client,
        details={"before": before, "after": wanted},
    )
    return row


def delete_limit(db: Session, row: AccessLimit, *, actor: str, client: str) -> None:
    """Remove the limits of ``row``'s subject (it is then limited by its groups only)."""
    record_event(
        db,
        actor=actor,
        action="limit.delete",
        target=row.subject,
        client=client,
        details={"before": limit_values(row)},
    )
    db.delete(row)
