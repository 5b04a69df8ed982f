"""Stand-ins for llm-gateway and vLLM around the access proxy, for unit tests only.

They behave the way the real programs do where the proxy depends on it: the gateway keeps
a fixed set of request fields (``stream_options`` is dropped, ``user`` kept), requires its
one key, and re-encodes streamed chunks without their ``usage``; the model server counts
tokens deterministically, honours ``max_tokens`` and ``stream_options`` (including
``continuous_usage_stats``) and ends a usage-reporting stream with a chunk of no choices.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import uvicorn

GATEWAY_KEY = "internal-gateway-key"
_KEPT = ("model", "messages", "max_tokens", "temperature", "top_p", "n", "stream", "stop", "user")


def prompt_tokens(request: dict[str, Any]) -> int:
    """The fake model's prompt count: one token per word, plus three per message."""
    return sum(len(str(m.get("content", "")).split()) + 3 for m in request["messages"])


class FakeModel:
    """An OpenAI-compatible model server that records what it was asked and reported."""

    def __init__(self, completion_tokens: int = 12) -> None:
        self.completion_tokens = completion_tokens
        #: Streams end after this many chunks, without [DONE], as a stopped server's would.
        self.cut_after: int | None = None
        #: Seconds each request waits before its answer begins (a busy model server).
        self.delay = 0.0
        #: Streams pause this long after their first chunk (vLLM holding a sequence back).
        self.pause = 0.0
        self.requests: list[dict[str, Any]] = []
        self.reported: list[tuple[int, int]] = []

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http":
            return
        body = await _body(receive)
        if scope["method"] == "GET":
            await _send_json(
                send, 200, {"object": "list", "data": [{"id": "tiny", "object": "model"}]}
            )
            return
        request = json.loads(body)
        self.requests.append(request)
        await asyncio.sleep(self.delay)
        prompt = prompt_tokens(request)
        completion = min(
            request.get("max_tokens") or self.completion_tokens, self.completion_tokens
        )
        completion *= request.get("n") or 1
        self.reported.append((prompt, completion))
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if not request.get("stream"):
            await _send_json(
                send,
                200,
                {
                    "id": "x",
                    "object": "chat.completion",
                    "model": request["model"],
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": "w " * completion}}
                    ],
                    "usage": usage,
                },
            )
            return
        options = request.get("stream_options") or {}
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for i in range(completion):
            if i == self.cut_after:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            chunk: dict[str, Any] = {
                "id": "x",
                "object": "chat.completion.chunk",
                "model": request["model"],
                "choices": [{"index": 0, "delta": {"content": "w "}}],
            }
            if options.get("continuous_usage_stats"):
                chunk["usage"] = {
                    "prompt_tokens": prompt,
                    "completion_tokens": i + 1,
                    "total_tokens": prompt + i + 1,
                }
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + json.dumps(chunk).encode() + b"\n\n",
                    "more_body": True,
                }
            )
            if i == 0:
                await asyncio.sleep(self.pause)
        if options.get("include_usage"):
            final = {
                "id": "x",
                "object": "chat.completion.chunk",
                "model": request["model"],
                "choices": [],
                "usage": usage,
            }
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + json.dumps(final).encode() + b"\n\n",
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


class BreakingDoor:
    """A TCP door to the model server that drops the next ``breaks`` connections after
    their request arrives, unanswered: what the access proxy meets when a GPU host stops
    or the overlay cannot complete a circuit (each connection is one circuit)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.breaks = 0
        self.broken = 0
        #: Connections opened to the door (each would be a circuit to one GPU host).
        self.connections = 0
        #: Cleared while partitioned: connections stay open and nothing passes either way.
        self._passing = asyncio.Event()
        self._passing.set()

    def partition(self) -> None:
        """Pass nothing, on open connections or new ones, as a partitioned overlay link."""
        self._passing.clear()

    def heal(self) -> None:
        self._passing.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.breaks > 0:
            self.breaks -= 1
            self.broken += 1
            await reader.read(1)
            writer.close()
            return
        await self._passing.wait()
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    await self._passing.wait()
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[str]:
        """Listen on a free loopback port for the block; yields the door's base URL."""
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        async with server:
            yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def route_by_keyword(request: dict[str, Any]) -> str:
    """The stand-in's routing for ``model: auto``: "patient" in a user message goes to the
    sensitive model, anything else to the general one (as a keyword rule would)."""
    said = " ".join(str(m.get("content")) for m in request["messages"] if m["role"] == "user")
    return "tiny-sensitive" if "patient" in said.lower() else "tiny"


