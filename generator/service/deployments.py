"""Creating, listing, showing, updating and deleting deployments."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from ..config import REVIEW
from ..errors import Conflict, NotFound, UnknownVariables, UserError
from ..ids import new_id, short_id
from ..manifest import parse_stored
from ..status import Status
from ..store import deployments as store
from ..store import plugins as plugin_store
from ..store import proposals, unanswered
from ..store import tokens as token_store
from ..store.db import Connection
from ..store.deployments import DeploymentRecord
from ..store.plugins import PluginRecord
from . import access, review, variables
from . import apply as apply_service
from . import diff as diff_service
from . import plugins as plugins_service
from . import render as render_service
from .access import Principal
from .context import Context
from .diff import ChartDiff
from .rows import DeploymentConfig, dump_config, load_config
from .views import DeploymentRequest, DeploymentUpdate, DeploymentView, view

MAX_RELEASE = 53


def release_name(plugin: str) -> str:
    """A fresh DNS-1123 release name of at most 53 characters: plugin name plus a random suffix.

    The plugin name may be shortened, never the suffix, so two names never collide by truncation;
    the unique constraint on deployment_id catches the rest.
    """
    suffix = short_id()  # CUID2: lower-case, starts with a letter
    head = plugin[: MAX_RELEASE - len(suffix) - 1].rstrip("-")
    return f"{head}-{suffix}"


@dataclass(frozen=True)
class Change:
    """A deployment after a create, update or delete, and the commit that rendered it, if any.

    `changed` is false for an update that asked for what the deployment already had.
    """

    deployment: DeploymentView
    commit: str | None
    changed: bool = True
    diff: list[ChartDiff] | None = None  # a dry run's answer
    replayed: bool = False  # a retry of an Idempotency-Key answered with its first deployment


@dataclass(frozen=True)
class Idempotency:
    """An `Idempotency-Key` and what it stands for: per token, one body, one deployment."""

    token: str
    key: str
    body_hash: str


@dataclass(frozen=True)
class Caller:
    """Who asks through the API: the token, the server holding the request, its key."""

    principal: Principal | None = None
    server: str | None = None  # until answered, the row is this server's (see `answers`)
    idempotency: Idempotency | None = None


def create(
    ctx: Context,
    request: DeploymentRequest,
    *,
    render: bool = True,
    dry_run: bool = False,
    caller: Caller | None = None,
) -> Change:
    """Validate the request against the plugin's manifest, store it, and render and commit it.

    The row is inserted, the charts rendered and committed, and only then the transaction
    committed, all under the repository's writer lock: a failure anywhere leaves no row and no
    commit, and no other render can see the chart before it sees the row. A `dry_run` stores
    nothing and answers the chart the request would give, as a diff.
    """
    caller = caller or Caller()
    if dry_run:
        return _dry_run(ctx, lambda conn: _insert(ctx, conn, request, caller))
    if caller.idempotency is not None:
        return _create_once(ctx, request, caller, caller.idempotency)
    # Not rendered here (the server's rounds do it), the row is the one write, and the insert
    # commits on its own: two round trips to PostgreSQL where a transaction takes four. Nor
    # need that commit wait for the disk when a server holds the request: it answers only after
    # its round's durable commit, whose `answered` mark finds the row (`store.insert`).
    with ctx.writer() if render else ctx.statements() as conn:
        record = _insert(ctx, conn, request, caller, durable=caller.server is None)
        if ctx.settings.mode == REVIEW:
            review.remember(ctx, conn, record, "create", access.who(caller.principal))
        if not render:
            return Change(view(record), None)
        commit = render_service.render(ctx, conn).commit
        return Change(_current(conn, record.id), commit)


def prepare(ctx: Context, request: DeploymentRequest, caller: Caller) -> dict[str, Any] | None:
    """A create's row, validated and named, for a server's round to insert and render at once.

    Its `store.insert_args`, or None when this process has no plugin to validate it against
    without the database (or when it must go through `create`: review mode, an Idempotency-Key).
    None too when the request fails validation: `create` then reads the plugin anew and says
    why. No database and no file here: it runs on the server's event loop.
    """
    if ctx.settings.mode == REVIEW or caller.idempotency is not None:
        return None
    namespace = request.namespace or ctx.settings.namespace
    access.require_namespace(ctx.settings, namespace, caller.principal)
    plugin = ctx.known_plugins.get(request.environment_type)
    if plugin is None:
        return None
    try:
        return _insert_args(ctx, request, plugin, namespace, caller)
    except UserError:
        plugins_service.forget(ctx, plugin.name)  # perhaps an old version's refusal
        return None


def stored_view(stored: dict[str, Any], commit: str | None) -> DeploymentView:
    """The answer to a create a round stored (`prepare`), with the commit that rendered it."""
    record = DeploymentRecord.model_validate(stored)
    return view(record).model_copy(update={"rendered_commit": commit})


def _create_once(
    ctx: Context, request: DeploymentRequest, caller: Caller, once: Idempotency
) -> Change:
    """Store the request unless its key was used: then answer the key's deployment (or 409)."""
    replay: tuple[str, str] | None = None
    with ctx.transaction() as conn:
        record = _insert(ctx, conn, request, caller)
        replay = token_store.claim_key(conn, once.token, once.key, once.body_hash, record.id)
        if replay is not None:
            raise psycopg.Rollback()  # the key's first request stands, not this row
        if ctx.settings.mode == REVIEW:
            review.remember(ctx, conn, record, "create", access.who(caller.principal))
    if replay is None:
        return Change(view(record), None)
    body_hash, dep_id = replay
    if body_hash != once.body_hash:
        raise Conflict(
            f'Idempotency-Key "{once.key}" was used with another body; use a new key for a new '
            "request"
        )
    return Change(get(ctx, dep_id), None, changed=False, replayed=True)


