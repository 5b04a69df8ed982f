"""A model answer gone silent: is the model server still at it, or is the path to it lost?

Silence alone proves nothing: vLLM may hold a stream back for seconds (others' long
prompts, a sequence preempted for room), and a non-streamed answer says nothing until it
is whole. But a partition between the gateway host and a GPU host looks the same from
here: the connection to the local tunneler stays open and no byte comes, for as long as
the partition lasts. So after ``silence_s`` with nothing from the model server, the
proxy asks its /health over the same overlay path. An answer within ``check_s`` means the
model is busy and the wait goes on; none means the path is gone, and the request ends
with a clear error within ``silence_s + check_s`` of its last byte instead of hanging.

Checks are shared: however many requests are silent at once, one /health is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp

__all__ = ["ModelPath", "ModelPathLostError"]

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger(__name__)

#: A check's answer stands for this long: requests that go silent together share it.
_CHECK_FRESH_S = 1.0


class ModelPathLostError(Exception):
    """The model server went silent and its /health did not answer on the same path."""

    def __init__(self, silent_s: float, check_s: float, *, started: bool) -> None:
        super().__init__(
            f"nothing from the model server for {silent_s:.1f} s and its health check "
            f"did not answer within {check_s:.1f} s: the overlay's path to the GPU host "
            "is broken or the host stopped"
        )
        #: Whether the answer had begun (its status and headers were sent on).
        self.started = started


class ModelPath:
    """Watches model requests for silence; checks the path to the model server."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        health_url: str,
        *,
        silence_s: float,
        check_s: float,
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self._http = http
        self._health_url = health_url
        self.silence_s = silence_s
        self.check_s = check_s
        self._on_lost = on_lost
        self._check: asyncio.Task[bool] | None = None
        self._checked_at = float("-inf")

    async def run(self, work: Callable[[Send], Awaitable[int]], send: Send) -> int:
        """Run ``work`` (which answers through the send it is given); raise
        ModelPathLostError, ``work`` cancelled, when the model server goes silent and the
        path check fails."""
        heard = time.monotonic()
        started = False

        async def tracked(message: Message) -> None:
            nonlocal heard, started
            heard = time.monotonic()
            started = started or message["type"] == "http.response.start"
            await send(message)

        task = asyncio.ensure_future(work(tracked))
        try:
            while not task.done():
                wait = heard + self.silence_s - time.monotonic()
                if wait > 0:
                    await asyncio.wait({task}, timeout=wait)
                elif await self.answers():
                    heard = time.monotonic()  # the model server is there, and busy
                elif not task.done():
                    silent = time.monotonic() - heard
                    self._on_lost()
                    log.warning(
                        "a model request was silent %.1f s and the model server's health "
                        "did not answer within %.1f s: ended with an error",
                        silent,
                        self.check_s,
                    )
                    raise ModelPathLostError(silent, self.check_s, started=started)
            return await task
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def answers(self) -> bool:
        """Whether the model server's /health answers on the overlay's path, now."""
        if self._check is None or (
            self._check.done() and time.monotonic() - self._checked_at > _CHECK_FRESH_S
        ):
            self._check = asyncio.ensure_future(self._ask())
        return await asyncio.shield(self._check)

    async def _ask(self) -> bool:
        try:
            async with self._http.get(
                self._health_url, timeout=aiohttp.ClientTimeout(total=self.check_s)
            ) as answer:
                return answer.status < 500
        except (aiohttp.ClientError, TimeoutError):
            return False
        finally:
            self._checked_at = time.monotonic()
