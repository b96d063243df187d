"""`overseer token create|list|revoke`: the API's named tokens."""

from __future__ import annotations

import re
from datetime import timedelta

import click

from ..service import access
from ..service.context import Context
from .common import emit_data, output_option, table, with_context

_DURATION = re.compile(r"^(\d+)([hdw])$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def _duration(value: str | None) -> timedelta | None:
    if value is None:
        return None
    found = _DURATION.match(value)
    if not found or int(found[1]) == 0:
        raise click.BadParameter("give a duration such as 12h, 30d or 8w", param_hint="--expires")
    return timedelta(**{_UNITS[found[2]]: int(found[1])})


@click.group("token")
def token() -> None:
    """Named API tokens: scopes, namespaces, expiry; shown once, stored hashed."""


@token.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(access.SCOPES),
    help="read, deploy (and read) its namespaces' deployments, admin (plugins). Repeatable.",
)
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    help="A namespace it may read or deploy to (one of OVERSEER_ALLOWED_NAMESPACES). Repeatable.",
)
@click.option("--expires", metavar="DURATION", help="Expire after 12h, 30d, 8w...")
@output_option
@with_context
def create(
    service: Context,
    name: str,
    scopes: tuple[str, ...],
    namespaces: tuple[str, ...],
    expires: str | None,
    output: str,
) -> None:
    """Create a token; its value is printed this once, and never stored."""
    record, value = access.create(service, name, scopes, namespaces, expires_in=_duration(expires))
    if output != "table":
        emit_data({**record.model_dump(mode="json"), "token": value}, output)
        return
    click.echo(value)
    click.echo(
        f"created token {record.name} ({', '.join(record.scopes)} in "
        f"{', '.join(record.namespaces) or 'no namespace'}); the value above is shown once",
        err=True,
    )


@token.command("list")
@output_option
@with_context
def list_(service: Context, output: str) -> None:
    """List tokens with their scopes, namespaces, expiry and revocation (never a value)."""
    records = access.list_tokens(service)
    if output != "table":
        emit_data(records, output)
        return
    table(
        ["NAME", "SCOPES", "NAMESPACES", "EXPIRES", "REVOKED"],
        [
            [
                r.name,
                ",".join(r.scopes),
                ",".join(r.namespaces) or "-",
                r.expires_at.isoformat(timespec="seconds") if r.expires_at else "never",
                r.revoked_at.isoformat(timespec="seconds") if r.revoked_at else "-",
            ]
            for r in records
        ],
    )


@token.command("revoke")
@click.argument("name")
@with_context
def revoke(service: Context, name: str) -> None:
    """Revoke a token; servers refuse it within seconds."""
    record = access.revoke(service, name)
    click.echo(f"revoked: {record.name}")