class FakeGateway:
    """llm-gateway as the proxy meets it: one key, a fixed field list, usage-less chunks,
    ``auto`` routed by keyword."""

    def __init__(self, backend: httpx.AsyncClient) -> None:
        self._backend = backend

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http":
            return
        body = await _body(receive)
        if (b"authorization", f"Bearer {GATEWAY_KEY}".encode()) not in scope["headers"]:
            await _send_json(
                send, 401, {"error": {"message": "invalid API key", "type": "authentication_error"}}
            )
            return
        request = {k: v for k, v in json.loads(body).items() if k in _KEPT}
        if request["model"] == "auto":
            request["model"] = route_by_keyword(request)
        answer = await self._backend.post("/v1/chat/completions", json=request)
        if answer.status_code != 200:
            # llm-gateway wraps a provider's {"error": "..."} in its own error, as a 502.
            message = str(answer.json().get("error"))
            await _send_json(send, 502, {"error": {"message": message, "type": "api_error"}})
            return
        if not request.get("stream"):
            await _send_json(send, answer.status_code, answer.json())
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for event in answer.text.split("\n\n"):
            if not event.startswith("data: "):
                continue
            data = event[6:]
            if data != "[DONE]":
                chunk = json.loads(data)
                chunk.pop("usage", None)  # llm-gateway's StreamChunk has no usage field
                data = json.dumps(chunk)
            await send(
                {
                    "type": "http.response.body",
                    "body": f"data: {data}\n\n".encode(),
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _body(receive: Callable[..., Any]) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _send_json(send: Callable[..., Any], status: int, body: object) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data, "more_body": False})


def policy_document(
    *,
    keys: dict[str, str] | None = None,
    identities: dict[str, dict[str, Any]] | None = None,
    limits: dict[str, dict[str, int | None]] | None = None,
    timezone: str = "UTC",
    models: tuple[str, ...] = ("tiny",),
    context_tokens: int = 256,
    expires: dict[str, str] | None = None,
    routing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A policy document as the admin service sends it. ``keys``: key -> identity."""
    from appliance.access.policy import LIMIT_NAMES, key_digest

    return {
        "timezone": timezone,
        "models": list(models),
        "context_tokens": context_tokens,
        "keys": [
            {
                "sha256": key_digest(key),
                "key_id": i,
                "identity": who,
                "expires_at": (expires or {}).get(key),
            }
            for i, (key, who) in enumerate((keys or {}).items(), 1)
        ],
        "identities": identities or {},
        "limits": {
            subject: {name: values.get(name) for name in LIMIT_NAMES}
            for subject, values in (limits or {}).items()
        },
        "routing": routing,
    }


def routing_document(*, allow_explicit_model: bool = False) -> dict[str, Any]:
    """The admin service's routing: "patient" to the sensitive model, the rest general."""
    return {
        "allow_explicit_model": allow_explicit_model,
        "default_route": "general",
        "routes": [
            {
                "name": "sensitive",
                "model": "tiny-sensitive",
                "description": "patient data stays on the approved model",
                "keywords": ["patient"],
                "exclude": [],
                "examples": [],
            },
            {
                "name": "general",
                "model": "tiny",
                "description": "",
                "keywords": [],
                "exclude": [],
                "examples": [],
            },
        ],
        "semantic": None,
    }


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@contextlib.asynccontextmanager
async def serving(
    app: Any, stop_together: list[uvicorn.Server] | None = None, *, port: int = 0
) -> AsyncIterator[str]:
    """``app`` served on a loopback port (a free one unless given) for the block; yields its
    base URL. Servers in ``stop_together`` can all be told to stop at once (each takes a
    tick to notice)."""
    server = _QuietServer(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, interface="asgi3", lifespan="off", log_level="warning"
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    if stop_together is not None:
        stop_together.append(server)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
