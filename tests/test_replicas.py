"""Two replicas of `overseer serve` on one database and one bare remote, each with its own clone.

As the chart runs them: every replica takes writes, commits in its own clone and pushes to the
remote, whose main is where they agree; PostgreSQL lets one render run at a time.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from generator.config import Settings
from tests.conftest import Cli, Kube
from tests.test_api import MANIFEST, Server, server_env

BODY = {"environment_type": "claude-environment", "data": {"ANTHROPIC_API_KEY": "k"}}


def git(where: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(where), *args], capture_output=True, text=True, check=True
    ).stdout


class Pair:
    """Two replicas and their remote."""

    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        self.settings = settings
        self.tmp = tmp_path
        self.remote = tmp_path / "remote.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.remote)], check=True)
        self.replicas = [self.replica(name) for name in ("a", "b")]

    def replica(self, name: str) -> Server:
        env = server_env(
            self.settings,
            OVERSEER_GIT_REMOTE=str(self.remote),
            OVERSEER_REPO=str(self.tmp / f"clone-{name}"),
            OVERSEER_HOME=str(self.tmp / f"home-{name}"),
        )
        return Server(env, "--no-worker")

    def charts_on_main(self) -> set[str]:
        """`<namespace>/<release>` of every chart on the remote's main."""
        listed = subprocess.run(
            ["git", "-C", str(self.remote), "ls-tree", "-r", "--name-only", "main"],
            capture_output=True,
            text=True,
        )
        names = listed.stdout.split() if listed.returncode == 0 else []  # no main yet: none
        return {n.rsplit("/", 1)[0] for n in names if n.endswith("/Chart.yaml")}

    def trailers(self) -> Counter[str]:
        """How many commits on the remote's main name each deployment (its id) in a trailer."""
        log = git(self.remote, "log", "--format=%B", "main")
        return Counter(re.findall(r"^Overseer-Deployment: (\S+) ", log, re.M))

    def rows(self, where: str = "true") -> dict[str, str]:
        """Live rows' chart paths by deployment id (`where` narrows them)."""
        with psycopg.connect(self.settings.database_url or "") as conn:
            found = conn.execute(
                f"SELECT id, namespace || '/' || deployment_id FROM deployments WHERE {where}"
            ).fetchall()
        return {str(r[0]): str(r[1]) for r in found}

    def pushed(self, charts: set[str], timeout: float = 60) -> None:
        """Wait until the remote's main holds exactly `charts` (a round's push follows its answer)."""
        deadline = time.monotonic() + timeout
        while (on_main := self.charts_on_main()) != charts:
            assert time.monotonic() < deadline, (len(on_main), len(charts))
            time.sleep(0.2)

    def check_offline_from_a_fresh_clone(self) -> None:
        fresh = self.tmp / f"fresh-{len(list(self.tmp.glob('fresh-*')))}"
        subprocess.run(["git", "clone", "-q", str(self.remote), str(fresh)], check=True)
        result = Cli(self.settings)(
            "render", "--check", "--offline", env={"OVERSEER_REPO": str(fresh)}
        )
        assert result.exit_code == 0, result.stdout + result.stderr


@pytest.fixture
def pair(settings: Settings, tmp_path: Path) -> Iterator[Pair]:
    both = Pair(settings, tmp_path)
    try:
        for server in both.replicas:
            server.start()
        with MANIFEST.open("rb") as f:
            httpx.post(
                f"{both.replicas[0].url}/plugins", files={"manifest_file": ("plugin.yaml", f)}
            ).raise_for_status()
        yield both
    finally:
        for server in both.replicas:
            server.stop()


def test_two_replicas_take_400_concurrent_creates(pair: Pair) -> None:
    a, b = pair.replicas

    def create(i: int) -> httpx.Response:
        return httpx.post(f"{(a, b)[i % 2].url}/deployments", json=BODY, timeout=120)

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(create, range(400)))
    assert [r.status_code for r in answers if r.status_code != 201] == []
    created = {r.json()["id"] for r in answers}
    rows = pair.rows()
    assert set(rows) == created and len(created) == 400
    pair.pushed(set(rows.values()))
    assert set(pair.trailers().values()) == {1}  # one commit each, none twice
    assert set(pair.trailers()) == created
    # One line of history, and no replica holds a commit the remote lacks (a follower may hold
    # none at all: the leader rendered everything).
    assert git(pair.remote, "rev-list", "--merges", "main") == ""
    for clone in ("clone-a", "clone-b"):
        if _main_of(pair.tmp / clone):
            git(pair.tmp / clone, "fetch", "-q", str(pair.remote), "main")
            git(pair.tmp / clone, "merge-base", "--is-ancestor", "main", "FETCH_HEAD")
    pair.check_offline_from_a_fresh_clone()


