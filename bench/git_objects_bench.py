"""Building git objects in-process: the project's ObjectStore against pygit2 and dulwich.

    make bench-git        # installs pygit2 and dulwich, then runs this
    python bench/git_objects_bench.py [--quick]

Four measurements on synthetic charts, each run in a fresh process per variant:

- a server round: 16 new charts under apps/ of a repository of N charts (1,000 and 10,000), one
  commit, made durable (30 rounds after one warm-up);
- one tree of 10,000 entries, encoded and decoded;
- a first render: N charts into an empty repository as one commit;
- reading back overseer-inputs.json of 1,000 charts through a new repository object.

"ours" is `generator.gitops.objects` (and `trees.place`) used as a render uses it (place, edit, commit, flush: one
pack per flush). pygit2 and dulwich each write one pack per commit, or a loose file per object.
Moving the ref (`git update-ref`, one process per commit, every variant alike) is left out of
the timed part. Figures are CPU time, the git processes a variant runs included (ObjectStore
writes large batches out in 32 MB packs; it reads objects through pygit2). They depend on
the machine and on its load: compare variants within one run, not across runs or machines.
Before timing, each variant's root tree is checked against `git add -A && git write-tree`, and
every repository written is checked with `git fsck`.

`--quick` runs N=1,000 only, with fewer rounds and repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import git

try:
    import dulwich
    import dulwich.objects
    import dulwich.repo
    import pygit2
except ImportError as exc:
    sys.exit(
        f"{exc.name} is not installed. `make bench-git` installs pygit2 and dulwich, "
        "as does `pip install pygit2==1.21.0 dulwich==1.2.21`."
    )

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generator.gitops.objects import IDENTITY, ObjectStore  # noqa: E402
from generator.gitops.trees import (  # noqa: E402
    FILE,
    TREE,
    Plan,
    decode_tree,
    encode_tree,
    object_id,
    place,
)

NS = "apps"
PER_ROUND = 16
MSG = "overseer: render\n"
SIGNATURE = f"{IDENTITY['GIT_COMMITTER_NAME']} <{IDENTITY['GIT_COMMITTER_EMAIL']}>".encode()
README = b"# GitOps repository\n"
Charts = list[tuple[str, dict[str, bytes]]]


def rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible content, not secrets


_words = rng(12345)
WORDS = [
    "".join(_words.choices(string.ascii_lowercase, k=_words.randint(2, 10))) for _ in range(2000)
]


def text(seed: int, size: int, title: str) -> bytes:
    """YAML-like lines, so that zlib finds what it finds in real charts."""
    r = rng(seed)
    out, n = [title], len(title)
    while n < size:
        words = " ".join(r.choices(WORDS, k=r.randint(2, 8)))
        out.append(f"{'  ' * r.randint(0, 3)}{words}: {r.randint(0, 10**6)}\n")
        n += len(out[-1])
    return "".join(out).encode()[:size]


# Files that every chart of a plugin shares are one bytes object each, as in a render.
SHARED = {
    rel: text(1_000_000 + i, rng(i).randint(300, 4000), f"# {rel}\n")
    for i, rel in enumerate(
        [
            "values.schema.json",
            "README.md",
            "templates/_helpers.tpl",
            "templates/deployment.yaml",
            "templates/service.yaml",
            "templates/ingress.yaml",
            "templates/NOTES.txt",
            "templates/tests/test-connection.yaml",
        ]
    )
}
UNIQUE = [
    ("Chart.yaml", 300, 600),
    ("values.yaml", 1000, 4000),
    ("overseer-inputs.json", 500, 2000),
    ("templates/secret.yaml", 300, 1200),
]


def chart(i: int) -> tuple[str, dict[str, bytes]]:
    name, r, files = f"rel-{i:05d}", rng(i), dict(SHARED)
    for k, (rel, low, high) in enumerate(UNIQUE):
        files[rel] = text(i * 10 + k, r.randint(low, high), f"# {rel} for {name}\n")
    return name, files


def nest(files: dict[str, bytes]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for rel, data in files.items():
        place(tree, rel, data)  # type: ignore[arg-type]
    return tree


def run_git(path: Path, *args: str, stdin: bytes | None = None) -> str:
    env = {**os.environ, **IDENTITY}
    done = subprocess.run(
        ["git", "-C", str(path), *args], input=stdin, capture_output=True, env=env, check=True
    )
    return done.stdout.decode().strip()


def init(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)


def fsck(path: Path, n: int) -> bool:
    # A full check reads every object; past 1,000 charts that takes longer than the measurement.
    quick = ["--connectivity-only"] if n > 1000 else []
    args = ["git", "-C", str(path), "fsck", "--no-dangling", "--no-progress", *quick]
    return subprocess.run(args, capture_output=True).returncode == 0


def cpu() -> float:
    """CPU seconds of this process and of its children, ended or still running."""
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    ticks = 0
    # A long-lived `git cat-file --batch` is never waited for, so rusage alone would miss it.
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            ticks += int(fields[11]) + int(fields[12])
    running = ticks / os.sysconf("SC_CLK_TCK")
    return time.process_time() + ended.ru_utime + ended.ru_stime + running


class Ours:
    def __init__(self, path: Path, head: str | None) -> None:
        self.store = ObjectStore(git.Repo(path))
        self.parent = head
        self.root = bytes.fromhex(run_git(path, "rev-parse", f"{head}^{{tree}}")) if head else None

    def commit(self, charts: Charts, first: bool = False) -> tuple[str, str]:
        plan: Plan = {}
        for name, files in charts:
            place(plan, f"{NS}/{name}", (TREE, self.store.directory(files)))
        if first:
            place(plan, "README.md", (FILE, self.store.blob(README)))
        root = self.store.edit(self.root, plan)
        assert root is not None
        commit = self.store.commit(root, self.parent, MSG)
        self.store.flush()
        self.root, self.parent = root, commit
        return commit, root.hex()


class MemoryOdb(pygit2.OdbBackend):
    """Objects held until a PackBuilder writes them: pygit2's way to one pack per commit."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[pygit2.Oid, tuple[int, bytes]] = {}

    def read_cb(self, oid: pygit2.Oid) -> tuple[int, bytes]:
        return self.objects[oid]

    def read_header_cb(self, oid: pygit2.Oid) -> tuple[int, int]:
        kind, data = self.objects[oid]
        return kind, len(data)

    def write_cb(self, oid: pygit2.Oid, data: bytes, kind: int) -> None:
        self.objects[oid] = (kind, data)

    def exists_cb(self, oid: pygit2.Oid) -> bool:
        return oid in self.objects

    def refresh_cb(self) -> None:
        pass


