"""What the API and the CLI send and receive about deployments: requests, changes and views.

Secret values are always redacted in a view.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ..manifest.model import DNS1123_LABEL
from ..status import Status
from ..store.deployments import DeploymentRecord
from ..store.proposals import ProposalRecord
from .rows import load_config

REDACTED = "<redacted>"

DnsLabel = Annotated[str, StringConstraints(pattern=DNS1123_LABEL, max_length=63)]
Tool = Annotated[str, StringConstraints(min_length=1, max_length=253)]
MAX_TTL = 10 * 365 * 24 * 3600


def _reject_nul(texts: list[str]) -> None:
    # PostgreSQL text cannot hold NUL, and no environment variable can either.
    if any("\x00" in t for t in texts):
        raise ValueError("text fields must not contain NUL (\\x00) bytes")


class DeploymentRequest(BaseModel):
    """A request to deploy a plugin (the HTTP API's POST /deployments body)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    environment_type: str = Field(min_length=1, max_length=255, description="Plugin name.")
    tools: list[Tool] = Field(default_factory=list, max_length=100)
    data: dict[str, str] = Field(default_factory=dict, description="Variable values.")
    requirement: str = Field(default="", max_length=4096)
    ttl_seconds: int | None = Field(default=None, gt=0, le=MAX_TTL)
    namespace: DnsLabel | None = None

    @model_validator(mode="after")
    def _no_nul(self) -> DeploymentRequest:
        _reject_nul(
            [self.environment_type, self.requirement, *self.tools, *self.data, *self.data.values()]
        )
        return self


class DeploymentUpdate(BaseModel):
    """Changes to a live deployment (PATCH /deployments/{id}); what is left out stays as it is."""

    model_config = ConfigDict(extra="forbid", strict=True)

    data: dict[str, str] = Field(default_factory=dict, description="Variable values to set.")
    unset: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="Optional variables to return to their defaults (or leave unset).",
    )
    tools: list[Tool] | None = Field(default=None, max_length=100, description="Replaces the list.")
    requirement: str | None = Field(default=None, max_length=4096)
    ttl_seconds: int | None = Field(
        default=None, gt=0, le=MAX_TTL, description="Expire this many seconds from now."
    )

    @model_validator(mode="after")
    def _no_nul(self) -> DeploymentUpdate:
        _reject_nul(
            [
                self.requirement or "",
                *(self.tools or []),
                *self.unset,
                *self.data,
                *self.data.values(),
            ]
        )
        return self


class PullRequestView(BaseModel):
    """The pull request of a deployment's latest proposed change (review mode)."""

    number: int | None
    url: str | None
    state: str  # pending (not opened yet), open, merged, closed, superseded
    change: str  # create, update, delete, expire, upgrade


class DeploymentView(BaseModel):
    """A deployment as shown to users: secret values are always redacted."""

    id: str
    deployment_id: str
    environment_type: str
    plugin_id: str | None
    namespace: str
    status: Status
    status_reason: str | None
    tools: list[str]
    requirement: str
    data: dict[str, str]
    ttl_seconds: int | None
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    rendered_commit: str | None
    chart: str
    pull_request: PullRequestView | None = None


def view(record: DeploymentRecord, proposal: ProposalRecord | None = None) -> DeploymentView:
    """The user-facing form of a stored deployment."""
    config = load_config(record.config)
    data = dict(config.data)
    data.update(dict.fromkeys(config.secret_keys, REDACTED))
    return DeploymentView(
        **record.model_dump(
            exclude={
                "config",
                "applied_commit",
                "helm_revision",
                "secret_revision",
                "applied_secret_revision",
                "applied_tree",
            }
        ),
        tools=config.tools,
        requirement=config.requirement,
        data=dict(sorted(data.items())),
        chart=record.chart_path,
        pull_request=PullRequestView(
            number=proposal.number, url=proposal.url, state=proposal.state, change=proposal.kind
        )
        if proposal is not None
        else None,
    )
