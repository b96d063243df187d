"""Where Overseer keeps its state, read once from the environment.

Every location has a default relative to the working directory, so a clone works with no setup:
`.overseer/` holds the embedded database and the secret key, `rendered/` is the GitOps repository.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import UserError

DEFAULT_NAMESPACE = "a8s"
DIRECT, REVIEW = "direct", "review"


def _path(value: str | None) -> Path | None:
    return Path(value).absolute() if value else None


def _secret(env: Mapping[str, str], name: str) -> str | None:
    # NAME, or the file NAME_FILE names (a mounted Kubernetes Secret, a CI secret file).
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise UserError(f"{name}_FILE={path}: cannot read it ({exc.strerror})") from None
    return None


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise UserError(f"{name}={value!r}: give a number of seconds above 0")
    return seconds


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"{name}={value!r}: give a whole number, at least 1")
    return int(value)


def _bytes(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if not value:
        return default
    if not value.isdigit() or int(value) < 1024:
        raise UserError(f"{name}={value!r}: give a number of bytes, at least 1024")
    return int(value)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = (env.get(name) or "").strip().lower()
    if not value:
        return default
    if value not in ("true", "false", "1", "0"):
        raise UserError(f"{name}={env[name]!r}: give true or false")
    return value in ("true", "1")


def _mode(value: str) -> str:
    if value not in (DIRECT, REVIEW):
        raise UserError(
            f"OVERSEER_MODE={value!r}: use {DIRECT} (commit to main) or {REVIEW} (pull requests)"
        )
    return value


# kube-score checks `overseer validate` skips unless told otherwise, each for a reason
# (docs/chart.md#kube-score): an environment is one pod by design; a user and group id above
# 10000 and a read-only root depend on the image, so a manifest opts in through `security`.
SCORE_SKIP = (
    "deployment-replicas",
    "container-security-context-user-group-id",
    "container-security-context-readonlyrootfilesystem",
)


def _names(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    return tuple(sorted({n.strip() for n in value.split(",") if n.strip()}))


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Build it with `Settings.from_env()` and override with `with_()`."""

    home: Path
    repo: Path
    database_url: str | None
    secret_key: str | None
    namespace: str
    kubeconfig: Path | None = None
    helm_timeout: str = "300s"
    apply_parallel: int = 10
    # helm --create-namespace: off where Overseer may deploy only into namespaces that exist
    # (a ServiceAccount without the right to create them, as the chart's default).
    create_namespaces: bool = True
    git_remote: str | None = None
    # checkout: the repository's files follow every commit (the CLI); lazy: only when a reader
    # asks (the server, whose requests need objects and a ref only). See gitops.worktree.
    # None: the caller's default (the CLI checks out, the server is lazy).
    worktree: str | None = None
    # direct: commit to main and apply; review: propose each change as a pull request on the
    # forge, and apply it once merged (see service.review).
    mode: str = DIRECT
    forge: str | None = None  # gitea, github or gitlab
    forge_url: str | None = None  # the forge's API root; None: the public service's
    forge_repo: str | None = None  # owner/name (GitLab: the project's path)
    forge_token: str | None = None
    webhook_secret: str | None = None
    # Seconds between two polls of the forge for merged and closed pull requests.
    poll_interval: float = 30.0
    api_token: str | None = None  # what the API's mutating endpoints require, when set
    worker_interval: float = 2.0  # seconds between two passes of the server's applier
    log_level: str = "info"  # the server's (uvicorn's) log level
    score_skip: tuple[str, ...] = SCORE_SKIP  # kube-score checks `overseer validate` accepts
    secret_key_previous: tuple[str, ...] = ()  # keys that still open values while rotating
    # The namespaces any deployment may name; None: just `namespace`. kube-* and default never.
    allowed_namespaces: tuple[str, ...] | None = None
    body_limit: int = 2 * 1024 * 1024  # bytes of a request body the API reads at most
    rate_limit: str = "50/second"  # per named token (the `limits` library's notation)
    # The delivery file: engine files for Argo CD or Flux, and how each namespace's secret
    # values travel (docs/delivery.md). None: no engine files, secrets only through apply.
    delivery_file: Path | None = None

    @classmethod
    def from_env(cls) -> Settings:
        """Read the OVERSEER_* variables, DATABASE_URL and KUBECONFIG."""
        env = os.environ
        return cls(
            home=Path(env.get("OVERSEER_HOME", ".overseer")).absolute(),
            repo=Path(env.get("OVERSEER_REPO", "rendered")).absolute(),
            database_url=env.get("DATABASE_URL") or None,
            secret_key=_secret(env, "OVERSEER_SECRET_KEY"),
            namespace=env.get("OVERSEER_NAMESPACE", DEFAULT_NAMESPACE),
            kubeconfig=_path(env.get("OVERSEER_KUBECONFIG") or env.get("KUBECONFIG")),
            helm_timeout=env.get("OVERSEER_HELM_TIMEOUT", "300s"),
            apply_parallel=_count(env, "OVERSEER_APPLY_PARALLEL", 10),
            create_namespaces=_flag(env, "OVERSEER_CREATE_NAMESPACES", True),
            git_remote=env.get("OVERSEER_GIT_REMOTE") or None,
            worktree=env.get("OVERSEER_WORKTREE") or None,
            mode=_mode(env.get("OVERSEER_MODE") or DIRECT),
            forge=env.get("OVERSEER_FORGE") or None,
            forge_url=env.get("OVERSEER_FORGE_URL") or None,
            forge_repo=env.get("OVERSEER_FORGE_REPO") or None,
            forge_token=_secret(env, "OVERSEER_FORGE_TOKEN"),
            webhook_secret=_secret(env, "OVERSEER_WEBHOOK_SECRET"),
            poll_interval=_seconds(env, "OVERSEER_POLL_INTERVAL", 30),
            api_token=_secret(env, "OVERSEER_API_TOKEN"),
            worker_interval=_seconds(env, "OVERSEER_WORKER_INTERVAL", 2),
            log_level=env.get("OVERSEER_LOG_LEVEL") or "info",
            score_skip=_names(env.get("OVERSEER_SCORE_SKIP"), SCORE_SKIP),
            secret_key_previous=tuple(
                k.strip()
                for k in (_secret(env, "OVERSEER_SECRET_KEY_PREVIOUS") or "").split(",")
                if k.strip()
            ),
            allowed_namespaces=_names(env.get("OVERSEER_ALLOWED_NAMESPACES"), ()) or None,
            body_limit=_bytes(env, "OVERSEER_BODY_LIMIT", 2 * 1024 * 1024),
            rate_limit=env.get("OVERSEER_RATE_LIMIT") or "50/second",
            delivery_file=_path(env.get("OVERSEER_DELIVERY")),
        )

    def with_(self, **changes: object) -> Settings:
        """Return a copy with some fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The namespaces deployments may name (OVERSEER_ALLOWED_NAMESPACES, else `namespace`)."""
        return self.allowed_namespaces or (self.namespace,)

    @property
    def pgdata(self) -> Path:
        """Data directory of the embedded PostgreSQL server."""
        return self.home / "pgdata"

    @property
    def secret_key_file(self) -> Path:
        """Generated Fernet key used when OVERSEER_SECRET_KEY is not set."""
        return self.home / "secret.key"