def pygit2_in_memory(objects_dir: Path | None) -> tuple[pygit2.Repository, MemoryOdb]:
    memory, odb = MemoryOdb(), pygit2.Odb()
    if objects_dir is not None:
        odb.add_backend(pygit2.OdbBackendPack(str(objects_dir)), 1)
        odb.add_backend(pygit2.OdbBackendLoose(str(objects_dir), -1, False), 2)
    odb.add_backend(memory, 1000)  # the highest priority takes the writes
    repo = pygit2.Repository()
    repo.set_odb(odb)
    return repo, memory


class Pygit2Loose:
    packed = False

    def __init__(self, path: Path, head: str | None) -> None:
        self.git_dir = path / ".git"
        if self.packed:
            self.repo, self.memory = pygit2_in_memory(self.git_dir / "objects")
        else:
            self.repo = pygit2.Repository(str(path))
        self.parent = pygit2.Oid(hex=head) if head else None
        root = self.repo[self.parent].peel(pygit2.Tree) if self.parent else None
        self.root = self.repo.TreeBuilder(root) if root else self.repo.TreeBuilder()
        self.ns = self.repo.TreeBuilder(self.repo[root[NS].id]) if root else self.repo.TreeBuilder()

    def directory(self, node: dict[str, Any]) -> pygit2.Oid:
        builder = self.repo.TreeBuilder()
        for name, value in node.items():
            if isinstance(value, dict):
                builder.insert(name, self.directory(value), TREE)
            else:
                builder.insert(name, self.repo.create_blob(value), FILE)
        return builder.write()

    def commit(self, charts: Charts, first: bool = False) -> tuple[str, str]:
        for name, files in charts:
            self.ns.insert(name, self.directory(nest(files)), TREE)
        self.root.insert(NS, self.ns.write(), TREE)
        if first:
            self.root.insert("README.md", self.repo.create_blob(README), FILE)
        root = self.root.write()
        sig = pygit2.Signature(
            IDENTITY["GIT_COMMITTER_NAME"], IDENTITY["GIT_COMMITTER_EMAIL"], int(time.time()), 0
        )
        parents = [self.parent] if self.parent else []
        commit = self.repo.create_commit(None, sig, sig, MSG, root, parents)
        if self.packed:
            builder = pygit2.PackBuilder(self.repo)
            for oid in self.memory.objects:
                builder.add(oid)
            builder.write(str(self.git_dir / "objects" / "pack"))
            self.memory.objects.clear()
        self.parent = commit
        return str(commit), str(root)


class Pygit2Pack(Pygit2Loose):
    packed = True


