"""The store against both real servers: embedded PostgreSQL 18 and Debian's packaged one."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import psycopg
import pytest

from generator.config import Settings
from generator.errors import Conflict, DatabaseUnavailable, NotFound
from generator.service import apply as apply_service
from generator.service import deployments as deployments_service
from generator.service import plugins as plugins_service
from generator.service.context import Context
from generator.service.views import DeploymentRequest, DeploymentUpdate, DeploymentView
from generator.status import Status
from generator.store import db, migrate, render_rows
from generator.store import deployments as store
from generator.tools import helm
from tests.conftest import ROOT, TEST_KEY, PgServer, deploy

pytestmark = pytest.mark.postgres

SPEC_PLUGINS = {
    "id": ("character varying", 24, "NO", None),
    "name": ("character varying", 255, "NO", None),
    "version": ("character varying", 50, "NO", None),
    "created_at": ("timestamp with time zone", None, "YES", "CURRENT_TIMESTAMP"),
    "updated_at": ("timestamp with time zone", None, "YES", "CURRENT_TIMESTAMP"),
    "manifest": ("text", None, "NO", None),
    "image_name": ("character varying", 255, "NO", None),
    "registry_url": ("character varying", 255, "NO", None),
    "is_active": ("boolean", None, "YES", "true"),
}


def make_service(tmp_path: Path, url: str) -> Context:
    return Context(
        Settings(
            home=tmp_path / "home",
            repo=tmp_path / "gitops",
            database_url=url,
            secret_key=TEST_KEY,
            namespace="a8s",
        )
    )


def deployed(any_pg: PgServer, tmp_path: Path, manifest: Path) -> tuple[Context, DeploymentView]:
    """A fresh database with the claude plugin and one rendered deployment of it."""
    service = make_service(tmp_path, any_pg.fresh_database())
    plugins_service.register_bytes(service, manifest.read_bytes(), "p")
    request = DeploymentRequest(
        environment_type="claude-environment", data={"ANTHROPIC_API_KEY": "k"}
    )
    return service, deployments_service.create(service, request).deployment


def chart_tree(service: Context, dep: DeploymentView) -> str:
    """The tree of a deployment's chart on HEAD, as apply records it."""
    tree = service.repo.snapshot().tree_of(dep.chart)
    assert tree is not None
    return tree.hex()


def test_migrations_apply_and_report(any_pg: PgServer) -> None:
    url = any_pg.fresh_database(migrated=False)
    assert all(not s.applied for s in migrate.status(url))
    applied = migrate.apply(url)
    files = [p for p in (ROOT / "migrations").glob("*.sql") if not p.name.endswith(".rollback.sql")]
    assert applied[0] == "0001.deployments" and len(applied) == len(files)
    assert all(s.applied for s in migrate.status(url))
    assert migrate.apply(url) == []


def test_statuses_are_the_same_in_sql_and_python(any_pg: PgServer) -> None:
    with psycopg.connect(any_pg.fresh_database()) as conn:
        row = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conname = 'deployments_status_check'"
        ).fetchone()
        assert row is not None
        in_sql = set(re.findall(r"'([A-Z_]+)'", row[0]))
        assert in_sql == {s.value for s in Status}
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO deployments (id, deployment_id, environment_type, status, config) "
                "VALUES ('x', 'x', 'p', 'READDY', '{}')"
            )


