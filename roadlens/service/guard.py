"""What web pages and oversized bodies cannot do to the service (an ASGI middleware).

Open mode (no API key) trusts loopback clients, and a browser on the same machine is one:
any page it shows could otherwise call the API. Two headers a page cannot forge close that:

* ``Host`` must name loopback (``localhost``, ``127.0.0.1``, ``[::1]``) or the address the
  server is bound to, so DNS rebinding (a hostile name resolving to 127.0.0.1) is refused;
* ``Origin``, which browsers send with every cross-origin request, every POST and every
  WebSocket handshake, must be absent (curl, scripts) or a loopback origin.

In every mode a request body is capped (``ROADLENS_MAX_BODY_BYTES``, 1 MiB by default) by
its ``Content-Length`` and by counting what arrives, before any of it is parsed.

Example:
    >>> from starlette.applications import Starlette
    >>> app = RequestGuard(Starlette(), open_mode=True, max_body_bytes=1 << 20)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from roadlens.service.state import is_loopback

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _BodyTooLargeError(Exception):
    pass


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _hostname(host_header: str) -> str:
    """``example.com:8080`` -> ``example.com``; ``[::1]:80`` -> ``::1``."""
    return urlsplit(f"//{host_header}").hostname or ""


class RequestGuard:
    """Refuses foreign ``Host``/``Origin`` headers in open mode and oversized bodies always."""

    def __init__(self, app: ASGIApp, *, open_mode: bool, max_body_bytes: int) -> None:
        self.app = app
        self.open_mode = open_mode
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope) if self.open_mode else None
        if refusal is not None:
            await self._refuse(scope, receive, send, 403, refusal)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(scope, receive, send, 413, self._too_large())
            return
        await self._limited(scope, receive, send)

    def _refusal(self, scope: Scope) -> str | None:
        bound = (scope.get("server") or ("", 0))[0]
        host = _hostname(_header(scope, b"host") or "")
        if host and not (is_loopback(host) or host == bound):
            return (
                f"open mode (no API key) serves loopback names only, not Host {host!r}; "
                "use http://127.0.0.1 or configure ROADLENS_API_KEYS"
            )
        origin = _header(scope, b"origin")
        if origin is not None:
            origin_host = urlsplit(origin).hostname
            if not (origin_host and (is_loopback(origin_host) or origin_host == bound)):
                return (
                    f"open mode (no API key) refuses requests from web pages of other "
                    f"origins ({origin[:100]!r})"
                )
        return None

    def _too_large(self) -> str:
        return f"request body larger than {self.max_body_bytes} bytes (ROADLENS_MAX_BODY_BYTES)"

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        exceeded = started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the app's own answer to a cut-off body (400) gives way to 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        with contextlib.suppress(_BodyTooLargeError):
            await self.app(scope, counting_receive, guarded_send)
        if exceeded and not started:
            await self._refuse(scope, receive, send, 413, self._too_large())

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, why: str) -> None:
        if scope["type"] == "websocket":
            await receive()  # the handshake's websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": why[:120]})
            return
        body = json.dumps({"detail": why}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