class DulwichPack:
    loose = False

    def __init__(self, path: Path, head: str | None) -> None:
        self.store = dulwich.repo.Repo(str(path)).object_store
        self.stored: set[bytes] = set()  # as ObjectStore does: never write an object twice
        self.parent = head.encode() if head else None
        if self.parent:
            self.root = self.store[self.store[self.parent].tree]
            self.ns = self.store[self.root[NS.encode()][1]]
        else:
            self.root, self.ns = dulwich.objects.Tree(), dulwich.objects.Tree()

    def directory(self, node: dict[str, Any], new: dict[bytes, Any]) -> bytes:
        tree = dulwich.objects.Tree()
        for name, value in node.items():
            if isinstance(value, dict):
                tree.add(name.encode(), TREE, self.directory(value, new))
                continue
            blob = dulwich.objects.Blob.from_string(value)
            if blob.id not in self.stored:
                new[blob.id] = blob
            tree.add(name.encode(), FILE, blob.id)
        new[tree.id] = tree
        return tree.id

    def commit(self, charts: Charts, first: bool = False) -> tuple[str, str]:
        new: dict[bytes, Any] = {}
        for name, files in charts:
            self.ns.add(name.encode(), TREE, self.directory(nest(files), new))
        new[self.ns.id] = self.ns
        self.root.add(NS.encode(), TREE, self.ns.id)
        if first:
            blob = dulwich.objects.Blob.from_string(README)
            new[blob.id] = blob
            self.root.add(b"README.md", FILE, blob.id)
        new[self.root.id] = self.root
        commit = dulwich.objects.Commit()
        commit.tree, commit.parents = self.root.id, [self.parent] if self.parent else []
        commit.author = commit.committer = SIGNATURE
        commit.author_time = commit.commit_time = int(time.time())
        commit.author_timezone = commit.commit_timezone = 0
        commit.message = MSG.encode()
        new[commit.id] = commit
        if self.loose:
            for obj in new.values():
                self.store.add_object(obj)
        else:
            self.store.add_objects([(obj, None) for obj in new.values()])
        self.stored.update(new)
        self.parent = commit.id
        return commit.id.decode(), self.root.id.decode()


class DulwichLoose(DulwichPack):
    loose = True


VARIANTS = {
    "ours": Ours,
    "pygit2-pack": Pygit2Pack,
    "pygit2-loose": Pygit2Loose,
    "dulwich-pack": DulwichPack,
    "dulwich-loose": DulwichLoose,
}


def task_round(variant: str, path: str, n: int, reps: int) -> dict[str, Any]:
    repo = Path(path)
    head = run_git(repo, "rev-parse", "HEAD")
    lib = VARIANTS[variant](repo, head)
    spent, root = [], ""
    for r in range(1 + reps):  # the first round fills caches, as the server's did long ago
        batch = [chart(n + r * PER_ROUND + k) for k in range(PER_ROUND)]
        start = cpu()
        commit, root = lib.commit(batch)
        spent.append(cpu() - start)
        run_git(repo, "update-ref", "refs/heads/main", commit, head)
        head = commit
    return {"cpu": spent[1:], "root": root, "fsck": fsck(repo, n)}


def task_first(variant: str, path: str, n: int) -> dict[str, Any]:
    repo = Path(path)
    init(repo)
    charts = [chart(i) for i in range(n)]
    lib = VARIANTS[variant](repo, None)
    os.sync()  # an earlier run's writeback would otherwise be charged to this one
    start = cpu()
    commit, root = lib.commit(charts, first=True)
    spent = cpu() - start
    run_git(repo, "update-ref", "refs/heads/main", commit, "0" * 40)
    return {"cpu": [spent], "root": root, "fsck": fsck(repo, n)}


def repeat(fn: Callable[[], object], reps: int) -> list[float]:
    spent = []
    for _ in range(reps):
        start = cpu()
        fn()
        spent.append(cpu() - start)
    return spent


