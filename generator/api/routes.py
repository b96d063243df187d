"""The HTTP API's routes: each parses the request, calls one service function, shapes the answer.

They reach the process's resources (the service context, the render batcher, the applier)
through `served`, which `create_app` sets up, so a route can be addressed and tested on its own.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Header, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ..errors import RenderFailed, UserError
from ..manifest import MAX_MANIFEST_BYTES
from ..service import access
from ..service import deployments as deployments_service
from ..service import plugins as plugins_service
from ..service import review as review_service
from ..service.access import Principal
from ..service.batch import RenderBatcher
from ..service.context import Context
from ..service.deployments import Idempotency
from ..service.health import Readiness
from ..service.views import DeploymentRequest, DeploymentUpdate, DeploymentView
from ..service.worker import Worker
from ..status import Status
from ..store.deployments import Filter
from ..store.plugins import PluginRecord

router = APIRouter()


@dataclass(frozen=True)
class Server:
    """What the routes of one process share."""

    ctx: Context
    batcher: RenderBatcher
    worker: Worker
    server_id: str  # marks the rows whose requests this process has yet to answer
    readiness: Readiness


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


async def principal(request: Request) -> Principal | None:
    """Who asks, as the guard found it; None while no tokens are in use."""
    found: Principal | None = request.scope.get("state", {}).get("principal")
    return found


Asker = Annotated[Principal | None, Depends(principal)]  # the token, once tokens are in use


def needs(scope: str) -> Any:
    """A dependency that refuses (403) a token without `scope`."""

    async def check(request: Request) -> None:
        access.require_scope(await principal(request), scope)

    return Depends(check)


@router.get("/healthz", tags=["health"])
def healthz(server: Served) -> dict[str, str]:
    """Alive, and its database answers (503 otherwise); needs no token."""
    with server.ctx.statements() as conn:
        conn.execute("SELECT 1")
    return {"status": "ok"}


@router.get("/livez", tags=["health"])
async def livez() -> dict[str, str]:
    """The process answers, and nothing else is asked; needs no token.

    For liveness probes: a database outage must not restart every replica.
    """
    return {"status": "ok"}


@router.get("/readyz", tags=["health"])
def readyz(server: Served) -> dict[str, str]:
    """Ready to take writes: the database answers, and the Git remote when one is set.

    503 otherwise, naming which; needs no token.
    """
    return server.readiness.check()


@router.post(
    "/plugins", response_model=PluginRecord, dependencies=[needs(access.ADMIN)], tags=["plugins"]
)
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
    dependencies=[needs(access.DEPLOY)],
    tags=["deployments"],
)
async def create_deployment(
    server: Served,
    caller: Asker,
    request: DeploymentRequest,
    response: Response,
    dry_run: bool = False,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=255,
            description="Retries with the same key and body answer the same deployment.",
        ),
    ] = None,
) -> DeploymentView | JSONResponse:
    """Store a deployment, render and commit its chart; it is applied in the background.

    With `?dry_run=true` nothing is stored: the answer (200) is a `DryRunAnswer`, the chart
    the request would give as a diff. With an `Idempotency-Key`, a retry of the same body
    answers the first request's deployment (200, `Idempotent-Replayed: true`); another body
    under the same key is a 409.
    """
    once = None
    if idempotency_key is not None:
        body = json.dumps(request.model_dump(mode="json"), sort_keys=True).encode()
        name = caller.name if caller is not None else ""
        once = Idempotency(name, idempotency_key, hashlib.sha256(body).hexdigest())
    who = deployments_service.Caller(caller, server.server_id, once)
    if dry_run:
        change = await run_in_threadpool(
            lambda: deployments_service.create(server.ctx, request, dry_run=True, caller=who)
        )
        return _dry_run_answer(change)
    # Validated here, with the plugin this process remembers, and then stored by the round that
    # renders it, in its own transaction: no thread and no database work of the request's own.
    args = deployments_service.prepare(server.ctx, request, who)
    if args is not None:
        # A round that failed stored no row, or stored it with its chart (it died once its
        # transaction was committed). Only a follower replica's writer stores its rows before
        # the round; it takes them back when the round fails, and here when it died.
        try:
            stored, commit = await server.batcher.create_async(args)
        except RenderFailed:
            await run_in_threadpool(deployments_service.discard, server.ctx, args["id"])
            raise
        if stored is not None:
            server.worker.wake()
            return deployments_service.stored_view(stored, commit)
    # Otherwise the database work takes a thread; the wait for the round takes none, so a
    # thread is never parked while its request waits to be committed.
    created = await run_in_threadpool(
        lambda: deployments_service.create(server.ctx, request, render=False, caller=who)
    )
    view = created.deployment
    if created.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
        return view
    try:
        # Once the round is committed, it also says in the database that this request is
        # answered: from then on the deployment stands, even if this server dies before the
        # answer is out.
        commit = await server.batcher.render_async(answering=view.id)
    except Exception:  # the round failed: the row goes, unless a round committed its chart
        await run_in_threadpool(deployments_service.discard, server.ctx, view.id)
        raise
    server.worker.wake()
    return view.model_copy(update={"rendered_commit": commit})


@router.get(
    "/deployments",
    response_model=list[DeploymentView],
    dependencies=[needs(access.READ)],
    tags=["deployments"],
)
def list_deployments(
    server: Served,
    caller: Asker,
    request: Request,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 100,
    after: Annotated[str | None, Query(description="The cursor of the page before.")] = None,
    namespace: Annotated[list[str] | None, Query(description="Only these namespaces.")] = None,
    plugin: Annotated[str | None, Query(description="Only this plugin.")] = None,
    status: Annotated[Status | None, Query(description="Only this status.")] = None,
) -> list[DeploymentView]:
    """Live deployments, oldest first, a page at a time; a token sees its namespaces only.

    When there are more, `Link: <...>; rel="next"` gives the next page's URL.
    """
    where = Filter(
        namespaces=namespace,
        plugin=plugin,
        status=status,
        after=_cursor(after) if after else None,
        limit=limit + 1,
    )
    found = deployments_service.list_deployments(server.ctx, where=where, principal=caller)
    page = found[:limit]
    if len(found) > limit:
        last = page[-1]
        token = base64.urlsafe_b64encode(f"{last.created_at.isoformat()}|{last.id}".encode())
        following = request.url.include_query_params(after=token.decode())
        response.headers["Link"] = f'<{following}>; rel="next"'
    return page


def _cursor(value: str) -> tuple[datetime, str]:
    try:
        stamp, _, ident = base64.urlsafe_b64decode(value.encode()).decode().partition("|")
        return datetime.fromisoformat(stamp), ident
    except ValueError:
        raise UserError(
            "after: not a cursor this server gave; use the Link header of the page before"
        ) from None


@router.get(
    "/deployments/{ident}",
    response_model=DeploymentView,
    dependencies=[needs(access.READ)],
    tags=["deployments"],
)
def get_deployment(server: Served, caller: Asker, ident: str) -> DeploymentView:
    """One deployment, by `id` or `deployment_id`; `status` moves to READY or FAILED."""
    return deployments_service.get(server.ctx, ident, caller)


@router.get(
    "/deployments/{ident}/connect",
    response_model=ConnectionDetails,
    dependencies=[needs(access.READ)],
    tags=["deployments"],
)
def connect(server: Served, caller: Asker, ident: str) -> ConnectionDetails:
    """How to reach the deployment."""
    return ConnectionDetails(
        connection_details=deployments_service.connection_details(server.ctx, ident, caller)
    )


@router.patch(
    "/deployments/{ident}",
    response_model=DeploymentView,
    dependencies=[needs(access.DEPLOY)],
    tags=["deployments"],
)
def update_deployment(
    server: Served, caller: Asker, ident: str, change: DeploymentUpdate, dry_run: bool = False
) -> DeploymentView | JSONResponse:
    """Change variables (`data`, `unset`), `tools`, `requirement` or `ttl_seconds`.

    The chart is re-rendered and committed before the answer, and the release upgraded in
    the background (status UPDATING until then). With `?dry_run=true` nothing is stored:
    the answer is a `DryRunAnswer`.
    """
    if dry_run:
        return _dry_run_answer(
            deployments_service.update(server.ctx, ident, change, dry_run=True, principal=caller)
        )
    updated = deployments_service.update(server.ctx, ident, change, principal=caller).deployment
    server.worker.wake()
    return updated


@router.delete(
    "/deployments/{ident}",
    response_model=DeploymentView,
    dependencies=[needs(access.DEPLOY)],
    tags=["deployments"],
)
def delete_deployment(server: Served, caller: Asker, ident: str) -> DeploymentView:
    """Delete: the chart is removed in a commit, and the release uninstalled in the background."""
    view = deployments_service.delete(server.ctx, ident, render=False, principal=caller).deployment
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
