"""The site's llm-gateway routing: which model answers a request for ``model: auto``.

One routing document for the site (its format: the models below, and ADR 0016, "The
documents"): named routes, each with a model, keyword rules (``keywords``, ``exclude``)
and examples for semantic matching; the route that takes whatever no rule matched
(``default_route``); whether a client may still name a model itself
(``allow_explicit_model``); and the embedding model for semantic matching (``semantic``).
It reaches the gateway hosts inside the access policy (its ``routing`` key), so a change
is in force within seconds.

Every change is a new row of ``routing_configs`` (the newest is in force, a row without
a document is "routing off", no row at all is off too), audited in the same transaction:
``routing.changed`` with the whole normalized document and its SHA-256,
``routing.disabled``. Setting the document in force again changes nothing and records
nothing. The field rules live in the pydantic models; the rules that need the whole
document or the site's settings in :func:`normalize_routing`. The API and the pages both
go through here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.access.policy import AUTO_MODEL
from appliance.admin.settings import AdminSettings
from appliance.audit.record import record_event
from appliance.db.models import RoutingConfig, utcnow
from appliance.errors import ApplianceError

__all__ = [
    "EXTERNAL_PREFIXES",
    "MAX_DESCRIPTION",
    "MAX_EXAMPLE",
    "MAX_EXAMPLES",
    "MAX_MODEL",
    "MAX_ROUTES",
    "MAX_TERM",
    "MAX_TERMS",
    "ROUTE_NAME",
    "Routing",
    "RoutingDocument",
    "RoutingError",
    "RoutingRoute",
    "SemanticMatching",
    "current_routing",
    "disable_routing",
    "document_digest",
    "normalize_routing",
    "routing_history",
    "set_routing",
    "summary",
]

#: What a route's name may be (llm-gateway names its routes so; logs and metrics show it).
ROUTE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: Model names that llm-gateway sends to an outside provider (OpenAI, Anthropic), which a
#: dark site does not have: never a route's model.
EXTERNAL_PREFIXES = ("gpt-", "o1-", "o3-", "claude-")
MAX_MODEL = 128
MAX_ROUTES = 100
#: Keywords (and exclusions) per route, and the length of each after stripping.
MAX_TERMS = 200
MAX_TERM = 100
#: Examples per route, and the length of each.
MAX_EXAMPLES = 50
MAX_EXAMPLE = 2048
MAX_DESCRIPTION = 500
#: Control characters other than tab and newline: never in any text of the document.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class RoutingError(ApplianceError):
    """A routing document that cannot be used as given (the message names the field)."""

    http_status = 422


def _plain(value: str, what: str, *, lines: bool = False) -> str:
    """``value`` if it is text the audit log and the gateway can carry, else ValueError."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what}: expected text, found an unpaired surrogate") from None
    bad = _CONTROL.search(value) or (None if lines else re.search(r"[\t\n]", value))
    if bad:
        raise ValueError(f"{what}: expected no control characters, found {bad[0]!r}")
    return value


def _model_name(value: str) -> str:
    """A model name a route (or semantic matching) may use, whatever the site serves."""
    _plain(value, "model")
    if not value.strip():
        raise ValueError("model: expected a model's name, found an empty one")
    if len(value) > MAX_MODEL:
        raise ValueError(f"model: expected at most {MAX_MODEL} characters, found {len(value)}")
    if value.lower() == AUTO_MODEL:
        raise ValueError(f"model: {AUTO_MODEL!r} asks for routing: name a served model instead")
    if value.lower().startswith(EXTERNAL_PREFIXES):
        raise ValueError(
            f"model: {value!r} starts with {value.lower().split('-')[0]}-, which llm-gateway "
            "sends to an outside provider (OpenAI, Anthropic) that this site does not have: "
            "name a model the site serves"
        )
    return value


