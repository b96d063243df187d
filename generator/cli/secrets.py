"""`overseer secrets rotate-key`: re-seal the stored secret values with a new key."""

from __future__ import annotations

import click

from ..service import secret_keys
from ..service.context import Context
from .common import with_context


@click.group("secrets")
def secrets() -> None:
    """The key that seals secret values in the database."""


@secrets.command("rotate-key")
@with_context
def rotate_key(service: Context) -> None:
    """Re-seal every stored secret value with OVERSEER_SECRET_KEY.

    Set OVERSEER_SECRET_KEY to the new key and OVERSEER_SECRET_KEY_PREVIOUS to the old one, here
    and on every server, then run this. Interrupted, run it again: it goes on where it stopped.
    Once it has finished, OVERSEER_SECRET_KEY_PREVIOUS can be dropped.
    """
    count = secret_keys.rotate(service)
    click.echo(f"re-sealed {count} deployment(s) with the new key; the old key may now be dropped")
