"""The `overseer` command line. Each command parses input and calls one service function."""

from __future__ import annotations

import click

from .. import __version__
from .apply import apply, connect, gc, status
from .common import OverseerGroup
from .db import db
from .deployments import deploy
from .plugins import plugin
from .render import diff, render, validate
from .secrets import secrets
from .serve import serve
from .tokens import token


@click.group(cls=OverseerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="overseer")
def main() -> None:
    """Overseer: plugin deployments rendered into Helm charts and committed to Git."""


main.add_command(plugin)
main.add_command(deploy)
main.add_command(render)
main.add_command(validate)
main.add_command(diff)
main.add_command(db)
main.add_command(apply)
main.add_command(status)
main.add_command(gc)
main.add_command(connect)
main.add_command(serve)
main.add_command(token)
main.add_command(secrets)
