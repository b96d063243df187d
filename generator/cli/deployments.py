"""`overseer deploy ...`: deployments of registered plugins."""

from __future__ import annotations

import os
from collections.abc import Callable

import click

from ..errors import UserError
from ..service import deployments as service_deployments
from ..service.context import Context
from ..service.deployments import Change
from ..service.views import DeploymentRequest, DeploymentUpdate, DeploymentView
from .common import emit_data, output_option, table, with_context
from .render import print_diffs


@click.group("deploy")
def deploy() -> None:
    """Create, inspect, update and delete deployments."""


def _parse_sets(sets: tuple[str, ...], set_env: tuple[str, ...]) -> dict[str, str]:
    data: dict[str, str] = {}
    for item in sets:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UserError(f"--set {item!r}: expected NAME=VALUE")
        data[name] = value
    for name in set_env:
        if name not in os.environ:
            raise UserError(f"--set-env {name}: the environment variable {name} is not set")
        data[name] = os.environ[name]
    return data


def _variable_options(command: Callable[..., None]) -> Callable[..., None]:
    """--set NAME=VALUE and --set-env NAME, shared by `deploy create` and `deploy update`."""
    command = click.option(
        "--set-env",
        multiple=True,
        metavar="NAME",
        help="Take variable NAME from the environment variable of that name, so secrets stay off the command line.",
    )(command)
    return click.option(
        "--set", "sets", multiple=True, metavar="NAME=VALUE", help="A variable value (repeatable)."
    )(command)


def _print_view(d: DeploymentView) -> None:
    table(
        ["FIELD", "VALUE"],
        [
            ["id", d.id],
            ["deployment_id", d.deployment_id],
            ["plugin", d.environment_type],
            ["namespace", d.namespace],
            ["status", d.status + (f" ({d.status_reason})" if d.status_reason else "")],
            ["chart", d.chart],
            ["tools", ", ".join(d.tools)],
            ["requirement", d.requirement],
            *[[f"data.{k}", v] for k, v in d.data.items()],
            ["ttl_seconds", d.ttl_seconds],
            ["expires_at", d.expires_at.isoformat() if d.expires_at else ""],
            ["created_at", d.created_at.isoformat()],
            ["rendered_commit", d.rendered_commit or ""],
            *(
                [["pull_request", f"#{pr.number} {pr.state} ({pr.change}) {pr.url or ''}".strip()]]
                if (pr := d.pull_request) is not None
                else []
            ),
        ],
    )