def _terms(values: list[str], what: str) -> list[str]:
    """Keywords or exclusions: stripped, each 1 to MAX_TERM characters, duplicates (any
    case) dropped after their first."""
    kept: list[str] = []
    seen: set[str] = set()
    for i, raw in enumerate(values):
        term = _plain(raw, f"{what}[{i}]").strip()
        if not 1 <= len(term) <= MAX_TERM:
            raise ValueError(
                f"{what}[{i}]: expected 1 to {MAX_TERM} characters (after stripping spaces), "
                f"found {len(term)}"
            )
        if term.casefold() not in seen:
            seen.add(term.casefold())
            kept.append(term)
    return kept


ModelName = Annotated[str, AfterValidator(_model_name)]


class SemanticMatching(BaseModel):
    """Semantic matching: requests compared with the routes' examples by an embedding
    model the site serves; a route is taken when the similarity reaches ``threshold``."""

    model_config = ConfigDict(extra="forbid")

    model: ModelName
    threshold: float = Field(gt=0, le=1, allow_inf_nan=False)


class RoutingRoute(BaseModel):
    """A named route to one model, with its keyword rules and its examples."""

    model_config = ConfigDict(extra="forbid")

    name: str
    model: ModelName
    description: str = ""
    keywords: list[str] = Field(default_factory=list, max_length=MAX_TERMS)
    exclude: list[str] = Field(default_factory=list, max_length=MAX_TERMS)
    examples: list[str] = Field(default_factory=list, max_length=MAX_EXAMPLES)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ROUTE_NAME.match(value):
            raise ValueError(
                f"route name: expected 1 to 63 lowercase letters, digits, '-' or '_', "
                f"beginning with a letter or digit, found {value!r}"
            )
        return value

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        text = _plain(value, "description", lines=True).strip()
        if len(text) > MAX_DESCRIPTION:
            raise ValueError(
                f"description: expected at most {MAX_DESCRIPTION} characters, found {len(text)}"
            )
        return text

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, values: list[str]) -> list[str]:
        return _terms(values, "keywords")

    @field_validator("exclude")
    @classmethod
    def _exclude(cls, values: list[str]) -> list[str]:
        return _terms(values, "exclude")

    @field_validator("examples")
    @classmethod
    def _examples(cls, values: list[str]) -> list[str]:
        kept = []
        for i, raw in enumerate(values):
            text = _plain(raw, f"examples[{i}]", lines=True).strip()
            if not 1 <= len(text) <= MAX_EXAMPLE:
                raise ValueError(
                    f"examples[{i}]: expected 1 to {MAX_EXAMPLE} characters, found {len(text)}"
                )
            kept.append(text)
        return kept


class RoutingDocument(BaseModel):
    """The site's routing as an admin sends it (``PUT /api/v1/routing``)."""

    model_config = ConfigDict(extra="forbid")

    allow_explicit_model: StrictBool = False
    default_route: str
    routes: list[RoutingRoute] = Field(min_length=1, max_length=MAX_ROUTES)
    semantic: SemanticMatching | None = None


@dataclass(frozen=True)
class Routing:
    """The routing in force: its document (None: routing off), when and by whom it was set
    (None: never set)."""

    document: dict[str, Any] | None
    changed_at: datetime | None
    changed_by: str | None


