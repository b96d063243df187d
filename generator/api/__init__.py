"""The HTTP API from the specification, a thin layer over the same service functions as the CLI."""

import os

from fastapi import FastAPI

from .app import create_app


def from_environment() -> FastAPI:
    """The application as `overseer serve` configures it, through the environment."""
    return create_app(background=os.environ.get("OVERSEER_BACKGROUND", "1") != "0")


__all__ = ["create_app", "from_environment"]
