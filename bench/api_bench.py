"""API benchmark: POST /deployments latency (render and commit included, apply excluded).

    make bench-api        # or: python bench/api_bench.py [--seconds S] [--runs N]

Starts `overseer serve --no-worker` on the embedded PostgreSQL and registers the claude plugin.
Then wrk (a load generator in C, so the client takes little of the machine's 2 cores from the
server) keeps 1 connection, then 16, posting deployments back to back: the latencies and the
sustained rate, in `--runs` separate runs at 16 (the median run is the figure to quote).

Also printed: what creating one small file costs on this disk right now (each chart is 12 files
and 3 directories, so this moves every figure), and the server's CPU time per request.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generator.store import db, migrate  # noqa: E402

KEY = "YmVuY2htYXJrLWtleS1ub3QtYS1zZWNyZXQtMzJieXQ="
BODY = {
    "environment_type": "claude-environment",
    "data": {"ANTHROPIC_API_KEY": "k"},
    "tools": ["git"],
    "requirement": "bench",
}
# wrk posts BODY on every connection and, at the end, prints one JSON line with what it saw.
# errors.status counts answers outside 2xx/3xx; the only 2xx POST /deployments gives is 201.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "seconds": %%f, "p50_us": %%d, "p99_us": %%d, "failed": %%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    e.status + e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass(frozen=True)
class Run:
    """One wrk run."""

    requests: int
    rate: float
    p50_ms: float
    p99_ms: float


def file_create_us(directory: Path, count: int = 300) -> float:
    """Microseconds to create one small file in `directory` (the disk's state of the moment)."""
    probe = Path(tempfile.mkdtemp(prefix="probe-", dir=directory))
    start = time.perf_counter()
    for i in range(count):
        (probe / f"f{i}").write_bytes(b"x" * 512)
    elapsed = time.perf_counter() - start
    shutil.rmtree(probe)
    return elapsed / count * 1e6


def _stat(pid: int) -> list[int]:
    with open(f"/proc/{pid}/stat") as f:
        return [int(v) for v in f.read().rsplit(")", 1)[1].split()[11:15]]


def _descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found += [child, *_descendants(child)]
    return found


def cpu_seconds(pid: int) -> tuple[float, float, float]:
    """CPU time so far (user plus system) of the server, of its writer process, and of git.

    git's share counts the processes that ended (their parent waited for them) and those still
    running, such as a repack.
    """
    tick = os.sysconf("SC_CLK_TCK")
    own = _stat(pid)
    writer, git = 0, own[2] + own[3]
    for child in _descendants(pid):
        try:
            fields = _stat(child)
            name = Path(f"/proc/{child}/comm").read_text().strip()
        except OSError:  # it ended meanwhile; its time moves to the waited-for sum
            continue
        if name.startswith("python"):  # the writer (and multiprocessing's resource tracker)
            writer += fields[0] + fields[1]
            git += fields[2] + fields[3]  # the git processes the writer waited for
        else:
            git += fields[0] + fields[1]
    return (own[0] + own[1]) / tick, writer / tick, git / tick


def machine_busy() -> tuple[float, float]:
    """Busy and total CPU seconds of the whole machine so far (all cores, /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields) - idle) / tick, sum(fields) / tick


def postgres_seconds() -> float:
    """CPU seconds so far of every PostgreSQL process (the database's share of a request)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "postgres":
                continue
            total += sum(_stat(int(proc.name))[:2])
        except OSError:
            continue
    return total / tick


def wrk(url: str, script: Path, clients: int, seconds: int) -> Run:
    """Post deployments over `clients` connections for `seconds`; every answer must be 201."""
    out = subprocess.run(
        [
            *("wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "30s"),
            *("-s", str(script), f"{url}/deployments"),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if result["failed"]:
        raise SystemExit(f"{result['failed']} requests failed or were not answered 201:\n{out}")
    return Run(
        result["requests"],
        result["requests"] / result["seconds"],
        result["p50_us"] / 1000,
        result["p99_us"] / 1000,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """`overseer serve --no-worker` on `port`, once it answers."""
    server = subprocess.Popen(["overseer", "serve", "--no-worker", "--port", str(port)], env=env)
    for _ in range(150):
        try:
            httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.2)
    return server


def register(url: str) -> None:
    with (ROOT / "environments/claude/plugin.yaml").open("rb") as f:
        httpx.post(f"{url}/plugins", files={"manifest_file": ("plugin.yaml", f)}).raise_for_status()


def prefill(env: dict[str, str], count: int) -> None:
    """Register the plugin, seed `count` deployments and render them, before the server starts."""
    sys.path.insert(0, str(ROOT / "bench"))
    from render_bench import seed

    overseer = ["overseer", "plugin", "register", str(ROOT / "environments/claude/plugin.yaml")]
    subprocess.run(overseer, env=env, check=True, capture_output=True)
    seed(env["DATABASE_URL"], count, namespace="a8s")
    start = time.perf_counter()
    subprocess.run(["overseer", "render", "--no-progress"], env=env, check=True)
    print(f"prefilled {count:,} charts in {time.perf_counter() - start:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="length of each run")
    parser.add_argument("--runs", type=int, default=3, help="separate runs at 16 clients")
    parser.add_argument(
        "--prefill",
        type=int,
        default=0,
        metavar="N",
        help="start from a repository already holding N charts in the same namespace",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        metavar="N",
        help="N servers, each with its own clone, on one database and one bare remote; "
        "the clients are spread over them",
    )
    parser.add_argument(
        "--remote",
        action="store_true",
        help="push every round to a bare remote (implied by --replicas above 1)",
    )
    parser.add_argument("--clients", type=int, default=16, help="connections in all, at once")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit(
            "wrk is missing; `make bench-api` installs it (Debian: apt-get install wrk)"
        )
    scratch = Path(os.environ.get("OVERSEER_CACHE", Path.home() / ".cache" / "overseer")) / "bench"
    scratch.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="api-", dir=scratch))
    script = base / "post.lua"
    script.write_text(WRK_SCRIPT % json.dumps(BODY))
    url = os.environ.get("DATABASE_URL") or db.embedded_url(base / "pgdata")
    migrate.apply(url)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "OVERSEER_REPO": str(base / "gitops"),
        "OVERSEER_HOME": str(base / "home"),
        "OVERSEER_SECRET_KEY": KEY,
        "OVERSEER_LOG_LEVEL": "warning",
    }
    if args.prefill:
        prefill(env, args.prefill)
    if args.replicas > 1 or args.remote:
        try:
            replicas(env, base, script, args)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        return
    server = start_server(env, port)
    base_url = f"http://127.0.0.1:{port}"
    try:
        register(base_url)
        wrk(base_url, script, 1, 2)  # warm-up
        print(f"disk: one small file takes {file_create_us(base):.0f} µs to create now")
        one = wrk(base_url, script, 1, args.seconds)
        runs = []
        for number in range(1, args.runs + 1):
            own, writer, git = cpu_seconds(server.pid)
            database, (busy, total) = postgres_seconds(), machine_busy()
            run = wrk(base_url, script, args.clients, args.seconds)
            own_after, writer_after, git_after = cpu_seconds(server.pid)
            database_after, (busy_after, total_after) = postgres_seconds(), machine_busy()
            runs.append(run)

            def per_request(before: float, after: float, run: Run = run) -> str:
                return f"{(after - before) / run.requests * 1000:.1f} ms"

            print(
                f"run {number}: p50 {run.p50_ms:.0f} ms, p99 {run.p99_ms:.0f} ms, "
                f"{run.rate:.1f}/s; CPU per request: server {per_request(own, own_after)}, "
                f"its writer {per_request(writer, writer_after)}, "
                f"git {per_request(git, git_after)}, PostgreSQL "
                f"{per_request(database, database_after)}, the whole machine "
                f"{per_request(busy, busy_after)} "
                f"({(busy_after - busy) / (total_after - total) * 100:.0f}% of its cores busy)"
            )
        median = sorted(runs, key=lambda r: r.p50_ms)[len(runs) // 2]
        print(f"\n{'Measurement':<36}  {'Result':<12}  Target")
        print(f"{'1 client: p50 / p99':<36}  {one.p50_ms:4.0f} / {one.p99_ms:4.0f} ms")
        print(
            f"{'16 clients: p50 / p99 (median run)':<36}  {median.p50_ms:4.0f} / {median.p99_ms:4.0f} ms"
            "  ≤ 50 / ≤ 150 ms"
        )
        print(f"{'sustained throughput, 16 clients':<36}  {median.rate:6.1f} /s    ≥ 300 /s")
        total = one.requests + sum(r.requests for r in runs)
        commits = subprocess.run(
            ["git", "-C", str(base / "gitops"), "rev-list", "--count", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        print(f"{'deployments; commits':<36}  {total}; {commits}")
        packs = list((base / "gitops" / ".git" / "objects" / "pack").glob("*.pack"))
        size = sum(p.stat().st_size for p in packs) / 1e6
        print(
            f"{'repository: packs':<36}  {size:.1f} MB in {len(packs)} packs (repacks as they stand)"
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        shutil.rmtree(base, ignore_errors=True)


def replicas(env: dict[str, str], base: Path, script: Path, args: argparse.Namespace) -> None:
    """`--replicas N`: N servers on one database and one bare remote, wrk against each at once."""
    remote = base / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    servers = []
    try:
        for n in range(args.replicas):
            own = {
                **env,
                "OVERSEER_GIT_REMOTE": str(remote),
                "OVERSEER_REPO": str(base / f"clone-{n}"),
                "OVERSEER_HOME": str(base / f"home-{n}"),
            }
            port = free_port()
            servers.append((start_server(own, port), f"http://127.0.0.1:{port}"))
        register(servers[0][1])
        per = max(1, args.clients // args.replicas)
        for number in range(1, args.runs + 1):
            database, (busy, total) = postgres_seconds(), machine_busy()
            before = [cpu_seconds(proc.pid) for proc, _ in servers]
            with ThreadPoolExecutor(len(servers)) as pool:
                runs = list(pool.map(lambda s: wrk(s[1], script, per, args.seconds), servers))
            after = [cpu_seconds(proc.pid) for proc, _ in servers]
            database_after, (busy_after, total_after) = postgres_seconds(), machine_busy()
            done = sum(r.requests for r in runs)
            server_ms, writer_ms, git_ms = (
                sum(a[i] - b[i] for a, b in zip(after, before, strict=True)) / done * 1000
                for i in range(3)
            )
            print(
                f"run {number}: {args.replicas} replicas x {per} clients: "
                f"{sum(r.rate for r in runs):.1f}/s in all; p50 "
                + " / ".join(f"{r.p50_ms:.0f}" for r in runs)
                + " ms, p99 "
                + " / ".join(f"{r.p99_ms:.0f}" for r in runs)
                + f" ms; CPU per request: servers {server_ms:.1f} ms, their writers "
                f"{writer_ms:.1f} ms, git {git_ms:.1f} ms, PostgreSQL {(database_after - database) / done * 1000:.1f}"
                f" ms, the whole machine {(busy_after - busy) / done * 1000:.1f} ms "
                f"({(busy_after - busy) / (total_after - total) * 100:.0f}% of its cores busy)"
            )
        commits = subprocess.run(
            ["git", "-C", str(remote), "rev-list", "--count", "main"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        print(f"commits on the remote's main: {commits}")
    finally:
        for proc, _ in servers:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


if __name__ == "__main__":
    main()