def document_digest(document: Mapping[str, Any] | None) -> str:
    """SHA-256 (hex) of a routing document's canonical JSON (as the policy's version)."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _problems(exc: ValidationError) -> str:
    found = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "document"
        message = str(error["msg"]).removeprefix("Value error, ")
        found.append(f"{where}: {message}")
    return "; ".join(found)


def normalize_routing(
    document: RoutingDocument | Mapping[str, Any], settings: AdminSettings
) -> dict[str, Any]:
    """The normalized document (the form the policy carries), or RoutingError naming
    each field that is wrong and what it should be."""
    try:
        parsed = (
            document
            if isinstance(document, RoutingDocument)
            else RoutingDocument.model_validate(dict(document))
        )
    except ValidationError as exc:
        raise RoutingError(f"routing: {_problems(exc)}") from None
    names = [route.name for route in parsed.routes]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise RoutingError(
            f"routes: each route needs a name of its own; {', '.join(map(repr, twice))} "
            "appears more than once"
        )
    if parsed.default_route not in names:
        raise RoutingError(
            f"default_route: expected the name of one of the routes ({', '.join(names)}), found "
            f"{parsed.default_route!r}; requests that no rule matches go there, so make it "
            "the most restrictive route"
        )
    served = list(settings.gateway_models)
    for route in parsed.routes:
        if served and route.model not in served:
            raise RoutingError(
                f"routes[{route.name}].model: the site serves no model named {route.model!r} "
                f"(it serves {', '.join(served)})"
            )
    with_examples = [route.name for route in parsed.routes if route.examples]
    if with_examples and parsed.semantic is None:
        raise RoutingError(
            f"semantic: route {with_examples[0]!r} has examples, and examples need an "
            'embedding model: set semantic to {"model": <an embedding model the site '
            'serves>, "threshold": <0 to 1>}, or remove the examples'
        )
    if parsed.semantic is not None and not with_examples:
        raise RoutingError(
            "semantic: semantic matching compares requests with the routes' examples, and no "
            "route has any: give a route examples, or set semantic to null"
        )
    return parsed.model_dump(mode="json")


def current_routing(db: Session) -> Routing:
    """The routing in force (the newest change); off when nothing was ever set."""
    row = db.scalar(select(RoutingConfig).order_by(RoutingConfig.id.desc()).limit(1))
    if row is None:
        return Routing(None, None, None)
    return Routing(row.document, row.created_at, row.created_by)


def routing_history(db: Session, limit: int = 20) -> list[RoutingConfig]:
    """The last ``limit`` changes, newest first."""
    return list(db.scalars(select(RoutingConfig).order_by(RoutingConfig.id.desc()).limit(limit)))


def summary(document: Mapping[str, Any] | None) -> str:
    """One line about a routing document, for the history."""
    if document is None:
        return "routing off"
    routes = [f"{r['name']} → {r['model']}" for r in document["routes"]]
    semantic = document.get("semantic")
    parts = [
        f"{len(routes)} route{'s' if len(routes) != 1 else ''} ({', '.join(routes)})",
        f"default {document['default_route']}",
        "explicit models allowed" if document["allow_explicit_model"] else "only auto",
    ]
    if semantic:
        parts.append(f"semantic {semantic['model']} ≥ {semantic['threshold']}")
    return "; ".join(parts)


def set_routing(
    db: Session,
    document: RoutingDocument | Mapping[str, Any],
    *,
    actor: str,
    client: str,
    settings: AdminSettings,
) -> tuple[Routing, bool]:
    """Put ``document`` in force (audited as ``routing.changed``); whether it changed
    anything: the document already in force is no change, and nothing is recorded."""
    wanted = normalize_routing(document, settings)
    now = current_routing(db)
    digest = document_digest(wanted)
    if now.document is not None and document_digest(now.document) == digest:
        return now, False
    row = RoutingConfig(document=wanted, created_by=actor, created_at=utcnow())
    db.add(row)
    db.flush()
    record_event(
        db,
        actor=actor,
        action="routing.changed",
        target="routing",
        client=client,
        details={"document": wanted, "sha256": digest},
    )
    return Routing(wanted, row.created_at, actor), True


def disable_routing(db: Session, *, actor: str, client: str) -> tuple[Routing, bool]:
    """Turn routing off (audited as ``routing.disabled``); whether it was on."""
    now = current_routing(db)
    if now.document is None:
        return now, False
    row = RoutingConfig(document=None, created_by=actor, created_at=utcnow())
    db.add(row)
    db.flush()
    record_event(
        db,
        actor=actor,
        action="routing.disabled",
        target="routing",
        client=client,
        details={"before_sha256": document_digest(now.document)},
    )
    return Routing(None, row.created_at, actor), True
