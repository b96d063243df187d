"""Who may do what, where, against a real server and a real PostgreSQL: named tokens and their
scopes and namespaces, bodies refused before they are read, rate limits, paging, creates exactly
once, and a database that goes away."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from generator.config import Settings
from tests.conftest import Cli, PgServer, _debian_bin, commit_count, git_log, unavailable
from tests.test_api import MANIFEST, Server, api_no_worker, server_env

__all__ = ["api_no_worker"]  # a fixture, used below

BOOT = "boot-" + "x" * 20
ALLOWED = "a8s,team-b"
BODY = {"environment_type": "claude-environment", "data": {"ANTHROPIC_API_KEY": "k"}}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_token(cli: Cli, name: str, *args: str) -> str:
    made = cli("token", "create", name, *args, env={"OVERSEER_ALLOWED_NAMESPACES": ALLOWED})
    assert made.exit_code == 0, made.stderr
    return made.stdout.strip()


def burst_until(going: Callable[[], bool]) -> None:
    """Wait (two minutes at most) until a burst of requests has got this far."""
    deadline = time.monotonic() + 120
    while not going():
        assert time.monotonic() < deadline, "the burst never got going"
        time.sleep(0.01)


def live_rows(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id FROM deployments WHERE deleted_at IS NULL AND answer_pending IS NULL"
        ).fetchall()
    return {r[0] for r in rows}


@pytest.fixture
def guarded(settings: Settings, cli: Cli) -> Iterator[tuple[Server, dict[str, str]]]:
    """A server with the bootstrap token and four named ones, the plugin registered."""
    tokens = {
        "admin": make_token(cli, "plugins-admin", "--scope", "admin"),
        "deploy-a": make_token(cli, "team-a", "--scope", "deploy", "--namespace", "a8s"),
        "deploy-b": make_token(cli, "team-b", "--scope", "deploy", "--namespace", "team-b"),
        "read-b": make_token(cli, "audit-b", "--scope", "read", "--namespace", "team-b"),
    }
    env = server_env(settings, OVERSEER_API_TOKEN=BOOT, OVERSEER_ALLOWED_NAMESPACES=ALLOWED)
    server = Server(env, "--no-worker").start()
    try:
        with MANIFEST.open("rb") as fh:
            registered = httpx.post(
                f"{server.url}/plugins",
                files={"manifest_file": fh},
                headers=bearer(tokens["admin"]),
            )
        assert registered.status_code == 200, registered.text
        yield server, tokens
    finally:
        server.stop()


def test_scopes_and_namespaces_on_every_route(
    guarded: tuple[Server, dict[str, str]], settings: Settings
) -> None:
    server, tokens = guarded
    url, repo = server.url, settings.repo

    def post(token: str, namespace: str) -> httpx.Response:
        body = {**BODY, "namespace": namespace}
        return httpx.post(f"{url}/deployments", json=body, headers=bearer(token), timeout=60)

    mine = post(tokens["deploy-a"], "a8s")
    assert mine.status_code == 201, mine.text
    theirs = post(tokens["deploy-b"], "team-b")
    assert theirs.status_code == 201, theirs.text
    before = commit_count(repo)
    refusals = {
        "team-b": 'token "team-a" may not act in namespace "team-b"; its namespaces are: a8s',
        "kube-system": 'namespace "kube-system" belongs to the cluster',
        "default": 'namespace "default" belongs to the cluster',
        "elsewhere": 'namespace "elsewhere" is not one deployments may use',
    }
    for namespace, words in refusals.items():
        refused = post(tokens["deploy-a"], namespace)
        assert refused.status_code == 403, refused.text
        assert words in refused.json()["error"]["message"]
    # Scopes: plugins are the admin's, deployments the deployers', reading the readers'.
    with MANIFEST.open("rb") as fh:
        not_admin = httpx.post(
            f"{url}/plugins", files={"manifest_file": fh}, headers=bearer(tokens["deploy-a"])
        )
    assert not_admin.status_code == 403
    assert 'token "team-a" lacks the admin scope' in not_admin.json()["error"]["message"]
    assert post(tokens["read-b"], "team-b").status_code == 403
    assert post(tokens["admin"], "a8s").status_code == 403  # admin alone does not deploy
    a_id, b_id = mine.json()["id"], theirs.json()["id"]
    for token, sees in (("read-b", {b_id}), ("deploy-a", {a_id}), ("deploy-b", {b_id})):
        listed = httpx.get(f"{url}/deployments", headers=bearer(tokens[token]))
        assert {d["id"] for d in listed.json()} == sees, token
    assert {d["id"] for d in httpx.get(f"{url}/deployments", headers=bearer(BOOT)).json()} == {
        a_id,
        b_id,
    }
    for path in (f"/deployments/{a_id}", f"/deployments/{a_id}/connect"):
        assert httpx.get(f"{url}{path}", headers=bearer(tokens["read-b"])).status_code == 403
        assert httpx.get(f"{url}{path}", headers=bearer(tokens["deploy-a"])).status_code == 200
    change = {"data": {"HEIGHT": "900"}}
    other = httpx.patch(
        f"{url}/deployments/{b_id}", json=change, headers=bearer(tokens["deploy-a"])
    )
    assert other.status_code == 403 and "team-b" in other.json()["error"]["message"]
    assert (
        httpx.delete(f"{url}/deployments/{b_id}", headers=bearer(tokens["deploy-a"])).status_code
        == 403
    )
    assert commit_count(repo) == before  # nothing refused was stored or committed
    own = httpx.patch(
        f"{url}/deployments/{a_id}", json=change, headers=bearer(tokens["deploy-a"]), timeout=60
    )
    assert own.status_code == 200, own.text
    # The commits name the token that asked.
    assert (
        git_log(repo, "-1", "--format=%B")
        .rstrip()
        .endswith('\nOverseer-Requested-By: token "team-a"')
    )
    assert 'Overseer-Requested-By: token "team-b"' in git_log(repo, "--format=%B")
    # No token, a made-up one: 401. Health and the API's description stay open.
    assert httpx.get(f"{url}/plugins").status_code == 401
    assert httpx.get(f"{url}/deployments", headers=bearer("ovs_nope")).status_code == 401
    for open_path in ("/healthz", "/openapi.json", "/docs"):
        assert httpx.get(f"{url}{open_path}").status_code == 200, open_path


def test_revoked_and_expired_tokens_stop_working(
    guarded: tuple[Server, dict[str, str]], cli: Cli
) -> None:
    server, tokens = guarded
    listed = cli("token", "list")
    assert listed.stdout.splitlines()[0].split() == [
        "NAME",
        "SCOPES",
        "NAMESPACES",
        "EXPIRES",
        "REVOKED",
    ]
    assert "ovs_" not in listed.stdout  # values are shown once, at creation, never again
    assert httpx.get(f"{server.url}/plugins", headers=bearer(tokens["read-b"])).status_code == 200
    assert cli("token", "revoke", "audit-b").stdout == "revoked: audit-b\n"
    deadline = time.monotonic() + 10  # servers trust a lookup for 5 s
    while httpx.get(f"{server.url}/plugins", headers=bearer(tokens["read-b"])).status_code != 401:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    late = make_token(cli, "late", "--scope", "read", "--namespace", "a8s", "--expires", "1h")
    with psycopg.connect(cli.env["DATABASE_URL"]) as conn:
        conn.execute(
            "UPDATE api_tokens SET expires_at = now() - interval '1 s' WHERE name = 'late'"
        )
    assert httpx.get(f"{server.url}/plugins", headers=bearer(late)).status_code == 401
    again = cli("token", "create", "team-a", "--scope", "read", "--namespace", "a8s")
    assert again.exit_code == 4 and 'a token named "team-a" exists' in again.stderr


def test_the_cli_holds_to_the_same_namespaces(cli: Cli, claude_manifest: Path) -> None:
    assert cli("plugin", "register", str(claude_manifest)).exit_code == 0
    for namespace, words in (
        ("kube-system", "belongs to the cluster"),
        ("default", "belongs to the cluster"),
        ("team-c", "is not one deployments may use"),
    ):
        refused = cli(
            "deploy", "create", "claude-environment", "--set", "ANTHROPIC_API_KEY=k",
            "--namespace", namespace,
        )  # fmt: skip
        assert refused.exit_code == 8 and words in refused.stderr, refused.stderr
    bad = cli("token", "create", "x", "--scope", "deploy", "--namespace", "kube-public")
    assert bad.exit_code == 8 and "belongs to the cluster" in bad.stderr
    assert commit_count(cli.settings.repo) == 0


def _hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _send_big(port: int, headers: str, total: int) -> str:
    """Send the headers, read the answer's status line, then push up to `total` bytes of body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(headers.encode())
        status = sock.recv(65536).split(b"\r\n", 1)[0].decode()  # answered from the headers
        chunk = b"x" * (1 << 20)
        try:
            for _ in range(total // len(chunk)):
                sock.sendall(chunk)
        except OSError:  # closed, reset, or no longer read: the body was not wanted
            pass
        return status


def test_bodies_are_refused_before_they_are_read(
    guarded: tuple[Server, dict[str, str]],
) -> None:
    server, tokens = guarded
    assert server.proc is not None
    httpx.get(f"{server.url}/plugins", headers=bearer(tokens["read-b"]))
    idle = _hwm_kb(server.proc.pid)
    size = 200 * 1024 * 1024
    head = "POST /deployments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    anonymous = _send_big(server.port, f"{head}Content-Length: {size}\r\n\r\n", size)
    assert anonymous.endswith("401 Unauthorized"), anonymous
    allowed = f"{head}Authorization: Bearer {tokens['deploy-a']}\r\n"
    declared = _send_big(server.port, f"{allowed}Content-Length: {size}\r\n\r\n", size)
    assert declared.endswith("413 Request Entity Too Large"), declared
    # A body without a length is counted as it comes, and cut off at the limit.
    streamed = httpx.post(
        f"{server.url}/deployments",
        content=(b"x" * (1 << 20) for _ in range(200)),
        headers={**bearer(tokens["deploy-a"]), "Content-Type": "application/json"},
        timeout=60,
    )
    assert streamed.status_code == 413 and "over 2097152 bytes" in streamed.text
    assert _hwm_kb(server.proc.pid) - idle < 50 * 1024


def test_rate_limits_paging_and_strict_numbers(settings: Settings, cli: Cli) -> None:
    token = make_token(cli, "busy", "--scope", "deploy", "--namespace", "a8s")
    assert cli("plugin", "register", str(MANIFEST)).exit_code == 0
    env = server_env(settings, OVERSEER_RATE_LIMIT="4/second")
    server = Server(env, "--no-worker").start()
    try:
        url = server.url
        assert httpx.get(f"{url}/plugins").status_code == 401
        answers = [httpx.get(f"{url}/deployments", headers=bearer(token)) for _ in range(8)]
        limited = [a for a in answers if a.status_code == 429]
        assert limited and int(limited[0].headers["retry-after"]) >= 1
        assert 'token "busy" is over its rate limit' in limited[0].json()["error"]["message"]
        answered: list[httpx.Response] = []

        def ask() -> bool:  # the window moves on: the token may ask again (refused: nothing made)
            answered.append(
                httpx.post(
                    f"{url}/deployments", json={**BODY, "ttl_seconds": "100"}, headers=bearer(token)
                )
            )
            return answered[-1].status_code != 429

        burst_until(ask)
        stringly = answered[-1]
        assert stringly.status_code == 422 and "ttl_seconds" in stringly.text
    finally:
        server.stop()
    # Paging: `limit`, and a Link header to the next page, until none.
    for _ in range(5):
        cli.deploy("--no-render")
    server = Server(server_env(settings), "--no-worker").start()
    try:
        seen: list[str] = []
        page = f"{server.url}/deployments?limit=2&status=CREATING"
        while page:
            answer = httpx.get(page, headers=bearer(token))
            assert answer.status_code == 200 and len(answer.json()) <= 2
            seen += [d["id"] for d in answer.json()]
            page = answer.links.get("next", {}).get("url", "")
        assert len(seen) == len(set(seen)) == 5
        everything = httpx.get(f"{server.url}/deployments", headers=bearer(token)).json()
        assert [d["id"] for d in everything] == seen  # oldest first, as one page gives them
        nope = httpx.get(f"{server.url}/deployments?plugin=nope", headers=bearer(token))
        assert nope.json() == []
        garbage = httpx.get(f"{server.url}/deployments?after=garbage", headers=bearer(token))
        assert garbage.status_code == 400 and "after" in garbage.text
    finally:
        server.stop()


def test_an_idempotency_key_creates_exactly_once(api_no_worker: Server, settings: Settings) -> None:
    url = api_no_worker.url
    with MANIFEST.open("rb") as fh:
        assert httpx.post(f"{url}/plugins", files={"manifest_file": fh}).status_code == 200
    key = {"Idempotency-Key": "order-66"}

    def once(_: int) -> httpx.Response:
        return httpx.post(f"{url}/deployments", json=BODY, headers=key, timeout=120)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(once, range(50)))
    assert all(a.status_code in (200, 201) for a in answers), [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert [a.status_code for a in answers].count(201) == 1
    assert all(
        a.headers.get("idempotent-replayed") == "true" for a in answers if a.status_code == 200
    )
    assert len(httpx.get(f"{url}/deployments").json()) == 1
    other = httpx.post(f"{url}/deployments", json={**BODY, "requirement": "x"}, headers=key)
    assert other.status_code == 409 and "order-66" in other.json()["error"]["message"]


def test_creates_a_killed_server_never_answered_are_not_deployed(
    settings: Settings, cli: Cli
) -> None:
    env, url = server_env(settings), cli.env["DATABASE_URL"]
    server = Server(env, "--no-worker").start()
    answered: list[str] = []

    def create(number: int) -> None:
        # Half the requests store their row before their round and wait (an Idempotency-Key's
        # way); the others have the round store it, so they leave no row until it commits.
        headers = {"Idempotency-Key": f"key-{number}"} if number % 2 else {}
        try:
            answer = httpx.post(f"{server.url}/deployments", json=BODY, headers=headers, timeout=30)
        except httpx.TransportError:
            return
        if answer.status_code == 201:
            answered.append(answer.json()["id"])

    assert server.proc is not None
    writers = _children(server.proc.pid)
    try:
        with MANIFEST.open("rb") as fh:
            registered = httpx.post(f"{server.url}/plugins", files={"manifest_file": fh})
        assert registered.status_code == 200, registered.text
        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(create, i) for i in range(300)]
            burst_until(lambda: len(answered) >= 40)
            # The writer stops where it is (maybe mid-round): from now on every request with a
            # key stores its row and waits. A second later every answer that was on its way is
            # out, and the server is killed with the rest in flight.
            writers = _children(server.proc.pid)
            assert len(writers) == 1, writers
            os.kill(writers[0], signal.SIGSTOP)
            # Every row that stands was answered (no answer is still on its way), and requests
            # made since have stored rows that wait for a round that never comes.
            burst_until(lambda: live_rows(url) <= set(answered) and bool(_pending(url)))
            server.stop(signal.SIGKILL)
            for f in futures:
                f.result()
    finally:
        server.stop(signal.SIGKILL)
        for writer in writers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(writer, signal.SIGKILL)
    stored = live_rows(url) | _pending(url)
    assert set(answered) <= stored and len(stored) > len(answered)  # some never answered
    restarted = Server(env, "--no-worker").start()  # its start sweeps the dead server's rows
    try:
        assert live_rows(url) == set(answered) and not _pending(url)
    finally:
        restarted.stop()
    assert cli("render").exit_code == 0
    listed = json.loads(cli("deploy", "list", "-o", "json").stdout)
    assert {d["id"] for d in listed} == set(answered)
    assert cli("render", "--check").exit_code == 0


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    # The writer, not multiprocessing's resource tracker.
    return [c for c in found if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _pending(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id FROM deployments WHERE answer_pending IS NOT NULL")
        return {r[0] for r in rows.fetchall()}


@pytest.fixture
def own_pg() -> Iterator[tuple[PgServer, Path, list[str]]]:
    """A PostgreSQL of this test's own, to stop and start: (server, data dir, pg_ctl prefix)."""
    bindir = _debian_bin()
    if bindir is None:
        unavailable("Debian's PostgreSQL is not installed: run `make test-deps`")
    data = Path(tempfile.mkdtemp(prefix="ovs-outage-"))
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if run_as:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    port = 20000 + (os.getpid() * 7) % 20000
    ctl = [*run_as, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-w", "-l", str(data / "log")]
    options = ["-o", f"-k {data} -p {port} -c listen_addresses=''"]
    subprocess.run([*ctl, *options, "start"], check=True, capture_output=True)
    try:
        yield PgServer("outage", str(data), port), data, [*ctl, *options]
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_a_database_outage_answers_json_503_and_heals(
    settings: Settings, own_pg: tuple[PgServer, Path, list[str]]
) -> None:
    pg, _, ctl = own_pg
    url = pg.fresh_database()
    env = server_env(settings, DATABASE_URL=url, OVERSEER_API_TOKEN=BOOT)
    server = Server(env, "--no-worker").start()
    try:
        with MANIFEST.open("rb") as fh:
            registered = httpx.post(
                f"{server.url}/plugins", files={"manifest_file": fh}, headers=bearer(BOOT)
            )
        assert registered.status_code == 200
        statuses: list[tuple[int, str]] = []

        def create(_: int) -> None:
            answer = httpx.post(
                f"{server.url}/deployments", json=BODY, headers=bearer(BOOT), timeout=60
            )
            statuses.append((answer.status_code, answer.text))

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(create, i) for i in range(48)]
            burst_until(lambda: len(statuses) >= 16)
            subprocess.run([*ctl, "-m", "fast", "stop"], check=True, capture_output=True)
            for f in futures:
                f.result()
        failures = [(code, text) for code, text in statuses if code != 201]
        assert failures, "the outage came too late to be seen"
        for code, text in failures:
            assert code == 503, text
            assert json.loads(text)["error"]["status"] == 503
        subprocess.run([*ctl, "start"], check=True, capture_output=True)
        deadline = time.monotonic() + 60
        while True:  # no restart of the server: its pool finds the database again
            answer = httpx.post(
                f"{server.url}/deployments", json=BODY, headers=bearer(BOOT), timeout=60
            )
            if answer.status_code == 201:
                break
            assert answer.status_code == 503, answer.text
            assert time.monotonic() < deadline, answer.text
            time.sleep(1)
    finally:
        server.stop()
