"""Repacks of a server's repository: geometric ones alone, against a full repack at the end.

    python bench/repack_bench.py [--charts 10000] [--commits 512]

A repository of `--charts` charts in one namespace, packed once; then `--commits` commits of 8
new charts each through `gitops`, as the server's rounds make them (`--pace` apart): one stored
pack per commit, and every 32 commits the repack `gitops` starts beside the next ones. Printed: the packs' size
and count every 128 commits, and the CPU of the repacks finished so far; at the end the same
after one full `git repack -a -d`, and what that one cost. No database: the changesets' journal
is settled by hand after each commit.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generator.gitops import LAZY, GitOpsRepo  # noqa: E402


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def packs(git_dir: Path) -> tuple[float, int]:
    found = list((git_dir / "objects" / "pack").glob("*.pack"))
    return sum(p.stat().st_size for p in found) / 1e6, len(found)


def commit(repo: GitOpsRepo, charts: dict[str, dict[str, bytes]]) -> None:
    with repo.lock(), repo.changes() as tx:
        for path, files in charts.items():
            tx.put(path, files)
        tx.commit("bench\n")
        repo.reconciled = True  # no database to tell: the journal is settled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--charts", type=int, default=10_000)
    parser.add_argument("--commits", type=int, default=512)
    parser.add_argument(
        "--pace", type=float, default=0.015, help="seconds between commits (a server's round)"
    )
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="repack-"))
    try:
        repo = GitOpsRepo(base / "gitops", worktree=LAZY)
        git = ["git", f"--git-dir={repo.git_dir}"]
        commit(
            repo,
            {
                f"ns/rel-{i:05d}": {"Chart.yaml": b"name: %d\n" % i, "values.yaml": b"v: %d\n" % i}
                for i in range(args.charts)
            },
        )
        subprocess.run([*git, "repack", "-a", "-d", "-q"], check=True)
        start = children_cpu()
        for number in range(1, args.commits + 1):
            commit(
                repo,
                {
                    f"ns/new-{number:04d}-{j}": {"Chart.yaml": b"n: %d %d\n" % (number, j)}
                    for j in range(8)
                },
            )
            time.sleep(args.pace)
            if number % 128 == 0:
                size, count = packs(repo.git_dir)
                spent = children_cpu() - start
                print(f"{number} commits: {size:.1f} MB in {count} packs; repacks {spent:.2f} s")
        repo.close()  # waits for a repack still running
        size, count = packs(repo.git_dir)
        print(f"at the end: {size:.1f} MB in {count} packs; repacks {children_cpu() - start:.2f} s")
        before = children_cpu()
        subprocess.run([*git, "-c", "pack.window=1", "repack", "-a", "-d", "-q"], check=True)
        size, count = packs(repo.git_dir)
        spent = children_cpu() - before
        print(f"after one full repack: {size:.1f} MB in {count} packs; it took {spent:.2f} s")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
