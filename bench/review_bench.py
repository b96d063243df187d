"""Review-mode benchmark: 100 deployments proposed as pull requests on Gitea, merged, applied.

    make bench-review      # or: python bench/review_bench.py [--count N] [--clients N]

Starts `overseer serve` in review mode on the embedded PostgreSQL, against a fresh repository on
the Gitea that `make forge-up` started, with a webhook from Gitea to the server and the forge
poll set to an hour (so every merge is seen through its webhook), and applies to the cluster
`make cluster-up` started. Then:

1. posts `--count` deployments through the API, `--clients` at a time, and reports the time
   until every one has its pull request open (status PROPOSED);
2. merges them one after another through Gitea's API, as a reviewer would, and reports the time
   from each merge (Gitea's answer) to READY, p50 and p95; apply's own time is included.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import local_cluster  # noqa: E402 - beside this script

from generator.store import db, migrate  # noqa: E402
from tests.forge import Gitea  # noqa: E402

KEY = "YmVuY2htYXJrLWtleS1ub3QtYS1zZWNyZXQtMzJieXQ="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(p * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    gitea = Gitea.running()
    if gitea is None:
        sys.exit("the local Gitea is not up: run `make forge-up`")
    config = local_cluster.kubeconfig()
    scratch = Path(os.environ.get("OVERSEER_CACHE", Path.home() / ".cache" / "overseer")) / "bench"
    scratch.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="review-", dir=scratch))
    namespace = "review-" + uuid.uuid4().hex[:6]
    repo = gitea.new_repo()
    secret = uuid.uuid4().hex
    url = os.environ.get("DATABASE_URL") or db.embedded_url(base / "pgdata")
    migrate.apply(url)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "OVERSEER_HOME": str(base / "home"),
        "OVERSEER_REPO": str(base / "gitops"),
        "OVERSEER_SECRET_KEY": KEY,
        "OVERSEER_NAMESPACE": namespace,
        "OVERSEER_KUBECONFIG": str(config),
        "OVERSEER_HELM_TIMEOUT": "120s",
        "OVERSEER_WORKER_INTERVAL": "2",
        **gitea.review_env(repo, secret),
        "OVERSEER_POLL_INTERVAL": "3600",
    }
    log = (base / "server.log").open("wb")
    server = subprocess.Popen(
        ["overseer", "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    api = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{api}/openapi.json", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, "server did not start"
                time.sleep(0.2)
        gitea.add_webhook(repo, f"{api}/webhooks/gitea", secret)
        with (ROOT / "environments/claude/plugin.yaml").open("rb") as fh:
            httpx.post(f"{api}/plugins", files={"manifest_file": fh}).raise_for_status()

        def propose(i: int) -> str:
            body = {
                "environment_type": "claude-environment",
                "data": {"ANTHROPIC_API_KEY": f"k{i}"},
            }
            answer = httpx.post(f"{api}/deployments", json=body, timeout=300)
            answer.raise_for_status()
            return str(answer.json()["id"])

        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            ids = list(pool.map(propose, range(args.count)))
        opened_by_answer = time.perf_counter() - start
        views = {i: httpx.get(f"{api}/deployments/{i}").json() for i in ids}
        while any(v["status"] != "PROPOSED" for v in views.values()):
            time.sleep(0.2)
            views = {i: httpx.get(f"{api}/deployments/{i}").json() for i in ids}
        opened = time.perf_counter() - start
        assert len(gitea.pulls(repo, "open")) >= min(args.count, 50)

        merged_at: dict[str, float] = {}
        ready_at: dict[str, float] = {}
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                for i in list(merged_at):
                    if i in ready_at:
                        continue
                    if httpx.get(f"{api}/deployments/{i}").json()["status"] == "READY":
                        ready_at[i] = time.perf_counter()
                time.sleep(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        merge_start = time.perf_counter()
        for i in ids:
            gitea.merge(repo, views[i]["pull_request"]["number"])
            merged_at[i] = time.perf_counter()
        merging = time.perf_counter() - merge_start
        deadline = time.monotonic() + 600
        while len(ready_at) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.2)
        done.set()
        watcher.join()
        latencies = [ready_at[i] - merged_at[i] for i in ready_at]
        print(f"\nReview mode against Gitea: {args.count} deployments, {args.clients} clients")
        print(f"{'Measurement':<44}  {'Result':>9}  Target")
        print(f"{'POST answered for all (pull requests opened)':<44}  {opened_by_answer:>7.2f} s")
        print(f"{'all PROPOSED with a pull request':<44}  {opened:>7.2f} s")
        print(f"{'merging them all through the API':<44}  {merging:>7.2f} s")
        print(f"{'READY':<44}  {len(ready_at):>5} of {len(ids)}")
        if latencies:
            print(
                f"{'merge to READY (webhook), p50':<44}  {statistics.median(latencies):>7.2f} s  ≤ 5 s"
            )
            print(f"{'merge to READY (webhook), p95':<44}  {percentile(latencies, 0.95):>7.2f} s")
    finally:
        server.terminate()
        server.wait(60)
        local_cluster.delete_namespace(config, namespace)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
