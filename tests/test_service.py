"""The service layer's behaviour, called directly: what each change stores, renders and commits.

The CLI's tests keep to parsing, exit codes and output; these check what lies beneath them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from generator.errors import (
    Conflict,
    DatabaseUnavailable,
    MassDeletionRefused,
    NotFound,
    UserError,
)
from generator.service import batch, deployments, plugins
from generator.service import check as check_service
from generator.service import render as render_service
from generator.service.batch import RenderBatcher
from generator.service.context import Context
from generator.service.render_result import RenderResult
from generator.service.views import DeploymentRequest, DeploymentUpdate
from generator.status import Status
from generator.store import render_rows
from generator.store import render_state as state_store
from generator.validate import validate
from tests.conftest import commit_count, deploy, expire, git_log, sql

HAND = ["-c", "user.name=h", "-c", "user.email=h@h"]


def hand_commit(repo: Path, message: str) -> None:
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), *HAND, "commit", "-qm", message], check=True)


def summary(result: RenderResult) -> tuple[int, int, int, int]:
    return len(result.added), len(result.changed), len(result.removed), result.unchanged


def test_a_render_that_changes_nothing_writes_and_commits_nothing(ctx: Context) -> None:
    repo = ctx.settings.repo
    deploy(ctx)
    deploy(ctx)
    before = commit_count(repo)
    mtimes = {
        p: p.stat().st_mtime_ns for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts
    }
    for full in (False, True):
        result = render_service.render(ctx, full=full)
        assert summary(result) == (0, 0, 0, 2) and result.commit is None
        assert commit_count(repo) == before
        assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_delete_and_expiry_remove_charts(ctx: Context) -> None:
    repo = ctx.settings.repo
    a, b, keep = deploy(ctx), deploy(ctx, ttl=3600), deploy(ctx)
    deleted = deployments.delete(ctx, a.deployment_id)
    assert deleted.commit == git_log(repo, "-1", "--format=%H").strip()
    assert not (repo / a.chart).exists()
    assert "Removed:\n  " + a.chart in git_log(repo, "-1", "--format=%B")
    expire(ctx, b.id)
    result = render_service.render(ctx)
    assert [c.path for c in result.removed] == [b.chart] and result.commit is not None
    assert not (repo / b.chart).exists()
    assert (repo / keep.chart / "Chart.yaml").exists()
    with pytest.raises(NotFound, match="already deleted"):
        deployments.delete(ctx, a.id)
    shown = deployments.get(ctx, a.id)
    assert shown.status == Status.DELETED and shown.deleted_at is not None


def test_an_update_changes_a_deployment_in_one_commit(ctx: Context) -> None:
    repo = ctx.settings.repo
    dep = deploy(ctx)
    values = repo / dep.chart / "values.yaml"
    before = commit_count(repo)
    change = DeploymentUpdate(
        data={"HEIGHT": "900"}, tools=["git"], requirement="debugging", ttl_seconds=3600
    )
    updated = deployments.update(ctx, dep.deployment_id, change)
    shown = updated.deployment
    assert updated.changed and shown.status == Status.UPDATING
    assert shown.data["HEIGHT"] == "900" and shown.data["ANTHROPIC_API_KEY"] == "<redacted>"
    assert shown.tools == ["git"] and shown.requirement == "debugging"
    assert shown.ttl_seconds == 3600 and shown.expires_at is not None
    assert updated.commit == shown.rendered_commit == git_log(repo, "-1", "--format=%H").strip()
    assert commit_count(repo) == before + 1
    assert "Changed:\n  " + dep.chart in git_log(repo, "-1", "--format=%B")
    assert 'HEIGHT: "900"' in values.read_text()
    # Unsetting brings back the manifest's default; asking for it again changes nothing.
    reset = deployments.update(ctx, dep.id, DeploymentUpdate(unset=["HEIGHT"]))
    assert reset.changed and 'HEIGHT: "768"' in values.read_text()
    again = deployments.update(ctx, dep.id, DeploymentUpdate(unset=["HEIGHT"]))
    assert not again.changed and again.commit is None
    assert commit_count(repo) == before + 2
    # A new secret leaves the chart as it is (no commit) but marks the release for an upgrade.
    sql(ctx, "UPDATE deployments SET status = 'READY' WHERE id = %s", dep.id)
    rotated = deployments.update(
        ctx, dep.id, DeploymentUpdate(data={"ANTHROPIC_API_KEY": "sk-rotated-secret"})
    )
    assert rotated.changed and rotated.deployment.status == Status.UPDATING
    assert "sk-rotated-secret" not in rotated.deployment.model_dump_json()
    assert commit_count(repo) == before + 2
    assert "sk-rotated-secret" not in git_log(repo, "-p", "--all")


def test_an_update_whose_render_failed_is_committed_by_the_next_render(ctx: Context) -> None:
    repo = ctx.settings.repo
    dep = deploy(ctx)
    values = repo / dep.chart / "values.yaml"
    before = commit_count(repo)
    # A real fault, made on demand: another writer's lock on the branch.
    lock = repo / ".git" / "refs" / "heads" / "main.lock"
    lock.write_text("")
    with pytest.raises(UserError) as failed:
        deployments.update(ctx, dep.id, DeploymentUpdate(data={"HEIGHT": "900"}))
    lock.unlink()
    said = (
        f"deployment {dep.deployment_id} is updated, but rendering it failed: git update-ref failed"
    )
    assert failed.value.for_cli().startswith(said)
    assert failed.value.for_cli().endswith("; the next `overseer render` commits it")
    assert failed.value.for_api().startswith(said)
    assert failed.value.for_api().endswith("; the server's next render commits it")
    assert commit_count(repo) == before and 'HEIGHT: "768"' in values.read_text()
    assert deployments.get(ctx, dep.id).data["HEIGHT"] == "900"  # the database leads, Git follows
    result = render_service.render(ctx)
    assert summary(result)[:3] == (0, 1, 0) and result.commit is not None
    assert 'HEIGHT: "900"' in values.read_text()
    assert check_service.check(ctx, ctx.charts()) == []


def test_a_committed_hand_edit_is_repaired_by_a_full_render(ctx: Context) -> None:
    repo = ctx.settings.repo
    dep = deploy(ctx)
    values = repo / dep.chart / "values.yaml"
    values.write_text(values.read_text().replace("replicaCount: 1", "replicaCount: 3"))
    # A hand edit that was committed (say, merged in a pull request) is drift too.
    hand_commit(repo, "hand edit")
    commits = commit_count(repo)
    assert [d.path for d in check_service.check(ctx, ctx.charts())] == [dep.chart]
    # The inputs are unchanged, so an incremental render skips the chart; a full one repairs it.
    assert summary(render_service.render(ctx)) == (0, 0, 0, 1)
    repaired = render_service.render(ctx, full=True)
    assert summary(repaired) == (0, 1, 0, 0) and repaired.commit is not None
    assert commit_count(repo) == commits + 1
    assert check_service.check(ctx, ctx.charts()) == []


def test_check_reports_missing_and_orphaned_charts(ctx: Context) -> None:
    repo = ctx.settings.repo
    dep = deploy(ctx)
    orphan = repo / "a8s" / "ghost"
    orphan.mkdir(parents=True)
    (orphan / "Chart.yaml").write_text("apiVersion: v2\nname: ghost\nversion: 0.1.0\n")
    sql(ctx, "UPDATE deployments SET namespace = 'moved' WHERE id = %s", dep.id)
    drifts = check_service.check(ctx, ctx.charts())
    assert [(d.path, d.reason) for d in drifts] == [
        (dep.chart, "no live deployment; `overseer render` removes it"),
        ("a8s/ghost", "no live deployment; `overseer render` removes it"),
        (f"moved/{dep.deployment_id}", "missing; run `overseer render`"),
    ]


def test_mass_deletion_is_refused_unless_forced(ctx: Context, embedded_pg: object) -> None:
    repo = ctx.settings.repo
    for _ in range(3):
        deploy(ctx)
    commits = commit_count(repo)
    empty_db = embedded_pg.fresh_database()  # type: ignore[attr-defined]
    wrong = Context(dataclasses.replace(ctx.settings, database_url=empty_db))
    with pytest.raises(MassDeletionRefused) as refused:
        render_service.render(wrong)
    assert refused.value.message == (
        "render would remove 3 of 3 charts; this usually means DATABASE_URL points at the wrong "
        "database. Check it"
    )
    assert len(list(repo.glob("a8s/*/Chart.yaml"))) == 3 and commit_count(repo) == commits
    forced = render_service.render(wrong, force=True)
    assert summary(forced) == (0, 0, 3, 0) and commit_count(repo) == commits + 1
    assert not list(repo.glob("a8s/*/Chart.yaml"))


def render_state(ctx: Context) -> dict[str, Any]:
    """The state the last render recorded, with its commit."""
    with psycopg.connect(ctx.database_url) as conn:
        row = conn.execute("SELECT state, commit_sha FROM render_state").fetchone()
    assert row is not None
    return {**row[0], "commit": row[1]}


def test_incremental_render_sees_every_kind_of_change(ctx: Context, claude_manifest: Path) -> None:
    repo = ctx.settings.repo
    a, b = deploy(ctx), deploy(ctx)
    state = render_state(ctx)  # in the database, never in Git
    assert state["generation"] > 0 and len(state["plugins"]) == 1
    assert state["commit"] == git_log(repo, "-1", "--format=%H").strip()
    assert git_log(repo, "--name-only", "--format=", "--", ".overseer") == ""

    def set_height(old: str, new: str) -> None:  # a change made behind the service's back
        sql(
            ctx,
            "UPDATE deployments SET config = replace(config, %s, %s) WHERE id = %s",
            f'"{old}"',
            f'"{new}"',
            a.id,
        )

    set_height("768", "999")
    sql(ctx, "UPDATE deployments SET status = 'READY' WHERE id = %s", b.id)  # not an input
    assert summary(render_service.render(ctx)) == (0, 1, 0, 1)
    assert 'HEIGHT: "999"' in (repo / a.chart / "values.yaml").read_text()
    upgraded = repo.parent / "plugin-1.1.0.yaml"
    upgraded.write_text(claude_manifest.read_text().replace("version: 1.0.0", "version: 1.1.0"))
    plugins.register_files(ctx, [upgraded])
    assert summary(render_service.render(ctx)) == (0, 2, 0, 0)
    assert "claude-environment@1.1.0" in git_log(repo, "-1", "--format=%B")
    # State recorded for another database is not trusted: every chart is compared again. Its
    # xmin, far in the future, would have hidden the change below from an incremental render.
    doctored = render_state(ctx)
    doctored.update(database="00000000-0000-0000-0000-000000000000", generation=10**9, xmin=10**12)
    sql(ctx, "UPDATE render_state SET state = %s", json.dumps(doctored))
    set_height("999", "555")
    assert summary(render_service.render(ctx))[:3] == (0, 1, 0)
    assert check_service.check(ctx, ctx.charts()) == []
    # Nor is state recorded for another commit: main moved under it (here, a hand commit).
    sql(
        ctx, "UPDATE render_state SET state = %s", json.dumps({**render_state(ctx), "xmin": 10**12})
    )
    (repo / "NOTES.md").write_text("hand-written\n")
    hand_commit(repo, "notes")
    set_height("555", "444")
    assert summary(render_service.render(ctx))[:3] == (0, 1, 0)
    assert check_service.check(ctx, ctx.charts()) == []


def test_a_round_reads_the_changed_rows_with_its_lock(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing in doubt, the rows changed since the last render come with the lock."""
    first = deploy(ctx)
    asked: list[list[str]] = []
    real = render_rows.changed_since

    def counted(conn: Any, since: int, paths: Any = ()) -> Any:
        asked.append(list(paths))
        return real(conn, since, paths)

    monkeypatch.setattr(render_rows, "changed_since", counted)
    second = deploy(ctx, render=False)
    height = "UPDATE deployments SET config = replace(config, %s, %s) WHERE id = %s"
    sql(ctx, height, '"768"', '"999"', first.id)
    assert summary(render_service.render(ctx)) == (1, 1, 0, 0)
    assert asked == []  # no query of its own
    repo = ctx.settings.repo
    assert 'HEIGHT: "999"' in (repo / first.chart / "values.yaml").read_text()
    assert (repo / second.chart / "Chart.yaml").exists()
    # A path in doubt after a crash (a journal entry its writer never cleared) is asked for by
    # name, in a query of its own.
    head = ctx.repo.head()
    ctx.repo.journal.append({"ref": "HEAD", "old": head, "new": head, "paths": [str(first.chart)]})
    sql(ctx, height, '"999"', '"555"', first.id)
    assert summary(render_service.render(ctx))[:3] == (0, 1, 0)
    assert asked == [[str(first.chart)]]
    # State recorded for another commit reads no changed row: a full comparison follows, and a
    # fresh clone on a large table fetched every row for nothing.
    sql(ctx, height, '"555"', '"777"', first.id)
    with ctx.transaction() as conn:
        head = ctx.repo.head() or ""
        ours = state_store.lock_and_load(conn, render_rows.changed_since_recorded(head))
        other = state_store.lock_and_load(conn, render_rows.changed_since_recorded("0" * 40))
    assert [r["id"] for r in ours[3] or []] == [first.id]
    assert other[3] == []
    assert render_rows.changed_since_recorded("HEAD'; DROP TABLE deployments; --") is None
    # An xmin that is not a plain integer (state written by hand, or by another version) matches
    # nothing, rather than failing every round: the render compares every chart instead.
    sql(ctx, "UPDATE render_state SET state = jsonb_set(state, '{xmin}', '1.5')")
    with ctx.transaction() as conn:
        odd = state_store.lock_and_load(conn, render_rows.changed_since_recorded(head))
    assert odd[3] == []
    assert summary(render_service.render(ctx))[:3] == (0, 1, 0)


