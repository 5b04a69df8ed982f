"""The Edge Management API contract, checked in the unit tier.

CI cannot run a real OpenZiti controller, so the unit tests of ``appliance.ziti`` talk to
fakes. This module keeps those fakes honest: every request the client sends (method, path,
query, body) and every answer a fake gives (status, body) is checked against OpenZiti's
published Edge Management API, Swagger 2.0, v0.28.1 (Apache 2.0), which lies in the
shared folder beside the checkout (:data:`SPEC_PATH`).

* :func:`check_request` and :func:`check_response` match the concrete path to a spec path
  template, check the method, the query parameter names and the body or answer against
  the declared schema (``$ref``s resolved into ``definitions``, ``x-nullable`` read as
  "null allowed", ``format`` not enforced). They raise :class:`ContractViolationError`, naming
  method and path; they never return a verdict that a caller could ignore.
* :class:`ContractTransport` is an ``httpx.MockTransport`` that checks each exchange
  passing through it. An answer that is malformed on purpose (to test the client's error
  handling) is marked with :func:`off_contract` and a reason, one answer at a time.
* :data:`OUT_OF_CONTRACT` names the requests this spec does not cover (the Fabric API);
  they pass, and each such exchange is recorded, never skipped silently.
* :data:`DEVIATIONS` lists where the live controller and the spec disagree. The live
  controller wins: each entry patches the spec as loaded here, with a one-line reason.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import jsonschema_rs
import yaml

__all__ = [
    "BASE_PATH",
    "DEVIATIONS",
    "OUT_OF_CONTRACT",
    "SPEC_PATH",
    "ContractTransport",
    "ContractViolationError",
    "Deviation",
    "EdgeContract",
    "Exchange",
    "Operation",
    "check_request",
    "check_response",
    "edge_contract",
    "off_contract",
]

#: OpenZiti's Edge Management API, Swagger 2.0, as published (shared folder, beside the
#: checkout, like the wheels the Makefile finds there).
SPEC_PATH: Final = (
    Path(__file__).resolve().parents[3] / "shared/openziti/edge-management-api-v0.28.1.yml"
)
#: The spec's ``basePath``: concrete paths are matched below it.
BASE_PATH: Final = "/edge/management/v1"

#: Requests the client sends that this spec does not describe: (method, full path) and why.
#: Such an exchange passes the check and is recorded as out of contract.
OUT_OF_CONTRACT: Final[Mapping[tuple[str, str], str]] = {
    ("GET", "/fabric/v1/circuits"): (
        "Fabric API (basePath /fabric/v1, its own swagger.yml in openziti/ziti), not part of "
        "the Edge Management spec; Circuit.from_api is tested on its own"
    ),
}

_METHODS: Final = ("get", "put", "post", "delete", "patch", "head", "options")
_EXEMPT_KEY: Final = "edge_api_contract.off_contract"
_MAX_REPORTED: Final = 5


class ContractViolationError(AssertionError):
    """A request or an answer that the Edge Management API does not allow."""


# --- where the live controller and the spec disagree ------------------------------------


def _definition(spec: dict[str, Any], name: str) -> dict[str, Any]:
    """The object part of a definition: ``allOf[1]`` for ``allOf: [baseEntity, {...}]``."""
    schema: dict[str, Any] = spec["definitions"][name]
    if "allOf" in schema:
        parts = [p for p in schema["allOf"] if "$ref" not in p]
        (schema,) = parts
    return schema


def _nullable(definition: str, prop: str) -> Callable[[dict[str, Any]], None]:
    def patch(spec: dict[str, Any]) -> None:
        _definition(spec, definition)["properties"][prop]["x-nullable"] = True

    return patch


def _not_required(definition: str, prop: str) -> Callable[[dict[str, Any]], None]:
    def patch(spec: dict[str, Any]) -> None:
        _definition(spec, definition)["required"].remove(prop)

    return patch


def _unhandled_errors(spec: dict[str, Any]) -> None:
    for item in spec["paths"].values():
        for method in _METHODS:
            if method in item:
                item[method]["responses"].setdefault(
                    "500",
                    {
                        "description": "unhandled error (live controller)",
                        "schema": {"$ref": "#/definitions/apiErrorEnvelope"},
                    },
                )


@dataclass(frozen=True)
class Deviation:
    """One place where the live controller and the spec disagree, and what is done here.

    ``patch`` edits the spec as loaded here so that it allows what the live controller
    does; None for a note that needs no patch.
    """

    name: str
    reason: str
    patch: Callable[[dict[str, Any]], None] | None = None


#: Where the live controller and the v0.28.1 spec disagree: read from the v2.0.3 source, and
#: checked against a live 2.1.0-pre2 controller (tests/integration/test_overlay_live.py).
DEVIATIONS: Final[tuple[Deviation, ...]] = (
    Deviation(
        "apiSessionDetail-cachedUpdatedAt",
        "the spec requires `cachedUpdatedAt` but declares no such property; the generated "
        "model (edge-api rest_model.APISessionDetail) has no such field, so no answer has it",
        _not_required("apiSessionDetail", "cachedUpdatedAt"),
    ),
    Deviation(
        "servicePolicyDetail-postureCheckRoles-null",
        "MapServicePolicyToRestModel copies the policy's nil role list and `Roles` has no "
        "omitempty: a policy created without posture checks (as this client creates them) "
        "answers `postureCheckRoles: null`",
        _nullable("servicePolicyDetail", "postureCheckRoles"),
    ),
    Deviation(
        "identityDetail-interfaces-null",
        "MapIdentityToRestModel appends interfaces to a nil slice and `interfaces` has no "
        "omitempty: an identity that never reported its interfaces answers `null`",
        _nullable("identityDetail", "interfaces"),
    ),
    Deviation(
        "interface-addresses-null",
        "seen against a live 2.1.0-pre2 controller: an identity's reported network "
        "interface without an address (a down link, say) answers `addresses: null`",
        _nullable("interface", "addresses"),
    ),
    Deviation(
        "serviceDetail-config-null",
        "seen against a live 2.1.0-pre2 controller: a service read without asking for its "
        "config types answers `config: null`, where the spec has an object",
        _nullable("serviceDetail", "config"),
    ),
    Deviation(
        "any-operation-HTTP-500",
        "RespondWithError turns any error that is not an API error into 500 UNHANDLED in an "
        "apiErrorEnvelope (errorz.NewUnhandled); the spec declares no 500 anywhere",
        _unhandled_errors,
    ),
    Deviation(
        "identityCreate-type-stored-as-Default",
        "the spec lets `POST /identities` choose User/Device/Service/Default; v2.0.3 "
        "(MapCreateIdentityToModel) stores every identity as type Default, so the client "
        "sends the type (the spec requires it) and reads back whatever type.name says",
    ),
)


# --- loading and converting the spec ----------------------------------------------------


@functools.cache
def _published_spec() -> dict[str, Any]:
    """The spec as published, parsed once per test session."""
    if not SPEC_PATH.is_file():
        raise FileNotFoundError(
            f"expected OpenZiti's Edge Management API spec at {SPEC_PATH} (the shared "
            "folder beside the checkout), found nothing; the contract tests need it"
        )
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open("rb") as stream:
        spec: dict[str, Any] = yaml.load(stream, Loader=loader)  # noqa: S506 (a safe loader)
    if spec.get("swagger") != "2.0" or spec.get("basePath") != BASE_PATH:
        raise ValueError(
            f"expected a Swagger 2.0 spec with basePath {BASE_PATH} in {SPEC_PATH}, found "
            f"swagger={spec.get('swagger')!r} basePath={spec.get('basePath')!r}"
        )
    return spec


_SCHEMA_MAPS: Final = ("properties", "patternProperties", "definitions")
_SCHEMA_LISTS: Final = ("allOf", "anyOf", "oneOf")
_SCHEMA_ONE: Final = ("items", "additionalProperties", "not")
_COUNTS: Final = frozenset(
    {"maxLength", "minLength", "maxItems", "minItems", "maxProperties", "minProperties"}
)


def _draft4(schema: Any) -> Any:
    """A Swagger 2.0 schema as JSON Schema draft 4.

    ``x-nullable: true`` becomes ``anyOf [schema, null]`` (it also works beside a
    ``$ref``, whose siblings draft 4 ignores); other ``x-`` keys and null-valued keywords
    (the spec has ``items: null`` once) are dropped, and counts written as floats
    (``maxLength: 255.0``) become the integers draft 4 requires.
    """
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if value is None or key.startswith("x-"):
            continue
        if key in _SCHEMA_MAPS:
            out[key] = {name: _draft4(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS:
            out[key] = [_draft4(sub) for sub in value]
        elif key in _SCHEMA_ONE:
            out[key] = [_draft4(s) for s in value] if isinstance(value, list) else _draft4(value)
        elif key in _COUNTS and isinstance(value, float):
            out[key] = int(value)
        else:
            out[key] = value
    if schema.get("x-nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@dataclass(frozen=True)
class Operation:
    """What a request matched: a spec operation, or an entry of :data:`OUT_OF_CONTRACT`."""

    method: str
    path: str
    template: str | None
    operation_id: str | None
    out_of_contract: str | None = None


class EdgeContract:
    """The checks, over one parsed spec (published, or patched with :data:`DEVIATIONS`)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self._definitions = _draft4({"definitions": spec["definitions"]})["definitions"]
        self._templates = [(tuple(t.strip("/").split("/")), t) for t in spec["paths"]]
        self._validators: dict[str, jsonschema_rs.Draft4Validator] = {}

    # --- matching ---

    def _template(self, method: str, path: str) -> str:
        if not path.startswith(BASE_PATH + "/"):
            raise ContractViolationError(
                f"{method} {path}: expected a path under {BASE_PATH} or one listed in "
                "OUT_OF_CONTRACT, found neither"
            )
        segments = tuple(path[len(BASE_PATH) :].strip("/").split("/"))
        best: tuple[int, str] | None = None
        for parts, template in self._templates:
            if len(parts) != len(segments):
                continue
            literal = 0
            for part, segment in zip(parts, segments, strict=True):
                if part.startswith("{") and part.endswith("}"):
                    if not segment:
                        break
                elif part == segment:
                    literal += 1
                else:
                    break
            else:
                if best is None or literal > best[0]:
                    best = (literal, template)
        if best is None:
            raise ContractViolationError(
                f"{method} {path}: no path of the Edge Management API matches "
                f"{path[len(BASE_PATH) :]!r}"
            )
        return best[1]

    def _operation(
        self, method: str, path: str
    ) -> tuple[Operation, dict[tuple[str, str], dict[str, Any]], dict[str, Any]]:
        """The operation, its parameters by (in, name), and its responses."""
        template = self._template(method, path)
        item = self.spec["paths"][template]
        operation = item.get(method.lower()) if method.lower() in _METHODS else None
        if operation is None:
            declared = ", ".join(m.upper() for m in _METHODS if m in item)
            raise ContractViolationError(
                f"{method} {path}: the spec declares {template} for {declared} only, not {method}"
            )
        params: dict[tuple[str, str], dict[str, Any]] = {}
        for param in [*item.get("parameters", []), *operation.get("parameters", [])]:
            resolved = self._resolve(param)
            params[(resolved["in"], resolved["name"])] = resolved
        found = Operation(method, path, template, operation.get("operationId"))
        return found, params, operation["responses"]

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.spec
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    # --- schemas ---

    def _validate(self, schema: Mapping[str, Any], instance: Any, what: str) -> None:
        key = json.dumps(schema, sort_keys=True)
        validator = self._validators.get(key)
        if validator is None:
            root = {"allOf": [_draft4(dict(schema))], "definitions": self._definitions}
            validator = jsonschema_rs.Draft4Validator(root, validate_formats=False)
            self._validators[key] = validator
        errors = list(validator.iter_errors(instance))
        if errors:
            target = schema.get("$ref", "an inline schema")
            lines = [
                f"  at /{'/'.join(str(p) for p in e.instance_path)}: {e.message}"
                for e in errors[:_MAX_REPORTED]
            ]
            more = len(errors) - _MAX_REPORTED
            if more > 0:
                lines.append(f"  … and {more} more")
            raise ContractViolationError(
                f"{what} does not conform to {target}:\n" + "\n".join(lines)
            )

    # --- the checks ---

    def check_request(
        self, method: str, url_path: str, query: Mapping[str, Any], json_body: Any
    ) -> Operation:
        """Check one request; ``json_body`` None means no body. Returns what it matched."""
        method = method.upper()
        reason = OUT_OF_CONTRACT.get((method, url_path))
        if reason is not None:
            return Operation(method, url_path, None, None, out_of_contract=reason)
        found, params, _ = self._operation(method, url_path)
        where = f"{method} {url_path} ({found.template})"
        declared = {name: p for (place, name), p in params.items() if place == "query"}
        for name in query:
            if name not in declared:
                raise ContractViolationError(
                    f"{where}: query parameter {name!r} is not declared; declared: "
                    f"{', '.join(sorted(declared)) or 'none'}"
                )
        for name, param in declared.items():
            if param.get("required") and name not in query:
                raise ContractViolationError(f"{where}: required query parameter {name!r} missing")
            if name in query:
                _check_query_value(where, param, str(query[name]))
        body = next((p for (place, _), p in params.items() if place == "body"), None)
        if json_body is None:
            if body is not None and body.get("required"):
                raise ContractViolationError(
                    f"{where}: expected a JSON body ({body['name']}), none"
                )
        elif body is None:
            raise ContractViolationError(f"{where}: sent a body, but the operation declares none")
        else:
            self._validate(body["schema"], json_body, f"{where}: request body")
        return found

    def check_response(self, method: str, url_path: str, status: int, json_body: Any) -> Operation:
        """Check one answer; ``json_body`` None means an empty body. Returns the operation."""
        method = method.upper()
        reason = OUT_OF_CONTRACT.get((method, url_path))
        if reason is not None:
            return Operation(method, url_path, None, None, out_of_contract=reason)
        found, _, responses = self._operation(method, url_path)
        where = f"{method} {url_path} ({found.template})"
        answer = responses.get(str(status)) or responses.get("default")
        if answer is None:
            raise ContractViolationError(
                f"{where}: answered HTTP {status}, which the spec does not declare; declared: "
                + ", ".join(sorted(responses))
            )
        schema = answer.get("schema")
        if schema is None:
            if json_body is not None:
                raise ContractViolationError(f"{where}: HTTP {status} declares no body, found one")
        elif json_body is None:
            raise ContractViolationError(f"{where}: expected a JSON body with HTTP {status}, none")
        else:
            self._validate(schema, json_body, f"{where}: HTTP {status} answer")
        return found


