"""CLI contract: exit codes, exact output, and nothing left behind by a refused command."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import click
import psycopg
import pytest
import yaml

from generator.cli import main
from generator.config import Settings
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
        path, _, anchor = linked.partition("#")
        assert (ROOT / path).is_file(), f"README links to {path}, which does not exist"
        headings = re.findall(r"^#+ (.+)$", (ROOT / path).read_text(), re.M)
        anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
        assert not anchor or anchor in anchors, f"README links to {linked}: no such heading"


def test_console_script_runs(settings: object) -> None:
    proc = subprocess.run(["overseer", "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    for group in ("plugin", "deploy", "render", "validate", "db"):
        assert group in proc.stdout


def test_register_is_idempotent(cli: Cli, claude_manifest: Path) -> None:
    first = cli("plugin", "register", str(claude_manifest))
    assert first.exit_code == 0
    assert re.fullmatch(r"created: claude-environment 1\.0\.0 id=[a-z0-9]{24}\n", first.stdout)
    # The spec's example registers, with advice on what a production chart would not do.
    assert first.stderr.splitlines() == [
        "warning: plugin \"claude-environment\": image.tag is 'latest': a re-pushed image changes "
        "what runs with nothing changed in Git; pin a version",
        'warning: plugin "claude-environment": image.pull_policy is Never: the image must already '
        "be on every node; publish it to a registry and use IfNotPresent or Always",
    ]
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


def test_a_render_that_changes_nothing_says_so(registered: Cli) -> None:
    registered.deploy()
    registered.deploy()
    for full in ([], ["--full"]):
        result = registered("render", *full)
        assert result.exit_code == 0
        assert result.stdout == "nothing to commit: 0 added, 0 changed, 0 removed, 2 unchanged\n"


def test_delete_and_expiry_output(registered: Cli) -> None:
    a = registered.deploy()
    b = registered.deploy("--ttl", "3600")
    result = registered("deploy", "delete", str(a["deployment_id"]))
    assert result.exit_code == 0
    assert re.fullmatch(
        rf"deleted: {a['deployment_id']}\ncommitted [0-9a-f]{{12}}: removed {a['chart']}\n",
        result.stdout,
    )
    with psycopg.connect(registered.env["DATABASE_URL"]) as conn:  # time passes: b's TTL runs out
        conn.execute(
            "UPDATE deployments SET expires_at = now() - interval '1 second' WHERE id = %s",
            (b["id"],),
        )
    result = registered("render")
    assert re.fullmatch(
        r"committed [0-9a-f]{12}: 0 added, 0 changed, 1 removed, 0 unchanged\n", result.stdout
    ), result.stdout
    again = registered("deploy", "delete", str(a["id"]))
    assert again.exit_code == 3 and again.stderr == (
        f'Error: deployment "{a["id"]}" is already deleted\n'
    )
    shown = json.loads(registered("deploy", "show", str(a["id"]), "-o", "json").stdout)
    assert shown["status"] == "DELETED" and shown["deleted_at"]


def test_update_options_and_output(registered: Cli) -> None:
    repo = registered.settings.repo
    dep = registered.deploy()
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
    reset = registered("deploy", "update", str(dep["id"]), "--unset", "HEIGHT")
    assert reset.exit_code == 0 and "\ncommitted " in reset.stdout
    again = registered("deploy", "update", str(dep["id"]), "--unset", "HEIGHT")
    assert again.exit_code == 0 and again.stdout.endswith("\nnothing changed\n")
    # --set-env reads the value from the environment, so it is in no shell history.
    secret = registered(
        "deploy", "update", str(dep["id"]), "--set-env", "ANTHROPIC_API_KEY", "-o", "json",
        env={"ANTHROPIC_API_KEY": "sk-rotated-secret"},
    )  # fmt: skip
    assert secret.exit_code == 0, secret.stderr
    assert json.loads(secret.stdout)["data"]["ANTHROPIC_API_KEY"] == "<redacted>"
    assert "sk-rotated-secret" not in secret.stdout + secret.stderr


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
    assert gone.exit_code == 4 and "was deleted; create a new one instead" in gone.stderr


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
        assert drift.exit_code == 3
        assert drift.stdout == f"{dep['chart']}: differs: templates/extra.yaml, values.yaml\n"
        assert drift.stderr == "1 chart(s) differ from a fresh render\n"


def test_mass_deletion_exit_code_and_hint(registered: Cli, embedded_pg: object) -> None:
    for _ in range(3):
        registered.deploy()
    empty_db = embedded_pg.fresh_database()  # type: ignore[attr-defined]
    wrong = registered("render", env={"DATABASE_URL": empty_db})
    assert wrong.exit_code == 5
    assert wrong.stderr == (
        "Error: render would remove 3 of 3 charts; this usually means DATABASE_URL points at the wrong "
        "database. Check it, or pass --force to remove them\n"
    )
    forced = registered("render", "--force", env={"DATABASE_URL": empty_db})
    assert forced.exit_code == 0 and "3 removed" in forced.stdout


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
    registered: Cli, kubeconform_bin: str, helm_bin: str, kube_score_bin: str
) -> None:
    repo = registered.settings.repo
    dep = registered.deploy()
    chart, release = repo / str(dep["chart"]), dep["deployment_id"]
    ok = registered("validate", str(repo))
    assert ok.exit_code == 0, ok.stdout
    # The spec's example keeps its `latest` tag and pull policy Never: warnings, not failures.
    finding = f"  warning: kube-score: Deployment/{release}: (claude-environment) "
    assert ok.stdout == (
        f"WARN {chart}\n"
        f"{finding}Image with latest tag [container-image-tag]\n"
        f"{finding}ImagePullPolicy is not set to Always [container-image-pull-policy]\n"
        "1 of 1 chart(s) valid\n"
    )
    strict = registered("validate", "--strict", str(repo))
    assert strict.exit_code == 3 and strict.stdout.startswith(f"FAIL {chart}\n")
    assert strict.stdout.endswith("0 of 1 chart(s) valid\n")
    # A team that accepts nothing sees what the default list skips fail too.
    nothing_skipped = registered("validate", str(repo), env={"OVERSEER_SCORE_SKIP": ""})
    assert nothing_skipped.exit_code == 3
    for check in ("container-security-context-user-group-id", "deployment-replicas"):
        assert f"[{check}]" in nothing_skipped.stdout
    broken = repo / str(dep["chart"]) / "templates" / "broken.yaml"
    broken.write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\nspec:\n  portz: []\n"
    )
    bad = registered("validate", str(repo))
    assert bad.exit_code == 3
    assert bad.stdout.splitlines()[0] == f"FAIL {repo / str(dep['chart'])}"
    assert "kubeconform: Service/broken:" in bad.stdout and "portz" in bad.stdout
    assert bad.stdout.endswith("0 of 1 chart(s) valid\n")


def test_ref_reads_the_charts_of_a_commit(
    registered: Cli, kubeconform_bin: str, helm_bin: str, kube_score_bin: str, tmp_path: Path
) -> None:
    lazy = tmp_path / "lazy"
    as_server = {"OVERSEER_WORKTREE": "lazy", "OVERSEER_REPO": str(lazy)}
    deps = [registered.deploy("--no-render") for _ in range(3)]
    assert registered("render").exit_code == 0
    assert registered("render", env=as_server).exit_code == 0
    for args in (
        ["render", "--check", "--offline", "--ref", "HEAD"],
        ["validate", "--ref", "HEAD", "--no-progress"],
    ):
        from_commit = registered(*args)
        lazily = registered(*args, env=as_server)
        assert from_commit.exit_code == lazily.exit_code == 0, lazily.stdout
        assert from_commit.stdout == lazily.stdout
    assert registered("validate", "--ref", "HEAD", env=as_server).stdout.endswith(
        "\n3 of 3 chart(s) valid\n"
    )
    assert not (lazy / "a8s").exists()  # read from objects: no files written
    # A chart broken on the branch is named as in the commit.
    files = registered("render", "--check", "--offline", env=as_server)  # brings the files
    assert files.exit_code == 0 and files.stdout == "all charts match a fresh render\n"
    broken = lazy / str(deps[0]["chart"]) / "templates" / "broken.yaml"
    broken.write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\nspec:\n  portz: []\n"
    )
    subprocess.run(["git", "-C", str(lazy), "add", str(broken)], check=True)
    hand = ["-c", "user.name=h", "-c", "user.email=h@h", "commit", "-qm", "broken"]
    subprocess.run(["git", "-C", str(lazy), *hand], check=True)
    bad = registered("validate", "--ref", "HEAD", env=as_server)
    assert bad.exit_code == 3 and f"\nFAIL HEAD:{deps[0]['chart']}\n" in "\n" + bad.stdout
    assert bad.stdout.endswith("\n2 of 3 chart(s) valid\n")  # the others are not affected
    assert "kubeconform: Service/broken:" in bad.stdout
    drift = registered("render", "--check", "--offline", "--ref", "HEAD", env=as_server)
    assert drift.exit_code == 3
    assert drift.stdout == f"{deps[0]['chart']}: differs: templates/broken.yaml\n"


def test_push_output(registered: Cli, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"  # not there yet: the push fails
    env = {"OVERSEER_GIT_REMOTE": str(remote)}
    registered.deploy("--no-render")
    failed = registered("render", env=env)
    assert failed.exit_code == 1 and failed.stdout.startswith("committed ")
    assert failed.stderr.startswith(f"Error: git push to {remote} failed")
    assert failed.stderr.endswith("; the commit stands, and the next render pushes it\n")
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    pushed = registered("render", env=env)
    assert pushed.exit_code == 0, pushed.stderr
    assert pushed.stdout.startswith("nothing to commit (pushed to main): ")
    registered.deploy("--no-render")
    both = registered("render", env=env)
    assert both.exit_code == 0 and re.match(
        r"committed [0-9a-f]{12} \(pushed to main\): ", both.stdout
    )


def test_an_incompatible_plugin_upgrade_is_a_conflict(
    registered: Cli, claude_manifest: Path
) -> None:
    dep = registered.deploy()
    needs_more = registered.settings.repo.parent / "v2.yaml"
    needs_more.write_text(
        claude_manifest.read_text()
        .replace("version: 1.0.0", "version: 2.0.0")
        .replace(
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
    try:
        running = cli("db", "status", env=env)
        assert running.stdout.startswith("embedded PostgreSQL: running, pid ")
        pid = int(running.stdout.split("pid ")[1].split(",")[0])
        assert alive(pid) and "0001.deployments" in running.stdout
        stopped = cli("db", "stop", env=env)
        assert stopped.stdout == f"stopped the embedded PostgreSQL (data in {pgdata})\n"
        assert not alive(pid)
    finally:  # a failed assertion above must not leave a server running
        cli("db", "stop", env=env)
    assert (
        cli("db", "stop", env=env).stdout
        == f"the embedded PostgreSQL is not running (data in {pgdata})\n"
    )
