"""Shared pieces of the CLI: option bundles, the service context, output and error handling."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml
from pydantic import BaseModel

from ..config import Settings
from ..errors import UserError
from ..service.context import Context

F = TypeVar("F", bound=Callable[..., Any])


class OverseerGroup(click.Group):
    """A group that turns user errors into a message on stderr and the error's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; UserError becomes `Error: ...` and its exit code."""
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"Error: {exc.for_cli()}", err=True)
            sys.exit(exc.exit_code)


def with_context(func: F) -> F:
    """Add --repo and --database-url, and pass a ready `Context` as `service`."""

    @click.option(
        "--repo",
        type=click.Path(file_okay=False, path_type=Path),
        help="GitOps repository the charts are rendered into [env OVERSEER_REPO; default ./rendered].",
    )
    @click.option(
        "--database-url",
        metavar="URL",
        help="PostgreSQL URL [env DATABASE_URL; default: the embedded server in .overseer/].",
    )
    @click.option(
        "--mode",
        type=click.Choice(["direct", "review"]),
        help="direct: commit to main; review: propose each change as a pull request [env OVERSEER_MODE; default direct].",
    )
    @functools.wraps(func)
    def wrapper(
        *args: Any, repo: Path | None, database_url: str | None, mode: str | None, **kwargs: Any
    ) -> Any:
        settings = Settings.from_env().with_(
            repo=repo.absolute() if repo else None, database_url=database_url, mode=mode
        )
        return func(*args, service=Context(settings), **kwargs)

    return wrapper  # type: ignore[return-value]


def output_option(func: F) -> F:
    """Add --output table|json|yaml."""
    return click.option(
        "--output",
        "-o",
        type=click.Choice(["table", "json", "yaml"]),
        default="table",
        show_default=True,
        help="Output format.",
    )(func)


def to_data(obj: Any) -> Any:
    """Models and lists of models as JSON-compatible data."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, list):
        return [to_data(o) for o in obj]
    return obj


def emit_data(obj: Any, fmt: str) -> None:
    """Print as JSON or YAML."""
    data = to_data(obj)
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        click.echo(yaml.safe_dump(data, sort_keys=True, allow_unicode=True), nl=False)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print aligned columns, kubectl style (no borders, so output is easy to grep)."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def progress_bar(label: str, enabled: bool) -> Any:
    """A rich progress bar on stderr, or None when disabled or stderr is not a terminal."""
    if not enabled or not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        f"[bold]{label}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