def test_one_replica_renders_for_both(pair: Pair) -> None:
    """The first writer to render leads; the other's creates are rendered by it, not by itself."""
    a, b = pair.replicas
    first = httpx.post(f"{a.url}/deployments", json=BODY, timeout=60)
    assert first.status_code == 201, first.text
    before = _main_of(pair.tmp / "clone-b")
    made = [httpx.post(f"{b.url}/deployments", json=BODY, timeout=60) for _ in range(3)]
    assert [m.status_code for m in made] == [201, 201, 201], [m.text for m in made]
    assert _main_of(pair.tmp / "clone-b") == before  # b committed nothing: a did, for it
    pair.pushed(set(pair.rows().values()))
    on_main = git(pair.remote, "rev-list", "main").split()
    assert all(m.json()["rendered_commit"] in on_main for m in made)


def _main_of(clone: Path) -> str:
    found = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "--verify", "-q", "main"],
        capture_output=True,
        text=True,
    )
    return found.stdout.strip()


def test_an_update_racing_a_delete_on_the_other_replica_ends_one_way(pair: Pair) -> None:
    a, b = pair.replicas
    outcomes: Counter[str] = Counter()
    for _ in range(50):
        made = httpx.post(f"{a.url}/deployments", json=BODY, timeout=60)
        assert made.status_code == 201, made.text
        ident = made.json()["id"]
        url_a, url_b = f"{a.url}/deployments/{ident}", f"{b.url}/deployments/{ident}"
        answers = race(
            functools.partial(httpx.patch, url_a, json={"data": {"HEIGHT": "1"}}, timeout=60),
            functools.partial(httpx.delete, url_b, timeout=60),
        )
        updated, deleted = answers
        assert deleted.status_code == 200, deleted.text
        if updated.status_code == 200:  # the update came first; the delete built on its commit
            outcomes["update, then delete"] += 1
            commit = updated.json()["rendered_commit"]
            pair.pushed(set())  # wait for the delete's push
            git(pair.remote, "merge-base", "--is-ancestor", commit, "main")
        else:  # the delete came first: the update is refused whole, and says why
            assert updated.status_code == 409, updated.text
            assert "was deleted; create a new one instead" in updated.json()["error"]["message"]
            outcomes["delete won"] += 1
    # Every deployment is deleted, in the database and on the remote alike.
    assert pair.rows("deleted_at IS NULL") == {}
    pair.pushed(set())
    assert sum(outcomes.values()) == 50
    pair.check_offline_from_a_fresh_clone()


def test_a_replica_killed_mid_push_loses_no_answered_create(pair: Pair) -> None:
    a, b = pair.replicas
    hook = pair.remote / "hooks" / "pre-receive"
    # The remote refuses pushes for a while: replica a commits in its clone and answers 201,
    # its charts waiting there for the next push.
    hook.write_text("#!/bin/sh\necho 'closed for maintenance' >&2\nexit 1\n")
    hook.chmod(0o755)
    answered = []
    for _ in range(5):
        made = httpx.post(f"{a.url}/deployments", json=BODY, timeout=60)
        assert made.status_code == 201, made.text
        answered.append(made.json())
    assert pair.charts_on_main() == set() and len(answered) == 5
    # Then a push that hangs, and the replica is killed in the middle of it, its clone gone
    # with its pod.
    gate = pair.tmp / "hold"
    gate.touch()
    hook.write_text(f"#!/bin/sh\nwhile [ -e {gate} ]; do sleep 0.1; done\nexit 0\n")

    def post_and_hang() -> None:  # answered once committed; its push is the one that hangs
        try:
            made = httpx.post(f"{a.url}/deployments", json=BODY, timeout=60)
        except httpx.TransportError:  # the server died before it answered
            return
        if made.status_code == 201:
            answered.append(made.json())

    hanging = threading.Thread(target=post_and_hang, daemon=True)
    hanging.start()
    pushing = pair.tmp / "clone-a"
    for _ in range(300):  # wait until the push is underway
        if _receiving(pair.remote):
            break
        threading.Event().wait(0.1)
    assert _receiving(pair.remote), "the push never started"
    a.kill()
    hanging.join(60)
    gate.unlink()
    shutil.rmtree(pushing)
    shutil.rmtree(pair.tmp / "home-a")
    # Replica b carries on; its next round brings every answered create to the remote's main.
    made = httpx.post(f"{b.url}/deployments", json=BODY, timeout=60)
    assert made.status_code == 201, made.text
    answered.append(made.json())
    pair.pushed(set(pair.rows("deleted_at IS NULL").values()))  # the unanswered one's row too
    on_main = pair.charts_on_main()
    for dep in answered:
        assert f"{dep['namespace']}/{dep['deployment_id']}" in on_main
    pair.check_offline_from_a_fresh_clone()