def test_plugins_table_is_exactly_the_spec(any_pg: PgServer) -> None:
    url = any_pg.fresh_database()
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT column_name, data_type, character_maximum_length, is_nullable, column_default
               FROM information_schema.columns WHERE table_name = 'plugins'"""
        ).fetchall()
        cols = {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}
        assert cols == SPEC_PLUGINS
        constraints = conn.execute(
            """SELECT tc.constraint_type, kcu.column_name FROM information_schema.table_constraints tc
               JOIN information_schema.key_column_usage kcu USING (constraint_name)
               WHERE tc.table_name = 'plugins'"""
        ).fetchall()
        assert sorted(constraints) == [("PRIMARY KEY", "id"), ("UNIQUE", "name")]
        fk = conn.execute(
            """SELECT ccu.table_name, ccu.column_name FROM information_schema.table_constraints tc
               JOIN information_schema.key_column_usage kcu USING (constraint_name)
               JOIN information_schema.constraint_column_usage ccu USING (constraint_name)
               WHERE tc.table_name = 'deployments' AND tc.constraint_type = 'FOREIGN KEY'
                 AND kcu.column_name = 'plugin_id'"""
        ).fetchall()
        assert fk == [("plugins", "id")]


def test_registry_rules(any_pg: PgServer, tmp_path: Path, claude_manifest: Path) -> None:
    service = make_service(tmp_path, any_pg.fresh_database())
    data = claude_manifest.read_bytes()
    first = plugins_service.register_bytes(service, data, "plugin.yaml")
    assert first.outcome == "created" and len(first.plugin.id) == 24
    again = plugins_service.register_bytes(
        service, data + b"\n# a comment changes nothing\n", "plugin.yaml"
    )
    assert again.outcome == "unchanged" and again.plugin.id == first.plugin.id
    changed = data.replace(b'default: "768"', b'default: "800"')
    with pytest.raises(
        Conflict,
        match=r"version 1\.0\.0 is already registered with a different manifest; bump the version",
    ):
        plugins_service.register_bytes(service, changed, "plugin.yaml")
    upgraded = plugins_service.register_bytes(
        service, changed.replace(b"version: 1.0.0", b"version: 1.1.0"), "p"
    )
    assert upgraded.outcome == "updated" and upgraded.previous_version == "1.0.0"
    assert upgraded.plugin.id == first.plugin.id and upgraded.plugin.version == "1.1.0"
    with pytest.raises(Conflict, match=r"older than the registered 1\.1\.0"):
        plugins_service.register_bytes(service, data, "plugin.yaml")
    assert [p.version for p in plugins_service.list_plugins(service)] == ["1.1.0"]


def test_deactivated_plugin_accepts_no_deployments(
    any_pg: PgServer, tmp_path: Path, claude_manifest: Path
) -> None:
    service = make_service(tmp_path, any_pg.fresh_database())
    plugins_service.register_bytes(service, claude_manifest.read_bytes(), "p")
    plugins_service.set_active(service, "claude-environment", False)
    request = DeploymentRequest(
        environment_type="claude-environment", data={"ANTHROPIC_API_KEY": "k"}
    )
    with pytest.raises(NotFound, match="is deactivated"):
        deployments_service.create(service, request)
    plugins_service.set_active(service, "claude-environment", True)
    assert deployments_service.create(service, request).deployment.status == "CREATING"


def test_secret_values_are_encrypted_at_rest(
    any_pg: PgServer, tmp_path: Path, claude_manifest: Path
) -> None:
    url = any_pg.fresh_database()
    service = make_service(tmp_path, url)
    plugins_service.register_bytes(service, claude_manifest.read_bytes(), "p")
    view = deployments_service.create(
        service,
        DeploymentRequest(
            environment_type="claude-environment", data={"ANTHROPIC_API_KEY": "sk-very-secret-42"}
        ),
    ).deployment
    assert view.data["ANTHROPIC_API_KEY"] == "<redacted>"
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT config, secret_data FROM deployments WHERE id = %s", (view.id,)
        ).fetchone()
        dump = "\n".join(
            str(v) for r in conn.execute("SELECT * FROM deployments").fetchall() for v in r
        )
    assert row is not None
    assert "sk-very-secret-42" not in row[0]
    assert b"sk-very-secret-42" not in bytes(row[1])
    assert "sk-very-secret-42" not in dump
    assert service.secrets.open(bytes(row[1])) == {"ANTHROPIC_API_KEY": "sk-very-secret-42"}


def test_backfill_links_deployments_by_environment_type(
    any_pg: PgServer, tmp_path: Path, claude_manifest: Path
) -> None:
    url = any_pg.fresh_database()
    with psycopg.connect(url) as conn:  # a deployment from before the plugin system
        conn.execute(
            """INSERT INTO deployments (id, deployment_id, environment_type, config)
               VALUES ('legacy00000000000000000a', 'legacy-1', 'claude-environment', '{}'),
                      ('legacy00000000000000000b', 'legacy-2', 'other-env', '{}')"""
        )
    service = make_service(tmp_path, url)
    plugin = plugins_service.register_bytes(service, claude_manifest.read_bytes(), "p").plugin
    assert plugins_service.backfill(service) == 0  # registration already linked it
    with psycopg.connect(url) as conn:
        links = dict(
            conn.execute("SELECT deployment_id, plugin_id FROM deployments ORDER BY 1").fetchall()
        )
    assert links == {"legacy-1": plugin.id, "legacy-2": None}


def test_unmigrated_database_names_the_fix(embedded_pg: PgServer, tmp_path: Path) -> None:
    service = make_service(tmp_path, embedded_pg.fresh_database(migrated=False))
    with pytest.raises(DatabaseUnavailable) as raised:  # the server's fault: a 503
        plugins_service.list_plugins(service)
    assert raised.value.for_cli().endswith("; run `overseer db migrate`")
    assert "overseer db migrate" in raised.value.for_api()  # an operator's step, not the client's
    assert raised.value.http_status == 503


def test_an_update_during_an_apply_stays_pending(
    any_pg: PgServer, tmp_path: Path, claude_manifest: Path
) -> None:
    service, dep = deployed(any_pg, tmp_path, claude_manifest)
    applied_before, rendered = "0" * 40, "1" * 40
    with service.transaction() as conn:
        store.set_status(conn, dep.id, "APPLYING", applied_commit=applied_before)
    # helm runs; meanwhile a new secret arrives (the chart stays as it is)
    change = DeploymentUpdate(data={"ANTHROPIC_API_KEY": "k2"})
    assert deployments_service.update(service, dep.id, change).deployment.status == "UPDATING"
    with service.transaction() as conn:  # helm returns
        store.finish_apply(conn, dep.id, "READY", None, helm_revision=1, applied_commit=rendered)
        after = store.get(conn, dep.id)
    assert after is not None
    assert (after.status, after.helm_revision, after.applied_commit) == (
        "UPDATING",
        1,
        applied_before,
    )
    with service.transaction() as conn:  # the next pass: nothing changed while it ran
        store.set_status(conn, dep.id, "APPLYING")
        store.finish_apply(conn, dep.id, "READY", None, helm_revision=2, applied_commit=rendered)
        done = store.get(conn, dep.id)
    assert done is not None
    assert (done.status, done.helm_revision, done.applied_commit) == (
        "READY",
        2,
        rendered,
    )


def test_a_refresh_or_an_apply_never_overwrites_a_newer_change(
    any_pg: PgServer, tmp_path: Path, claude_manifest: Path
) -> None:
    service, dep = deployed(any_pg, tmp_path, claude_manifest)
    with service.transaction() as conn:
        store.set_status(conn, dep.id, "READY", helm_revision=1)
        seen = store.get(conn, dep.id)
    assert seen is not None
    # A refresh read the row, then an update landed before the refresh wrote what it saw.
    change = DeploymentUpdate(data={"ANTHROPIC_API_KEY": "k2"})
    deployments_service.update(service, dep.id, change)
    with service.transaction() as conn:
        assert not store.refresh_status(conn, seen, "READY", None, 1)
        after = store.get(conn, dep.id)
        assert after is not None and after.status == "UPDATING"
        assert store.refresh_status(conn, after, "NOT_READY", "0/1 ready", 1)  # nothing newer
    # An apply queued the row, then it was deleted before the apply started.
    with service.transaction() as conn:
        queued = store.get(conn, dep.id)
    assert queued is not None
    deployments_service.delete(service, dep.id, render=False)  # no cluster to uninstall from
    with service.transaction() as conn:
        assert not store.start_apply(conn, queued)
        gone = store.get(conn, dep.id)
    assert gone is not None and gone.status == "DELETED"


def test_a_secret_change_stays_due_until_applied(
    any_pg: PgServer, tmp_path: Path, claude_manifest: Path
) -> None:
    service, dep = deployed(any_pg, tmp_path, claude_manifest)

    def record() -> store.DeploymentRecord:
        with service.transaction() as conn:
            found = store.get(conn, dep.id)
        assert found is not None
        return found

    tree = chart_tree(service, dep)
    with service.transaction() as conn:  # applied: the chart and these secrets
        store.set_status(conn, dep.id, "APPLYING")
        store.finish_apply(
            conn,
            dep.id,
            "READY",
            None,
            helm_revision=1,
            applied_commit=record().rendered_commit,
            applied_tree=tree,
            applied_secret_revision=store.secret_revision(store.secret_data(conn, dep.id)),
        )
    assert not apply_service._needs_apply(record(), tree)
    change = DeploymentUpdate(data={"ANTHROPIC_API_KEY": "k2"})  # the chart does not change
    deployments_service.update(service, dep.id, change)
    assert record().rendered_commit == record().applied_commit
    assert chart_tree(service, dep) == tree
    assert apply_service._needs_apply(record(), tree)
    with service.transaction() as conn:  # the upgrade fails, and helm rolls it back
        store.set_status(conn, dep.id, "APPLYING")
        store.finish_apply(conn, dep.id, "FAILED", "timed out", helm_revision=2)
    assert apply_service._needs_apply(record(), tree)  # still due: the new secret never got there


def test_a_failed_apply_keeps_the_revision_helm_could_not_report(
    any_pg: PgServer, tmp_path: Path, claude_manifest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, dep = deployed(any_pg, tmp_path, claude_manifest)
    with service.transaction() as conn:
        store.set_status(conn, dep.id, "READY", helm_revision=3)
        before = store.get(conn, dep.id)
    assert before is not None

    # A fault no real cluster produces on demand: the API server goes away between helm's
    # upgrade and its status call. Everything else here is real.
    def unreachable(*args: object, **kwargs: object) -> None:
        raise helm.HelmFailed("upgrade", "Error: kubernetes cluster unreachable")

    monkeypatch.setattr(helm, "upgrade_install", unreachable)
    monkeypatch.setattr(helm, "status", unreachable)
    snap = service.repo.snapshot()
    outcome = apply_service._apply_one(service, before, snap, chart_tree(service, dep))
    assert outcome.action == "failed" and outcome.revision == 3
    with service.transaction() as conn:
        after = store.get(conn, dep.id)
    assert after is not None and after.status == "FAILED" and after.helm_revision == 3


def test_one_applier_at_a_time(any_pg: PgServer, tmp_path: Path) -> None:
    service = make_service(tmp_path, any_pg.fresh_database())
    waited = threading.Event()
    order: list[str] = []
    with apply_service.exclusive(service) as first:
        assert first
        with apply_service.exclusive(service) as second:  # the worker's try: it passes
            assert not second

        def cli() -> None:
            with apply_service.exclusive(service, wait=waited.set) as third:
                assert third
                order.append("cli")

        thread = threading.Thread(target=cli)
        thread.start()
        assert waited.wait(10)
        order.append("first done")
    thread.join(10)
    assert order == ["first done", "cli"]


def test_a_pooled_connection_never_keeps_a_plan_made_for_a_smaller_table(ctx: Context) -> None:
    # psycopg prepares a statement on its fifth run; PostgreSQL then kept one generic plan for
    # the statement that records a round's commit, made while the table was a few rows, and
    # each round got slower as the table grew (2.4 ms at 10,000 rows, 0.8 ms planned each time).
    dep = deploy(ctx, render=False)
    pool = db.open_pool(ctx.database_url)
    try:
        with db.pooled(pool) as conn:
            for round_ in range(30):  # a server's rounds: a few new rows, then their commit
                conn.execute(
                    """INSERT INTO deployments (id, deployment_id, environment_type, plugin_id,
                           status, config, namespace)
                       SELECT 'x' || i, 'grown-' || i, environment_type, plugin_id, status,
                           config, namespace
                       FROM deployments, generate_series(%s::int, %s::int) i WHERE id = %s""",
                    (round_ * 4, round_ * 4 + 3, dep.id),
                )
                charts = [f"{dep.namespace}/grown-{round_ * 4 + i}" for i in range(4)]
                render_rows.set_rendered(conn, charts, "1" * 40)
            plans = conn.execute(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                "WHERE statement LIKE 'UPDATE deployments AS d%%SET rendered_commit%%'"
            ).fetchone()
        assert plans is not None, "the statement was never prepared"
        assert plans["generic_plans"] == 0 and plans["custom_plans"] > 0
    finally:
        pool.close()
