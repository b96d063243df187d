"""`overseer apply`, `status`, `gc` and `connect`: the cluster side."""

from __future__ import annotations

import json
import sys

import click

from ..service import apply as apply_service
from ..service import deployments as service_deployments
from ..service.apply import Outcome
from ..service.context import Context
from .common import emit_data, output_option, table, with_context


def _report(outcomes: list[Outcome], output: str) -> None:
    if output != "table":
        emit_data([o.__dict__ for o in outcomes], output)
    elif outcomes:
        table(
            ["DEPLOYMENT_ID", "NAMESPACE", "ACTION", "STATUS", "REVISION", "REASON"],
            [
                [o.deployment_id, o.namespace, o.action, o.status, o.revision or "", o.reason or ""]
                for o in outcomes
            ],
        )
    else:
        click.echo("nothing to apply: every release matches its chart")


def _waiting() -> None:
    click.echo("waiting for another process that is applying (e.g. `overseer serve`)", err=True)


@click.command("apply")
@click.argument("deployments", nargs=-1, metavar="[DEPLOYMENT]...")
@click.option(
    "--recover",
    metavar="RELEASE",
    help="Roll a release stuck in pending-* back to its last deployed revision, then apply it.",
)
@click.option(
    "--ref",
    metavar="REF",
    help="Apply what this commit holds (a sha, a branch, a tag) instead of main.",
)
@click.option("--force", is_flag=True, help="Allow uninstalling most releases at once.")
@output_option
@with_context
def apply(
    service: Context,
    deployments: tuple[str, ...],
    recover: str | None,
    ref: str | None,
    force: bool,
    output: str,
) -> None:
    """Render, then install every chart of main that changed and uninstall those that left it.

    Charts are read from the remote's main (fetched; the local main without a remote), exactly as
    that commit holds them: a merged pull request, a revert or a hand edit all reach the cluster.
    In review mode the forge is asked first what became of the open pull requests. Named
    DEPLOYMENTs (id or deployment_id) are applied whether changed or not. Exits 1 when any
    release failed; the reason is recorded and shown by `overseer deploy show`.
    """
    with apply_service.exclusive(service, wait=_waiting):
        outcomes = apply_service.apply(
            service, deployments, recover=recover, ref=ref, force=force, settle=True
        )
    _report(outcomes, output)
    if any(o.action == "failed" for o in outcomes):
        sys.exit(1)


@click.command("status")
@click.argument("ident", required=False, metavar="[ID]")
@output_option
@with_context
def status(service: Context, ident: str | None, output: str) -> None:
    """Refresh status from the cluster: release state and workload readiness (READY, NOT_READY, FAILED)."""
    _report(apply_service.refresh(service, ident), output)


@click.command("gc")
@output_option
@with_context
def gc(service: Context, output: str) -> None:
    """Expire deployments past their TTL: status EXPIRED, chart removed, release uninstalled."""
    with apply_service.exclusive(service, wait=_waiting):
        outcomes = apply_service.gc(service)
    if not outcomes and output == "table":
        click.echo("nothing expired")
        return
    _report(outcomes, output)


@click.command("connect")
@click.argument("ident", metavar="ID")
@output_option
@with_context
def connect(service: Context, ident: str, output: str) -> None:
    """Print how to reach a deployment: one <port>_port per port, service DNS, namespace, ingress paths."""
    details = service_deployments.connection_details(service, ident)
    if output == "json":
        click.echo(json.dumps({"connection_details": details}, indent=2, sort_keys=True))
    elif output == "yaml":
        emit_data({"connection_details": details}, "yaml")
    else:
        table(
            ["KEY", "VALUE"],
            [[k, json.dumps(v) if isinstance(v, dict) else v] for k, v in sorted(details.items())],
        )
