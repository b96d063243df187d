"""The git layer's guarantees as renders rely on them: a killed writer is reconciled, work Overseer
did not make is kept, every commit reverts cleanly, pushes survive a moving or missing remote, and
a lazy repository reads as a checked-out one."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from generator.service import check as check_service
from generator.service import deployments
from generator.service import render as render_service
from generator.service.context import Context
from generator.service.views import DeploymentUpdate
from generator.store.deployments import LIVE
from generator.validate import validate
from tests.conftest import Cli, deploy, expire, git_log

HAND = ["-c", "user.name=h", "-c", "user.email=h@h"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def hand_commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, *HAND, "commit", "-qm", message)


def charts_on_head(repo: Path) -> list[str]:
    return git(repo, "ls-tree", "-d", "--name-only", "HEAD", "a8s/").split()


def agree(ctx: Context) -> None:
    """The repository and the database agree: every live row's chart is on HEAD and recorded
    there, no chart lacks a live row, the objects are sound and nothing is left uncommitted."""
    repo = ctx.settings.repo
    with psycopg.connect(ctx.database_url) as conn:
        live = conn.execute(
            f"SELECT d.namespace || '/' || d.deployment_id, d.rendered_commit "
            f"FROM deployments d WHERE {LIVE}"
        ).fetchall()
    assert sorted(charts_on_head(repo)) == sorted(path for path, _ in live)
    for path, rendered in live:
        assert rendered is not None
        # The commit a row names holds its chart as HEAD does: apply installs from that commit.
        recorded, current = git(repo, "rev-parse", f"{rendered}:{path}", f"HEAD:{path}").split()
        assert recorded == current, path
    git(repo, "fsck", "--strict", "--no-dangling")
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert check_service.check(ctx, ctx.charts()) == []


@pytest.mark.parametrize("step", ["objects-written", "ref-moved", "database-committed"])
@pytest.mark.parametrize("command", ["create", "update", "render"])
def test_a_writer_killed_at_any_step_is_reconciled_by_the_next(
    ctx: Context, command: str, step: str
) -> None:
    # A real SIGKILL at each boundary of a changeset: after its objects are written, after the
    # branch moved, after the database committed (before the lock and its journal are let go).
    repo = ctx.settings.repo
    kept, gone = deploy(ctx), deploy(ctx)
    expire(ctx, gone.id)
    waiting = [deploy(ctx, render=False) for _ in range(2)]
    head = git_log(repo, "-1", "--format=%H")
    args = {
        "create": ["deploy", "create", "claude-environment", "--set", "ANTHROPIC_API_KEY=k"],
        "update": ["deploy", "update", kept.id, "--set", "HEIGHT=999"],
        "render": ["render", "--no-progress"],
    }[command]
    killed = subprocess.run(  # a process of its own, so that the kill is real
        [sys.executable, "-m", "generator.cli", *args],
        env={**os.environ, **Cli(ctx.settings).env, "OVERSEER_TEST_KILL_AT": step},
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    moved = git_log(repo, "-1", "--format=%H") != head
    assert moved == (step != "objects-written")

    render_service.render(ctx)
    agree(ctx)
    tree = set(charts_on_head(repo))
    assert {w.chart for w in waiting} <= tree and gone.chart not in tree


def test_a_clone_overseer_did_not_make_keeps_uncommitted_work(ctx: Context, tmp_path: Path) -> None:
    first = deploy(ctx)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ctx.settings.repo), str(clone)], check=True)
    (clone / "NOTES.md").write_text("a draft, not committed\n")
    edited = clone / first.chart / "values.yaml"
    edited.write_text(edited.read_text() + "# a reviewer's note\n")
    deploy(ctx, render=False)
    result = render_service.render(Context(dataclasses.replace(ctx.settings, repo=clone)))
    assert len(result.added) == 1 and result.commit is not None
    assert (clone / "NOTES.md").read_text() == "a draft, not committed\n"
    assert edited.read_text().endswith("# a reviewer's note\n")  # not a chart the render changed


def test_overseer_commits_revert_cleanly_and_old_committed_state_goes(ctx: Context) -> None:
    repo = ctx.settings.repo
    a = deploy(ctx)
    # A repository from an earlier version carries its render state in the tree.
    (repo / ".overseer").mkdir()
    (repo / ".overseer" / "render-state.json").write_text('{"schema": 2}\n')
    hand_commit(repo, "old state")
    b = deploy(ctx)
    assert git_log(repo, "-1", "--name-only", "--format=", "--", ".overseer") != ""
    assert git(repo, "ls-files", ".overseer") == ""  # the next commit removed it
    assert not (repo / ".overseer" / "render-state.json").exists()
    assert deployments.update(ctx, a.deployment_id, DeploymentUpdate(data={"HEIGHT": "1"})).commit
    # Every Overseer commit touches only its charts: reverting the first of the two, with the
    # second on top, applies without a conflict.
    first = git_log(repo, "--format=%H", "--grep", b.deployment_id).split()[-1]
    reverted = subprocess.run(
        ["git", "-C", str(repo), *HAND, "revert", "--no-edit", first],
        capture_output=True,
        text=True,
    )
    assert reverted.returncode == 0, reverted.stdout + reverted.stderr
    assert not (repo / b.chart).exists() and (repo / a.chart).is_dir()


def bare_remote(tmp: Path) -> Path:
    remote = tmp / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    return remote


def remote_log(remote: Path, ref: str) -> list[str]:
    return git(remote, "log", "--format=%s", ref).splitlines()


def pushing(ctx: Context, remote: Path) -> Context:
    return Context(dataclasses.replace(ctx.settings, git_remote=str(remote)))


def test_a_push_rejected_by_a_moved_remote_is_rebased_and_retried(
    ctx: Context, tmp_path: Path
) -> None:
    remote = bare_remote(tmp_path)
    deploy(ctx, render=False)
    first = render_service.render(pushing(ctx, remote))
    assert first.pushed == "main" and first.push_error is None
    assert remote_log(remote, "main") == ["overseer: render (1 added, 0 changed, 0 removed)"]
    # Someone else pushes to main meanwhile: the next push is rejected, rebased and retried.
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(remote), str(other)], check=True)
    (other / "README.md").write_text("reviewers were here\n")
    hand_commit(other, "docs")
    git(other, "push", "-q", "origin", "main")
    deploy(ctx, render=False)
    second = render_service.render(pushing(ctx, remote))
    assert second.pushed == "main" and second.push_error is None
    assert remote_log(remote, "main") == [
        "overseer: render (1 added, 0 changed, 0 removed)",
        "docs",
        "overseer: render (1 added, 0 changed, 0 removed)",
    ]
    assert second.commit == git_log(ctx.settings.repo, "-1", "--format=%H").strip()
    assert (ctx.settings.repo / "README.md").read_text() == "reviewers were here\n"
    assert check_service.check(ctx, ctx.charts()) == []


def test_a_failed_push_keeps_the_commit_and_the_next_render_pushes_it(
    ctx: Context, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"  # not there yet: the push fails
    to_remote = pushing(ctx, remote)
    dep = deploy(to_remote)  # the deployment and its commit stand
    head = git_log(ctx.settings.repo, "-1", "--format=%H").strip()
    assert deployments.get(ctx, dep.id).rendered_commit == head
    failed = render_service.render(to_remote)
    assert failed.commit is None and failed.pushed is None
    assert failed.push_error is not None and f"git push to {remote} failed" in failed.push_error
    bare_remote(tmp_path)  # the remote is back
    pushed = render_service.render(to_remote)
    assert pushed.commit is None and pushed.pushed == "main" and pushed.push_error is None
    assert remote_log(remote, "main") == ["overseer: render (1 added, 0 changed, 0 removed)"]
    quiet = render_service.render(to_remote)  # nothing left to push: no push at all
    assert quiet.pushed is None and quiet.push_error is None


def test_a_lazy_repository_reads_like_a_checked_out_one(
    ctx: Context, kubeconform_bin: str, helm_bin: str, kube_score_bin: str, tmp_path: Path
) -> None:
    checked, lazy = ctx.settings.repo, tmp_path / "lazy"
    server = Context(dataclasses.replace(ctx.settings, worktree="lazy", repo=lazy))
    deps = [deploy(ctx, render=False) for _ in range(3)]
    render_service.render(ctx)
    render_service.render(server)
    assert git_log(lazy, "-1", "--format=%T") == git_log(checked, "-1", "--format=%T")
    assert not (lazy / "a8s").exists()  # objects and a ref only
    # Read from the commit, the lazy repository's charts are the checked-out one's.
    assert server.snapshot("HEAD").chart_paths() == ctx.snapshot("HEAD").chart_paths()
    assert check_service.check(server, server.charts("HEAD"), offline=True) == []
    # Asked for its files, the lazy repository brings them up to date first.
    assert check_service.check(server, server.charts(), offline=True) == []
    assert {f"a8s/{p.name}" for p in (lazy / "a8s").iterdir()} == {d.chart for d in deps}
    assert [r.problems for r in validate([lazy])] == [[], [], []]
    # A chart broken on the branch is found from the commit as from the files.
    broken = lazy / deps[0].chart / "templates" / "broken.yaml"
    broken.write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\nspec:\n  portz: []\n"
    )
    hand_commit(lazy, "broken")
    drift = check_service.check(server, server.charts("HEAD"), offline=True)
    assert [(d.path, d.reason) for d in drift] == [
        (deps[0].chart, "differs: templates/broken.yaml")
    ]
