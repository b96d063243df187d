"""A deployment's lifecycle statuses: the words the database, the CLI and the API share."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """What `deployments.status` holds."""

    CREATING = "CREATING"  # stored, not yet on main (or on main, not yet applied)
    UPDATING = "UPDATING"  # its inputs changed; the release awaits the upgrade
    PROPOSED = "PROPOSED"  # review mode: a pull request holds the change; nothing is applied
    REJECTED = "REJECTED"  # review mode: the pull request was closed without merging
    APPLYING = "APPLYING"  # helm is at work on it
    READY = "READY"  # deployed, and every replica ready
    NOT_READY = "NOT_READY"  # deployed, some replica not ready
    FAILED = "FAILED"  # helm failed; the reason says why
    DELETED = "DELETED"
    EXPIRED = "EXPIRED"
