"""`overseer plugin ...`: the plugin registry."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..manifest.schema import manifest_schema
from ..service import plugins as service_plugins
from ..service.context import Context
from .common import emit_data, output_option, table, with_context


@click.group("plugin")
def plugin() -> None:
    """Register and manage plugin manifests."""


@plugin.command("register")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@output_option
@with_context
def register(service: Context, files: tuple[Path, ...], output: str) -> None:
    """Register plugin manifests (all or none). Re-registering the same manifest is a no-op."""
    results = service_plugins.register_files(service, list(files))
    for r in results:
        for warning in r.warnings:
            click.echo(f'warning: plugin "{r.plugin.name}": {warning}', err=True)
    if output != "table":
        emit_data(
            [{"outcome": r.outcome, "plugin": r.plugin.model_dump(mode="json")} for r in results],
            output,
        )
        return
    for r in results:
        extra = f" (was {r.previous_version})" if r.previous_version else ""
        click.echo(f"{r.outcome}: {r.plugin.name} {r.plugin.version}{extra} id={r.plugin.id}")


@plugin.command("list")
@output_option
@with_context
def list_(service: Context, output: str) -> None:
    """List registered plugins."""
    plugins = service_plugins.list_plugins(service)
    if output != "table":
        emit_data(plugins, output)
        return
    table(
        ["NAME", "VERSION", "IMAGE", "REGISTRY", "ACTIVE", "ID"],
        [
            [p.name, p.version, p.image_name, p.registry_url, "yes" if p.is_active else "no", p.id]
            for p in plugins
        ],
    )


@plugin.command("show")
@click.argument("name")
@output_option
@with_context
def show(service: Context, name: str, output: str) -> None:
    """Show one plugin and its manifest."""
    p = service_plugins.show(service, name)
    if output != "table":
        emit_data(p, output)
        return
    table(
        ["FIELD", "VALUE"],
        [
            ["name", p.name],
            ["version", p.version],
            ["id", p.id],
            ["image", p.image_name],
            ["registry", p.registry_url],
            ["active", "yes" if p.is_active else "no"],
            ["created", p.created_at.isoformat()],
            ["updated", p.updated_at.isoformat()],
        ],
    )
    click.echo("")
    click.echo(p.manifest, nl=not p.manifest.endswith("\n"))


@plugin.command("deactivate")
@click.argument("name")
@with_context
def deactivate(service: Context, name: str) -> None:
    """Stop accepting new deployments of a plugin (existing ones stay)."""
    p = service_plugins.set_active(service, name, False)
    click.echo(f"deactivated: {p.name} {p.version}")


@plugin.command("activate")
@click.argument("name")
@with_context
def activate(service: Context, name: str) -> None:
    """Accept new deployments of a plugin again."""
    p = service_plugins.set_active(service, name, True)
    click.echo(f"activated: {p.name} {p.version}")


@plugin.command("schema")
def schema() -> None:
    """Print the JSON Schema of plugin manifests (for editors)."""
    click.echo(json.dumps(manifest_schema(), indent=2, sort_keys=True))
