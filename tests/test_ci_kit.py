"""The CI kit: checks limited to what a pull request changed, their exit codes and formats, the
pre-commit hook, and the CI examples, all run for real on a repository of rendered charts.

The repositories are built without a database: charts rendered in-process from made-up
deployments, committed with real git, so 200 charts take a second.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from generator.cli import main
from generator.manifest import parse_manifest
from generator.render import DeploymentInput, PluginInput, Renderer
from generator.service import verified
from tests.conftest import CI, Cli, need, unavailable

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "environments" / "claude" / "plugin.yaml"
EXAMPLES = ROOT / "examples" / "ci"
NS = "team"
HAND = ["-c", "user.name=h", "-c", "user.email=h@h"]
BROKEN = "apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\nspec:\n  portz: []\n"


def plugin(name: str = "claude-environment", version: str = "1.0.0") -> PluginInput:
    text = MANIFEST.read_text().replace("name: claude-environment", f"name: {name}", 1)
    text = text.replace("version: 1.0.0", f"version: {version}", 1)
    return PluginInput(name, version, parse_manifest(text.encode(), name))


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *HAND, *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@dataclass
class Charts:
    """A Git repository of rendered charts, as Overseer lays it out."""

    root: Path
    renderer: Renderer

    def write(self, release: str, of: PluginInput, height: int = 768) -> str:
        """Render one deployment's chart into the work tree; its chart path."""
        dep = DeploymentInput(
            id=f"id-{release}",
            release=release,
            namespace=NS,
            env=(("DISPLAY_NUM", "1"), ("HEIGHT", str(height)), ("WIDTH", "1024")),
            secret_keys=("ANTHROPIC_API_KEY",),
            tools=("git",),
            requirement="a test",
        )
        chart = self.root / NS / release
        shutil.rmtree(chart, ignore_errors=True)
        for rel, data in self.renderer.render(dep, of).items():
            (chart / rel).parent.mkdir(parents=True, exist_ok=True)
            (chart / rel).write_bytes(data)
        return f"{NS}/{release}"

    def commit(self, message: str) -> str:
        git(self.root, "add", "-A")
        git(self.root, "commit", "-qm", message)
        return git(self.root, "rev-parse", "HEAD")

    def edit(self, chart: str, name: str = "values.yaml") -> None:
        """A hand edit: the kind of change the check exists to catch."""
        path = self.root / chart / name
        path.write_text(path.read_text().replace("replicaCount: 1", "replicaCount: 3"))


A, B = "claude-environment", "other-environment"


@pytest.fixture
def charts(tmp_path: Path) -> Charts:
    """200 charts on main: 150 of plugin A, 50 of plugin B; a branch `pr` checked out."""
    root = tmp_path / "gitops"
    git(tmp_path, "init", "-q", "-b", "main", str(root))
    repo = Charts(root, Renderer())
    a, b = plugin(A), plugin(B)
    for i in range(150):
        repo.write(f"a-{i:03d}", a)
    for i in range(50):
        repo.write(f"b-{i:03d}", b)
    (root / "README.md").write_text("charts rendered by Overseer\n")
    repo.commit("200 charts")
    git(root, "checkout", "-qb", "pr")
    return repo