def race(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Make the calls at the same moment, each from a thread of its own; their answers."""
    start = threading.Barrier(len(calls))

    def call(fn: Callable[[], httpx.Response]) -> httpx.Response:
        start.wait()
        return fn()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(call, calls))


def _receiving(remote: Path) -> bool:
    """Whether a git receive-pack (a push in progress) runs on `remote`."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        line = b" ".join(cmdline)
        if b"receive-pack" in line and str(remote).encode() in line:
            return True
    return False


def test_a_new_pod_keeps_the_secrets_and_the_repository(
    kube_settings: Settings, kube: Kube, tmp_path: Path
) -> None:
    """The server stopped, its home and clone wiped (a new pod's emptyDirs), started again with
    the same key (from the chart's Secret) and the same remote."""
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    home, clone = tmp_path / "pod-home", tmp_path / "pod-clone"
    env = server_env(
        kube_settings,
        OVERSEER_GIT_REMOTE=str(remote),
        OVERSEER_REPO=str(clone),
        OVERSEER_HOME=str(home),
    )
    server = Server(env).start()
    try:
        with MANIFEST.open("rb") as f:
            httpx.post(
                f"{server.url}/plugins", files={"manifest_file": ("plugin.yaml", f)}
            ).raise_for_status()
        body = {**BODY, "data": {"ANTHROPIC_API_KEY": "sk-before-restart"}}
        made = httpx.post(f"{server.url}/deployments", json=body, timeout=60).json()
        wait_for(server, made["id"], "READY")
    finally:
        server.stop()
    main_before = git(remote, "rev-parse", "main").strip()
    shutil.rmtree(home)
    shutil.rmtree(clone)
    server = Server(env).start()
    try:
        # The clone came back from the remote at start, before any request.
        assert git(clone, "rev-parse", "main").strip() == main_before
        chart = f"{made['namespace']}/{made['deployment_id']}"
        assert git(clone, "ls-tree", "--name-only", "main", f"{chart}/") != ""
        # A change renders and applies; the stored secret still opens, and reaches the cluster.
        changed = httpx.patch(
            f"{server.url}/deployments/{made['id']}", json={"data": {"HEIGHT": "900"}}, timeout=60
        )
        assert changed.status_code == 200, changed.text
        wait_for(server, made["id"], "READY")
        secret = kube.json(
            "get", "secret", f"{made['deployment_id']}-env", "-n", made["namespace"]
        )["data"]
        assert base64.b64decode(secret["ANTHROPIC_API_KEY"]) == b"sk-before-restart"  # type: ignore[index]
        assert git(remote, "rev-list", "--count", f"{main_before}..main") == "1\n"
    finally:
        server.stop()


def wait_for(server: Server, ident: str, status: str, timeout: float = 120) -> None:
    """Poll the deployment until it has `status`; fail on FAILED or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        now = httpx.get(f"{server.url}/deployments/{ident}", timeout=10).json()
        if now["status"] == status:
            return
        assert now["status"] != "FAILED", now
        assert time.monotonic() < deadline, now
        time.sleep(0.3)


def test_readiness_fails_while_the_remote_is_unreachable(
    settings: Settings, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"  # not there yet: as a remote that does not answer
    env = server_env(settings, OVERSEER_GIT_REMOTE=str(remote))
    server = Server(env, "--no-worker").start()  # it starts, and says it is not ready
    try:
        assert httpx.get(f"{server.url}/livez").json() == {"status": "ok"}  # not restarted
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503
        assert "the Git remote does not answer" in ready.json()["error"]["message"]
        assert str(remote) not in ready.text  # where it is stays in the log
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
        deadline = time.monotonic() + 30  # a remote's answer is kept for 5 s
        while (ready := httpx.get(f"{server.url}/readyz")).status_code != 200:
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.5)
        assert ready.json() == {"database": "ok", "remote": "ok"}
    finally:
        server.stop()


def test_a_new_pod_sweeps_by_the_remote_not_by_its_empty_clone(
    settings: Settings, tmp_path: Path
) -> None:
    """A create committed and pushed whose answer never left a killed pod: the new pod, its clone
    empty, withdraws it (the chart leaves main) rather than forgetting the row under the chart."""
    pair = Pair(settings, tmp_path)
    first = pair.replicas[0].start()
    try:
        with MANIFEST.open("rb") as f:
            httpx.post(
                f"{first.url}/plugins", files={"manifest_file": ("plugin.yaml", f)}
            ).raise_for_status()
        made = httpx.post(f"{first.url}/deployments", json=BODY, timeout=60).json()
        pair.pushed({f"{made['namespace']}/{made['deployment_id']}"})
    finally:
        first.stop()
    with psycopg.connect(settings.database_url or "") as conn:  # as if it died before answering
        conn.execute("UPDATE deployments SET answer_pending = 'gone' WHERE id = %s", (made["id"],))
    shutil.rmtree(pair.tmp / "clone-a")
    shutil.rmtree(pair.tmp / "home-a")
    second = pair.replica("a").start()
    try:
        pair.pushed(set())  # withdrawn, and its chart removed from main
        with psycopg.connect(settings.database_url or "") as conn:
            row = conn.execute(
                "SELECT deleted_at IS NOT NULL, answer_pending FROM deployments WHERE id = %s",
                (made["id"],),
            ).fetchone()
        assert row == (True, None)
    finally:
        second.stop()