def task_codec(reps: int) -> dict[str, Any]:
    repo, memory = pygit2_in_memory(None)
    entries = {}
    # Real subtrees: pygit2's strict mode checks that every entry it is given exists.
    for i in range(10_000):
        data = encode_tree({"Chart.yaml": (FILE, object_id(b"blob", b"%d" % i))})
        sha = object_id(b"tree", data)
        entries[f"rel-{i:05d}"] = (TREE, sha)
        memory.objects[pygit2.Oid(raw=sha)] = (pygit2.enums.ObjectType.TREE, data)
    raw = encode_tree(entries)
    hex_entries = [
        (name.encode(), mode, sha.hex().encode()) for name, (mode, sha) in entries.items()
    ]
    oids = [(name, pygit2.Oid(raw=sha), mode) for name, (mode, sha) in entries.items()]

    def dulwich_encode() -> bytes:
        tree = dulwich.objects.Tree()
        for name, mode, sha in hex_entries:
            tree.add(name, mode, sha)
        return tree.as_raw_string()

    def pygit2_encode() -> pygit2.Oid:
        builder = repo.TreeBuilder()
        for name, oid, mode in oids:
            builder.insert(name, oid, mode)
        return builder.write()

    def dulwich_decode() -> int:
        tree = dulwich.objects.Tree.from_raw_string(dulwich.objects.Tree.type_num, raw)
        return len({e.path: (e.mode, e.sha) for e in tree.iteritems()})

    def pygit2_decode() -> int:
        return len({e.name: (e.filemode, e.id) for e in repo[want]})

    want = pygit2.Oid(raw=object_id(b"tree", raw))
    assert dulwich_encode() == raw
    assert pygit2_encode() == want
    pygit2.settings.enable_caching(False)  # else repo[want] hands back the tree parsed before
    assert len(decode_tree(raw)) == dulwich_decode() == pygit2_decode() == 10_000
    encode = {"ours": repeat(lambda: encode_tree(entries), reps)}
    encode["dulwich"] = repeat(dulwich_encode, reps)
    encode["pygit2 (strict)"] = repeat(pygit2_encode, reps)
    pygit2.settings.enable_strict_object_creation(False)
    encode["pygit2 (non-strict)"] = repeat(pygit2_encode, reps)
    decode = {"ours": repeat(lambda: decode_tree(raw), reps)}
    decode["dulwich"] = repeat(dulwich_decode, reps)
    decode["pygit2"] = repeat(pygit2_decode, reps)
    return {"encode": encode, "decode": decode}


def read_ours(path: str) -> list[bytes]:
    repo = git.Repo(path)
    store = ObjectStore(repo)
    apps = store.lookup(repo.head.commit.tree.binsha, NS)
    assert apps is not None
    found = [
        store.read(store.entries(sha)["overseer-inputs.json"][1])
        for _, sha in store.entries(apps[1]).values()
    ]
    repo.close()
    return found


def read_pygit2(path: str) -> list[bytes]:
    repo = pygit2.Repository(path)
    apps = repo[repo.head.peel(pygit2.Commit).tree[NS].id]
    return [repo[repo[e.id]["overseer-inputs.json"].id].data for e in apps]


def read_dulwich(path: str) -> list[bytes]:
    repo = dulwich.repo.Repo(path)
    store = repo.object_store
    apps = store[store[store[repo.head()].tree][NS.encode()][1]]
    found = [store[store[sha][b"overseer-inputs.json"][1]].data for _, _, sha in apps.iteritems()]
    repo.close()
    return found


READERS = {"ours": read_ours, "pygit2": read_pygit2, "dulwich": read_dulwich}


def task_read(variant: str, path: str, n: int, reps: int) -> dict[str, Any]:
    want = [chart(i)[1]["overseer-inputs.json"] for i in range(n)]
    assert READERS[variant](path) == want
    return {"cpu": repeat(lambda: READERS[variant](path), reps)}


TASKS = {"round": task_round, "first": task_first, "codec": task_codec, "read": task_read}


def build_base(path: Path, n: int) -> str:
    """A repository of n charts in one commit, through fast-import; its root tree."""
    init(path)
    stream = [b"commit refs/heads/main\ncommitter %b 1700000000 +0000\ndata 5\nbase\n" % SIGNATURE]
    files = [("README.md", README)]
    files += [
        (f"{NS}/{name}/{rel}", data)
        for name, fs in map(chart, range(n))
        for rel, data in fs.items()
    ]
    for at, data in files:
        stream.append(b"M 100644 inline %s\ndata %d\n%b\n" % (at.encode(), len(data), data))
    run_git(path, "fast-import", "--quiet", stdin=b"".join(stream))
    return run_git(path, "rev-parse", "HEAD^{tree}")


RESULTS: dict[str, dict[str, list[float]]] = {}
PROBLEMS: list[str] = []


