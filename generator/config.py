"""Where Overseer keeps its state, read once from the environment.

Every location has a default relative to the working directory, so a clone works with no setup:
`.overseer/` holds the embedded database and the secret key, `rendered/` is the GitOps repository.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_NAMESPACE = "a8s"


def _path(value: str | None) -> Path | None:
    return Path(value).absolute() if value else None


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
    git_remote: str | None = None
    branch_per_change: bool = False
    # checkout: the repository's files follow every commit (the CLI); lazy: only when a reader
    # asks (the server, whose requests need objects and a ref only). See gitops.worktree.
    # None: the caller's default (the CLI checks out, the server is lazy).
    worktree: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        """Read the OVERSEER_* variables, DATABASE_URL and KUBECONFIG."""
        env = os.environ
        return cls(
            home=Path(env.get("OVERSEER_HOME", ".overseer")).absolute(),
            repo=Path(env.get("OVERSEER_REPO", "rendered")).absolute(),
            database_url=env.get("DATABASE_URL") or None,
            secret_key=env.get("OVERSEER_SECRET_KEY") or None,
            namespace=env.get("OVERSEER_NAMESPACE", DEFAULT_NAMESPACE),
            kubeconfig=_path(env.get("OVERSEER_KUBECONFIG") or env.get("KUBECONFIG")),
            helm_timeout=env.get("OVERSEER_HELM_TIMEOUT", "300s"),
            apply_parallel=int(env.get("OVERSEER_APPLY_PARALLEL", "10")),
            git_remote=env.get("OVERSEER_GIT_REMOTE") or None,
            branch_per_change=env.get("OVERSEER_BRANCH_PER_CHANGE", "").lower()
            in ("1", "true", "yes"),
            worktree=env.get("OVERSEER_WORKTREE") or None,
        )

    def with_(self, **changes: object) -> Settings:
        """Return a copy with some fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]

    @property
    def pgdata(self) -> Path:
        """Data directory of the embedded PostgreSQL server."""
        return self.home / "pgdata"

    @property
    def secret_key_file(self) -> Path:
        """Generated Fernet key used when OVERSEER_SECRET_KEY is not set."""
        return self.home / "secret.key"
