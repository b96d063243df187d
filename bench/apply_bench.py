"""Apply benchmark: 50 deployments to the local kwok control plane, in parallel.

    make bench-apply      # or: python bench/apply_bench.py [--count N]

Prints the p50 and p95 time from create to READY, and the total wall time. Uses the embedded
PostgreSQL (or DATABASE_URL), real git and helm, and the cluster `make cluster-up` started.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import local_cluster  # noqa: E402 - beside this script

from generator.config import Settings  # noqa: E402
from generator.service import apply as apply_service  # noqa: E402
from generator.service import deployments as deployments_service  # noqa: E402
from generator.service import plugins as plugins_service  # noqa: E402
from generator.service.context import Context  # noqa: E402
from generator.service.views import DeploymentRequest  # noqa: E402
from generator.store import db, migrate  # noqa: E402

KEY = "YmVuY2htYXJrLWtleS1ub3QtYS1zZWNyZXQtMzJieXQ="


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument(
        "--parallel", type=int, default=int(os.environ.get("OVERSEER_APPLY_PARALLEL", "10"))
    )
    args = parser.parse_args()
    config = local_cluster.kubeconfig()
    scratch = Path(os.environ.get("OVERSEER_CACHE", Path.home() / ".cache" / "overseer")) / "bench"
    scratch.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="apply-", dir=scratch))
    namespace = "bench-" + uuid.uuid4().hex[:6]
    try:
        url = os.environ.get("DATABASE_URL") or db.embedded_url(base / "pgdata")
        migrate.apply(url)
        ctx = Context(
            Settings(
                home=base / "home",
                repo=base / "gitops",
                database_url=url,
                secret_key=KEY,
                namespace=namespace,
                kubeconfig=config,
                helm_timeout="120s",
                apply_parallel=args.parallel,
            )
        )
        plugins_service.register_bytes(
            ctx, (ROOT / "environments/claude/plugin.yaml").read_bytes(), "claude"
        )
        start = time.perf_counter()
        created: dict[str, float] = {}
        for i in range(args.count):
            request = DeploymentRequest(
                environment_type="claude-environment", data={"ANTHROPIC_API_KEY": f"k{i}"}
            )
            view = deployments_service.create(ctx, request, render=False).deployment
            created[view.deployment_id] = time.perf_counter()
        ready: dict[str, float] = {}
        original = apply_service._apply_one

        def timed_apply(c: Context, d: object, *rest: object) -> apply_service.Outcome:
            outcome = original(c, d, *rest)  # type: ignore[arg-type]
            if outcome.status == apply_service.READY:
                ready[outcome.deployment_id] = time.perf_counter()
            return outcome

        apply_service._apply_one = timed_apply  # type: ignore[assignment]
        outcomes = apply_service.apply(ctx)
        wall = time.perf_counter() - start
        failed = [o for o in outcomes if o.status != apply_service.READY]
        latencies = sorted(ready[d] - created[d] for d in ready)
        p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
        print(
            f"\nApplied {len(ready)} of {args.count} deployments to READY ({len(failed)} failed), {args.parallel} in parallel"
        )
        print(f"{'Measurement':<34}  {'Result':<10}  Target")
        print(f"{'create to READY, p50':<34}  {statistics.median(latencies):>6.2f} s")
        print(f"{'create to READY, p95':<34}  {p95:>6.2f} s")
        print(f"{'total wall time, 50 deployments':<34}  {wall:>6.2f} s    ≤ 30 s")
    finally:
        local_cluster.delete_namespace(config, namespace)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
