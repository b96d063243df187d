"""`overseer db ...`: schema migrations and data fixes."""

from __future__ import annotations

import click

from ..service import plugins as service_plugins
from ..service.context import Context
from ..store import migrate
from ..store.db import redact
from .common import table, with_context


@click.group("db")
def db() -> None:
    """Manage the database schema."""


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
    """List migrations and whether each is applied."""
    states = migrate.status(service.database_url)
    table(["MIGRATION", "STATE"], [[s.id, "applied" if s.applied else "pending"] for s in states])


@db.command("backfill")
@with_context
def backfill(service: Context) -> None:
    """Set plugin_id on deployments whose environment_type names a registered plugin."""
    count = service_plugins.backfill(service)
    click.echo(f"linked {count} deployment(s) to their plugin")