def child(**spec: Any) -> dict[str, Any] | None:
    """Run one task in a fresh process: no library's caches or memory carry into another's."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True
    )
    if done.returncode:
        PROBLEMS.append(f"{spec} failed: {done.stderr.strip()[-1500:]}")
        return None
    out: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    if not out.get("fsck", True):
        PROBLEMS.append(f"{spec}: git fsck failed")
    return out


def check_small(scratch: Path) -> None:
    tree = scratch / "worktree"
    init(tree)
    (tree / "README.md").write_bytes(README)
    for name, files in map(chart, range(3)):
        for rel, data in files.items():
            (tree / NS / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / NS / name / rel).write_bytes(data)
    run_git(tree, "add", "-A")
    want = run_git(tree, "write-tree")
    for variant in VARIANTS:
        out = child(task="first", variant=variant, path=str(scratch / f"small-{variant}"), n=3)
        if out and out["root"] != want:
            PROBLEMS.append(f"{variant}: root tree {out['root']} of 3 charts, git says {want}")


def record(key: str, variant: str, out: dict[str, Any] | None, want: str | None = None) -> None:
    if out:
        RESULTS.setdefault(key, {}).setdefault(variant, []).extend(out["cpu"])
        if want and out["root"] != want:
            PROBLEMS.append(f"{key}, {variant}: root tree {out['root']}, expected {want}")


def report() -> None:
    print(f"\n{'measurement':26} {'variant':20} {'median CPU ms':>13}  IQR (ms)")
    for key, by_variant in RESULTS.items():
        for i, (variant, spent) in enumerate(by_variant.items()):
            median = ms(statistics.median(spent))
            print(f"{'' if i else key:26} {variant:20} {median:>13}  {iqr(spent)}")
    print()
    for key, by_variant in RESULTS.items():
        ranked = sorted(by_variant, key=lambda v: statistics.median(by_variant[v]))
        medians = [statistics.median(by_variant[v]) for v in ranked]
        then = f", then {ranked[1]} x{medians[1] / medians[0]:.1f}" if ranked[1:] else ""
        print(f"{key}: fastest {ranked[0]} ({ms(medians[0])} ms{then})")
    print(f"\nchecks: {'FAILED' if PROBLEMS else 'all passed'}", *PROBLEMS, sep="\n  ")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def iqr(spent: list[float]) -> str:
    if len(spent) < 2:
        return "-"
    low, _, high = statistics.quantiles(spent, n=4, method="inclusive")
    return f"{ms(low)}-{ms(high)}"


def measure(scratch: Path, quick: bool) -> None:
    sizes, reps = ((1000,), 10) if quick else ((1000, 10_000), 30)
    check_small(scratch)
    bases = {n: scratch / f"base-{n}" for n in sizes}
    trees = {n: build_base(path, n) for n, path in bases.items()}
    for n in sizes:
        want = None  # every variant continues the same history: all end on the first's root
        for variant in VARIANTS:
            path = scratch / f"round-{n}-{variant}"
            shutil.copytree(bases[n], path)
            out = child(task="round", variant=variant, path=str(path), n=n, reps=reps)
            record(f"server round +{PER_ROUND}, N={n:,}", variant, out, want)
            want = want or (out and out["root"])
            shutil.rmtree(path)
        print(f"# server rounds at N={n:,} done", flush=True)
    codec = child(task="codec", reps=reps)
    if codec:
        RESULTS["tree encode, 10,000"] = codec["encode"]
        RESULTS["tree decode, 10,000"] = codec["decode"]
    for n in sizes:
        for variant in VARIANTS:
            path = scratch / f"first-{n}-{variant}"
            for _ in range(3 if quick or n > 1000 else 5):
                out = child(task="first", variant=variant, path=str(path), n=n)
                record(f"first render, N={n:,}", variant, out, trees[n])
            shutil.rmtree(path, ignore_errors=True)
        print(f"# first renders at N={n:,} done", flush=True)
    for variant in READERS:
        out = child(task="read", variant=variant, path=str(bases[1000]), n=1000, reps=reps)
        record("read 1,000 inputs", variant, out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="N=1,000 only, fewer repetitions")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(TASKS[spec.pop("task")](**spec)))
        return
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} cores, load {os.getloadavg()}"
    )
    print(
        f"# pygit2 {pygit2.__version__} (libgit2 {pygit2.LIBGIT2_VERSION}), dulwich "
        f"{'.'.join(map(str, dulwich.__version__))}, GitPython {git.__version__}, "
        f"{run_git(ROOT, 'version')}",
        flush=True,
    )
    # Under the cache rather than /tmp, as render_bench.py: file creation in /tmp is slower here.
    scratch = Path(os.environ.get("OVERSEER_CACHE", Path.home() / ".cache" / "overseer")) / "bench"
    scratch.mkdir(parents=True, exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="git-objects-", dir=scratch))
    try:
        measure(run, args.quick)
    finally:
        shutil.rmtree(run, ignore_errors=True)
    report()
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, load {os.getloadavg()}")


if __name__ == "__main__":
    main()
