"""The access policy as the admin service hands it over: parsed, checked, looked up.

The admin service computes the document (ADR 0016); this module turns it into typed,
immutable objects and refuses a document that does not have the expected shape, so that
a bad answer can never replace a good policy. No I/O here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appliance.errors import ApplianceError

__all__ = [
    "AUTO_MODEL",
    "LIMIT_NAMES",
    "METRICS_GRANT",
    "KeyEntry",
    "Limits",
    "Policy",
    "PolicyError",
    "StaticKey",
    "key_digest",
    "parse_policy",
]

#: Every limit a subject may have; null (None) means no limit of that kind.
LIMIT_NAMES = (
    "tokens_per_day",
    "tokens_per_week",
    "tokens_per_month",
    "requests_per_minute",
    "concurrent_requests",
)


#: The grant that lets an identity read the proxy's metrics (not a model: never served).
METRICS_GRANT = "metrics"

#: The model name that asks llm-gateway to route (the site's routing decides the model).
AUTO_MODEL = "auto"


class PolicyError(ApplianceError):
    """An access policy document that cannot be used."""


def key_digest(key: str) -> str:
    """What the policy holds for a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Limits:
    """One subject's limits (``@identity`` or ``#group``)."""

    tokens_per_day: int | None = None
    tokens_per_week: int | None = None
    tokens_per_month: int | None = None
    requests_per_minute: int | None = None
    concurrent_requests: int | None = None

    def tokens(self) -> dict[str, int]:
        """The token budgets this subject has, by period name (day, week, month)."""
        found = {
            "day": self.tokens_per_day,
            "week": self.tokens_per_week,
            "month": self.tokens_per_month,
        }
        return {period: value for period, value in found.items() if value is not None}


@dataclass(frozen=True)
class KeyEntry:
    """A key as the gateway side knows it: its digest, owner and end."""

    digest: str
    key_id: int | str
    identity: str
    expires_at: datetime | None


@dataclass(frozen=True)
class StaticKey:
    """A key from the proxy's own configuration (the installer's health probe)."""

    name: str
    sha256: str
    models: tuple[str, ...]


@dataclass(frozen=True)
class IdentityEntry:
    """An identity allowed to use models: its groups and its models."""

    groups: tuple[str, ...]
    models: frozenset[str]


@dataclass(frozen=True)
class Policy:
    """Everything the front needs to decide on a request."""

    version: str
    timezone: ZoneInfo
    models: tuple[str, ...]
    context_tokens: int
    keys: Mapping[str, KeyEntry]
    identities: Mapping[str, IdentityEntry]
    limits: Mapping[str, Limits] = field(default_factory=dict)
    #: The admin service's routing document (llm-gateway renders it), or None: no "auto".
    routing: Mapping[str, Any] | None = None

    def served(self, model: str) -> bool:
        """Whether ``model`` names something this site answers (any name when the list is
        empty; "auto" only while routing is on)."""
        if model == AUTO_MODEL:
            return self.routing is not None
        return not self.models or model in self.models

    def explicit_refused(self, model: str) -> bool:
        """Whether naming ``model`` is refused because the routing forbids explicit names."""
        return (
            self.routing is not None
            and model != AUTO_MODEL
            and not self.routing.get("allow_explicit_model", False)
        )

    def key(self, digest: str) -> KeyEntry | None:
        """The entry for a key's digest, or None."""
        return self.keys.get(digest)

    def identity(self, name: str) -> IdentityEntry | None:
        """The identity, or None when it may not use models (disabled, gone)."""
        return self.identities.get(name)

    def subjects(self, name: str) -> list[str]:
        """``@name`` and ``#group`` for each of its groups: every subject limits may name."""
        entry = self.identities.get(name)
        return [f"@{name}", *(f"#{g}" for g in entry.groups)] if entry else [f"@{name}"]

    def with_static_keys(self, static: Iterable[StaticKey]) -> Policy:
        """This policy plus the configuration's own keys, as identities of their own name."""
        keys = dict(self.keys)
        identities = dict(self.identities)
        for entry in static:
            keys[entry.sha256] = KeyEntry(entry.sha256, f"static:{entry.name}", entry.name, None)
            identities[entry.name] = IdentityEntry((), frozenset(entry.models))
        return Policy(
            self.version,
            self.timezone,
            self.models,
            self.context_tokens,
            keys,
            identities,
            self.limits,
            self.routing,
        )


def empty_policy() -> Policy:
    """The policy before any was received: no key but the static ones works."""
    return Policy("", ZoneInfo("UTC"), (), 8192, {}, {}, {})


def parse_policy(version: str, document: Any) -> Policy:
    """The policy in ``document`` (the admin service's JSON), or PolicyError saying what
    is wrong with it."""
    if not isinstance(document, dict):
        raise PolicyError(f"access policy: expected an object, found {type(document).__name__}")
    try:
        zone = ZoneInfo(str(document["timezone"]))
        models = tuple(str(m) for m in document["models"])
        context = int(document["context_tokens"])
        keys = {
            str(k["sha256"]): KeyEntry(
                str(k["sha256"]),
                k["key_id"],
                str(k["identity"]),
                datetime.fromisoformat(k["expires_at"]) if k.get("expires_at") else None,
            )
            for k in document["keys"]
        }
        identities = {
            str(name): IdentityEntry(
                tuple(str(g) for g in entry["groups"]),
                frozenset(str(m) for m in entry["models"]),
            )
            for name, entry in document["identities"].items()
        }
        limits = {
            str(subject): Limits(**{n: _limit(values.get(n)) for n in LIMIT_NAMES})
            for subject, values in document["limits"].items()
        }
        routing = _routing(document.get("routing"))
    except ZoneInfoNotFoundError as exc:
        raise PolicyError(f"access policy: unknown timezone {document.get('timezone')!r}") from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PolicyError(
            f"access policy: malformed document ({type(exc).__name__}: {exc})"
        ) from exc
    if context < 1:
        raise PolicyError(f"access policy: context_tokens must be positive, found {context}")
    for entry in keys.values():
        if entry.expires_at is not None and entry.expires_at.tzinfo is None:
            raise PolicyError(f"access policy: key {entry.key_id} expires at a time without zone")
    return Policy(version, zone, models, context, keys, identities, limits, routing)


def _routing(value: object) -> Mapping[str, Any] | None:
    """The routing document, checked as far as the front and llm-gateway's file need."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"routing: expected an object or null, found {type(value).__name__}")
    names = set()
    for route in value["routes"]:
        names.add(str(route["name"]))
        str(route["model"])
        for listed in ("keywords", "exclude", "examples"):
            if not isinstance(route.get(listed, []), list):
                raise TypeError(f"routing: route {route['name']!r}: {listed} must be a list")
    if not names or value["default_route"] not in names:
        raise ValueError(f"routing: default_route {value.get('default_route')!r} names no route")
    semantic = value.get("semantic")
    if semantic is not None:
        str(semantic["model"])
        float(semantic["threshold"])
    return value


def _limit(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"a limit must be a positive integer or null, found {value!r}")
    return value