@deploy.command("create")
@click.argument("plugin")
@_variable_options
@click.option(
    "--tool",
    "tools",
    multiple=True,
    metavar="NAME",
    help="A tool for the environment (repeatable).",
)
@click.option("--requirement", default="", help="What the environment is for.")
@click.option(
    "--ttl",
    type=click.IntRange(min=1),
    default=None,
    metavar="SECONDS",
    help="Expire after SECONDS.",
)
@click.option(
    "--namespace", default=None, help="Kubernetes namespace [env OVERSEER_NAMESPACE; default a8s]."
)
@click.option("--no-render", is_flag=True, help="Only store the deployment; render later.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Store nothing: show the chart diff and the manifest diff this would give.",
)
@output_option
@with_context
def create(
    service: Context,
    plugin: str,
    sets: tuple[str, ...],
    set_env: tuple[str, ...],
    tools: tuple[str, ...],
    requirement: str,
    ttl: int | None,
    namespace: str | None,
    no_render: bool,
    dry_run: bool,
    output: str,
) -> None:
    """Deploy PLUGIN: store the deployment, render its chart and commit it."""
    try:
        request = DeploymentRequest(
            environment_type=plugin,
            tools=list(tools),
            data=_parse_sets(sets, set_env),
            requirement=requirement,
            ttl_seconds=ttl,
            namespace=namespace,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    change = service_deployments.create(service, request, render=not no_render, dry_run=dry_run)
    _print_change(service, change, output)


def _print_change(service: Context, change: Change, output: str) -> None:
    view = change.deployment
    if change.diff is not None:  # a dry run: the diff is the answer, and nothing was stored
        print_diffs(change.diff, "text" if output == "table" else output)
        if output == "table":
            click.echo(f"dry run: nothing stored ({len(change.diff)} chart(s) would change)")
        return
    if output != "table":
        emit_data(view, output)
        return
    _print_view(view)
    if change.commit:
        click.echo(f"\ncommitted {change.commit[:12]}: {service.settings.repo / view.chart}")
    _print_pull_request(view)


def _print_pull_request(view: DeploymentView) -> None:
    pull = view.pull_request
    if pull is not None and pull.state == "open":
        click.echo(
            f"proposed as pull request #{pull.number}: {pull.url}; "
            "nothing is applied until it is merged"
        )


@deploy.command("update")
@click.argument("ident", metavar="ID")
@_variable_options
@click.option(
    "--unset",
    multiple=True,
    metavar="NAME",
    help="Return an optional variable to its default (repeatable).",
)
@click.option(
    "--tool",
    "tools",
    multiple=True,
    metavar="NAME",
    help="Replace the tools with these (repeatable).",
)
@click.option("--requirement", default=None, help="A new requirement text.")
@click.option(
    "--ttl",
    type=click.IntRange(min=1),
    default=None,
    metavar="SECONDS",
    help="Expire SECONDS from now.",
)
@click.option("--no-render", is_flag=True, help="Only store the change; render later.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Store nothing: show the chart diff and the manifest diff this would give.",
)
@output_option
@with_context
def update(
    service: Context,
    ident: str,
    sets: tuple[str, ...],
    set_env: tuple[str, ...],
    unset: tuple[str, ...],
    tools: tuple[str, ...],
    requirement: str | None,
    ttl: int | None,
    no_render: bool,
    dry_run: bool,
    output: str,
) -> None:
    """Change a deployment's variables, tools, requirement or TTL; render and commit.

    The status becomes UPDATING until `overseer apply` upgrades the release. Nothing changes
    (no row, no commit) when the values given are the ones it already has.
    """
    try:
        request = DeploymentUpdate(
            data=_parse_sets(sets, set_env),
            unset=list(unset),
            tools=list(tools) if tools else None,
            requirement=requirement,
            ttl_seconds=ttl,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    change = service_deployments.update(
        service, ident, request, render=not no_render, dry_run=dry_run
    )
    _print_change(service, change, output)
    if output == "table" and not change.changed:
        click.echo("\nnothing changed")


@deploy.command("list")
@click.option("--all", "include_gone", is_flag=True, help="Include deleted deployments.")
@output_option
@with_context
def list_(service: Context, include_gone: bool, output: str) -> None:
    """List deployments."""
    views = service_deployments.list_deployments(service, include_gone=include_gone)
    if output != "table":
        emit_data(views, output)
        return
    # The pull request column appears once there is one (review mode).
    pulls = any(d.pull_request is not None for d in views)
    table(
        ["DEPLOYMENT_ID", "PLUGIN", "NAMESPACE", "STATUS", "CREATED", "ID"]
        + (["PULL_REQUEST"] if pulls else []),
        [
            [
                d.deployment_id,
                d.environment_type,
                d.namespace,
                d.status,
                d.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                d.id,
            ]
            + ([_pull_cell(d)] if pulls else [])
            for d in views
        ],
    )


def _pull_cell(d: DeploymentView) -> str:
    pr = d.pull_request
    return f"#{pr.number} {pr.state}" if pr is not None and pr.number is not None else ""


@deploy.command("show")
@click.argument("ident", metavar="ID")
@output_option
@with_context
def show(service: Context, ident: str, output: str) -> None:
    """Show one deployment (by id or deployment_id); secret values are redacted."""
    view = service_deployments.get(service, ident)
    if output != "table":
        emit_data(view, output)
        return
    _print_view(view)


@deploy.command("delete")
@click.argument("ident", metavar="ID")
@click.option(
    "--no-render", is_flag=True, help="Only mark it deleted; the next render removes the chart."
)
@with_context
def delete(service: Context, ident: str, no_render: bool) -> None:
    """Delete a deployment and remove its chart (a commit)."""
    change = service_deployments.delete(service, ident, render=not no_render)
    click.echo(f"deleted: {change.deployment.deployment_id}")
    if change.commit:
        click.echo(f"committed {change.commit[:12]}: removed {change.deployment.chart}")
    _print_pull_request(change.deployment)