def _dry_run(ctx: Context, change: Callable[[Connection], DeploymentRecord | None]) -> Change:
    """Make a change in a transaction, diff the chart it gives against HEAD's, roll it back."""
    result: Change | None = None
    with ctx.transaction() as conn:
        record = change(conn)
        if record is None:  # an update that changes nothing
            raise psycopg.Rollback()
        preview = diff_service.preview(ctx, conn, record.id)
        result = Change(view(record), None, changed=bool(preview), diff=preview)
        raise psycopg.Rollback()  # nothing stored
    if result is None:
        raise UserError("nothing to change: the deployment already has these values")
    return result


def _insert(
    ctx: Context,
    conn: Connection,
    request: DeploymentRequest,
    caller: Caller,
    *,
    durable: bool = True,
) -> DeploymentRecord:
    namespace = request.namespace or ctx.settings.namespace
    access.require_namespace(ctx.settings, namespace, caller.principal)
    for _ in range(5):
        # Remembered from an earlier create: the insert stores the row only if the plugin is
        # still the one validated against, so a miss reads it again (or a new name is tried).
        plugin, remembered = plugins_service.for_create(ctx, conn, request.environment_type)
        try:
            args = _insert_args(ctx, request, plugin, namespace, caller)
        except UserError:
            if not remembered:
                raise
            plugins_service.forget(ctx, plugin.name)  # refused by what may be an old version
            continue
        record = store.insert(conn, args, durable)
        if record is not None:
            return record
        plugins_service.forget(ctx, plugin.name)  # a name taken, or the plugin changed meanwhile
    raise UserError(  # pragma: no cover - five tries, each a new name and the plugin read anew
        "could not store the deployment: its release names were taken, or its plugin kept "
        "changing meanwhile; retry"
    )


def _insert_args(
    ctx: Context, request: DeploymentRequest, plugin: PluginRecord, namespace: str, caller: Caller
) -> dict[str, Any]:
    """The request's row under a new release name, validated against `plugin`, to insert."""
    row = _row(ctx, request, plugin, namespace, caller)
    row["deployment_id"] = release_name(plugin.name)
    return store.insert_args(row, plugin)


def _row(
    ctx: Context, request: DeploymentRequest, plugin: PluginRecord, namespace: str, caller: Caller
) -> dict[str, Any]:
    manifest = parse_stored(plugin.manifest, plugin.name)
    plain, secret = variables.resolve(
        manifest, request.data, variables.secret_store(ctx, namespace)
    )
    variables.reaches_cluster(ctx, namespace, secret)
    config = DeploymentConfig(
        environment_type=request.environment_type,
        tools=request.tools,
        data=plain,
        secret_keys=sorted(secret),
        requirement=request.requirement,
        ttl_seconds=request.ttl_seconds,
    )
    return {
        "id": new_id(),
        "environment_type": plugin.name,
        "plugin_id": plugin.id,
        "status": Status.CREATING,
        "config": dump_config(config),
        "namespace": namespace,
        "secret_data": ctx.secrets.seal(secret),
        "ttl_seconds": request.ttl_seconds,
        "answer_pending": caller.server,
        "requested_by": access.who(caller.principal),
    }


