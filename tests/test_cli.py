"""CLI contract: exit codes, exact output, and nothing left behind by a refused command."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import click
import psycopg
import pytest
import yaml

from generator.cli import main
from generator.config import Settings
from generator.errors import UserError
from generator.service import render as render_service
from generator.store.deployments import LIVE
from tests.conftest import Cli, commit_count, git_log

ROOT = Path(__file__).resolve().parent.parent


def rows(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def registered(cli: Cli, claude_manifest: Path) -> Cli:
    result = cli("plugin", "register", str(claude_manifest))
    assert result.exit_code == 0, result.stderr
    return cli


def all_commands() -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []

    def walk(prefix: str, cmd: click.Command) -> None:
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(f"{prefix} {name}".strip(), sub)
        out.append((prefix, cmd))

    walk("", main)
    return [(name, cmd) for name, cmd in out if name]


def test_every_command_has_help_and_is_documented() -> None:
    reference = (ROOT / "docs" / "commands.md").read_text()
    for name, cmd in all_commands():
        assert cmd.help and len(cmd.help.strip()) > 10, f"`overseer {name}` has no help text"
        assert f"overseer {name}" in reference, f"`overseer {name}` is not in docs/commands.md"
    # The README stays a newcomer's page: short, with its two commands and links to the rest.
    readme = (ROOT / "README.md").read_text()
    assert len(readme) < 8000 and "make demo" in readme and "make test" in readme
    for linked in re.findall(r"\]\((docs/[^)]+)\)", readme):
        assert (ROOT / linked).is_file(), f"README links to {linked}, which does not exist"


def test_console_script_runs(settings: object) -> None:
    proc = subprocess.run(["overseer", "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    for group in ("plugin", "deploy", "render", "validate", "db"):
        assert group in proc.stdout


def test_register_is_idempotent(cli: Cli, claude_manifest: Path) -> None:
    first = cli("plugin", "register", str(claude_manifest))
    assert first.exit_code == 0
    assert re.fullmatch(r"created: claude-environment 1\.0\.0 id=[a-z0-9]{24}\n", first.stdout)
    again = cli("plugin", "register", str(claude_manifest))
    assert again.stdout == first.stdout.replace("created", "unchanged")


def test_invalid_manifest_exit_code_and_nothing_stored(
    cli: Cli, tmp_path: Path, settings: object
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad\nversion: 1\nimage: {}\n")
    result = cli("plugin", "register", str(bad))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f'Error: {bad} (plugin "Bad"): validation failed:\n')
    for line in (
        "  - name (line 1): must be a DNS-1123 label",
        "  - version (line 2): expected a string, got the number 1",
        "  - image.name (line 3): required key is missing; add it",
    ):
        assert line in result.stderr
    assert rows(cli.env["DATABASE_URL"], "plugins") == 0


def test_register_several_is_all_or_nothing(
    cli: Cli, claude_manifest: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe")
    result = cli("plugin", "register", str(claude_manifest), str(bad))
    assert result.exit_code == 2 and "not valid UTF-8" in result.stderr
    assert rows(cli.env["DATABASE_URL"], "plugins") == 0


def test_plugin_list_show_formats(registered: Cli) -> None:
    table = registered("plugin", "list").stdout.splitlines()
    assert table[0].split() == ["NAME", "VERSION", "IMAGE", "REGISTRY", "ACTIVE", "ID"]
    assert table[1].split()[:5] == ["claude-environment", "1.0.0", "a8s-claude", "local", "yes"]
    as_json = json.loads(registered("plugin", "list", "-o", "json").stdout)
    assert as_json[0]["name"] == "claude-environment" and as_json[0]["is_active"] is True
    shown = yaml.safe_load(registered("plugin", "show", "claude-environment", "-o", "yaml").stdout)
    assert shown["image_name"] == "a8s-claude" and "ANTHROPIC_API_KEY" in shown["manifest"]
    missing = registered("plugin", "show", "nope")
    assert missing.exit_code == 3
    assert missing.stderr == 'Error: plugin "nope" is not registered; see `overseer plugin list`\n'
    assert (
        registered("plugin", "deactivate", "claude-environment").stdout
        == "deactivated: claude-environment 1.0.0\n"
    )
    assert "no" in registered("plugin", "list").stdout.splitlines()[1].split()
    assert (
        registered("plugin", "activate", "claude-environment").stdout
        == "activated: claude-environment 1.0.0\n"
    )


def test_missing_and_unknown_variables_leave_nothing(registered: Cli, settings: object) -> None:
    repo = registered.settings.repo
    url = registered.env["DATABASE_URL"]
    result = registered("deploy", "create", "claude-environment", "--set", "HEIGHT=1")
    assert result.exit_code == 2
    assert result.stderr == (
        'Error: plugin "claude-environment": missing required variable(s): ANTHROPIC_API_KEY; '
        'pass each with --set NAME=VALUE (API: in "data")\n'
    )
    result = registered(
        "deploy",
        "create",
        "claude-environment",
        "--set",
        "ANTHROPIC_API_KEY=k",
        "--set",
        "COLOR=red",
        "--set",
        "ZOOM=2",
    )
    assert result.exit_code == 2
    assert result.stderr == (
        'Error: plugin "claude-environment": unknown variable(s): COLOR, ZOOM; '
        "known variables are: ANTHROPIC_API_KEY, HEIGHT, WIDTH, DISPLAY_NUM\n"
    )
    unknown_plugin = registered("deploy", "create", "nope", "--set", "A=1")
    assert (
        unknown_plugin.exit_code == 3 and 'plugin "nope" is not registered' in unknown_plugin.stderr
    )
    bad_ns = registered(
        "deploy",
        "create",
        "claude-environment",
        "--set",
        "ANTHROPIC_API_KEY=k",
        "--namespace",
        "../etc",
    )
    assert bad_ns.exit_code == 1 and "namespace" in bad_ns.stderr
    assert rows(url, "deployments") == 0
    assert not any(repo.glob("*/*/Chart.yaml"))
    assert commit_count(repo) == 0


def test_create_renders_commits_and_redacts(registered: Cli) -> None:
    repo = registered.settings.repo
    result = registered(
        "deploy",
        "create",
        "claude-environment",
        "--set",
        "ANTHROPIC_API_KEY=sk-abc",
        "--set",
        "WIDTH=1280",
        "--tool",
        "git",
        "--requirement",
        "demo",
        "--ttl",
        "3600",
    )
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "sk-abc" not in out
    assert re.search(r"^data\.ANTHROPIC_API_KEY\s+<redacted>$", out, re.M)
    assert re.search(r"^data\.HEIGHT\s+768$", out, re.M)  # the manifest default
    assert re.search(r"^data\.WIDTH\s+1280$", out, re.M)
    release = re.search(r"^deployment_id\s+(claude-environment-[a-z0-9]{8})$", out, re.M)
    assert release is not None
    assert re.search(
        rf"^committed [0-9a-f]{{12}}: {re.escape(str(repo))}/a8s/{release[1]}$", out, re.M
    )
    assert (repo / "a8s" / release[1] / "Chart.yaml").is_file()
    log = git_log(repo, "-1", "--format=%an <%ae>%n%B")
    assert log.startswith(
        "Overseer <overseer@localhost>\noverseer: render (1 added, 0 changed, 0 removed)\n"
    )
    assert "Overseer-Deployment: " in log and f"a8s/{release[1]} claude-environment@1.0.0" in log
    shown = json.loads(registered("deploy", "show", release[1], "-o", "json").stdout)
    assert shown["data"]["ANTHROPIC_API_KEY"] == "<redacted>" and shown["ttl_seconds"] == 3600
    assert shown["rendered_commit"] == git_log(repo, "-1", "--format=%H").strip()
    listed = registered("deploy", "list").stdout.splitlines()
    assert listed[0].split() == ["DEPLOYMENT_ID", "PLUGIN", "NAMESPACE", "STATUS", "CREATED", "ID"]
    assert listed[1].split()[:4] == [release[1], "claude-environment", "a8s", "CREATING"]


def test_noop_render_writes_and_commits_nothing(registered: Cli) -> None:
    repo = registered.settings.repo
    registered.deploy()
    registered.deploy()
    before = commit_count(repo)
    mtimes = {
        p: p.stat().st_mtime_ns for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts
    }
    result = registered("render")
    assert result.exit_code == 0
    assert result.stdout == "nothing to commit: 0 added, 0 changed, 0 removed, 2 unchanged\n"
    assert commit_count(repo) == before
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    full = registered("render", "--full")
    assert full.stdout == "nothing to commit: 0 added, 0 changed, 0 removed, 2 unchanged\n"
    assert commit_count(repo) == before


def test_delete_and_expiry_remove_charts(registered: Cli) -> None:
    repo = registered.settings.repo
    a = registered.deploy()
    b = registered.deploy("--ttl", "3600")
    keep = registered.deploy()
    result = registered("deploy", "delete", str(a["deployment_id"]))
    assert result.exit_code == 0
    assert result.stdout.startswith(f"deleted: {a['deployment_id']}\ncommitted ")
    assert not (repo / str(a["chart"])).exists()
    assert "Removed:\n  " + str(a["chart"]) in git_log(repo, "-1", "--format=%B")
    with psycopg.connect(registered.env["DATABASE_URL"]) as conn:  # time passes: b's TTL runs out
        conn.execute(
            "UPDATE deployments SET expires_at = now() - interval '1 second' WHERE id = %s",
            (b["id"],),
        )
    result = registered("render")
    assert result.stdout.startswith("committed ") and "1 removed" in result.stdout
    assert not (repo / str(b["chart"])).exists()
    assert (repo / str(keep["chart"]) / "Chart.yaml").exists()
    again = registered("deploy", "delete", str(a["id"]))
    assert again.exit_code == 3 and "already deleted" in again.stderr
    shown = json.loads(registered("deploy", "show", str(a["id"]), "-o", "json").stdout)
    assert shown["status"] == "DELETED" and shown["deleted_at"]


def test_update_changes_a_deployment_in_one_commit(registered: Cli) -> None:
    repo = registered.settings.repo
    dep = registered.deploy()
    values = repo / str(dep["chart"]) / "values.yaml"
    before = commit_count(repo)
    result = registered(
        "deploy", "update", str(dep["deployment_id"]), "--set", "HEIGHT=900", "--tool", "git",
        "--requirement", "debugging", "--ttl", "3600", "-o", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["status"] == "UPDATING" and shown["deployment_id"] == dep["deployment_id"]
    assert shown["data"]["HEIGHT"] == "900" and shown["data"]["ANTHROPIC_API_KEY"] == "<redacted>"
    assert shown["tools"] == ["git"] and shown["requirement"] == "debugging"
    assert shown["ttl_seconds"] == 3600 and shown["expires_at"]
    assert shown["rendered_commit"] == git_log(repo, "-1", "--format=%H").strip()
    assert commit_count(repo) == before + 1
    assert "Changed:\n  " + str(dep["chart"]) in git_log(repo, "-1", "--format=%B")
    assert 'HEIGHT: "900"' in values.read_text()
    # --unset brings back the manifest's default; asking for it again changes nothing.
    reset = registered("deploy", "update", str(dep["id"]), "--unset", "HEIGHT")
    assert reset.exit_code == 0 and 'HEIGHT: "768"' in values.read_text()
    again = registered("deploy", "update", str(dep["id"]), "--unset", "HEIGHT")
    assert again.exit_code == 0 and again.stdout.endswith("\nnothing changed\n")
    assert commit_count(repo) == before + 2
    # A new secret leaves the chart as it is (no commit) but marks the release for an upgrade.
    with psycopg.connect(registered.env["DATABASE_URL"]) as conn:
        conn.execute("UPDATE deployments SET status = 'READY' WHERE id = %s", (dep["id"],))
    secret = registered(
        "deploy", "update", str(dep["id"]), "--set-env", "ANTHROPIC_API_KEY", "-o", "json",
        env={"ANTHROPIC_API_KEY": "sk-rotated-secret"},
    )  # fmt: skip
    assert secret.exit_code == 0, secret.stderr
    assert json.loads(secret.stdout)["status"] == "UPDATING"
    assert "sk-rotated-secret" not in secret.stdout and commit_count(repo) == before + 2
    assert "sk-rotated-secret" not in git_log(repo, "-p", "--all")


def test_update_refuses_bad_input_and_changes_nothing(registered: Cli) -> None:
    repo = registered.settings.repo
    dep = registered.deploy()
    before = commit_count(repo)
    ident = str(dep["id"])
    for args, code, message in [
        (["--unset", "ANTHROPIC_API_KEY"], 2, "ANTHROPIC_API_KEY"),
        (["--set", "ZOOM=2"], 2, "ZOOM"),
        (["--unset", "ZOOM"], 2, "ZOOM"),
        (["--set", "HEIGHT=1", "--unset", "HEIGHT"], 1, "HEIGHT: both set and unset"),
        (["--set", "HEIGHT"], 1, "--set 'HEIGHT': expected NAME=VALUE"),
    ]:
        result = registered("deploy", "update", ident, *args)
        assert result.exit_code == code and message in result.stderr, (args, result.stderr)
    missing = registered("deploy", "update", "nope", "--set", "HEIGHT=1")
    assert missing.exit_code == 3 and 'deployment "nope" not found' in missing.stderr
    assert commit_count(repo) == before
    assert json.loads(registered("deploy", "show", ident, "-o", "json").stdout)["status"] == (
        "CREATING"
    )
    with psycopg.connect(registered.env["DATABASE_URL"]) as conn:  # expired, not yet reaped
        conn.execute(
            "UPDATE deployments SET expires_at = now() - interval '1 second' WHERE id = %s",
            (ident,),
        )
    expired = registered("deploy", "update", ident, "--set", "HEIGHT=1", "--ttl", "60")
    assert expired.exit_code == 3 and "has expired; create a new one instead" in expired.stderr
    assert registered("deploy", "delete", ident).exit_code == 0
    gone = registered("deploy", "update", ident, "--set", "HEIGHT=1")
    assert gone.exit_code == 3 and "is deleted; create a new one instead" in gone.stderr


def test_an_update_whose_render_failed_is_committed_by_the_next_render(
    registered: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = registered.settings.repo
    dep = registered.deploy()
    values = repo / str(dep["chart"]) / "values.yaml"
    before = commit_count(repo)

    def fails(*args: object, **kwargs: object) -> None:
        raise UserError("git push to origin failed: the remote hung up")

    with monkeypatch.context() as patched:
        patched.setattr(render_service, "render", fails)
        failed = registered("deploy", "update", str(dep["id"]), "--set", "HEIGHT=900")
    assert failed.exit_code == 1 and failed.stderr == (
        f"Error: deployment {dep['deployment_id']} is updated, but rendering it failed: git push "
        "to origin failed: the remote hung up; the next `overseer render` commits it\n"
    )
    assert commit_count(repo) == before and 'HEIGHT: "768"' in values.read_text()
    shown = json.loads(registered("deploy", "show", str(dep["id"]), "-o", "json").stdout)
    assert shown["data"]["HEIGHT"] == "900"  # stored: the database leads, Git follows
    result = registered("render")
    assert result.stdout.startswith("committed ") and "1 changed" in result.stdout
    assert 'HEIGHT: "900"' in values.read_text()
    assert registered("render", "--check").exit_code == 0


def test_render_check_finds_drift_online_and_offline(registered: Cli) -> None:
    repo = registered.settings.repo
    dep = registered.deploy()
    for mode in ([], ["--offline"]):
        clean = registered("render", "--check", *mode)
        assert clean.exit_code == 0 and clean.stdout == "all charts match a fresh render\n"
    values = repo / str(dep["chart"]) / "values.yaml"
    values.write_text(values.read_text().replace("replicaCount: 1", "replicaCount: 3"))
    (repo / str(dep["chart"]) / "templates" / "extra.yaml").write_text("kind: ConfigMap\n")
    for mode in ([], ["--offline"]):
        drift = registered("render", "--check", *mode)
        assert drift.exit_code == 1
        assert drift.stdout == f"{dep['chart']}: differs: templates/extra.yaml, values.yaml\n"
        assert drift.stderr == "1 chart(s) differ from a fresh render\n"
    # A hand edit that was committed (say, merged in a pull request) is drift too.
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "-c",
            "user.name=h",
            "-c",
            "user.email=h@h",
            "commit",
            "-qm",
            "hand edit",
        ],
        check=True,
    )
    commits = commit_count(repo)
    assert registered("render").stdout.endswith(
        "1 unchanged\n"
    )  # inputs unchanged: incremental skips it
    repaired = registered("render", "--full")
    assert repaired.stdout.startswith("committed ") and "1 changed" in repaired.stdout
    assert commit_count(repo) == commits + 1
    assert registered("render", "--check").exit_code == 0


def agree(cli: Cli) -> None:
    """The repository and the database agree: every live row's chart is on HEAD and recorded
    there, no chart lacks a live row, the objects are sound and nothing is left uncommitted."""
    repo = cli.settings.repo
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "-d", "--name-only", "HEAD", "a8s/"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    with psycopg.connect(cli.env["DATABASE_URL"]) as conn:
        live = conn.execute(
            f"SELECT d.namespace || '/' || d.deployment_id, d.rendered_commit "
            f"FROM deployments d WHERE {LIVE}"
        ).fetchall()
    assert sorted(listed) == sorted(path for path, _ in live)
    for path, rendered in live:
        assert rendered is not None
        # The commit a row names holds its chart as HEAD does: apply installs from that commit.
        same = ["git", "-C", str(repo), "rev-parse", f"{rendered}:{path}", f"HEAD:{path}"]
        recorded, current = subprocess.run(same, capture_output=True, text=True).stdout.split()
        assert recorded == current, path
    subprocess.run(["git", "-C", str(repo), "fsck", "--strict", "--no-dangling"], check=True)
    status = ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=all"]
    assert subprocess.run(status, capture_output=True, text=True, check=True).stdout == ""
    assert cli("render", "--check").exit_code == 0


@pytest.mark.parametrize("step", ["objects-written", "ref-moved", "database-committed"])
@pytest.mark.parametrize("command", ["create", "update", "render"])
def test_a_writer_killed_at_any_step_is_reconciled_by_the_next(
    registered: Cli, command: str, step: str
) -> None:
    # A real SIGKILL at each boundary of a changeset: after its objects are written, after the
    # branch moved, after the database committed (before the lock and its journal are let go).
    repo = registered.settings.repo
    kept = registered.deploy()
    gone = registered.deploy()
    with psycopg.connect(registered.env["DATABASE_URL"]) as conn:
        conn.execute(
            "UPDATE deployments SET expires_at = now() - interval '1 second' WHERE id = %s",
            (gone["id"],),
        )
    waiting = [registered.deploy("--no-render") for _ in range(2)]
    head = git_log(repo, "-1", "--format=%H")
    args = {
        "create": ["deploy", "create", "claude-environment", "--set", "ANTHROPIC_API_KEY=k"],
        "update": ["deploy", "update", str(kept["id"]), "--set", "HEIGHT=999"],
        "render": ["render", "--no-progress"],
    }[command]
    killed = subprocess.run(
        [sys.executable, "-m", "generator.cli", *args],
        env={**os.environ, **registered.env, "OVERSEER_TEST_KILL_AT": step},
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    moved = git_log(repo, "-1", "--format=%H") != head
    assert moved == (step != "objects-written")

    result = registered("render", "--no-progress")
    assert result.exit_code == 0, result.stderr
    agree(registered)
    tree = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "-d", "--name-only", "HEAD", "a8s/"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert {str(w["chart"]) for w in waiting} <= set(tree) and str(gone["chart"]) not in tree


def test_a_clone_overseer_did_not_make_keeps_uncommitted_work(
    registered: Cli, tmp_path: Path
) -> None:
    first = registered.deploy()
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(registered.settings.repo), str(clone)], check=True)
    (clone / "NOTES.md").write_text("a draft, not committed\n")
    edited = clone / str(first["chart"]) / "values.yaml"
    edited.write_text(edited.read_text() + "# a reviewer's note\n")
    registered.deploy("--no-render")
    result = registered("render", env={"OVERSEER_REPO": str(clone)})
    assert result.exit_code == 0 and "1 added" in result.stdout, result.stdout
    assert (clone / "NOTES.md").read_text() == "a draft, not committed\n"
    assert edited.read_text().endswith("# a reviewer's note\n")  # not a chart the render changed


def test_check_reports_missing_and_orphaned_charts(registered: Cli) -> None:
    repo = registered.settings.repo
    dep = registered.deploy()
    orphan = repo / "a8s" / "ghost"
    orphan.mkdir(parents=True)
    (orphan / "Chart.yaml").write_text("apiVersion: v2\nname: ghost\nversion: 0.1.0\n")
    with psycopg.connect(registered.env["DATABASE_URL"]) as conn:
        conn.execute("UPDATE deployments SET namespace = 'moved' WHERE id = %s", (dep["id"],))
    result = registered("render", "--check")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{dep['chart']}: no live deployment; `overseer render` removes it",
        "a8s/ghost: no live deployment; `overseer render` removes it",
        f"moved/{dep['deployment_id']}: missing; run `overseer render`",
    ]


def test_mass_deletion_is_refused_unless_forced(registered: Cli, embedded_pg: object) -> None:
    repo = registered.settings.repo
    for _ in range(3):
        registered.deploy()
    commits = commit_count(repo)
    empty_db = embedded_pg.fresh_database()  # type: ignore[attr-defined]
    wrong = registered("render", env={"DATABASE_URL": empty_db})
    assert wrong.exit_code == 5
    assert wrong.stderr == (
        "Error: render would remove 3 of 3 charts; this usually means DATABASE_URL points at the wrong "
        "database. Check it, or pass --force to remove them\n"
    )
    assert len(list(repo.glob("a8s/*/Chart.yaml"))) == 3 and commit_count(repo) == commits
    forced = registered("render", "--force", env={"DATABASE_URL": empty_db})
    assert forced.exit_code == 0 and "3 removed" in forced.stdout
    assert not list(repo.glob("a8s/*/Chart.yaml"))


def test_database_unreachable_is_clear(cli: Cli) -> None:
    result = cli("plugin", "list", env={"DATABASE_URL": "postgresql://u:hunter2@127.0.0.1:1/x"})
    assert result.exit_code == 7
    assert result.stderr.startswith(
        "Error: cannot connect to PostgreSQL at postgresql://u:***@127.0.0.1:1/x: "
    )
    assert "hunter2" not in result.stderr


def test_db_commands(cli: Cli, embedded_pg: object) -> None:
    url = embedded_pg.fresh_database(migrated=False)  # type: ignore[attr-defined]
    pending = cli("db", "status", env={"DATABASE_URL": url})
    assert pending.stdout.splitlines()[1].split() == ["0001.deployments", "pending"]
    migrated = cli("db", "migrate", env={"DATABASE_URL": url})
    assert migrated.stdout.splitlines()[0] == "applied: 0001.deployments"
    status = cli("db", "status", env={"DATABASE_URL": url})
    assert all(line.split()[1] == "applied" for line in status.stdout.splitlines()[1:])
    assert (
        cli("db", "backfill", env={"DATABASE_URL": url}).stdout
        == "linked 0 deployment(s) to their plugin\n"
    )


def test_validate_names_chart_and_resource(
    registered: Cli, kubeconform_bin: str, helm_bin: str
) -> None:
    repo = registered.settings.repo
    dep = registered.deploy()
    ok = registered("validate", str(repo))
    assert ok.exit_code == 0, ok.stdout
    assert ok.stdout == "1 of 1 chart(s) valid\n"
    broken = repo / str(dep["chart"]) / "templates" / "broken.yaml"
    broken.write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\nspec:\n  portz: []\n"
    )
    bad = registered("validate", str(repo))
    assert bad.exit_code == 1
    assert bad.stdout.splitlines()[0] == f"FAIL {repo / str(dep['chart'])}"
    assert "kubeconform: Service/broken:" in bad.stdout and "portz" in bad.stdout
    assert bad.stdout.endswith("0 of 1 chart(s) valid\n")


def test_a_lazy_repository_reads_like_a_checked_out_one(
    registered: Cli, kubeconform_bin: str, helm_bin: str, tmp_path: Path
) -> None:
    checked, lazy = registered.settings.repo, tmp_path / "lazy"
    as_server = {"OVERSEER_WORKTREE": "lazy", "OVERSEER_REPO": str(lazy)}
    deps = [registered.deploy("--no-render") for _ in range(3)]
    assert registered("render").exit_code == 0
    assert registered("render", env=as_server).exit_code == 0
    assert git_log(lazy, "-1", "--format=%T") == git_log(checked, "-1", "--format=%T")
    assert not (lazy / "a8s").exists()  # objects and a ref only
    for args in (
        ["render", "--check", "--offline", "--ref", "HEAD"],
        ["validate", "--ref", "HEAD"],
    ):
        from_commit = registered(*args, "--no-progress" if args[0] == "validate" else "--offline")
        lazily = registered(*args, env=as_server)
        assert from_commit.exit_code == lazily.exit_code == 0, lazily.stdout
        assert from_commit.stdout == lazily.stdout
    checks = registered("validate", "--ref", "HEAD", env=as_server).stdout
    assert checks == "3 of 3 chart(s) valid\n"
    # Asked for its files, the lazy repository brings them up to date first.
    offline = registered("render", "--check", "--offline", env=as_server)
    assert offline.exit_code == 0 and offline.stdout == "all charts match a fresh render\n"
    assert {f"a8s/{p.name}" for p in (lazy / "a8s").iterdir()} == {str(d["chart"]) for d in deps}
    assert registered("validate", env=as_server).stdout == "3 of 3 chart(s) valid\n"
    # A chart broken on the branch is found from the commit as from the files.
    broken = lazy / str(deps[0]["chart"]) / "templates" / "broken.yaml"
    broken.write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\nspec:\n  portz: []\n"
    )
    subprocess.run(["git", "-C", str(lazy), "add", "-A"], check=True)
    hand = ["-c", "user.name=h", "-c", "user.email=h@h", "commit", "-qm", "broken"]
    subprocess.run(["git", "-C", str(lazy), *hand], check=True)
    bad = registered("validate", "--ref", "HEAD", env=as_server)
    assert bad.exit_code == 1 and bad.stdout.startswith(f"FAIL HEAD:{deps[0]['chart']}\n")
    drift = registered("render", "--check", "--offline", "--ref", "HEAD", env=as_server)
    assert drift.exit_code == 1
    assert drift.stdout == f"{deps[0]['chart']}: differs: templates/broken.yaml\n"


def test_incremental_render_sees_every_kind_of_change(
    registered: Cli, claude_manifest: Path
) -> None:
    repo = registered.settings.repo
    a, b = registered.deploy(), registered.deploy()
    path = repo / ".git" / "overseer-render-state.json"  # beside the repository, never in it
    state = json.loads(path.read_text())
    assert state["generation"] > 0 and len(state["plugins"]) == 1
    assert state["commit"] == git_log(repo, "-1", "--format=%H").strip()
    assert git_log(repo, "--name-only", "--format=", "--", ".overseer") == ""
    with psycopg.connect(registered.env["DATABASE_URL"]) as conn:  # a change made behind its back
        conn.execute(
            "UPDATE deployments SET config = replace(config, '\"768\"', '\"999\"') WHERE id = %s",
            (a["id"],),
        )
        conn.execute(
            "UPDATE deployments SET status = 'READY' WHERE id = %s", (b["id"],)
        )  # not an input
    result = registered("render")
    assert "0 added, 1 changed, 0 removed, 1 unchanged" in result.stdout
    assert 'HEIGHT: "999"' in (repo / str(a["chart"]) / "values.yaml").read_text()
    upgraded = claude_manifest.read_text().replace("version: 1.0.0", "version: 1.1.0")
    new = repo.parent / "plugin-1.1.0.yaml"
    new.write_text(upgraded)
    assert registered("plugin", "register", str(new)).exit_code == 0
    result = registered("render")
    assert "0 added, 2 changed, 0 removed, 0 unchanged" in result.stdout
    assert "claude-environment@1.1.0" in git_log(repo, "-1", "--format=%B")
    # State recorded for another database is not trusted: every chart is compared again. Its
    # xmin, far in the future, would have hidden the change below from an incremental render.
    doctored = json.loads(path.read_text())
    doctored["database"] = "00000000-0000-0000-0000-000000000000"
    doctored["generation"] = 10**9
    doctored["xmin"] = 10**12
    path.write_text(json.dumps(doctored))
    with psycopg.connect(registered.env["DATABASE_URL"]) as conn:
        conn.execute(
            "UPDATE deployments SET config = replace(config, '\"999\"', '\"555\"') WHERE id = %s",
            (a["id"],),
        )
    assert "1 changed" in registered("render").stdout
    assert registered("render", "--check").exit_code == 0
    # Nor is state recorded for another commit: main moved under it (here, a hand commit).
    doctored = {**json.loads(path.read_text()), "xmin": 10**12}
    path.write_text(json.dumps(doctored))
    (repo / "NOTES.md").write_text("hand-written\n")
    subprocess.run(["git", "-C", str(repo), "add", "NOTES.md"], check=True)
    hand = ["-c", "user.name=h", "-c", "user.email=h@h", "commit", "-qm", "notes"]
    subprocess.run(["git", "-C", str(repo), *hand], check=True)
    with psycopg.connect(registered.env["DATABASE_URL"]) as conn:
        conn.execute(
            "UPDATE deployments SET config = replace(config, '\"555\"', '\"444\"') WHERE id = %s",
            (a["id"],),
        )
    assert "1 changed" in registered("render").stdout
    assert registered("render", "--check").exit_code == 0


def test_overseer_commits_revert_cleanly_and_old_committed_state_goes(registered: Cli) -> None:
    repo = registered.settings.repo
    a = registered.deploy()
    # A repository from an earlier version carries its render state in the tree.
    (repo / ".overseer").mkdir()
    (repo / ".overseer" / "render-state.json").write_text('{"schema": 2}\n')
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    hand = ["-c", "user.name=h", "-c", "user.email=h@h"]
    subprocess.run(["git", "-C", str(repo), *hand, "commit", "-qm", "old state"], check=True)
    b = registered.deploy()
    assert git_log(repo, "-1", "--name-only", "--format=", "--", ".overseer") != ""
    assert (
        subprocess.run(  # the next commit removed it
            ["git", "-C", str(repo), "ls-files", ".overseer"], capture_output=True, text=True
        ).stdout
        == ""
    )
    assert not (repo / ".overseer" / "render-state.json").exists()
    assert (
        registered("deploy", "update", str(a["deployment_id"]), "--set", "HEIGHT=1").exit_code == 0
    )
    # Every Overseer commit touches only its charts: reverting the first of the two, with the
    # second on top, applies without a conflict.
    first = git_log(repo, "--format=%H", "--grep", str(b["deployment_id"])).split()[-1]
    reverted = subprocess.run(
        ["git", "-C", str(repo), *hand, "revert", "--no-edit", first],
        capture_output=True,
        text=True,
    )
    assert reverted.returncode == 0, reverted.stdout + reverted.stderr
    assert not (repo / str(b["chart"])).exists() and (repo / str(a["chart"])).is_dir()


def bare_remote(tmp: Path) -> Path:
    remote = tmp / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    return remote


def remote_log(remote: Path, ref: str) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(remote), "log", "--format=%s", ref],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.splitlines()


def test_push_to_remote_rebases_on_rejection(registered: Cli, tmp_path: Path) -> None:
    remote = bare_remote(tmp_path)
    env = {"OVERSEER_GIT_REMOTE": str(remote)}
    registered.deploy("--no-render")
    first = registered("render", env=env)
    assert first.exit_code == 0 and "(pushed to main)" in first.stdout
    assert remote_log(remote, "main") == ["overseer: render (1 added, 0 changed, 0 removed)"]
    # Someone else pushes to main meanwhile: the next push is rejected, rebased and retried.
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(remote), str(other)], check=True)
    (other / "README.md").write_text("reviewers were here\n")
    subprocess.run(["git", "-C", str(other), "add", "README.md"], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(other),
            "-c",
            "user.name=r",
            "-c",
            "user.email=r@r",
            "commit",
            "-qm",
            "docs",
        ],
        check=True,
    )
    subprocess.run(["git", "-C", str(other), "push", "-q", "origin", "main"], check=True)
    registered.deploy("--no-render")
    second = registered("render", env=env)
    assert second.exit_code == 0, second.stderr
    assert "(pushed to main)" in second.stdout
    assert remote_log(remote, "main") == [
        "overseer: render (1 added, 0 changed, 0 removed)",
        "docs",
        "overseer: render (1 added, 0 changed, 0 removed)",
    ]
    assert (registered.settings.repo / "README.md").read_text() == "reviewers were here\n"
    assert registered("render", "--check").exit_code == 0


def test_a_failed_push_keeps_the_commit_and_the_next_render_pushes_it(
    registered: Cli, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"  # not there yet: the push fails
    env = {"OVERSEER_GIT_REMOTE": str(remote)}
    created = registered("deploy", "create", "claude-environment", "--set", "ANTHROPIC_API_KEY=k",
                         "-o", "json", env=env)  # fmt: skip
    assert created.exit_code == 0, created.stderr  # the deployment and its commit stand
    dep = json.loads(created.stdout)
    head = git_log(registered.settings.repo, "-1", "--format=%H").strip()
    shown = json.loads(registered("deploy", "show", dep["id"], "-o", "json").stdout)
    assert shown["rendered_commit"] == head
    failed = registered("render", env=env)
    assert failed.exit_code == 1 and failed.stdout.startswith("nothing to commit: ")
    assert f"git push to {remote} failed" in failed.stderr
    assert "the commit stands, and the next render pushes it" in failed.stderr
    bare_remote(tmp_path)  # the remote is back
    pushed = registered("render", env=env)
    assert pushed.exit_code == 0, pushed.stderr
    assert pushed.stdout.startswith("nothing to commit (pushed to main): ")
    assert remote_log(remote, "main") == ["overseer: render (1 added, 0 changed, 0 removed)"]
    quiet = registered("render", env=env)  # nothing left to push: no push at all
    assert quiet.stdout.startswith("nothing to commit: ")


def test_plugin_upgrade_keeps_deployments_renderable(
    registered: Cli, claude_manifest: Path
) -> None:
    repo = registered.settings.repo
    dep = registered.deploy()
    text = claude_manifest.read_text()
    needs_more = registered.settings.repo.parent / "v2.yaml"
    needs_more.write_text(
        text.replace("version: 1.0.0", "version: 2.0.0").replace(
            "    required:\n", "    required:\n      - name: REGION\n        description: Where\n"
        )
    )
    refused = registered("plugin", "register", str(needs_more))
    assert refused.exit_code == 4
    assert refused.stderr == (
        f'Error: plugin "claude-environment": version 2.0.0 requires REGION, which live deployment(s) '
        f"{dep['deployment_id']} lack; give the variable a default as an optional one, or delete those "
        "deployments first\n"
    )
    # Dropping one variable and adding an optional one: the chart follows the new manifest.
    changed = registered.settings.repo.parent / "v3.yaml"
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
    assert registered("plugin", "register", str(changed)).exit_code == 0
    assert "1 changed" in registered("render").stdout
    values = yaml.safe_load((repo / dep["chart"] / "values.yaml").read_text())
    assert values["env"] == {"DPI": "96", "HEIGHT": "768", "WIDTH": "1024"}
    assert registered("validate", str(repo)).exit_code == 0


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie, stopped but not yet reaped by its parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_embedded_server_can_be_seen_and_stopped(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "", "OVERSEER_HOME": str(tmp_path / "home")}
    cli = Cli(
        Settings(
            home=tmp_path / "home",
            repo=tmp_path / "gitops",
            database_url=None,
            secret_key=None,
            namespace="a8s",
        )
    )
    pgdata = tmp_path / "home" / "pgdata"
    idle = cli("db", "status", env=env)
    assert idle.stdout == (
        f"embedded PostgreSQL: not running (data in {pgdata}); "
        "the next command that needs it starts it\n"
    )
    assert cli("db", "migrate", env=env).exit_code == 0  # starts it
    running = cli("db", "status", env=env)
    assert running.stdout.startswith("embedded PostgreSQL: running, pid ")
    pid = int(running.stdout.split("pid ")[1].split(",")[0])
    assert alive(pid) and "0001.deployments" in running.stdout
    assert (
        cli("db", "stop", env=env).stdout == f"stopped the embedded PostgreSQL (data in {pgdata})\n"
    )
    assert not alive(pid)
    assert (
        cli("db", "stop", env=env).stdout
        == f"the embedded PostgreSQL is not running (data in {pgdata})\n"
    )
