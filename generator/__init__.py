"""Overseer: render plugin deployments into Helm charts and keep them in Git."""

__version__ = "0.1.0"
