"""The access policy: what the gateway hosts' access proxies enforce, from this database.

One JSON document (its format: ADR 0016, "The documents"): the site's timezone,
models and context size; every live key by its SHA-256 with its identity and expiry; each
identity that may use models with its groups and granted models; every limit; the site's
llm-gateway routing (null: off; :mod:`appliance.admin.services.routing`). Its version
is the SHA-256 of its canonical JSON, so any change gives a new version and no change
keeps it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.admin.services.limits import limit_values
from appliance.admin.services.routing import current_routing
from appliance.admin.settings import AdminSettings
from appliance.db.models import AccessLimit, ApiKey, Identity, ModelGrant

__all__ = ["EXCLUDED_STATES", "build_policy", "current_policy", "policy_version"]

#: Identity states whose keys are out of the policy: refused at the gateway.
EXCLUDED_STATES = frozenset({"disabled", "missing on controller"})


def build_policy(db: Session, settings: AdminSettings) -> dict[str, Any]:
    """The policy document as it stands in the database now."""
    grants: dict[str, set[str]] = {}
    for subject, model in db.execute(select(ModelGrant.subject, ModelGrant.model_service)):
        grants.setdefault(subject, set()).add(model)
    identities: dict[str, dict[str, list[str]]] = {}
    ids: dict[int, str] = {}
    for row in db.scalars(select(Identity).order_by(Identity.name)):
        if row.state in EXCLUDED_STATES:
            continue
        groups = sorted(set(row.role_attributes or []))
        models: set[str] = set(grants.get(f"@{row.name}", ()))
        for group in groups:
            models |= grants.get(f"#{group}", set())
        identities[row.name] = {"groups": groups, "models": sorted(models)}
        ids[row.id] = row.name
    keys = [
        {
            "sha256": key.key_hash,
            "key_id": key.id,
            "identity": ids[key.identity_id],
            "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        }
        for key in db.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None)).order_by(ApiKey.id))
        if key.identity_id in ids
    ]
    limits = {
        row.subject: limit_values(row)
        for row in db.scalars(select(AccessLimit).order_by(AccessLimit.subject))
    }
    return {
        "timezone": settings.site_timezone,
        "models": list(settings.gateway_models),
        "context_tokens": settings.gateway_context_tokens,
        "keys": keys,
        "identities": identities,
        "limits": limits,
        "routing": current_routing(db).document,
    }


def policy_version(policy: dict[str, Any]) -> str:
    """The version of ``policy``: SHA-256 (hex) of its canonical JSON."""
    canonical = json.dumps(policy, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def current_policy(db: Session, settings: AdminSettings) -> tuple[str, dict[str, Any]]:
    """The policy now and its version."""
    policy = build_policy(db, settings)
    return policy_version(policy), policy
