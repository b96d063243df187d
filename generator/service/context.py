"""What every service call needs: settings, the database, the secret box, the GitOps repo.

The CLI builds one Context per command and the HTTP API one per process; both then call the
same service functions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

from ..charts import ChartSource, DirectoryCharts
from ..config import Settings
from ..delivery import Delivery
from ..delivery import load as load_delivery
from ..delivery.secrets import check_settings
from ..errors import NotFound
from ..forge import Forge
from ..forge import from_settings as forge_from_settings
from ..gitops import CHECKOUT, GitOpsRepo, Snapshot
from ..gitops.worktree import WorkTree
from ..render import Renderer
from ..store import db, migrate, render_state
from ..store.plugins import PluginRecord
from ..store.secrets import SecretBox


class Context:
    """Lazily opened resources for one caller."""

    def __init__(self, settings: Settings, *, pooled: bool = False) -> None:
        self.settings = settings
        self.pooled = pooled
        self._schema_checked = False
        self._pool: db.Pool | None = None
        self._pool_lock = threading.Lock()
        # Who asks, named in a pull request's body (review mode); None: the CLI's user.
        self.actor: str | None = None
        # Plugins creates were validated against, by name (`plugins.for_create`).
        self.known_plugins: dict[str, PluginRecord] = {}

    @cached_property
    def database_url(self) -> str:
        """The resolved PostgreSQL URL (starts the embedded server when needed)."""
        return db.database_url(self.settings)

    @contextmanager
    def transaction(self) -> Iterator[db.Connection]:
        """A connection in a transaction that commits on success and rolls back on error."""
        # Autocommit outside the block, so transaction() is a real BEGIN/COMMIT, not a savepoint.
        with self.statements() as conn, conn.transaction():
            yield conn

    @contextmanager
    def statements(self) -> Iterator[db.Connection]:
        """A connection where each statement commits on its own (autocommit)."""
        with self._connection() as conn:
            if not self._schema_checked:  # the schema does not go backwards under a running process
                migrate.require_current(conn)
                self._schema_checked = True
            yield conn

    @contextmanager
    def _connection(self) -> Iterator[db.Connection]:
        if not self.pooled:
            conn = db.connect(self.database_url, autocommit=True)
            try:
                yield conn
            finally:
                conn.close()
            return
        with self._pool_lock:
            if self._pool is None:
                self._pool = db.open_pool(self.database_url)
        with db.pooled(self._pool) as conn:
            yield conn

    def close(self) -> None:
        """Close the connection pool and the repository's helpers, if they were opened."""
        if self._pool is not None:
            self._pool.close()
        if "repo" in self.__dict__:  # cached_property: only if it was ever used
            self.repo.close()

    @contextmanager
    def writer(self, *, lock: bool = True) -> Iterator[db.Connection]:
        """A transaction that commits while the GitOps writer lock is still held.

        Holding the lock until the database commit is what keeps concurrent writers consistent:
        a render never sees a chart on disk whose row is not yet visible to it.
        """
        if not lock:
            with self.transaction() as conn:
                yield conn
            return
        with self.repo.lock(), self.transaction() as conn:
            # Before any row changes: a writer holding a row lock while it waits for the render
            # lock of another replica, which wants that row, would deadlock with it.
            render_state.lock_writer(conn)
            yield conn

    @cached_property
    def secrets(self) -> SecretBox:
        """Seals secret variable values before they reach the database (see `secret_keys`)."""
        from . import secret_keys  # it builds on this module

        return secret_keys.load(self)

    def snapshot(self, ref: str) -> Snapshot:
        """The charts of commit `ref` (a sha, a branch, HEAD), read from objects."""
        commit = self.repo.head(ref) if (self.settings.repo / ".git").is_dir() else None
        if commit is None:
            raise NotFound(f"{ref}: no such commit in {self.settings.repo}")
        return self.repo.snapshot(commit)

    def charts(self, ref: str | None = None) -> ChartSource:
        """The charts of commit `ref`, read from objects; without one, the repository's files.

        Files that Overseer keeps (a repository it made) are first brought up to date, so a lazy
        server repository reads like a checked-out one; the files of any other clone are read
        as they are, uncommitted edits included. A repository that does not exist
        yet is not created for this: reading it finds nothing.
        """
        if ref is not None:
            return self.snapshot(ref)
        if WorkTree.managed(self.settings.repo):  # never a clone Overseer did not make
            self.repo.sync_worktree()
        return DirectoryCharts(self.settings.repo)

    @cached_property
    def delivery(self) -> Delivery:
        """How the repository reaches clusters: engine files and secret methods (settings)."""
        delivery = load_delivery(self.settings.delivery_file)
        where = f"OVERSEER_DELIVERY={self.settings.delivery_file}"
        check_settings(delivery, self.settings.namespaces, where)
        return delivery

    @cached_property
    def forge(self) -> Forge:
        """The forge review mode opens pull requests on (from the settings)."""
        return forge_from_settings(self.settings)

    @cached_property
    def renderer(self) -> Renderer:
        """The renderer of this process's renders, which hold the writer lock (one at a time)."""
        return Renderer()

    @cached_property
    def repo(self) -> GitOpsRepo:
        """The GitOps repository (created on first use)."""
        return GitOpsRepo(self.settings.repo, worktree=self.settings.worktree or CHECKOUT)
