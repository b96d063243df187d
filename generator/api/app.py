"""The FastAPI application: the process's resources, error answers, and the routes (`routes`).

Errors share one JSON shape, `{"error": {"status": ..., "message": ..., "problems": [...]}}`:
domain errors keep the status their class declares (400, 401, 404, 409, 413, 500, 502, 503), request
validation is 422, and an unreachable database is 503.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..config import REVIEW, Settings
from ..errors import DatabaseUnavailable, UserError, ValidationFailed
from ..gitops import LAZY
from ..service import answers
from ..service import render as render_service
from ..service import review as review_service
from ..service.access import Gate
from ..service.answers import Presence
from ..service.batch import RenderBatcher
from ..service.context import Context
from ..service.health import Readiness
from ..service.worker import Worker
from ..store.db import first_line
from .answers import ERRORS, error
from .guard import Guard
from .routes import Server, router

log = logging.getLogger("overseer.api")


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error in the one shape, with the status its class declares."""

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        problems = [str(p) for p in exc.problems] if isinstance(exc, ValidationFailed) else []
        return error(exc.http_status, exc.for_api(), problems)

    @app.exception_handler(psycopg.DataError)
    async def unstorable(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # e.g. a NUL byte in a path parameter: the input is at fault, not the server.
        return error(
            400, f"the request holds a value PostgreSQL cannot store: {str(exc).splitlines()[0]}"
        )

    @app.exception_handler(psycopg.OperationalError)
    async def database_gone(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        # A connection that died under a query (the server stopped or restarted): the pool
        # replaces it, and the client may retry.
        return error(503, f"the database connection failed: {first_line(exc)}; retry shortly")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in err.get('loc', ()) if p != 'body') or '(body)'}: {err.get('msg')}"
            for err in exc.errors()
        ]
        return error(422, "the request is malformed; see problems", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))


def create_app(settings: Settings | None = None, *, background: bool = True) -> FastAPI:
    """Build the application; `background` runs the apply worker and TTL reaper in-process."""
    settings = settings or Settings.from_env()
    # Requests need objects and a ref only; the files follow when someone reads them.
    settings = settings.with_(worktree=settings.worktree or LAZY)
    ctx = Context(settings, pooled=True)
    ctx.actor = "an API client"
    if settings.mode == REVIEW:  # a server that cannot propose should not start
        review_service.check(ctx)
    try:  # nor one whose key cannot open the stored secrets (a wiped home, a wrong key)
        ctx.secrets  # noqa: B018 - loading it checks it
    except DatabaseUnavailable as exc:  # checked at first use, once the database answers
        log.warning("%s", exc.message)
    batcher = RenderBatcher(ctx)
    presence = Presence(ctx)

    def sweep() -> None:
        presence.hold()
        answers.sweep(ctx, presence.server)

    worker = Worker(ctx, interval=settings.worker_interval, chores=[sweep])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            # The clone catches up with the remote first (a new pod's is empty): the sweep
            # tells by it whether a create a killed predecessor never answered reached main.
            await run_in_threadpool(render_service.follow_at_start, ctx)
            # Those creates go before anything renders them.
            await run_in_threadpool(sweep)
            # Then the clone catches up with the database, as a new render does.
            await run_in_threadpool(render_service.reconcile_at_start, ctx)
        except UserError as exc:  # the database is down: requests answer 503 until it is back
            log.warning("%s", exc.message)
        batcher.start()
        if background:
            worker.start()
            worker.wake()  # work accepted before a restart is picked up at once
        yield
        if background:
            worker.stop()
        batcher.stop()
        presence.release()
        ctx.close()

    # Swagger UI's and ReDoc's scripts are served from the installed package, not from a CDN:
    # /docs must work on a machine that reaches only the cluster.
    app = FastAPIOffline(
        title="Overseer",
        version=__version__,
        description="Plugin registry and deployments rendered into Helm charts, committed to Git, applied with helm.",
        lifespan=lifespan,
        responses=ERRORS,
    )

    add_error_handlers(app)
    app.state.server = Server(ctx, batcher, worker, presence.server, Readiness(ctx))
    app.include_router(router)
    app.add_middleware(
        Guard, gate=Gate(ctx), body_limit=settings.body_limit, rate=settings.rate_limit
    )
    return app