def test_a_plugin_upgrade_keeps_deployments_renderable(
    ctx: Context, claude_manifest: Path, kubeconform_bin: str, helm_bin: str, kube_score_bin: str
) -> None:
    repo = ctx.settings.repo
    dep = deploy(ctx)
    text = claude_manifest.read_text()
    needs_more = repo.parent / "v2.yaml"
    needs_more.write_text(
        text.replace("version: 1.0.0", "version: 2.0.0").replace(
            "    required:\n", "    required:\n      - name: REGION\n        description: Where\n"
        )
    )
    with pytest.raises(Conflict) as refused:
        plugins.register_files(ctx, [needs_more])
    assert refused.value.message == (
        f'plugin "claude-environment": version 2.0.0 requires REGION, which live deployment(s) '
        f"{dep.deployment_id} lack; give the variable a default as an optional one, or delete "
        "those deployments first"
    )
    assert [p.version for p in plugins.list_plugins(ctx)] == ["1.0.0"]
    # Dropping one variable and adding an optional one: the chart follows the new manifest.
    changed = repo.parent / "v3.yaml"
    changed.write_text(
        text.replace("version: 1.0.0", "version: 3.0.0")
        .replace(
            '      - name: DISPLAY_NUM\n        description: X display number\n        default: "1"\n',
            "",
        )
        .replace(
            "    optional:\n",
            '    optional:\n      - name: DPI\n        description: Dots per inch\n        default: "96"\n',
        )
    )
    plugins.register_files(ctx, [changed])
    assert summary(render_service.render(ctx))[:3] == (0, 1, 0)
    values = yaml.safe_load((repo / dep.chart / "values.yaml").read_text())
    assert values["env"] == {"DPI": "96", "HEIGHT": "768", "WIDTH": "1024"}
    assert [r.problems for r in validate([repo])] == [[]]


