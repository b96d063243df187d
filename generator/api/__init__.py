"""The HTTP API from the specification, a thin layer over the same service functions as the CLI."""

from .app import create_app

__all__ = ["create_app"]
