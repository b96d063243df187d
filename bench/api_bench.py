"""API benchmark: POST /deployments latency (render and commit included, apply excluded).

    make bench-api        # or: python bench/api_bench.py [--requests N]

Starts `overseer serve --no-worker` on the embedded PostgreSQL, registers the claude plugin, then
measures one client, then 16 concurrent clients, and the sustained throughput of the latter, in
`--runs` separate runs (the median run is the figure to quote).

Also printed: what creating one small file costs on this disk right now (each chart is 12 files
and 3 directories, so this moves every figure), and the server's CPU time per request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def run(url: str, clients: int, total: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue = list(range(total))

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            queue.pop()
            start = time.perf_counter()
            response = await http.post(f"{url}/deployments", json=BODY)
            latencies.append(time.perf_counter() - start)
            assert response.status_code == 201, response.text

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=clients)) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
    return latencies, wall


def file_create_us(directory: Path, count: int = 300) -> float:
    """Microseconds to create one small file in `directory` (the disk's state of the moment)."""
    probe = Path(tempfile.mkdtemp(prefix="probe-", dir=directory))
    start = time.perf_counter()
    for i in range(count):
        (probe / f"f{i}").write_bytes(b"x" * 512)
    elapsed = time.perf_counter() - start
    shutil.rmtree(probe)
    return elapsed / count * 1e6


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--requests", type=int, default=400, help="requests per run at 16 clients (100 at 1 client)"
    )
    parser.add_argument("--runs", type=int, default=3, help="separate runs at 16 clients")
    args = parser.parse_args()
    scratch = Path(os.environ.get("OVERSEER_CACHE", Path.home() / ".cache" / "overseer")) / "bench"
    scratch.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="api-", dir=scratch))
    url = os.environ.get("DATABASE_URL") or db.embedded_url(base / "pgdata")
    migrate.apply(url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "OVERSEER_REPO": str(base / "gitops"),
        "OVERSEER_HOME": str(base / "home"),
        "OVERSEER_SECRET_KEY": KEY,
        "OVERSEER_LOG_LEVEL": "warning",
    }
    server = subprocess.Popen(["overseer", "serve", "--no-worker", "--port", str(port)], env=env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                httpx.get(f"{base_url}/openapi.json", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        with (ROOT / "environments/claude/plugin.yaml").open("rb") as f:
            httpx.post(
                f"{base_url}/plugins", files={"manifest_file": ("plugin.yaml", f)}
            ).raise_for_status()
        asyncio.run(run(base_url, 1, 10))  # warm-up
        print(f"disk: one small file takes {file_create_us(base):.0f} µs to create now")
        one, _ = asyncio.run(run(base_url, 1, 100))
        results = []
        for number in range(1, args.runs + 1):
            cpu = cpu_seconds(server.pid)
            many, wall = asyncio.run(run(base_url, 16, args.requests))
            per_request = (cpu_seconds(server.pid) - cpu) / args.requests * 1000
            results.append((statistics.median(many), percentile(many, 0.99), args.requests / wall))
            print(
                f"run {number}: p50 {results[-1][0] * 1000:.0f} ms, p99 {results[-1][1] * 1000:.0f} ms, "
                f"{results[-1][2]:.1f}/s; server CPU {per_request:.1f} ms per request"
            )
        p50, p99, rate = sorted(results)[len(results) // 2]  # the median run, by p50
        print(f"\n{'Measurement':<36}  {'Result':<12}  Target")
        print(
            f"{'1 client: p50 / p99':<36}  {statistics.median(one) * 1000:4.0f} / {percentile(one, 0.99) * 1000:4.0f} ms"
        )
        print(
            f"{'16 clients: p50 / p99 (median run)':<36}  {p50 * 1000:4.0f} / {p99 * 1000:4.0f} ms  ≤ 50 / ≤ 250 ms"
        )
        print(f"{'sustained throughput, 16 clients':<36}  {rate:6.1f} /s    ≥ 100 /s")
        total = 110 + args.runs * args.requests
        commits = subprocess.run(
            ["git", "-C", str(base / "gitops"), "rev-list", "--count", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        print(f"{'commits for ' + str(total) + ' deployments':<36}  {commits}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