def test_an_upgrade_that_hardens_the_plugin_re_renders_its_deployments(
    ctx: Context, claude_manifest: Path
) -> None:
    repo = ctx.settings.repo
    dep = deploy(ctx)
    values = repo / dep.chart / "values.yaml"
    assert yaml.safe_load(values.read_text())["readinessProbe"]["tcpSocket"] == {"port": "vnc"}
    hardened = repo.parent / "v1.1.0.yaml"
    hardened.write_text(
        claude_manifest.read_text().replace("version: 1.0.0", "version: 1.1.0")
        + "probes:\n  readiness:\n    http: {port: api, path: /healthz}\n"
        + "security:\n  run_as_user: 10001\n"
        + "network:\n  egress:\n    - cidr: 0.0.0.0/0\n      ports: [443]\n"
    )
    (registered,) = plugins.register_files(ctx, [hardened])
    assert registered.outcome == "updated" and len(registered.warnings) == 2
    result = render_service.render(ctx)
    assert summary(result) == (0, 1, 0, 0) and "claude-environment@1.1.0" in git_log(
        repo, "-1", "--format=%B"
    )
    rendered = yaml.safe_load(values.read_text())
    assert rendered["readinessProbe"]["httpGet"] == {"port": "api", "path": "/healthz"}
    assert rendered["podSecurityContext"]["runAsUser"] == 10001
    assert rendered["networkPolicy"]["egress"][-1]["ports"] == [{"port": 443, "protocol": "TCP"}]


