"""The access proxy's two ASGI apps around llm-gateway (ADR 0016).

``front`` takes the overlay's clients: key, model and limits are decided here, and an
admitted request goes on to llm-gateway with a request id in its ``user`` field. ``back``
is llm-gateway's backend: it reads that id, asks the model server for exact usage (also on
streams) and keeps it for ``front``, which settles the request's reservation with it and
journals the count. Raw ASGI (no framework): a request costs as little as it can.

It is one module of some 680 lines on purpose: ``front`` and ``back`` share a request's
life (reservation, request id, usage handed from back to front, settle, journal), and
the hot path reads end to end in one place. What they call is apart: the policy, the
limiter, the journal, the slots and the metrics are modules of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import aiohttp
import orjson

from appliance.access.config import AccessConfig
from appliance.access.journal import UsageJournal
from appliance.access.limiter import Limiter, Refusal, Ticket
from appliance.access.metrics import Meters
from appliance.access.model_path import ModelPath, ModelPathLostError
from appliance.access.openai_errors import error_body
from appliance.access.periods import local_day
from appliance.access.policy import (
    AUTO_MODEL,
    METRICS_GRANT,
    KeyEntry,
    Policy,
    empty_policy,
    key_digest,
)
from appliance.access.slots import FixedGateway, GatewaySlots, GatewayUnavailableError

__all__ = ["USER_PREFIX", "AccessProxy"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger(__name__)

#: What ``front`` puts in a request's ``user`` field; ``back`` takes it out again.
USER_PREFIX = "appliance-access-"
_JSON = [(b"content-type", b"application/json")]
_DONE = b"data: [DONE]"
#: The last event of a stream that broke off before its end.
_STREAM_BROKE = (
    b"data: "
    + error_body(
        "the model's answer broke off before its end (a model server or a hop of the "
        "overlay stopped); send the request again",
        "server_error",
        "stream_interrupted",
    )
    + b"\n\n"
)
#: How often one model connection (a circuit to one GPU host) is closed after its answer,
#: so that circuits spread again over the hosts the overlay now offers: with N kept
#: alive, each lives about N times this; each new one costs one circuit's setup.
_MODEL_RETIRE_EVERY_S = 2.0
#: Tries of a model request whose connection breaks before an answer (each a new circuit,
#: so each may reach another GPU host), and the pause before the third and later ones.
_MODEL_ATTEMPTS = 4
_MODEL_RETRY_PAUSE_S = 0.25


class _ClientError(Exception):
    """A request answered by the proxy itself (status, OpenAI error body)."""

    def __init__(self, status: int, message: str, type_: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(message, type_, code)
        self.headers: list[tuple[bytes, bytes]] = []


@dataclass
class _Counted:
    """What the model server reported for one request, as ``back`` saw it. ``model`` is
    the model llm-gateway asked for (its routing's choice), not the name the model server
    reports (vLLM answers with its first served name)."""

    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    complete: bool = False
    #: Set when ``back`` refused the model llm-gateway routed to (the identity's grants).
    refused: str = ""


class AccessProxy:
    """Both apps and the state they share: the policy, the limiter, the journal."""

    def __init__(
        self,
        config: AccessConfig,
        limiter: Limiter,
        journal: UsageJournal,
        *,
        gateway: FixedGateway | GatewaySlots,
        http: aiohttp.ClientSession,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self._limiter = limiter
        self._journal = journal
        self.gateway = gateway
        self._http = http
        self._now = now
        self._counted: dict[str, _Counted] = {}
        #: When the next model request retires its connection (a new circuit follows).
        self._retire_at = time.monotonic() + _MODEL_RETIRE_EVERY_S
        #: The identity behind each request in flight (``back`` checks routed models).
        self._callers: dict[str, str] = {}
        self._static = config.static()
        self.policy = empty_policy().with_static_keys(self._static)
        self.policy_received = False
        #: What the link to the admin service cannot do now, and since when (for /health).
        self.admin_outages: dict[str, str] = {}
        self.meters = Meters()
        self._limiter.set_policy(self.policy)
        self.model_path = ModelPath(
            http,
            f"{config.backend_url}/health",
            silence_s=config.model_silence_seconds,
            check_s=config.model_check_seconds,
            on_lost=self.meters.model_path_lost,
        )

    def set_policy(self, policy: Policy) -> None:
        """Enforce ``policy`` (with the configuration's static keys) from now on."""
        self.policy = policy.with_static_keys(self._static)
        self.policy_received = True
        self._limiter.set_policy(self.policy)
        self.gateway.desire(policy.routing)
        self.meters.policy_applied()

    # -- front ------------------------------------------------------------------------

    async def front(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app the overlay's clients reach (through the llm-gateway service)."""
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        try:
            if path == "/v1/chat/completions" and method == "POST":
                await self._chat(scope, receive, send)
            elif path == "/v1/models" and method == "GET":
                await self._models(scope, send)
            elif path == "/metrics" and method == "GET":
                await self._metrics(scope, send)
            elif path == "/health" and method == "GET":
                await _answer(send, 200, orjson.dumps(self.health()))
            else:
                raise _ClientError(
                    404, f"no route {method} {path} here", "invalid_request_error", "not_found"
                )
        except _ClientError as refused:
            await _answer(send, refused.status, refused.body, refused.headers)

    def health(self) -> dict[str, object]:
        """The proxy's own view: whether it has a policy, which, how old, and whether the
        admin service answers (the installer's health check reads it)."""
        return {
            "status": "ok",
            "policy_received": self.policy_received,
            "policy_version": self.policy.version,
            "policy_age_seconds": self.meters.policy_age(),
            "admin_service": "; ".join(
                f"no {what} exchange since {since}" for what, since in self.admin_outages.items()
            )
            or "answering",
            **self.meters.model_path_health(),
            **self.gateway.health(),
        }

    def _authenticate(self, scope: Scope) -> tuple[str, KeyEntry]:
        header = _header(scope, b"authorization")
        if not header.startswith("Bearer ") or not header[7:].strip():
            raise _ClientError(
                401,
                "missing API key: send it as 'Authorization: Bearer <key>'",
                "invalid_request_error",
                "missing_api_key",
            )
        entry = self.policy.key(key_digest(header[7:].strip()))
        if entry is None or self.policy.identity(entry.identity) is None:
            raise _ClientError(401, "invalid API key", "invalid_request_error", "invalid_api_key")
        if entry.expires_at is not None and entry.expires_at <= self._now():
            raise _ClientError(
                401,
                f"API key expired at {entry.expires_at.isoformat()}: ask an admin for a new one",
                "invalid_request_error",
                "expired_api_key",
            )
        return entry.identity, entry

    async def _metrics(self, scope: Scope, send: Send) -> None:
        identity, _ = self._authenticate(scope)
        allowed = self.policy.identity(identity)
        if allowed is None or METRICS_GRANT not in allowed.models:
            raise _ClientError(
                403,
                f"you may not read the metrics; ask an admin to grant {METRICS_GRANT!r}",
                "permission_error",
                "metrics_not_granted",
            )
        body = self.meters.render(self._limiter.in_flight_all())
        await _answer(send, 200, body, [(b"content-type", b"text/plain; version=0.0.4")])

    def _refuse(self, identity: str, model: str, day: date, why: str) -> None:
        """Journal and meter a request refused before it reached the model."""
        self._journal.count(identity, model, day, refused=why)
        self.meters.refused(identity, why)

    async def _models(self, scope: Scope, send: Send) -> None:
        identity, _ = self._authenticate(scope)
        allowed = self.policy.identity(identity)
        models = sorted(m for m in (allowed.models if allowed else ()) if self.policy.served(m))
        body = {
            "object": "list",
            "data": [{"id": m, "object": "model", "owned_by": "site"} for m in models],
        }
        await _answer(send, 200, orjson.dumps(body))

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        today = local_day(self._now(), self.policy.timezone)
        try:
            identity, _ = self._authenticate(scope)
        except _ClientError:
            self._refuse("", "", today, "key")
            raise
        raw = await _read_body(scope, receive, self.config.max_body_bytes)
        request = _parse_chat(raw)
        model = request["model"]
        self._check_model(identity, model, today)
        prompt_bound = (
            len(raw)
            + self.config.prompt_overhead_tokens
            + self.config.message_overhead_tokens * len(request["messages"])
        )
        try:
            ticket = self._limiter.admit(
                identity,
                prompt_bound=prompt_bound,
                max_tokens=request.get("max_tokens"),
                choices=request.get("n") or 1,
            )
        except Refusal as over:
            self._refuse(identity, model, today, over.limit)
            refused = _ClientError(
                429,
                str(over),
                "insufficient_quota" if over.limit.startswith("tokens") else "rate_limit_exceeded",
                over.limit,
            )
            refused.headers = [(b"retry-after", str(over.retry_after).encode())]
            raise refused from None
        request_id = uuid.uuid4().hex
        request["user"] = USER_PREFIX + request_id
        self._callers[request_id] = identity
        if ticket.max_tokens is not None:
            request["max_tokens"] = ticket.max_tokens
        wants_usage = bool(request.get("stream")) and _wants_usage(request)
        status = 0
        try:
            status = await _until_disconnect(
                receive,
                send,
                lambda tracked: self._relay(request, request_id, wants_usage, tracked),
            )
        finally:
            self._callers.pop(request_id, None)
            self._settle(ticket, request_id, model, ok=status == 200)

    def _check_model(self, identity: str, model: str, today: date) -> None:
        if not self.policy.served(model):
            self._refuse(identity, model[:128], today, "model")
            served = [*self.policy.models, *([AUTO_MODEL] if self.policy.routing else [])]
            raise _ClientError(
                404,
                f"the model {model!r} does not exist here (this site serves: {', '.join(served)})",
                "invalid_request_error",
                "model_not_found",
            )
        if self.policy.explicit_refused(model):
            # llm-gateway would route it silently; the client is told instead.
            self._refuse(identity, model, today, "model")
            raise _ClientError(
                400,
                f"this site routes every request by its content: send model {AUTO_MODEL!r}, "
                f"not {model!r}",
                "invalid_request_error",
                "explicit_model_not_allowed",
            )
        allowed = self.policy.identity(identity)
        if allowed is None or model not in allowed.models:
            self._refuse(identity, model, today, "model")
            raise _ClientError(
                403,
                f"you may not use the model {model!r}; ask an admin to grant it",
                "permission_error",
                "model_not_granted",
            )

    async def _relay(
        self, request: dict[str, Any], request_id: str, wants_usage: bool, send: Send
    ) -> int:
        try:
            with self.gateway.lease() as slot:
                return await self._relay_to(
                    slot.url, slot.auth(), request, request_id, wants_usage, send
                )
        except GatewayUnavailableError as exc:
            await _answer(
                send,
                503,
                error_body(
                    f"the llm-gateway on this host is not ready ({exc}); try again shortly",
                    "service_unavailable",
                    "gateway_unavailable",
                ),
                [(b"retry-after", b"5")],
            )
            return 503

    async def _relay_to(
        self,
        url: str,
        auth: dict[str, str],
        request: dict[str, Any],
        request_id: str,
        wants_usage: bool,
        send: Send,
    ) -> int:
        try:
            response = await self._http.post(
                f"{url}/v1/chat/completions",
                data=orjson.dumps(request),
                headers={"content-type": "application/json", **auth},
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            await _answer(
                send,
                503,
                error_body(
                    f"the llm-gateway on this host does not answer ({type(exc).__name__}); "
                    "try again shortly",
                    "service_unavailable",
                    "gateway_unavailable",
                ),
            )
            return 503
        finished = False
        try:
            headers = _passed_headers(response)
            if not request.get("stream") or response.status != 200:
                body = await response.read()
                finished = True
                counted = self._counted.get(request_id)
                if response.status != 200 and counted is not None and counted.refused:
                    refused = _ClientError(
                        403, counted.refused, "permission_error", "routed_model_not_granted"
                    )
                    await _answer(send, refused.status, refused.body)
                    return refused.status
                await _answer(send, response.status, body, headers[1:])
                return response.status
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            ended = False
            try:
                async for event in _events(response.content.iter_any()):
                    if event.startswith(_DONE):
                        ended = True
                        if wants_usage:
                            await _send_more(send, self._usage_event(request_id, request))
                    await _send_more(send, event)
                finished = True
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("the answer from the llm-gateway broke off: %s", exc)
            if not ended:
                # A stream cut short (its model server stopped, a hop broke): the client
                # reads why in OpenAI's shape instead of a stream that just stops.
                await _send_more(send, _STREAM_BROKE)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return 200 if ended else 502
        finally:
            _done_with(response, finished)

    def _usage_event(self, request_id: str, request: dict[str, Any]) -> bytes:
        counted = self._counted.get(request_id) or _Counted(request["model"])
        usage = {
            "prompt_tokens": counted.prompt_tokens,
            "completion_tokens": counted.completion_tokens,
            "total_tokens": counted.prompt_tokens + counted.completion_tokens,
        }
        chunk = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion.chunk",
            "created": int(self._now().timestamp()),
            "model": counted.model,
            "choices": [],
            "usage": usage,
        }
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def _settle(self, ticket: Ticket, request_id: str, model: str, *, ok: bool) -> None:
        counted = self._counted.pop(request_id, None)
        prompt = counted.prompt_tokens if counted else 0
        completion = counted.completion_tokens if counted else 0
        answered = ok and counted is not None and counted.complete
        served = counted.model if counted and counted.model else model
        self._limiter.settle(ticket, prompt + completion)
        if counted is not None and counted.refused:
            self._journal.count(ticket.identity, served, ticket.day, refused="model")
            self.meters.refused(ticket.identity, "model")
            return
        self._journal.count(
            ticket.identity,
            served,
            ticket.day,
            requests=1,
            prompt_tokens=prompt,
            completion_tokens=completion,
            errors=0 if answered else 1,
        )
        self.meters.answered(ticket.identity, served, prompt, completion, answered)

    def _routed_refusal(self, request_id: str, model: str) -> str:
        """Why the caller of ``request_id`` may not have ``model`` (llm-gateway's routing
        chose it), or "": grants hold whichever way a request is routed."""
        identity = self._callers.get(request_id)
        if identity is None or not self.policy.routing:
            return ""
        allowed = self.policy.identity(identity)
        if allowed is not None and model in allowed.models:
            return ""
        return (
            f"your request was routed to the model {model!r}, which you may not use; "
            "ask an admin to grant it"
        )

    # -- back -------------------------------------------------------------------------

    async def back(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app llm-gateway sends its backend requests to."""
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        url = f"{self.config.backend_url}{path}"
        try:
            if method == "POST" and path == "/v1/chat/completions":
                raw = await _read_body(scope, receive, 16 * self.config.max_body_bytes)
                await _until_disconnect(
                    receive, send, lambda tracked: self._watched_model(url, raw, tracked)
                )
            elif method == "POST" and path == "/v1/embeddings":
                # llm-gateway's semantic routing embeds prompts and route examples here.
                raw = await _read_body(scope, receive, 16 * self.config.max_body_bytes)
                async with self._http.post(
                    url, data=raw, headers={"content-type": "application/json"}
                ) as response:
                    body = await response.read()
                    await _answer(send, response.status, body, _passed_headers(response)[1:])
            elif method == "GET":
                async with self._http.get(url) as response:
                    body = await response.read()
                    await _answer(send, response.status, body, _passed_headers(response)[1:])
            else:
                raise _ClientError(405, f"{method} {path} is not relayed", "invalid_request_error")
        except _ClientError as refused:
            await _answer(send, refused.status, refused.body, refused.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # llm-gateway reads an {"error": "..."} body as its provider's own words.
            await _answer(
                send,
                503,
                orjson.dumps({"error": f"the model server does not answer ({type(exc).__name__})"}),
            )

    async def _watched_model(self, url: str, raw: bytes, send: Send) -> int:
        """``_to_model``, ended with an error when the model server goes silent and the
        overlay's path to it is found broken (a partition leaves a circuit open, silent)."""
        try:
            return await self.model_path.run(
                lambda watched: self._to_model(url, raw, watched), send
            )
        except ModelPathLostError as lost:
            if lost.started:
                # The stream ends without [DONE]; llm-gateway ends its own, and ``front``
                # tells the client why in OpenAI's shape (_STREAM_BROKE).
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return 502
            # llm-gateway reads an {"error": "..."} body as its provider's own words.
            await _answer(send, 503, orjson.dumps({"error": f"{lost}; try again shortly"}))
            return 503

    async def _to_model(self, url: str, raw: bytes, send: Send) -> int:
        try:
            request = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _ClientError(400, f"invalid JSON: {exc}", "invalid_request_error") from None
        user = request.pop("user", None)
        counted = _Counted(str(request.get("model", "")))
        if isinstance(user, str) and user.startswith(USER_PREFIX):
            request_id = user[len(USER_PREFIX) :]
            self._counted[request_id] = counted
            refusal = self._routed_refusal(request_id, counted.model)
            if refusal:
                counted.refused = refusal
                # llm-gateway reads an {"error": "..."} body as its provider's own words;
                # the front answers the client with its own 403.
                await _answer(send, 403, orjson.dumps({"error": refusal}))
                return 403
        stream = bool(request.get("stream"))
        if stream:
            # Usage in every chunk: a stream cut short is still counted up to its last chunk.
            request["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
        response = await self._post_to_model(url, orjson.dumps(request))
        finished = False
        try:
            headers = _passed_headers(response)
            if not stream or response.status != 200:
                body = await response.read()
                finished = True
                if response.status == 200:
                    _take_usage(counted, body)
                    counted.complete = True
                await _answer(send, response.status, body, headers[1:])
                return response.status
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            async for event in _events(response.content.iter_any()):
                if event.startswith(_DONE):
                    counted.complete = True
                elif event.startswith(b"data: ") and not _take_usage(counted, event[6:]):
                    continue  # the usage-only chunk: llm-gateway would pass on an empty one
                await _send_more(send, event)
            finished = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return 200
        finally:
            _done_with(response, finished)

    async def _post_to_model(self, url: str, body: bytes) -> aiohttp.ClientResponse:
        """POST to the model servers; a connection that breaks before any answer is tried
        again on a new one (ADR 0022). Each connection is a circuit to one GPU host: one
        whose host stopped, or that the overlay could not complete, has served nothing,
        and the new circuit goes to a host that answers. Completions change nothing on
        the model server, so a repeat costs only the time."""
        headers = {"content-type": "application/json"}
        now = time.monotonic()
        if now >= self._retire_at:
            # Each connection is a circuit, bound to the GPU host the overlay chose when it
            # was opened: kept alive for ever, connections made while a host was down (or
            # before it was added) would never reach it. Now and then one request asks the
            # model server to close its connection after answering, so that the pool's
            # circuits are made again over time and spread where the overlay now sends them.
            headers["connection"] = "close"
            self._retire_at = now + _MODEL_RETIRE_EVERY_S
        for attempt in range(_MODEL_ATTEMPTS):
            try:
                return await self._http.post(url, data=body, headers=headers)
            except aiohttp.ClientConnectionError as exc:
                # A read timeout is one too (ServerTimeoutError): the model was still busy
                # with the request, so it is not sent again.
                if isinstance(exc, TimeoutError) or attempt + 1 == _MODEL_ATTEMPTS:
                    raise
                log.warning(
                    "the model server's connection broke before it answered (%s): trying a new one",
                    exc,
                )
                self.meters.model_retried()
                await asyncio.sleep(_MODEL_RETRY_PAUSE_S * attempt)
        raise AssertionError("unreachable")


def _done_with(response: aiohttp.ClientResponse, finished: bool) -> None:
    """Give the connection back for the next request, or close it: one whose answer was not
    read to its end cannot serve another."""
    if finished:
        response.release()
    else:
        response.close()


def _take_usage(counted: _Counted, payload: bytes) -> bool:
    """Record the usage in a response or chunk; False for a chunk with no choices."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return True
    if not isinstance(data, dict):
        return True
    usage = data.get("usage")
    if isinstance(usage, dict):
        counted.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        counted.completion_tokens = int(usage.get("completion_tokens") or 0)
        if data.get("model") and not counted.model:
            counted.model = str(data["model"])
    return bool(data.get("choices", True))


def _parse_chat(raw: bytes) -> dict[str, Any]:
    try:
        request = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _ClientError(
            400, f"the request body is not valid JSON: {exc}", "invalid_request_error"
        ) from None
    if not isinstance(request, dict):
        raise _ClientError(400, "the request body must be a JSON object", "invalid_request_error")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _ClientError(
            400, "'messages' must be a non-empty list", "invalid_request_error", "messages"
        )
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise _ClientError(400, "'model' must name a model", "invalid_request_error", "model")
    for name in ("max_tokens", "n"):
        value = request.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise _ClientError(
                400,
                f"'{name}' must be a positive integer, found {value!r}",
                "invalid_request_error",
                name,
            )
    # llm-gateway passes max_tokens only: the newer name must still bound the answer.
    newer = request.pop("max_completion_tokens", None)
    if (
        request.get("max_tokens") is None
        and isinstance(newer, int)
        and not isinstance(newer, bool)
        and newer > 0
    ):
        request["max_tokens"] = newer
    return request


def _wants_usage(request: dict[str, Any]) -> bool:
    options = request.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _passed_headers(response: aiohttp.ClientResponse) -> list[tuple[bytes, bytes]]:
    """The upstream answer's content headers (first: its content type)."""
    found = [(b"content-type", response.headers.get("content-type", "application/json").encode())]
    for name in ("cache-control", "x-accel-buffering"):
        if name in response.headers:
            found.append((name.encode(), response.headers[name].encode()))
    return found


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    declared = _header(scope, b"content-length")
    if declared.isdigit() and int(declared) > limit:
        raise _ClientError(
            413,
            f"the request body is {declared} bytes; at most {limit} are taken",
            "invalid_request_error",
        )
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientError(499, "the client went away", "invalid_request_error")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _ClientError(
                413, f"the request body is over {limit} bytes", "invalid_request_error"
            )
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


async def _answer(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    content_type = [h for h in headers or [] if h[0] == b"content-type"] or _JSON
    rest = [h for h in headers or [] if h[0] != b"content-type"]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*content_type, *rest, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_more(send: Send, body: bytes) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": True})


async def _events(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Server-sent events, each with its closing blank line, however the bytes arrive."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        while True:
            end = pending.find(b"\n\n")
            if end < 0:
                break
            yield pending[: end + 2]
            pending = pending[end + 2 :]
    if pending.strip():
        yield pending


async def _until_disconnect(
    receive: Receive, send: Send, work: Callable[[Send], Awaitable[int]]
) -> int:
    """Run ``work``; cancel it when the client goes away before its answer ended (then the
    model stops generating), and say 499."""
    answered = False

    async def tracked(message: Message) -> None:
        nonlocal answered
        await send(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            answered = True

    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    task = asyncio.ensure_future(work(tracked))
    watcher = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done() and not answered:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return 499
    return await task
