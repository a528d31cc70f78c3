"""Request body size limit on the bytes actually received (ASGI middleware), for `serve` and `ui`.

A Content-Length check alone lets a chunked upload (no Content-Length) through at any size. This reads the
body as it arrives, counting chunks, answers 413 as soon as the count passes the limit (the rest is never
read), and otherwise hands the app the same body it would have read itself (endpoints read whole bodies
anyway, so buffering up to the limit costs nothing more)."""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

Message = dict[str, Any]
ErrorBody = Callable[[int], dict[str, Any]]


class BodyLimit:
    def __init__(self, app: Any, max_bytes: int, error_body: ErrorBody):
        self.app, self.max_bytes, self.error_body = app, max_bytes, error_body

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[Message]], send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it as usual
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _refuse(self, send: Callable) -> None:
        payload = json.dumps(self.error_body(self.max_bytes)).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def _replay(first: list[Message], receive: Callable[[], Awaitable[Message]]) -> Callable[[], Awaitable[Message]]:
    """`receive` for the app: the buffered messages, then the real channel (disconnect notices)."""
    queued = list(first)

    async def replay() -> Message:
        if queued:
            return queued.pop(0)
        return await receive()

    return replay