def update(
    ctx: Context,
    ident: str,
    change: DeploymentUpdate,
    *,
    render: bool = True,
    dry_run: bool = False,
    principal: Principal | None = None,
) -> Change:
    """Change a live deployment's variables, tools, requirement or TTL; render and commit.

    The status becomes UPDATING until `apply` upgrades the release, also when only a secret
    changed (the chart then stays as it is: secret values reach the cluster only at apply).
    Variables the plugin's current version no longer declares are dropped, as a render after an
    upgrade does. An update that changes nothing stores nothing and commits nothing; a refused
    one changes neither the row nor the repository.

    Unlike `create`, the row is committed before the render, both under the writer lock. A render
    reads only rows changed since the last one's snapshot, so Git must never get ahead of the
    row: a commit whose row then rolled back would never be read again, never corrected. The
    other way round, a render that fails or is killed leaves a stored, changed row, which the
    next render reads and commits. A `dry_run` stores nothing and answers the diff it would give.
    """
    if dry_run:
        return _dry_run(ctx, lambda conn: _change_row(ctx, conn, ident, change, principal))
    with ctx.repo.lock():
        stored = _store_update(ctx, ident, change, principal)
        if stored is None:
            with ctx.transaction() as conn:
                unchanged = store.get(conn, ident)
            assert unchanged is not None  # noqa: S101 - found live a moment ago, under the lock
            return Change(view(unchanged), None, changed=False)
        if not render:
            return Change(view(stored), None)
        try:
            commit = render_service.render(ctx).commit
        except UserError as exc:  # same class, so the exit code and HTTP status stay
            exc.message = (
                f"deployment {stored.deployment_id} is updated, but rendering it failed: "
                f"{exc.for_cli() if exc.hint else exc.message}"
            )
            exc.hint = "the next `overseer render` commits it"
            exc.api_hint = "the server's next render commits it"
            exc.args = (exc.message,)
            raise
        with ctx.transaction() as conn:  # with its rendered_commit, and its pull request
            return Change(_current(conn, stored.id), commit)


def _store_update(
    ctx: Context, ident: str, change: DeploymentUpdate, principal: Principal | None
) -> DeploymentRecord | None:
    """Validate and store an update; None when it changes nothing."""
    with ctx.transaction() as conn:
        return _change_row(ctx, conn, ident, change, principal)


def _change_row(
    ctx: Context,
    conn: Connection,
    ident: str,
    change: DeploymentUpdate,
    principal: Principal | None = None,
) -> DeploymentRecord | None:
    """Validate an update and write it in `conn`'s transaction; None when it changes nothing."""
    record = store.get(conn, ident, for_update=True)
    if record is None:
        raise NotFound.deployment(ident)
    access.require_visible(principal, record.namespace)
    if record.deleted_at is not None:
        # A 409, not a 404: the deployment exists, and a delete (perhaps on another replica, at
        # the same moment) won. The update is refused whole; nothing of it is stored or committed.
        raise Conflict(f'deployment "{ident}" was deleted; create a new one instead')
    if not store.is_live(conn, record.id):
        raise NotFound(f'deployment "{ident}" has expired; create a new one instead')
    plugin = plugin_store.get_by_id(conn, record.plugin_id) if record.plugin_id else None
    if plugin is None:
        raise NotFound(f'the plugin of deployment "{ident}" is no longer registered')
    manifest = parse_stored(plugin.manifest, plugin.name)
    declared = [v.name for v in manifest.variables()]
    unknown = sorted(set(change.unset) - set(declared))
    if unknown:
        raise UnknownVariables(manifest.name, unknown, declared)
    both = sorted(set(change.unset) & set(change.data))
    if both:
        raise UserError(f"variable {', '.join(both)}: both set and unset; give one or the other")
    config = load_config(record.config)
    sealed = store.secret_data(conn, record.id)
    old_secret = ctx.secrets.open(sealed)
    store_of = variables.secret_store(ctx, record.namespace)
    kept = config.data if store_of is not None else {**config.data, **old_secret}
    values = {
        name: value for name, value in kept.items() if name in declared and name not in change.unset
    }
    plain, secret = variables.resolve(manifest, {**values, **change.data}, store_of)
    variables.reaches_cluster(ctx, record.namespace, secret)
    given = {k: getattr(change, k) for k in ("tools", "requirement", "ttl_seconds")}
    updated = config.model_copy(
        update={
            "data": plain,
            "secret_keys": sorted(secret),
            **{k: v for k, v in given.items() if v is not None},
        }
    )
    if updated == config and secret == old_secret and change.ttl_seconds is None:
        return None
    if ctx.settings.mode == REVIEW:
        review.remember(ctx, conn, record, "update", access.who(principal))
    stored = store.update(
        conn,
        record.id,
        dump_config(updated),
        sealed if secret == old_secret else ctx.secrets.seal(secret),
        change.ttl_seconds,
        access.who(principal),
    )
    if stored is None:  # its TTL ran out in the meantime
        raise NotFound(f'deployment "{ident}" has expired; create a new one instead')
    return stored


def get(ctx: Context, ident: str, principal: Principal | None = None) -> DeploymentView:
    """One deployment by id or deployment_id, with its latest pull request (review mode)."""
    with ctx.transaction() as conn:
        record = store.get(conn, ident)
        if record is None:
            raise NotFound.deployment(ident)
        access.require_visible(principal, record.namespace)
        return view(record, proposals.latest(conn, [record.id]).get(record.id))


