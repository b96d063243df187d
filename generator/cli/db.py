"""`overseer db ...`: schema migrations and data fixes."""

from __future__ import annotations

import click

from ..service import plugins as service_plugins
from ..service.context import Context
from ..store import db as store_db
from ..store import migrate
from ..store.db import redact
from .common import table, with_context


@click.group("db")
def db() -> None:
    """Manage the database: its schema, and the embedded server's lifetime."""


@db.command("migrate")
@with_context
def migrate_(service: Context) -> None:
    """Apply pending migrations."""
    applied = migrate.apply(service.database_url)
    for mid in applied:
        click.echo(f"applied: {mid}")
    click.echo(f"database {redact(service.database_url)} is up to date")


@db.command("status")
@with_context
def status(service: Context) -> None:
    """Say whether the embedded server runs, and where; list migrations and whether each is applied.

    With DATABASE_URL set, only the migrations. An embedded server that is not running is not
    started for this.
    """
    if service.settings.database_url is None:
        pgdata = service.settings.pgdata
        pid = store_db.embedded_pid(pgdata)
        if pid is None:
            click.echo(
                f"embedded PostgreSQL: not running (data in {pgdata}); "
                "the next command that needs it starts it"
            )
            return
        click.echo(f"embedded PostgreSQL: running, pid {pid}, data in {pgdata}")
    states = migrate.status(service.database_url)
    table(["MIGRATION", "STATE"], [[s.id, "applied" if s.applied else "pending"] for s in states])


@db.command("stop")
@with_context
def stop(service: Context) -> None:
    """Stop the embedded PostgreSQL server (it keeps running between commands otherwise)."""
    if service.settings.database_url is not None:
        click.echo("DATABASE_URL is set: that server is not Overseer's to stop")
        return
    pgdata = service.settings.pgdata
    if store_db.stop_embedded(pgdata):
        click.echo(f"stopped the embedded PostgreSQL (data in {pgdata})")
    else:
        click.echo(f"the embedded PostgreSQL is not running (data in {pgdata})")


@db.command("backfill")
@with_context
def backfill(service: Context) -> None:
    """Set plugin_id on deployments whose environment_type names a registered plugin."""
    count = service_plugins.backfill(service)
    click.echo(f"linked {count} deployment(s) to their plugin")