def test_replay_guards_are_forgotten_once_no_replay_can_come(ctx: Context) -> None:
    from generator.service.worker import forget_old_keys

    dep = deploy(ctx)
    for key, age in (("old", "25 hours"), ("new", "1 hour")):
        sql(
            ctx,
            "INSERT INTO idempotency_keys (token_name, key, body_hash, deployment_id, created_at) "
            "VALUES ('t', %s, repeat('0', 64), %s, now() - %s::interval)",
            key,
            dep.id,
            age,
        )
    for delivery, age in (("old", "31 days"), ("new", "1 day")):
        sql(
            ctx,
            "INSERT INTO webhook_deliveries (forge, delivery, received_at) "
            "VALUES ('gitea', %s, now() - %s::interval)",
            delivery,
            age,
        )
    forget_old_keys(ctx)
    with psycopg.connect(ctx.database_url) as conn:
        keys = [r[0] for r in conn.execute("SELECT key FROM idempotency_keys").fetchall()]
        deliveries = [r[0] for r in conn.execute("SELECT delivery FROM webhook_deliveries")]
    assert keys == ["new"] and deliveries == ["new"]


def test_a_create_is_validated_against_the_plugin_as_stored_now(
    ctx: Context, claude_manifest: Path
) -> None:
    manifest = yaml.safe_load(claude_manifest.read_text())

    def elsewhere(version: str, optional: list[dict[str, str]]) -> None:
        # Another process registers a version behind this one's back.
        manifest["version"] = version
        manifest["dependencies"]["env_vars"]["optional"] = optional
        other = Context(ctx.settings)
        plugins.register_bytes(other, yaml.safe_dump(manifest).encode(), version)
        other.close()

    deploy(ctx, render=False)  # 1.0.0 is remembered from this create
    region = {"name": "REGION", "description": "where it runs", "default": "eu"}
    elsewhere("1.1.0", [region])
    # Each request below passes the version remembered, not the one stored: the insert must
    # notice, and the create is validated again.
    assert deploy(ctx, render=False).data["REGION"] == "eu"
    elsewhere("1.2.0", [])
    with pytest.raises(UserError, match="unknown variable"):
        deploy(ctx, render=False, REGION="us")
    sql(ctx, "UPDATE plugins SET is_active = false")  # deactivated by hand
    with pytest.raises(NotFound, match="deactivated"):
        deploy(ctx, render=False)