def list_deployments(
    ctx: Context,
    *,
    include_gone: bool = False,
    where: store.Filter | None = None,
    principal: Principal | None = None,
) -> list[DeploymentView]:
    """Deployments, oldest first; `where` filters and pages; a token sees its namespaces only."""
    where = where or store.Filter()
    if principal is not None and principal.namespaces is not None:
        mine = principal.namespaces
        asked = where.namespaces
        where = dataclasses.replace(
            where, namespaces=[n for n in asked if n in mine] if asked is not None else mine
        )
    with ctx.transaction() as conn:
        records = store.list_all(conn, include_gone=include_gone, where=where)
        latest = proposals.latest(conn, [r.id for r in records])
        return [view(r, latest.get(r.id)) for r in records]


def delete(
    ctx: Context, ident: str, *, render: bool = True, principal: Principal | None = None
) -> Change:
    """Mark a deployment deleted, remove its chart in a commit, and uninstall its release.

    With `render` false only the row changes; `overseer render` and `overseer apply` finish later.
    """
    with ctx.writer(lock=render) as conn:
        record = store.get(conn, ident)
        if record is None:
            raise NotFound.deployment(ident)
        access.require_visible(principal, record.namespace)
        if record.deleted_at is not None:
            raise NotFound(f'deployment "{ident}" is already deleted')
        review_mode = ctx.settings.mode == REVIEW
        if review_mode:  # the release stays until the pull request that removes it is merged
            review.remember(ctx, conn, record, "delete", access.who(principal))
        deleted = store.mark_deleted(conn, record.id, access.who(principal))
        assert deleted is not None  # noqa: S101 - row locked by the update itself
        commit = render_service.render(ctx, conn).commit if render else None
    if render and not review_mode and deleted.helm_revision is not None:
        outcome = apply_service.uninstall(ctx, deleted)
        with ctx.transaction() as conn:
            deleted = store.get(conn, deleted.id) or deleted
        if outcome.action == "failed":
            raise UserError(
                f"deployment {deleted.deployment_id} is deleted and its chart removed, but helm could "
                f"not uninstall the release: {outcome.reason}",
                hint="`overseer apply` retries",
                api_hint="the server's applier retries",
            )
    with ctx.transaction() as conn:
        return Change(_current(conn, deleted.id), commit)


def _current(conn: Connection, dep_id: str) -> DeploymentView:
    record = store.get(conn, dep_id)
    assert record is not None  # noqa: S101 - rows are never removed but by `discard`
    return view(record, proposals.latest(conn, [dep_id]).get(dep_id))


def connection_details(
    ctx: Context, ident: str, principal: Principal | None = None
) -> dict[str, Any]:
    """How to reach a deployment: `<port>_port` per manifest port, service DNS, namespace, paths."""
    with ctx.transaction() as conn:
        record = store.get(conn, ident)
        plugin = (
            plugin_store.get_by_id(conn, record.plugin_id) if record and record.plugin_id else None
        )
    if record is None or plugin is None:
        raise NotFound.deployment(ident)
    access.require_visible(principal, record.namespace)
    manifest = parse_stored(plugin.manifest, plugin.name)
    # The chart's full name is the release name (see templates/chart/templates/_helpers.tpl).
    details: dict[str, Any] = {f"{p.name}_port": p.container_port for p in manifest.ports}
    details.update(
        deployment_id=record.deployment_id,
        namespace=record.namespace,
        service=f"{record.deployment_id}.{record.namespace}.svc.cluster.local",
        status=record.status,
    )
    if manifest.ingress is not None and manifest.ingress.enabled:
        details["ingress_host"] = manifest.ingress.host or ""
        details["ingress_paths"] = {p.path: p.service_port for p in manifest.ingress.paths}
    return details


def discard(ctx: Context, dep_id: str) -> bool:
    """Remove a deployment whose chart never reached Git (its request failed); whether it did.

    Under the writer lock, and only if the branch has no chart of it: a round that failed for
    another row, or a later round, may have committed this one's chart meanwhile, and a chart
    must not outlive its row. A deployment kept here is rendered and applied as any other.
    """
    with ctx.writer() as conn:
        record = store.get(conn, dep_id)
        if record is None:
            return True
        if ctx.repo.snapshot().tree_of(record.chart_path) is not None:
            return False
        store.discard(conn, dep_id)
        return True


def withdraw(ctx: Context, dep_id: str) -> None:
    """Delete a deployment whose request was never answered but whose chart was committed.

    The next render removes the chart, and the applier uninstalls whatever it installed of it.
    """
    with ctx.transaction() as conn:
        store.mark_deleted(conn, dep_id)
        unanswered.answered(conn, [dep_id])
