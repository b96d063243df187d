"""`overseer serve`: the HTTP API with uvicorn."""

from __future__ import annotations

import gc
import ipaddress
import socket

import click

from ..config import Settings
from ..errors import UserError
from ..service import access
from ..service.context import Context


def _loopback(host: str) -> bool:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        return False
    return all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--no-worker", is_flag=True, help="Serve only; do not apply or reap in the background."
)
def serve(host: str, port: int, no_worker: bool) -> None:
    """Run the HTTP API (the specification's endpoints) with a background apply worker and TTL reaper.

    Once tokens are in use (OVERSEER_API_TOKEN is set, or `overseer token create` made one),
    every route but /healthz, /openapi.json and /docs needs `Authorization: Bearer <token>`.
    Without tokens the server refuses to listen on anything but a loopback address.
    """
    settings = Settings.from_env()
    ctx = Context(settings)
    ctx.delivery  # noqa: B018 - a bad delivery file stops the start, not each request
    if not _loopback(host) and not access.tokens_in_use(ctx):
        raise UserError(
            f"refusing to listen on {host} without authentication: set OVERSEER_API_TOKEN or "
            "create a token (`overseer token create`), or listen on 127.0.0.1"
        )
    ctx.close()
    import uvicorn

    from ..api import create_app

    app = create_app(settings, background=not no_worker)
    # What is built by now lives as long as the server: kept out of the collector's full
    # passes, which paused every request in flight for up to 50 ms, and 3 ms once frozen. Its
    # garbage goes first: frozen, a cycle is never freed.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=30,
    )
