"""Registering and managing plugins."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import Conflict, NotFound, UserError
from ..ids import new_id
from ..manifest import Manifest, advice, parse_manifest
from ..manifest.loader import MAX_MANIFEST_BYTES
from ..manifest.semver import compare
from ..store import deployments as deployment_store
from ..store import plugins as store
from ..store.db import Connection
from ..store.plugins import PluginRecord
from .context import Context
from .rows import load_config

Outcome = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class Registered:
    """The result of registering one manifest."""

    plugin: PluginRecord
    outcome: Outcome
    previous_version: str | None = None
    warnings: tuple[str, ...] = ()  # see `manifest.advice`


def for_create(ctx: Context, conn: Connection, name: str) -> tuple[PluginRecord, bool]:
    """The active plugin `name` to validate a create against, and whether it was remembered.

    Remembered from the last create: the insert stores its row only if the plugin is still this
    one (`deployments.insert`), and a caller whose insert stored nothing, or whose request this
    plugin refused, calls `forget` and asks again. A busy server so reads the plugin once, not
    once per request. NotFound when there is no such active plugin.
    """
    known = ctx.known_plugins.get(name)
    if known is not None:
        return known, True
    plugin = store.get(conn, name)
    if plugin is None or not plugin.is_active:
        raise NotFound.plugin(name, "is deactivated" if plugin else "is not registered")
    ctx.known_plugins[name] = plugin
    return plugin, False


def forget(ctx: Context, name: str) -> None:
    """Read plugin `name` again at the next create (it may have changed)."""
    ctx.known_plugins.pop(name, None)


def register_bytes(ctx: Context, data: bytes, source: str) -> Registered:
    """Validate and register one manifest."""
    manifest = parse_manifest(data, source)
    forget(ctx, manifest.name)  # this process's next create reads the version stored now
    with ctx.transaction() as conn:
        return _register(conn, manifest, data.decode("utf-8").removeprefix("\ufeff"))


def register_files(ctx: Context, paths: Sequence[Path]) -> list[Registered]:
    """Register several manifests, all or none: every file is validated before any is stored."""
    parsed: list[tuple[Manifest, str]] = []
    for path in paths:
        try:
            size = path.stat().st_size
            if size > MAX_MANIFEST_BYTES:
                data = path.read_bytes()[: MAX_MANIFEST_BYTES + 1]
            else:
                data = path.read_bytes()
        except OSError as exc:
            raise UserError(f"{path}: cannot read the manifest: {exc.strerror}") from None
        manifest = parse_manifest(data, str(path))
        parsed.append((manifest, data.decode("utf-8").removeprefix("\ufeff")))
    names = [m.name for m, _ in parsed]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"plugin(s) {', '.join(dupes)} given more than once; register each once")
    with ctx.transaction() as conn:
        return [_register(conn, m, text) for m, text in parsed]


def _register(conn: Connection, manifest: Manifest, text: str) -> Registered:
    registered = _store(conn, manifest, text)
    return dataclasses.replace(registered, warnings=tuple(advice(manifest)))


def _store(conn: Connection, manifest: Manifest, text: str) -> Registered:
    row = {
        "id": new_id(),
        "name": manifest.name,
        "version": manifest.version,
        "manifest": text,
        "image_name": manifest.image.name,
        "registry_url": manifest.image.registry,
    }
    created = store.insert(conn, row)
    if created is not None:
        store.backfill(conn, manifest.name)
        return Registered(created, "created")
    current = store.get(conn, manifest.name, for_update=True)
    assert current is not None  # noqa: S101 - the insert conflicted on this name
    stored = parse_manifest(current.manifest.encode(), f"stored plugin {manifest.name}")
    order = compare(manifest.version, current.version)
    if order == 0:
        if stored == manifest:
            return Registered(current, "unchanged")
        raise Conflict(
            f'plugin "{manifest.name}": version {manifest.version} is already registered with a '
            "different manifest; bump the version"
        )
    if order < 0:
        raise Conflict(
            f'plugin "{manifest.name}": version {manifest.version} is older than the registered '
            f"{current.version}; register a version above {current.version}"
        )
    _require_compatible(conn, current.id, manifest)
    return Registered(store.update_version(conn, row), "updated", current.version)


def _require_compatible(conn: Connection, plugin_id: str, manifest: Manifest) -> None:
    # Live deployments follow their plugin's version; one lacking a newly required variable
    # would render a chart that helm refuses, so the upgrade is refused instead.
    required = [v.name for v in manifest.variables() if v.required]
    lacking: dict[str, list[str]] = {}
    for release, config_text in deployment_store.live_configs(conn, plugin_id):
        config = load_config(config_text)
        supplied = set(config.data) | set(config.secret_keys)
        missing = [name for name in required if name not in supplied]
        if missing:
            lacking[release] = missing
    if lacking:
        names = sorted({n for m in lacking.values() for n in m})
        shown = ", ".join(sorted(lacking)[:5]) + (
            f" and {len(lacking) - 5} more" if len(lacking) > 5 else ""
        )
        raise Conflict(
            f'plugin "{manifest.name}": version {manifest.version} requires {", ".join(names)}, which '
            f"live deployment(s) {shown} lack; give the variable a default as an optional one, "
            "or delete those deployments first"
        )


def list_plugins(ctx: Context) -> list[PluginRecord]:
    """All plugins, active or not."""
    with ctx.transaction() as conn:
        return store.list_all(conn)


def show(ctx: Context, name: str) -> PluginRecord:
    """One plugin by name."""
    with ctx.transaction() as conn:
        plugin = store.get(conn, name)
    if plugin is None:
        raise NotFound.plugin(name)
    return plugin


def set_active(ctx: Context, name: str, active: bool) -> PluginRecord:
    """Activate or deactivate a plugin; a deactivated one accepts no new deployments."""
    forget(ctx, name)
    with ctx.transaction() as conn:
        plugin = store.set_active(conn, name, active)
    if plugin is None:
        raise NotFound.plugin(name)
    return plugin


def backfill(ctx: Context) -> int:
    """Link deployments to plugins by environment_type (the specification's backfill step)."""
    with ctx.transaction() as conn:
        return store.backfill(conn)
