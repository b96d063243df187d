"""The gate in front of every route: who asks, how fast, and how much they may send.

An ASGI middleware, so it runs on the request's headers before any byte of its body is read: a
request without a valid token is answered 401, one over its token's rate 429, and one whose
`Content-Length` passes the limit 413, all without reading the body. A body without a length
(chunked) is counted as it arrives, and cut off with a 413 at the limit. The server's memory
therefore does not grow with what a client sends.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException
from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.concurrency import run_in_threadpool

from ..errors import UserError
from ..service.access import BOOTSTRAP, Gate, Principal
from .answers import error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# Open to anyone: liveness, and the API's own description. Webhooks carry a forge's signature
# instead of a token (checked by their route).
OPEN = (
    "/healthz",
    "/livez",
    "/readyz",
    "/openapi.json",
    "/docs",
    "/redoc",
    "/static-offline-docs/",
)
SIGNED = "/webhooks/"
_ASK = object()  # the gate's cache cannot tell: ask the database


class Guard:
    """Authenticates, rate-limits and bounds every request before its route runs."""

    def __init__(self, app: App, *, gate: Gate, body_limit: int, rate: str) -> None:
        self.app = app
        self.gate = gate
        self.body_limit = body_limit
        self.rates = parse_many(rate)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 401, 429 or 413 from the headers alone, or pass the request on, bounded."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope["path"]
        if not (path.startswith(OPEN) or path.startswith(SIGNED)):
            try:
                # Mostly answered from the gate's cache, on the event loop; a query takes a thread.
                found = self._principal(headers, cached=True)
                if found is _ASK:
                    found = await run_in_threadpool(self._principal, headers)
            except UserError as exc:  # the database is unreachable: 503, in the one shape
                await self._refuse(send, exc.http_status, exc.for_api())
                return
            if isinstance(found, str):
                await self._refuse(send, 401, found, {"WWW-Authenticate": "Bearer"})
                return
            principal = found if isinstance(found, Principal) else None
            if principal is not None and principal.name != BOOTSTRAP:
                wait = self._over_rate(principal.name)
                if wait:
                    message = f'token "{principal.name}" is over its rate limit; retry in {wait} s'
                    await self._refuse(send, 429, message, {"Retry-After": str(wait)})
                    return
            scope.setdefault("state", {})["principal"] = principal
        length = headers.get("content-length", "")
        if length.isdigit():  # the server reads no more than the declared length
            if int(length) > self.body_limit:  # who asks first, then how much
                await self._refuse(send, 413, self._too_large())
                return
            await self.app(scope, receive, send)
            return
        await self._bounded(scope, receive, send)

    def _principal(self, headers: dict[str, str], *, cached: bool = False) -> object:
        """Who asks: a Principal, None when no tokens are in use, or why not (a str).

        With `cached`, only what needs no query is answered, and `_ASK` when one is needed.
        """
        in_use = self.gate.cached_in_use() if cached else self.gate.in_use()
        if in_use is None:
            return _ASK
        if not in_use:
            return None
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return "this endpoint needs `Authorization: Bearer <token>`"
        if cached:
            known, principal = self.gate.cached_principal(value.strip())
            if not known:
                return _ASK
        else:
            principal = self.gate.principal(value.strip())
        if principal is None:
            return "the bearer token is unknown, revoked or expired"
        return principal

    def _over_rate(self, name: str) -> int:
        """Seconds to wait when `name` is over one of its rates; 0 when it may go on."""
        for rate in self.rates:
            if not self.limiter.hit(rate, name):
                reset, _ = self.limiter.get_window_stats(rate, name)
                return max(1, int(reset - _now()) + 1)
        return 0

    def _too_large(self) -> str:
        return f"the request body is over {self.body_limit} bytes; send less (OVERSEER_BODY_LIMIT)"

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with its body counted as it is read: past the limit, a 413."""
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.body_limit:
                    # FastAPI passes an HTTPException raised while it reads a body through to
                    # the error handlers (any other error there becomes a 400).
                    raise HTTPException(413, self._too_large())
            return message

        await self.app(scope, counted, send)

    @staticmethod
    async def _refuse(
        send: Send, status: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        answer = error(status, message, headers=headers)
        await answer({"type": "http"}, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


def _now() -> float:
    return time.time()