def _check_query_value(where: str, param: Mapping[str, Any], value: str) -> None:
    kind = param.get("type")
    ok = True
    if kind == "integer":
        ok = value.lstrip("-").isdigit()
    elif kind == "boolean":
        ok = value in ("true", "false")
    if ok and "enum" in param:
        ok = value in param["enum"]
    if not ok:
        expected = param.get("enum") or kind
        raise ContractViolationError(
            f"{where}: query parameter {param['name']!r} expected {expected}, found {value!r}"
        )


@functools.cache
def edge_contract(*, patched: bool = True) -> EdgeContract:
    """The contract, cached per session: with :data:`DEVIATIONS` applied, or as published."""
    spec = _published_spec()
    if patched:
        spec = copy.deepcopy(spec)
        for deviation in DEVIATIONS:
            if deviation.patch is not None:
                deviation.patch(spec)
    return EdgeContract(spec)


def check_request(
    method: str, url_path: str, query: Mapping[str, Any], json_body: Any
) -> Operation:
    """Check one request against the spec (with :data:`DEVIATIONS`); raise if it is not allowed."""
    return edge_contract().check_request(method, url_path, query, json_body)


def check_response(method: str, url_path: str, status: int, json_body: Any) -> Operation:
    """Check one answer against the spec (with :data:`DEVIATIONS`); raise if it is not allowed."""
    return edge_contract().check_response(method, url_path, status, json_body)


