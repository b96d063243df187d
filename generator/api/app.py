"""FastAPI application: routes parse the request, call one service function, shape the answer.

Errors share one JSON shape, `{"error": {"status": ..., "message": ..., "problems": [...]}}`:
domain errors keep the status their class declares (400, 404, 409, 413, 422, 503), request
validation is 422, and an unreachable database is 503.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..config import REVIEW, Settings
from ..errors import UserError, ValidationFailed
from ..gitops import LAZY
from ..manifest import MAX_MANIFEST_BYTES
from ..service import deployments as deployments_service
from ..service import plugins as plugins_service
from ..service import review as review_service
from ..service.batch import RenderBatcher
from ..service.context import Context
from ..service.deployments import DeploymentRequest, DeploymentUpdate, DeploymentView
from ..service.worker import Worker
from ..store.plugins import PluginRecord

log = logging.getLogger("overseer.api")


class ErrorBody(BaseModel):
    """The body of every error answer."""

    status: int
    message: str
    problems: list[str] = []


class ErrorResponse(BaseModel):
    """`{"error": {...}}`."""

    error: ErrorBody


class DryRunAnswer(BaseModel):
    """`?dry_run=true`: the deployment as it would be, and the charts it would change; nothing stored."""

    deployment: DeploymentView
    changes: list[dict[str, str]]  # chart, action, files (a unified diff), manifests (likewise)


def _dry_run_answer(change: deployments_service.Change) -> JSONResponse:
    answer = DryRunAnswer(
        deployment=change.deployment, changes=[d.as_dict() for d in change.diff or []]
    )
    return JSONResponse(answer.model_dump(mode="json"), status_code=200)


class WebhookAnswer(BaseModel):
    """What a webhook delivery did: ok, ignored (not a pull-request event), or duplicate."""

    status: str
    settled: list[dict[str, Any]]


class ConnectionDetails(BaseModel):
    """`GET /deployments/{id}/connect`: one `<port>_port` per port, service DNS, namespace, paths."""

    connection_details: dict[str, Any]


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 422, 503)
}


def _error(
    status: int,
    message: str,
    problems: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(status=status, message=message, problems=problems or []))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def create_app(settings: Settings | None = None, *, background: bool = True) -> FastAPI:
    """Build the application; `background` runs the apply worker and TTL reaper in-process."""
    settings = settings or Settings.from_env()
    # Requests need objects and a ref only; the files follow when someone reads them.
    settings = settings.with_(worktree=settings.worktree or LAZY)
    ctx = Context(settings, pooled=True)
    ctx.actor = "an API client"
    if settings.mode == REVIEW:  # a server that cannot propose should not start
        review_service.check(ctx)
    batcher = RenderBatcher(ctx)
    worker = Worker(ctx, interval=settings.worker_interval)
    token = settings.api_token

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        if background:
            worker.start()
            worker.wake()  # work accepted before a restart is picked up at once
        yield
        if background:
            worker.stop()
        batcher.stop()
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

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        problems = [str(p) for p in exc.problems] if isinstance(exc, ValidationFailed) else []
        return _error(exc.http_status, exc.for_api(), problems)

    @app.exception_handler(psycopg.DataError)
    async def unstorable(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # e.g. a NUL byte in a path parameter: the input is at fault, not the server.
        return _error(
            400, f"the request holds a value PostgreSQL cannot store: {str(exc).splitlines()[0]}"
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in err.get('loc', ()) if p != 'body') or '(body)'}: {err.get('msg')}"
            for err in exc.errors()
        ]
        return _error(422, "the request is malformed; see problems", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    def authorised(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), token.encode()
        ):
            raise StarletteHTTPException(
                401,
                "this endpoint needs `Authorization: Bearer <token>` with the server's OVERSEER_API_TOKEN",
                headers={"WWW-Authenticate": "Bearer"},
            )

    Auth = Depends(authorised)

    @app.post("/plugins", response_model=PluginRecord, dependencies=[Auth], tags=["plugins"])
    def register_plugin(
        manifest_file: Annotated[UploadFile, File(description="plugin.yaml")],
    ) -> PluginRecord:
        """Register a plugin manifest (idempotent; a higher version updates it)."""
        data = manifest_file.file.read(MAX_MANIFEST_BYTES + 1)
        return plugins_service.register_bytes(
            ctx, data, manifest_file.filename or "manifest_file"
        ).plugin

    @app.get("/plugins", response_model=list[PluginRecord], tags=["plugins"])
    def list_plugins() -> list[PluginRecord]:
        """Every registered plugin."""
        return plugins_service.list_plugins(ctx)

    @app.get("/plugins/{name}", response_model=PluginRecord, tags=["plugins"])
    def get_plugin(name: str) -> PluginRecord:
        """One plugin by name."""
        return plugins_service.show(ctx, name)

    @app.post(
        "/deployments",
        response_model=DeploymentView,
        status_code=201,
        dependencies=[Auth],
        tags=["deployments"],
    )
    async def create_deployment(
        request: DeploymentRequest, dry_run: bool = False
    ) -> DeploymentView | JSONResponse:
        """Store a deployment, render and commit its chart; it is applied in the background.

        With `?dry_run=true` nothing is stored: the answer (200) is a `DryRunAnswer`, the chart
        the request would give as a diff.
        """
        if dry_run:
            change = await run_in_threadpool(
                lambda: deployments_service.create(ctx, request, dry_run=True)
            )
            return _dry_run_answer(change)
        # The database work takes a thread; the wait for the round takes none, so a thread is
        # never parked while its request waits to be committed.
        created = await run_in_threadpool(deployments_service.create, ctx, request, render=False)
        view = created.deployment
        try:
            commit = await batcher.render_async()
        except Exception:  # the round failed: the row goes, unless a round committed its chart
            await run_in_threadpool(deployments_service.discard, ctx, view.id)
            raise
        worker.wake()
        return view.model_copy(update={"rendered_commit": commit})

    @app.get("/deployments", response_model=list[DeploymentView], tags=["deployments"])
    def list_deployments() -> list[DeploymentView]:
        """Live deployments, oldest first."""
        return deployments_service.list_deployments(ctx)

    @app.get("/deployments/{ident}", response_model=DeploymentView, tags=["deployments"])
    def get_deployment(ident: str) -> DeploymentView:
        """One deployment, by `id` or `deployment_id`; `status` moves to READY or FAILED."""
        return deployments_service.get(ctx, ident)

    @app.get("/deployments/{ident}/connect", response_model=ConnectionDetails, tags=["deployments"])
    def connect(ident: str) -> ConnectionDetails:
        """How to reach the deployment."""
        return ConnectionDetails(
            connection_details=deployments_service.connection_details(ctx, ident)
        )

    @app.patch(
        "/deployments/{ident}",
        response_model=DeploymentView,
        dependencies=[Auth],
        tags=["deployments"],
    )
    def update_deployment(
        ident: str, change: DeploymentUpdate, dry_run: bool = False
    ) -> DeploymentView | JSONResponse:
        """Change variables (`data`, `unset`), `tools`, `requirement` or `ttl_seconds`.

        The chart is re-rendered and committed before the answer, and the release upgraded in
        the background (status UPDATING until then). With `?dry_run=true` nothing is stored:
        the answer is a `DryRunAnswer`.
        """
        if dry_run:
            return _dry_run_answer(deployments_service.update(ctx, ident, change, dry_run=True))
        updated = deployments_service.update(ctx, ident, change).deployment
        worker.wake()
        return updated

    @app.delete(
        "/deployments/{ident}",
        response_model=DeploymentView,
        dependencies=[Auth],
        tags=["deployments"],
    )
    def delete_deployment(ident: str) -> DeploymentView:
        """Delete: the chart is removed in a commit, and the release uninstalled in the background."""
        view = deployments_service.delete(ctx, ident, render=False).deployment
        batcher.render()
        worker.wake()
        return view

    @app.post("/webhooks/{forge}", response_model=WebhookAnswer, tags=["review"])
    async def forge_webhook(forge: str, request: Request) -> WebhookAnswer:
        """A forge's pull-request event (review mode), verified by its signature (401 if not).

        Gitea and GitHub sign with HMAC-SHA256, GitLab sends its secret token; the secret is
        OVERSEER_WEBHOOK_SECRET. The pull request's state is read back from the forge.
        """
        body = await request.body()
        answer = await run_in_threadpool(
            lambda: review_service.webhook(
                ctx, forge, dict(request.headers), body, committed=worker.wake
            )
        )
        return WebhookAnswer.model_validate(answer)

    return app
