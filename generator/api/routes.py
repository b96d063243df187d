"""The HTTP API's routes: each parses the request, calls one service function, shapes the answer.

They reach the process's resources (the service context, the render batcher, the applier)
through `served`, which `create_app` sets up, so a route can be addressed and tested on its own.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..manifest import MAX_MANIFEST_BYTES
from ..service import deployments as deployments_service
from ..service import plugins as plugins_service
from ..service import review as review_service
from ..service.batch import RenderBatcher
from ..service.context import Context
from ..service.deployments import DeploymentRequest, DeploymentUpdate, DeploymentView
from ..service.worker import Worker
from ..store.plugins import PluginRecord

router = APIRouter()


@dataclass(frozen=True)
class Server:
    """What the routes of one process share."""

    ctx: Context
    batcher: RenderBatcher
    worker: Worker


async def served(request: Request) -> Server:
    """The process's resources, as `create_app` left them on the application."""
    # async: FastAPI runs a plain function dependency in its thread pool, a thread hop for
    # every request; this one only reads an attribute.
    server: Server = request.app.state.server
    return server


Served = Annotated[Server, Depends(served)]


class ConnectionDetails(BaseModel):
    """`GET /deployments/{id}/connect`: one `<port>_port` per port, service DNS, namespace, paths."""

    connection_details: dict[str, Any]


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


async def authorised(request: Request) -> None:
    """Require the bearer token of the server's settings, when it has one (401 otherwise)."""
    # async, as `served` is: no thread hop for a comparison.
    token = (await served(request)).ctx.settings.api_token
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


@router.post("/plugins", response_model=PluginRecord, dependencies=[Auth], tags=["plugins"])
def register_plugin(
    server: Served,
    response: Response,
    manifest_file: Annotated[UploadFile, File(description="plugin.yaml")],
) -> PluginRecord:
    """Register a plugin manifest (idempotent; a higher version updates it).

    Advice about the manifest (a `latest` tag, no resource bounds) comes back in `Warning`
    headers, as the Kubernetes API sends its own, so kubectl-minded clients show them.
    """
    data = manifest_file.file.read(MAX_MANIFEST_BYTES + 1)
    registered = plugins_service.register_bytes(
        server.ctx, data, manifest_file.filename or "manifest_file"
    )
    for warning in registered.warnings:
        text = warning.replace("\\", "\\\\").replace('"', '\\"')
        response.headers.append("Warning", f'299 - "{text}"')
    return registered.plugin


@router.get("/plugins", response_model=list[PluginRecord], tags=["plugins"])
def list_plugins(server: Served) -> list[PluginRecord]:
    """Every registered plugin."""
    return plugins_service.list_plugins(server.ctx)


@router.get("/plugins/{name}", response_model=PluginRecord, tags=["plugins"])
def get_plugin(server: Served, name: str) -> PluginRecord:
    """One plugin by name."""
    return plugins_service.show(server.ctx, name)


@router.post(
    "/deployments",
    response_model=DeploymentView,
    status_code=201,
    dependencies=[Auth],
    tags=["deployments"],
)
async def create_deployment(
    server: Served, request: DeploymentRequest, dry_run: bool = False
) -> DeploymentView | JSONResponse:
    """Store a deployment, render and commit its chart; it is applied in the background.

    With `?dry_run=true` nothing is stored: the answer (200) is a `DryRunAnswer`, the chart
    the request would give as a diff.
    """
    if dry_run:
        change = await run_in_threadpool(
            lambda: deployments_service.create(server.ctx, request, dry_run=True)
        )
        return _dry_run_answer(change)
    # The database work takes a thread; the wait for the round takes none, so a thread is
    # never parked while its request waits to be committed.
    created = await run_in_threadpool(deployments_service.create, server.ctx, request, render=False)
    view = created.deployment
    try:
        commit = await server.batcher.render_async()
    except Exception:  # the round failed: the row goes, unless a round committed its chart
        await run_in_threadpool(deployments_service.discard, server.ctx, view.id)
        raise
    server.worker.wake()
    return view.model_copy(update={"rendered_commit": commit})


@router.get("/deployments", response_model=list[DeploymentView], tags=["deployments"])
def list_deployments(server: Served) -> list[DeploymentView]:
    """Live deployments, oldest first."""
    return deployments_service.list_deployments(server.ctx)


@router.get("/deployments/{ident}", response_model=DeploymentView, tags=["deployments"])
def get_deployment(server: Served, ident: str) -> DeploymentView:
    """One deployment, by `id` or `deployment_id`; `status` moves to READY or FAILED."""
    return deployments_service.get(server.ctx, ident)


@router.get("/deployments/{ident}/connect", response_model=ConnectionDetails, tags=["deployments"])
def connect(server: Served, ident: str) -> ConnectionDetails:
    """How to reach the deployment."""
    return ConnectionDetails(
        connection_details=deployments_service.connection_details(server.ctx, ident)
    )


@router.patch(
    "/deployments/{ident}",
    response_model=DeploymentView,
    dependencies=[Auth],
    tags=["deployments"],
)
def update_deployment(
    server: Served, ident: str, change: DeploymentUpdate, dry_run: bool = False
) -> DeploymentView | JSONResponse:
    """Change variables (`data`, `unset`), `tools`, `requirement` or `ttl_seconds`.

    The chart is re-rendered and committed before the answer, and the release upgraded in
    the background (status UPDATING until then). With `?dry_run=true` nothing is stored:
    the answer is a `DryRunAnswer`.
    """
    if dry_run:
        return _dry_run_answer(deployments_service.update(server.ctx, ident, change, dry_run=True))
    updated = deployments_service.update(server.ctx, ident, change).deployment
    server.worker.wake()
    return updated


@router.delete(
    "/deployments/{ident}",
    response_model=DeploymentView,
    dependencies=[Auth],
    tags=["deployments"],
)
def delete_deployment(server: Served, ident: str) -> DeploymentView:
    """Delete: the chart is removed in a commit, and the release uninstalled in the background."""
    view = deployments_service.delete(server.ctx, ident, render=False).deployment
    server.batcher.render()
    server.worker.wake()
    return view


@router.post("/webhooks/{forge}", response_model=WebhookAnswer, tags=["review"])
async def forge_webhook(server: Served, forge: str, request: Request) -> WebhookAnswer:
    """A forge's pull-request event (review mode), verified by its signature (401 if not).

    Gitea and GitHub sign with HMAC-SHA256, GitLab sends its secret token; the secret is
    OVERSEER_WEBHOOK_SECRET. The pull request's state is read back from the forge.
    """
    body = await request.body()
    answer = await run_in_threadpool(
        lambda: review_service.webhook(
            server.ctx, forge, dict(request.headers), body, committed=server.worker.wake
        )
    )
    return WebhookAnswer.model_validate(answer)