REQUEST = DeploymentRequest(environment_type="claude-environment", data={"ANTHROPIC_API_KEY": "k"})


@pytest.fixture
def batcher(ctx: Context) -> Iterator[RenderBatcher]:
    """A server's batcher, its writer process started."""
    started = RenderBatcher(ctx)
    started.start()
    yield started
    started.stop()


def test_a_round_stores_the_creates_it_renders_in_its_own_commit(
    ctx: Context, batcher: RenderBatcher
) -> None:
    # A server's create, validated against the plugin its process remembers, is inserted by
    # the round that renders it: row and chart in one transaction, nothing left to answer, and
    # nothing the next round takes for changed.
    caller = deployments.Caller(server="a-server")
    assert deployments.prepare(ctx, REQUEST, caller) is None  # no plugin remembered yet
    deployments.create(ctx, REQUEST, render=False, caller=caller)  # now there is
    creates = [deployments.prepare(ctx, REQUEST, caller) for _ in range(3)]

    async def all_of(args: list[dict[str, Any]]) -> list[Any]:
        return await asyncio.gather(*(batcher.create_async(a) for a in args))

    answers = asyncio.run(all_of([a for a in creates if a is not None]))
    assert len(answers) == 3
    with psycopg.connect(ctx.database_url) as conn:
        for args, (stored, commit) in zip(creates, answers, strict=True):
            assert args is not None and stored is not None and stored["id"] == args["id"]
            found = deployments.get(ctx, args["id"])
            assert found.rendered_commit == commit
            assert found.status == Status.CREATING
            chart = f"{found.namespace}/{found.deployment_id}"
            assert ctx.repo.snapshot(commit).tree_of(chart) is not None
        pending = conn.execute("SELECT count(*) FROM deployments WHERE answer_pending = 'a-server'")
        assert pending.fetchone() == (1,)  # only the create that stored its row itself
        xmin = conn.execute("SELECT (state->>'xmin')::bigint FROM render_state").fetchone()
        assert xmin is not None
        conn.row_factory = psycopg.rows.dict_row
        assert render_rows.changed_since(conn, xmin[0]).live == []
    # A plugin changed since the process remembered it: the round stores nothing of that
    # create (the caller then creates it as usual), and commits nothing for it.
    stale = deployments.prepare(ctx, REQUEST, caller)
    assert stale is not None
    sql(ctx, "UPDATE plugins SET updated_at = updated_at + interval '1 second'")
    stored, _ = asyncio.run(all_of([stale]))[0]
    assert stored is None
    with pytest.raises(NotFound):
        deployments.get(ctx, stale["id"])
    assert ctx.repo.snapshot().tree_of(f"{stale['namespace']}/{stale['deployment_id']}") is None