# --- the checking transport -------------------------------------------------------------


def off_contract(response: httpx.Response, reason: str) -> httpx.Response:
    """Mark one answer as malformed on purpose (``reason`` says why); it is not checked."""
    if not reason.strip():
        raise ValueError("an answer exempt from the contract needs a reason")
    response.extensions[_EXEMPT_KEY] = reason
    return response


@dataclass(frozen=True)
class Exchange:
    """One request and its answer as the transport saw them."""

    operation: Operation
    status: int
    #: The :func:`off_contract` reason, when the answer was exempt.
    exempt: str | None = None


def _json_or_none(content: bytes, what: str) -> Any:
    if not content.strip():
        return None
    try:
        return json.loads(content)
    except ValueError:
        raise ContractViolationError(f"{what}: expected JSON, found {content[:80]!r}") from None


class ContractTransport(httpx.MockTransport):
    """``httpx.MockTransport`` whose every request and answer is checked against the spec.

    The request is checked before ``handler`` sees it; the answer before the client does,
    unless :func:`off_contract` marked it. ``exchanges`` records each exchange, so a test
    can see which were out of contract or exempt.
    """

    def __init__(
        self,
        handler: Callable[[httpx.Request], httpx.Response],
        contract: EdgeContract | None = None,
    ) -> None:
        super().__init__(handler)
        self.contract = contract if contract is not None else edge_contract()
        self.exchanges: list[Exchange] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Check the request, ask the handler, check its answer."""
        method, path = request.method, request.url.path
        body = _json_or_none(request.read(), f"{method} {path}: request body")
        operation = self.contract.check_request(method, path, request.url.params, body)
        response = super().handle_request(request)
        exempt = response.extensions.get(_EXEMPT_KEY)
        if exempt is None:
            answer = _json_or_none(response.read(), f"{method} {path}: HTTP answer")
            self.contract.check_response(method, path, response.status_code, answer)
        self.exchanges.append(Exchange(operation, response.status_code, exempt))
        return response