def overseer(repo: Path, *args: str) -> Result:
    """The CLI in-process, against `repo`, with no database anywhere near."""
    env = {"OVERSEER_REPO": str(repo), "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def checked(result: Result) -> dict[str, list[dict[str, object]]]:
    """Chart -> its problems, from a JSON report (every chart checked is in it)."""
    report = json.loads(result.stdout)
    assert report["checked"] == len(report["charts"])
    return {c["chart"]: c["problems"] for c in report["charts"]}


CHECK = ("render", "--check", "--offline")


def test_a_change_to_one_chart_of_200_checks_exactly_that_chart(charts: Charts) -> None:
    charts.write("a-007", plugin(A), height=900)  # re-rendered properly: no drift
    charts.commit("one chart changed")
    clean = overseer(charts.root, *CHECK, "--changed-since", "main", "-o", "json")
    assert clean.exit_code == 0, clean.output
    assert checked(clean) == {f"{NS}/a-007": []}
    assert json.loads(clean.stdout)["selection"]["plugins"] == []

    charts.edit(f"{NS}/a-011")  # a hand edit, committed on the branch
    charts.commit("hand edit")
    drift = overseer(charts.root, *CHECK, "--changed-since", "main", "-o", "json")
    assert drift.exit_code == 3
    found = checked(drift)
    assert sorted(found) == [f"{NS}/a-007", f"{NS}/a-011"] and found[f"{NS}/a-007"] == []
    assert [p["file"] for p in found[f"{NS}/a-011"]] == [f"{NS}/a-011/values.yaml"]
    # The whole repository is what the selection saves: 200 charts, the same one drifted.
    full = overseer(charts.root, *CHECK, "-o", "json")
    assert full.exit_code == 3 and len(checked(full)) == 200
    assert [c for c, p in checked(full).items() if p] == [f"{NS}/a-011"]
    # The selection compares commits: an edit not committed is for PATHS (the pre-commit hook).
    charts.edit(f"{NS}/b-003")
    dirty = overseer(charts.root, *CHECK, "--changed-since", "main", "-o", "json")
    assert sorted(checked(dirty)) == [f"{NS}/a-007", f"{NS}/a-011"]
    named = overseer(charts.root, *CHECK, str(charts.root / NS / "b-003" / "values.yaml"))
    assert named.exit_code == 3 and named.stdout == f"{NS}/b-003: differs: values.yaml\n"
    committed = overseer(charts.root, *CHECK, "--ref", "HEAD", "--changed-since", "main")
    assert committed.exit_code == 3 and committed.stdout == f"{NS}/a-011: differs: values.yaml\n"
    assert "checking 2 chart(s) changed since main" in committed.stderr


def test_a_plugin_version_change_checks_every_chart_of_that_plugin(charts: Charts) -> None:
    root = charts.root
    git(root, "checkout", "-q", "main")  # a chart of B edited by hand before the branch
    charts.edit(f"{NS}/b-049")
    charts.commit("hand edit on main")
    git(root, "checkout", "-qB", "pr")
    charts.write("a-040", plugin(A), height=1000)  # an ordinary change to one chart of A
    charts.commit("change one A")
    ordinary = overseer(root, *CHECK, "--changed-since", "main", "-o", "json")
    assert ordinary.exit_code == 0 and checked(ordinary) == {f"{NS}/a-040": []}
    charts.write("b-020", plugin(B, "1.1.0"))  # the first chart of an upgrade of B
    charts.commit("upgrade B")
    result = overseer(root, *CHECK, "--changed-since", "main", "-o", "json")
    assert sorted(checked(result)) == [f"{NS}/a-040"] + [f"{NS}/b-{i:03d}" for i in range(50)]
    assert json.loads(result.stdout)["selection"]["plugins"] == [B]
    # Now in scope, the chart of B that the pull request never touched is found out.
    assert result.exit_code == 3
    assert [c for c, p in checked(result).items() if p] == [f"{NS}/b-049"]


def test_paths_select_the_charts_holding_them(charts: Charts) -> None:
    charts.edit(f"{NS}/a-001")
    root = charts.root
    files = [root / NS / "a-001" / "values.yaml", root / NS / "a-002" / "Chart.yaml"]
    result = overseer(root, *CHECK, *map(str, files), str(root / "README.md"), "-o", "json")
    assert result.exit_code == 3
    assert checked(result) == {
        f"{NS}/a-001": [
            {
                "file": f"{NS}/a-001/values.yaml",
                "message": f"{NS}/a-001/values.yaml differs from a fresh render; charts are "
                "generated: change the deployment, not the chart",
            }
        ],
        f"{NS}/a-002": [],
    }
    nothing = overseer(root, *CHECK, str(root / "README.md"))
    assert nothing.exit_code == 0 and nothing.stdout == "no charts to check\n"
    outside = overseer(root, *CHECK, str(ROOT / "README.md"))
    assert outside.exit_code == 1
    assert "not inside the GitOps repository" in outside.stderr and "--repo" in outside.stderr


def test_github_format_annotates_the_failing_file(charts: Charts) -> None:
    charts.edit(f"{NS}/a-005")
    (charts.root / NS / "a-006" / "overseer-inputs.json").write_text("{not json")
    result = overseer(charts.root, *CHECK, "--format", "github")
    assert result.exit_code == 3
    lines = result.stdout.splitlines()
    title = "title=Overseer%3A chart differs from a fresh render"
    assert lines[0] == (
        f"::error file={NS}/a-005/values.yaml,{title}::{NS}/a-005/values.yaml differs from a "
        "fresh render; charts are generated: change the deployment, not the chart"
    )
    assert lines[1].startswith(
        f"::error file={NS}/a-006/overseer-inputs.json,{title}::{NS}/a-006: "
        f"{NS}/a-006/overseer-inputs.json: unreadable inputs record"
    )
    assert lines[2:] == ["198 of 200 chart(s) passed render --check"]


def test_exit_codes_tell_findings_from_failures(charts: Charts, tmp_path: Path) -> None:
    assert overseer(charts.root, *CHECK).exit_code == 0
    no_ref = overseer(charts.root, *CHECK, "--changed-since", "no-such-branch")
    assert no_ref.exit_code == 1 and no_ref.stdout == ""
    assert no_ref.stderr.startswith("Error: --changed-since no-such-branch: no such commit in ")
    assert "fetch-depth: 0" in no_ref.stderr
    # NotFound exits 3 elsewhere; in a check 3 means findings, so a missing commit is 1 here.
    missing = overseer(charts.root, *CHECK, "--ref", "no-such-branch")
    assert missing.exit_code == 1 and "no such commit" in missing.stderr
    plain = tmp_path / "plain"
    plain.mkdir()
    not_git = overseer(plain, *CHECK, "--changed-since", "main")
    assert not_git.exit_code == 1 and "is not a Git repository" in not_git.stderr
    both = overseer(charts.root, *CHECK, "--changed-since", "main", str(charts.root / NS))
    assert both.exit_code == 2 and "give PATHS or --changed-since, not both" in both.stderr
    stray = overseer(charts.root, "render", "-o", "json")
    assert stray.exit_code == 2 and "only apply to --check" in stray.stderr
    # validate with no kubeconform to run: the check failed, which is not a finding.
    bare = {
        "PATH": os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin",
        "OVERSEER_KUBECONFORM": "",
        "OVERSEER_KUBE_SCORE": "",
    }
    no_tool = CliRunner().invoke(
        main, ["validate", "--no-progress", str(charts.root / NS / "a-000")], env=bare
    )
    assert no_tool.exit_code == 1 and "kubeconform" in no_tool.stderr


def test_a_full_check_renders_only_what_it_has_not_proved_clean(
    charts: Charts, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, cache = charts.root, charts.root / ".git" / "overseer-verified-charts"
    renders: list[str] = []
    render = Renderer.render

    def counted(self: Renderer, dep: DeploymentInput, *args: object) -> dict[str, bytes]:
        renders.append(dep.release)
        return render(self, dep, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Renderer, "render", counted)
    assert overseer(root, *CHECK).exit_code == 0 and len(renders) == 200
    assert len(cache.read_text().splitlines()) == 1 + 200
    renders.clear()
    assert overseer(root, *CHECK).exit_code == 0 and renders == []
    # A hand edit changes the chart's bytes, so its digest: rendered, and found, every time.
    charts.edit(f"{NS}/a-001")
    for _ in range(2):
        drift = overseer(root, *CHECK)
        assert drift.exit_code == 3 and drift.stdout == f"{NS}/a-001: differs: values.yaml\n"
        assert renders == ["a-001"]
        renders.clear()
    # Another generator (a new Overseer, an edited template or renderer) trusts none of it.
    monkeypatch.setattr(verified, "generator_id", lambda: "0" * 64)
    assert overseer(root, *CHECK).exit_code == 3 and len(renders) == 200
    cache.write_text("not a cache\n")
    renders.clear()
    assert overseer(root, *CHECK).exit_code == 3 and len(renders) == 200


def test_the_online_check_takes_the_same_selection(cli: Cli, claude_manifest: Path) -> None:
    assert cli("plugin", "register", str(claude_manifest)).exit_code == 0
    first, second = cli.deploy(), cli.deploy()
    repo = cli.settings.repo
    Charts(repo, Renderer()).edit(str(second["chart"]))
    git(repo, "commit", "-qam", "hand edit")
    result = cli("render", "--check", "--changed-since", "HEAD~1", "-o", "json")
    assert result.exit_code == 3, result.output
    assert list(checked(result)) == [second["chart"]]  # the database holds both
    everything = cli("render", "--check", "-o", "json")
    assert sorted(checked(everything)) == sorted([first["chart"], second["chart"]])


@pytest.fixture
def validators(helm_bin: str, kubeconform_bin: str, kube_score_bin: str) -> None:
    """validate needs all three tools."""


def test_validate_changed_since_json_and_github(charts: Charts, validators: None) -> None:
    (charts.root / NS / "b-002" / "templates" / "broken.yaml").write_text(BROKEN)
    charts.commit("a broken template")
    result = overseer(charts.root, "validate", "--changed-since", "main", "-o", "json")
    assert result.exit_code == 3, result.output
    found = checked(result)
    assert list(found) == [f"{NS}/b-002"]
    [problem] = [p for p in found[f"{NS}/b-002"] if "kubeconform" in str(p["message"])]
    assert problem["file"] == f"{NS}/b-002/templates/broken.yaml"
    assert "Service/broken" in str(problem["message"]) and "portz" in str(problem["message"])
    github = overseer(charts.root, "validate", "--changed-since", "main", "--format", "github")
    assert github.exit_code == 3
    errors = [line for line in github.stdout.splitlines() if line.startswith("::error ")]
    # The broken Service selects every pod, so kube-score also faults the test hook's pod:
    # each finding sits on the template of the object it is about.
    assert any(
        line.startswith(f"::error file={NS}/b-002/templates/broken.yaml,")
        and "::kubeconform: Service/broken:" in line
        for line in errors
    )
    assert all(line.startswith(f"::error file={NS}/b-002/templates/") for line in errors)
    assert github.stdout.endswith("\n0 of 1 chart(s) passed validate\n")
    from_commit = overseer(charts.root, "validate", "--ref", "HEAD~1", "--changed-since", "main")
    assert from_commit.exit_code == 0 and from_commit.stdout == "0 of 0 chart(s) valid\n"


# --- the pre-commit hook and the CI examples, run for real ------------------------------------


@pytest.fixture
def pull_request(tmp_path: Path) -> Iterator[tuple[Path, Charts]]:
    """An "origin" with 3 charts on main and a branch `pr` changing one; a fresh clone of `pr`."""
    origin = tmp_path / "origin"
    git(tmp_path, "init", "-q", "-b", "main", str(origin))
    repo = Charts(origin, Renderer())
    for i in range(3):
        repo.write(f"a-{i:03d}", plugin(A))
    repo.commit("3 charts")
    git(origin, "checkout", "-qb", "pr")
    repo.write("a-001", plugin(A), height=1080)
    repo.commit("resize a-001")
    git(origin, "checkout", "-q", "main")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--branch", "pr", str(origin), str(clone))
    yield clone, repo


def break_pull_request(repo: Charts) -> None:
    """A hand edit on the branch, the kind a reviewer must see."""
    git(repo.root, "checkout", "-q", "pr")
    repo.edit(f"{NS}/a-001")
    repo.commit("hand edit")
    git(repo.root, "checkout", "-q", "main")


def run_script(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`script` as a CI runner runs it: bash, stopping at the first failing command."""
    path = shutil.which("overseer")
    assert path is not None, "the tests run with the venv's bin on PATH (`make path`)"
    full = {**os.environ, **env, "PATH": f"{Path(path).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        check=False,
    )


def actionlint_bin() -> str:
    return need(
        "actionlint", "run `make tools` (builds the pinned actionlint into ~/.cache/overseer)"
    )


def test_github_actions_example_lints_and_runs(
    pull_request: tuple[Path, Charts], validators: None, tmp_path: Path
) -> None:
    workflow = EXAMPLES / "github-actions.yaml"
    lint = subprocess.run(
        [actionlint_bin(), "-no-color", str(workflow)], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    doc = yaml.safe_load(workflow.read_text())
    [job] = doc["jobs"].values()
    steps = [s for s in job["steps"] if "run" in s]
    # Installing is the runner's business: Overseer and the tools are on PATH here already.
    runnable = [s for s in steps if not s["name"].startswith("Install ")]
    assert [s["name"] for s in runnable] == [
        "Charts match a fresh render of their inputs",
        "Charts are valid",
    ]
    assert all("${{" not in s["run"] for s in runnable), "runnable as plain bash"
    env = {**doc.get("env", {}), **job.get("env", {}), "GITHUB_BASE_REF": "main", "CI": "true"}
    clone, repo = pull_request
    for step in runnable:
        done = run_script(step["run"], clone, {**env, **step.get("env", {})})
        assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "1 of 1 chart(s) passed render --check" in run_script(runnable[0]["run"], clone, env).stdout
    )
    break_pull_request(repo)
    fresh = tmp_path / "fresh"
    git(tmp_path, "clone", "-q", "--branch", "pr", str(repo.root), str(fresh))
    failed = run_script(runnable[0]["run"], fresh, env)
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert failed.stdout.startswith(f"::error file={NS}/a-001/values.yaml,title=")


def test_gitlab_ci_example_runs(pull_request: tuple[Path, Charts], validators: None) -> None:
    doc = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    [job] = doc.values()
    assert job["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    script = "\n".join(job["script"])
    env = {**job["variables"], "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main", "CI": "true"}
    clone, repo = pull_request
    ok = run_script(script, clone, env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.endswith("1 of 1 chart(s) valid\n")
    break_pull_request(repo)
    git(clone, "pull", "-q", "--ff-only")
    failed = run_script(script, clone, env)
    assert failed.returncode == 3
    assert failed.stdout == f"{NS}/a-001: differs: values.yaml\n"


@pytest.fixture(scope="session")
def pre_commit() -> str:
    found = shutil.which("pre-commit") or str(Path(sys.executable).parent / "pre-commit")
    if not Path(found).exists():
        unavailable("pre-commit is not installed: run `make venv` (it is a dev dependency)")
    return found


def run_hook(
    pre_commit: str, hook: str, clone: Path, *files: str
) -> subprocess.CompletedProcess[str]:
    """`pre-commit try-repo <this checkout> HOOK --files FILES` in `clone`.

    The hook's environment is built from this checkout (uncommitted changes included) and PyPI,
    and kept between runs under the cache, as pre-commit keeps its own.
    """
    cache = Path(os.environ.get("OVERSEER_CACHE", Path.home() / ".cache" / "overseer"))
    env = {**os.environ, "PRE_COMMIT_HOME": str(cache / "pre-commit"), "CI": str(CI).lower()}
    env.pop("VIRTUAL_ENV", None)
    cmd = [pre_commit, "try-repo", str(ROOT), hook, "--files", *files]
    return subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True, timeout=900)


def test_pre_commit_hook_passes_then_fails(
    pull_request: tuple[Path, Charts], pre_commit: str
) -> None:
    clone, _ = pull_request
    passing = run_hook(
        pre_commit,
        "overseer-render-check",
        clone,
        f"{NS}/a-002/values.yaml",
        f"{NS}/a-001/Chart.yaml",
    )
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "overseer render --check --offline" in passing.stdout and "Passed" in passing.stdout
    Charts(clone, Renderer()).edit(f"{NS}/a-002")
    git(clone, "add", f"{NS}/a-002/values.yaml")
    failing = run_hook(pre_commit, "overseer-render-check", clone, f"{NS}/a-002/values.yaml")
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "Failed" in failing.stdout and "- exit code: 3" in failing.stdout
    assert f"{NS}/a-002: differs: values.yaml" in failing.stdout


def test_pre_commit_validate_hook(
    pull_request: tuple[Path, Charts], pre_commit: str, validators: None
) -> None:
    clone, _ = pull_request
    passing = run_hook(pre_commit, "overseer-validate", clone, f"{NS}/a-001/values.yaml")
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "overseer validate" in passing.stdout and "Passed" in passing.stdout
    (clone / NS / "a-001" / "templates" / "broken.yaml").write_text(BROKEN)
    git(clone, "add", f"{NS}/a-001/templates/broken.yaml")
    failing = run_hook(pre_commit, "overseer-validate", clone, f"{NS}/a-001/templates/broken.yaml")
    assert failing.returncode == 1 and "- exit code: 3" in failing.stdout
    assert f"FAIL {NS}/a-001" in failing.stdout and "Service/broken" in failing.stdout