def test_a_round_refused_a_row_goes_again_without_its_creates(
    ctx: Context, batcher: RenderBatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One row the database refuses would fail every request of the round: the round goes again
    # without the creates it was to store, and their requests store them themselves.
    caller = deployments.Caller(server="a-server")
    deployments.create(ctx, REQUEST, render=False, caller=caller)  # the plugin, remembered
    good, bad = (deployments.prepare(ctx, REQUEST, caller) for _ in range(2))
    assert good is not None and bad is not None
    bad["status"] = "NOT-A-STATUS"  # the table's check refuses it

    # Nor does a round that marks nothing ask the server to mark its creates.
    def never(*_: object) -> set[str]:
        raise AssertionError("a leader's round left marks to the server")

    monkeypatch.setattr(batch.unanswered, "answered", never)

    async def both() -> list[Any]:
        return await asyncio.gather(batcher.create_async(good), batcher.create_async(bad))

    answers = asyncio.run(both())
    assert [stored for stored, _ in answers] == [None, None]
    for args in (good, bad):
        with pytest.raises(NotFound):
            deployments.get(ctx, args["id"])
    good = deployments.prepare(ctx, REQUEST, caller)
    assert good is not None
    stored, commit = asyncio.run(batcher.create_async(good))
    assert stored is not None and commit is not None


def test_a_create_given_up_before_its_round_is_not_stored(ctx: Context) -> None:
    caller = deployments.Caller(server="a-server")
    first = deployments.create(ctx, REQUEST, render=False, caller=caller).deployment
    args = deployments.prepare(ctx, REQUEST, caller)
    assert args is not None
    waiting = RenderBatcher(ctx)  # not started yet: no round begins
    with pytest.raises(TimeoutError):
        asyncio.run(waiting.create_async(args, timeout=0.05))
    waiting.start()
    try:
        waiting.render()  # a round, which must not store it
    finally:
        waiting.stop()
    assert deployments.get(ctx, first.id).rendered_commit is not None  # the round ran
    with pytest.raises(NotFound):
        deployments.get(ctx, args["id"])


def test_a_create_whose_row_was_lost_before_its_round_is_not_told_it_stands(
    ctx: Context, batcher: RenderBatcher
) -> None:
    # A server's insert does not wait for the disk; a crash of PostgreSQL before the round would
    # lose the row. The round's `answered` mark finds it missing, and its request gets a 503.
    caller = deployments.Caller(server="a-server")
    kept = deployments.create(ctx, REQUEST, render=False, caller=caller).deployment
    lost = deployments.create(ctx, REQUEST, render=False, caller=caller).deployment
    sql(ctx, "DELETE FROM deployments WHERE id = %s", lost.id)

    async def both() -> list[object]:
        waits = (batcher.render_async(answering=d.id) for d in (kept, lost))
        return await asyncio.gather(*waits, return_exceptions=True)

    stood, gone = asyncio.run(both())
    assert isinstance(stood, str)  # the commit that holds its chart
    assert isinstance(gone, DatabaseUnavailable) and "gone" in gone.message
