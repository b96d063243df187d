"""The git layer's own guarantees: changesets build the trees git would, move the branch only
compare-and-swap, leave the files to the work-tree policy, and recover from a killed writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace

import pytest

from generator.config import Settings
from generator.errors import Conflict, GitFailed
from generator.gitops import (
    CHECKOUT,
    LAZY,
    GitOpsRepo,
    fetch_main,
    pack,
    publish,
    push_branches,
    push_pending,
)
from generator.gitops.journal import Journal
from generator.gitops.refs import RefUpdater
from generator.gitops.repack import Repack, fold_count
from generator.gitops.trees import FILE, encode_tree, object_id
from generator.service.context import Context

# What a changeset sets at a path: a file's bytes, a directory holding exactly these files, or
# None to remove it.
Edit = bytes | Mapping[str, bytes] | None


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def commit(repo: GitOpsRepo, edits: dict[str, Edit], message: str) -> str | None:
    """Apply `edits` through one changeset."""
    with repo.changes() as tx:
        for path, content in edits.items():
            if content is None:
                tx.remove(path)
            elif isinstance(content, bytes):
                tx.put_file(path, content)
            else:
                tx.put(path, content)
        return tx.commit(message)


def apply_to_disk(root: Path, edits: dict[str, Edit]) -> None:
    """Make a work tree hold `edits`, by hand."""
    for path, content in edits.items():
        target = root / path
        if target.is_dir():
            subprocess.run(["rm", "-rf", str(target)], check=True)
        elif target.exists():
            target.unlink()
        if isinstance(content, bytes):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        elif content is not None:
            for rel, data in content.items():
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                (target / rel).write_bytes(data)


def git_tree_of(work: Path) -> str:
    """The tree git builds from a work tree with `add -A` and `write-tree`."""
    git(work, "add", "-A")
    return git(work, "write-tree")


def clean(root: Path) -> bool:
    return git(root, "status", "--porcelain", "--untracked-files=all") == ""


ROUNDS: list[dict[str, Edit]] = [
    {
        "ns/app-1": {"Chart.yaml": b"name: app-1\n", "templates/a.yaml": b"a\n"},
        "ns/app-2": {"Chart.yaml": b"name: app-2\n", "templates/tests/t.yaml": b"t\n"},
        ".overseer/state.json": b"{}\n",
    },
    {
        # Git orders a subtree "a" as "a/": after "a.b" and before "a0".
        "ns/a": {"x": b"1\n"},
        "ns/a.b": {"x": b"2\n"},
        "ns/a0": {"x": b"3\n"},
        "ns/app-1": {"Chart.yaml": b"name: app-1\nversion: 2\n"},  # templates/ dropped
        ".overseer/state.json": b'{"generation": 2}\n',
    },
    {"ns/app-2": None, "other/app-3": {"values.yaml": b"v\n"}},
    {"ns/a": None, "ns/a.b": None, "ns/a0": None, "ns/app-1": None},  # empties "ns" entirely
]


@pytest.mark.parametrize("spill_bytes", [32 << 20, 1], ids=["in-memory", "spilled"])
def test_changesets_build_the_tree_git_would(tmp_path: Path, spill_bytes: int) -> None:
    repo = GitOpsRepo(tmp_path / "gitops")
    repo.objects.spill_bytes = spill_bytes  # 1: every blob goes out in a pack of its own
    mirror = tmp_path / "mirror"  # the same edits, committed by git from a work tree
    mirror.mkdir()
    git(mirror, "init", "-q")
    for number, edits in enumerate(ROUNDS):
        sha = commit(repo, edits, f"round {number}\n")
        assert sha is not None
        apply_to_disk(mirror, edits)
        assert git(repo.root, "rev-parse", "HEAD^{tree}") == git_tree_of(mirror)
        assert git(repo.root, "rev-parse", "HEAD") == sha
        # Checked out: the index and the files agree with the commit once the lock is let go.
        assert clean(repo.root)
    assert git(repo.root, "rev-list", "--count", "HEAD") == str(len(ROUNDS))
    assert sorted(p.name for p in repo.root.iterdir()) == [".git", ".overseer", "other"]
    assert git(repo.root, "log", "-1", "--format=%an <%ae>|%cn <%ce>") == (
        "Overseer <overseer@localhost>|Overseer <overseer@localhost>"
    )
    subprocess.run(["git", "-C", str(repo.root), "fsck", "--strict"], check=True)
    repo.close()


def test_large_trees_are_spliced_into_the_tree_git_would_build(tmp_path: Path) -> None:
    # Past 512 entries a tree's next version is spliced from the last one's encoding.
    repo = GitOpsRepo(tmp_path / "gitops", worktree=LAZY)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    git(mirror, "init", "-q")
    rounds: list[dict[str, Edit]] = [
        {f"ns/c{i:04d}": {"f": b"%d\n" % i} for i in range(600)},
        {
            "ns/c0001": None,
            "ns/c0300": {"f": b"changed\n"},
            "ns/zzz": {"g": b"1\n"},
            "ns/c0599": b"a file now\n",  # a directory becomes a file: its sort key changes
            "ns/a": {"f": b"1\n"},
            "ns/c0300.x": b"sorts before c0300/\n",
        },
        {"ns/c0599": {"f": b"a directory again\n"}, "ns/c0000": None, "ns/c0001": {"f": b"1\n"}},
    ]
    for number, edits in enumerate(rounds):
        if number == 2:
            # A commit spliced from this base whose ref update fails (another writer moved the
            # ref): the next one, from the same base, must not build on the abandoned version.
            with pytest.raises(GitFailed), repo.changes(expect="0" * 40) as tx:
                tx.put("ns/abandoned", {"f": b"never lands\n"})
                tx.remove("ns/c0002")
                tx.commit("abandoned\n")
        assert commit(repo, edits, f"round {number}\n") is not None
        apply_to_disk(mirror, edits)
        assert git(repo.root, "rev-parse", "HEAD^{tree}") == git_tree_of(mirror)
    subprocess.run(["git", "-C", str(repo.root), "fsck", "--strict"], check=True)
    repo.close()


def test_only_the_last_versions_of_a_large_tree_stay_decoded(tmp_path: Path) -> None:
    # Every round writes a new version of a large namespace tree; a long-lived writer that kept
    # each one decoded grew by hundreds of megabytes (see ObjectStore._LARGE_ENTRIES).
    repo = GitOpsRepo(tmp_path / "gitops", worktree=LAZY)
    repo.objects._LARGE_ENTRIES = 2_000
    commit(repo, {f"ns/c{i:04d}": {"f": b"%d\n" % i} for i in range(600)}, "many\n")
    for number in range(10):
        commit(repo, {f"ns/more{number}": {"f": b"1\n"}}, f"round {number}\n")
        kept = [len(e) for e in repo.objects._large.values()]
        assert sum(kept) <= 2_000 and len(kept) == min(number + 2, 3)
        assert repo.objects._large_entries == sum(kept)
    # A version it already holds (a revert) is counted once.
    commit(repo, {"ns/more9": None}, "revert\n")
    assert repo.objects._large_entries == sum(len(e) for e in repo.objects._large.values())
    # What was let go is read again when asked for.
    first = bytes.fromhex(git(repo.root, "rev-parse", "HEAD~10:ns"))
    assert first not in repo.objects._large
    assert len(repo.objects.entries(first)) == 601
    repo.close()


ONE_CHART: dict[str, Edit] = {"ns/app": {"Chart.yaml": b"name: app\n"}}


@pytest.fixture
def committed(tmp_path: Path) -> Iterator[tuple[GitOpsRepo, str]]:
    """A repository with one chart committed, and that commit."""
    repo = GitOpsRepo(tmp_path / "gitops")
    first = commit(repo, ONE_CHART, "first\n")
    assert first is not None
    yield repo, first
    repo.close()


def test_a_changeset_that_changes_nothing_commits_nothing(
    committed: tuple[GitOpsRepo, str],
) -> None:
    repo, first = committed
    with repo.changes() as tx:
        assert tx.put("ns/app", {"Chart.yaml": b"name: app\n"}) is False
        assert tx.remove("ns/missing") is False
        assert tx.put("ns/app", {"Chart.yaml": b"name: changed\n"}) is True
        assert tx.paths == ["ns/app"]
    assert commit(repo, ONE_CHART, "again\n") is None
    assert commit(repo, {"ns/missing": None}, "remove nothing\n") is None
    assert git(repo.root, "rev-parse", "HEAD") == first  # the abandoned changeset left no trace


def test_ref_update_refuses_a_branch_that_moved(committed: tuple[GitOpsRepo, str]) -> None:
    repo, first = committed
    updater = RefUpdater(str(repo.git_dir), repo.objects.holds)
    with pytest.raises(GitFailed, match="update-ref"):
        updater.update("HEAD", first, "1" * 40)  # HEAD is not where the caller thinks
    updater.update("refs/heads/other", first, None)  # the updater lives on after a refusal
    with pytest.raises(GitFailed, match="update-ref"):
        updater.update("refs/heads/other", first, None)  # None: it must not exist yet
    updater.close()
    assert git(repo.root, "rev-parse", "HEAD") == first


def test_ref_update_logs_the_move_as_git_would(committed: tuple[GitOpsRepo, str]) -> None:
    repo, first = committed
    second = commit(repo, {"ns/b": {"f": b"2\n"}}, "second")
    assert second is not None
    # Both reflogs, as `git update-ref HEAD` writes them: HEAD's and the branch's.
    for ref in ("HEAD", "main"):
        moves = git(repo.root, "reflog", "show", "--format=%H %gs %gn", ref).splitlines()
        assert moves[0] == f"{second} overseer: render Overseer"
        assert moves[1].startswith(first)
    with pytest.raises(GitFailed, match="update-ref"):  # a commit the repository lacks
        repo.refs.update("HEAD", "2" * 40, second)
    assert git(repo.root, "rev-parse", "HEAD") == second


@pytest.mark.parametrize("sink", ["file", "parts"])
def test_packs_are_the_ones_git_would_index(tmp_path: Path, sink: str) -> None:
    # Small objects, and ones at, past and twice a stored deflate block (65,535 bytes), and
    # past the size header's third byte; written to files (a spilled chunk) or kept as parts
    # (a round's pack, large objects as views of their data).
    objects = [
        (object_id(kind, data), kind, data)
        for kind, data in [
            (b"blob", b""),
            (b"blob", b"x" * 15),
            (b"blob", b"y" * 0xFFFF),
            (b"blob", b"z" * 2 * 0xFFFF),
            (b"blob", b"chart: 1\n" * 20_000),
            (b"tree", encode_tree({"f": (FILE, object_id(b"blob", b""))})),
        ]
    ]
    pack_path, index_path = tmp_path / "p.pack", tmp_path / "p.idx"
    if sink == "file":
        with pack_path.open("wb") as pack_file, index_path.open("wb") as index_file:
            pack_sha = pack.write(objects, pack_file, index_file)
    else:
        pack_parts: list[bytes | memoryview] = []
        index_parts: list[bytes | memoryview] = []
        pack_sha = pack.write(
            objects,
            SimpleNamespace(write=pack_parts.append),
            SimpleNamespace(write=index_parts.append),
        )
        pack_path.write_bytes(b"".join(pack_parts))
        index_path.write_bytes(b"".join(index_parts))
    # git indexes the same pack byte for byte as ours: the same fanout, order, CRCs, offsets.
    theirs = tmp_path / "git.idx"
    printed = subprocess.run(
        ["git", "index-pack", "-o", str(theirs), str(pack_path)],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    assert printed == pack_sha.hex()
    assert index_path.read_bytes() == theirs.read_bytes()
    listed = subprocess.run(
        ["git", "verify-pack", "-v", str(index_path)], check=True, capture_output=True, text=True
    ).stdout
    found = {line.split()[0]: line.split()[1:3] for line in listed.splitlines()[: len(objects)]}
    assert found == {sha.hex(): [kind.decode(), str(len(data))] for sha, kind, data in objects}


def test_a_changeset_on_a_moved_branch_fails_and_moves_nothing(
    committed: tuple[GitOpsRepo, str],
) -> None:
    repo, first = committed
    with repo.changes() as tx:
        tx.put("ns/b", {"f": b"1\n"})
        # Another writer that ignored the lock moved the branch meanwhile.
        other = git(
            repo.root, "-c", "user.name=o", "-c", "user.email=o@o",
            "commit-tree", "-p", first, "-m", "other", first + "^{tree}",
        )  # fmt: skip
        git(repo.root, "update-ref", "HEAD", other)
        with pytest.raises(GitFailed, match="update-ref"):
            tx.commit("mine\n")
    assert git(repo.root, "rev-parse", "HEAD") == other


def test_many_commits_stay_readable_as_packs_are_folded(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path / "gitops")
    for number in range(70):  # past two repack points
        assert commit(repo, {f"ns/app-{number}": {"Chart.yaml": b"n: %d\n" % number}}, "c\n")
    repo.close()  # waits for a repack still running
    packs = list((repo.root / ".git" / "objects" / "pack").glob("*.pack"))
    assert len(packs) < 70
    assert not list((repo.root / ".git" / "objects").glob("??/*"))  # no loose object at all
    subprocess.run(["git", "-C", str(repo.root), "fsck", "--strict"], check=True)
    assert len(git(repo.root, "ls-tree", "--name-only", "HEAD", "ns/").splitlines()) == 70


def test_repacks_fold_the_small_packs_into_a_geometric_progression(tmp_path: Path) -> None:
    assert fold_count([]) == fold_count([5]) == 0
    assert fold_count([1, 4, 9, 40]) == 0  # each holds at least twice the one below it
    assert fold_count([7] * 32 + [40_000]) == 32
    assert fold_count([7] * 32 + [224, 40_000]) == 33  # the 224 joins: 224 < 2 * 224
    assert fold_count([7, 7, 7]) == 3
    # A real fold: every object is still there, in fewer packs, and git finds nothing wrong.
    root = tmp_path / "gitops"
    repo = GitOpsRepo(root)
    for number in range(8):  # fewer than start a repack of the writer's own
        commit(repo, {f"ns/app-{number}": {"Chart.yaml": b"n: %d\n" % number}}, "c\n")
    pack_dir = root / ".git" / "objects" / "pack"

    def objects() -> set[str]:
        return {
            line.split()[1]
            for index in pack_dir.glob("*.idx")
            for line in subprocess.run(
                ["git", "show-index"], input=index.read_bytes(), capture_output=True, check=True
            ).stdout.splitlines()
        }

    before, packs = objects(), len(list(pack_dir.glob("*.pack")))
    running = Repack.start(root / ".git")
    assert running is not None
    running.finish()
    assert objects() == before
    assert len(list(pack_dir.glob("*.pack"))) < packs
    subprocess.run(["git", "-C", str(root), "fsck", "--strict"], check=True)
    assert Repack.start(root / ".git") is None  # nothing left to fold
    repo.close()


def test_a_checkout_overwrites_hand_edits_only_where_the_commit_changes(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path / "gitops")
    commit(repo, {"ns/a": {"f": b"1\n"}, "ns/b": {"f": b"1\n"}}, "first\n")
    (repo.root / "ns/a/f").write_bytes(b"hand edit\n")
    (repo.root / "ns/b/f").write_bytes(b"hand edit\n")
    (repo.root / "ns/a/stray").write_bytes(b"untracked\n")
    commit(repo, {"ns/a": {"f": b"2\n"}}, "second\n")
    assert (repo.root / "ns/a/f").read_bytes() == b"2\n"
    assert (repo.root / "ns/b/f").read_bytes() == b"hand edit\n"  # not the commit's to touch
    assert (repo.root / "ns/a/stray").exists()
    repo.sync_worktree(hard=True)  # what a full render does: every hand edit goes
    assert (repo.root / "ns/b/f").read_bytes() == b"1\n"
    assert not (repo.root / "ns/a/stray").exists()
    assert clean(repo.root)


def test_a_lazy_repository_writes_files_only_when_a_reader_asks(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path / "gitops", worktree=LAZY)
    for edits in ROUNDS[:2]:
        commit(repo, edits, "round\n")
    assert sorted(p.name for p in repo.root.iterdir()) == [".git"]  # objects and a ref only
    assert repo.snapshot().read_file("ns/a0/x") == b"3\n"  # readable from the commit
    reader = GitOpsRepo(tmp_path / "gitops")  # e.g. a CLI command in checkout mode
    reader.sync_worktree()
    assert (repo.root / "ns/a0/x").read_bytes() == b"3\n" and clean(repo.root)
    commit(repo, ROUNDS[2], "round\n")  # the files stay where the reader left them...
    assert (repo.root / "ns/app-2").is_dir()
    reader.sync_worktree()  # ...until the next reader, which writes only what changed
    assert not (repo.root / "ns/app-2").exists() and clean(repo.root)
    repo.close()
    reader.close()


def test_the_next_sync_finishes_one_a_killed_process_left(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path / "gitops", worktree=LAZY)
    commit(repo, {"ns/a": {"f": b"1\n"}}, "first\n")
    repo.sync_worktree()
    commit(repo, {"ns/a": {"f": b"2\n"}, "ns/b": {"f": b"2\n"}}, "second\n")
    # A sync killed half-way: one file written, index.lock left behind by the killed git.
    (repo.root / "ns/b").mkdir()
    (repo.root / "ns/b/f").write_bytes(b"half")
    (repo.git_dir / "index.lock").write_bytes(b"")
    after = GitOpsRepo(tmp_path / "gitops", worktree=CHECKOUT)
    after.sync_worktree()
    assert (repo.root / "ns/a/f").read_bytes() == b"2\n"
    assert (repo.root / "ns/b/f").read_bytes() == b"2\n"
    assert clean(repo.root) and not (repo.git_dir / "index.lock").exists()
    repo.close()
    after.close()


def test_an_index_lock_some_process_holds_open_is_left_to_it(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path / "gitops", worktree=LAZY)
    commit(repo, {"ns/a": {"f": b"1\n"}}, "first\n")
    lock = repo.git_dir / "index.lock"
    with open(lock, "wb"):  # a live git would hold it open
        with pytest.raises(GitFailed, match=r"index\.lock"):
            repo.sync_worktree()
        assert lock.exists()
    repo.sync_worktree()  # closed now: a dead one's, removed
    assert clean(repo.root)
    repo.close()


KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from generator.gitops import GitOpsRepo
repo = GitOpsRepo(Path(sys.argv[1]))
with repo.changes() as tx:
    tx.put("ns/a", {"f": b"1\\n"})
    tx.commit("first\\n")
    os.kill(os.getpid(), signal.SIGKILL)  # before its database could commit
"""


def test_a_journal_left_by_a_killed_writer_names_the_paths_in_doubt(tmp_path: Path) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path / "gitops")], capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    after = GitOpsRepo(tmp_path / "gitops")
    assert after.snapshot().chart_paths() == {"ns/a"}  # the ref had moved
    with after.lock():  # a holder that reconciles nothing (a gc with nothing due) keeps it
        assert after.in_doubt == {"ns/a"}
    with after.lock():
        assert after.in_doubt == {"ns/a"}
        after.reconciled = True  # what a render does once it has settled the paths in doubt
    with after.lock():  # let go after that: the journal is empty, nothing in doubt
        assert after.in_doubt == set()
    after.close()


def test_snapshots_read_charts_from_objects(committed: tuple[GitOpsRepo, str]) -> None:
    repo, first = committed
    commit(repo, {"ns/b": {"Chart.yaml": b"b\n", "templates/t.yaml": b"t\n"}}, "second\n")
    old, new = repo.snapshot(first), repo.snapshot()
    assert old.chart_paths() == {"ns/app"} and new.chart_paths() == {"ns/app", "ns/b"}
    assert new.read_chart("ns/b") == {"Chart.yaml": b"b\n", "templates/t.yaml": b"t\n"}
    assert new.read_file("ns/b/missing") is None and old.read_chart("ns/b") == {}
    out = repo.root.parent / "export"
    new.export("ns/b", out)
    assert (out / "templates/t.yaml").read_bytes() == b"t\n"
    with pytest.raises(FileNotFoundError):
        old.export("ns/b", repo.root.parent / "nothing")


def test_reading_the_charts_creates_no_repository(tmp_path: Path) -> None:
    ctx = Context(Settings(tmp_path / "home", tmp_path / "gitops", None, None, "a8s"))
    assert ctx.charts().chart_paths() == set()
    assert not (tmp_path / "gitops").exists()
    ctx.close()


def hand_commit(work: Path, path: str, data: bytes) -> None:
    """Someone else's commit on the remote's main, made from a clone."""
    (work / path).parent.mkdir(parents=True, exist_ok=True)
    (work / path).write_bytes(data)
    git(work, "add", "-A")
    git(work, "-c", "user.name=r", "-c", "user.email=r@r", "commit", "-qm", f"edit {path}")
    git(work, "push", "-q", "origin", "main")


def test_a_rejected_push_is_replayed_chart_by_chart(tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    repo = GitOpsRepo(tmp_path / "gitops")
    commit(repo, {"ns/a": {"f": b"1\n"}, "ns/b": {"f": b"1\n"}}, "first\n")
    with repo.lock():
        assert publish(repo, str(remote)) == "main"
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(remote), str(other)], check=True)
    hand_commit(other, "ns/b/f", b"theirs\n")  # a chart we do not touch
    commit(repo, {"ns/a": {"f": b"2\n"}}, "second\n")
    with repo.lock():
        assert publish(repo, str(remote))
    assert not push_pending(repo)
    theirs = repo.snapshot()
    assert theirs.read_file("ns/a/f") == b"2\n" and theirs.read_file("ns/b/f") == b"theirs\n"
    assert git(repo.root, "rev-parse", "HEAD") == git(remote, "rev-parse", "main")
    assert git(remote, "log", "--format=%s", "main").splitlines() == [
        "second", "edit ns/b/f", "first",
    ]  # fmt: skip
    assert (repo.root / "ns/b/f").read_bytes() == b"theirs\n" and clean(repo.root)

    # Both sides change the same chart differently: nothing moves, and the push stays pending.
    git(other, "pull", "-q")
    hand_commit(other, "ns/a/f", b"theirs\n")
    commit(repo, {"ns/a": {"f": b"3\n"}}, "third\n")
    head = git(repo.root, "rev-parse", "HEAD")
    with repo.lock(), pytest.raises(Conflict, match="ns/a"):
        publish(repo, str(remote))
    assert git(repo.root, "rev-parse", "HEAD") == head and push_pending(repo)
    repo.close()


def test_a_replayed_commit_that_changes_nothing_on_theirs_is_dropped(tmp_path: Path) -> None:
    """Another replica committed the same charts first: no empty commit, no trailer twice."""
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    repo = GitOpsRepo(tmp_path / "gitops")
    commit(repo, {"ns/a": {"f": b"1\n"}}, "first\n")
    with repo.lock():
        publish(repo, str(remote))
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(remote), str(other)], check=True)
    hand_commit(other, "ns/b/f", b"same\n")
    commit(repo, {"ns/b": {"f": b"same\n"}}, "second\n")  # the same chart, made here too
    with repo.lock():
        assert publish(repo, str(remote)) == "main"
    assert git(remote, "log", "--format=%s", "main").splitlines() == ["edit ns/b/f", "first"]
    assert git(repo.root, "rev-parse", "HEAD") == git(remote, "rev-parse", "main")
    repo.close()


def test_an_unforced_push_leaves_a_branch_someone_else_made(tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(remote), str(other)], check=True)
    hand_commit(other, "README.md", b"theirs\n")
    git(other, "push", "-q", "origin", "main")
    theirs = git(remote, "rev-parse", "main")
    repo = GitOpsRepo(tmp_path / "gitops")
    ours = commit(repo, {"ns/a": {"f": b"1\n"}}, "ours\n")
    assert ours is not None
    with pytest.raises(GitFailed, match="push main"):
        push_branches(repo, str(remote), {"main": ours}, force=False)
    assert git(remote, "rev-parse", "main") == theirs  # their main stands
    push_branches(repo, str(remote), {"main": ours})  # forced, as a proposal's own branch is
    assert git(remote, "rev-parse", "main") == ours
    repo.close()


def test_credentials_in_a_remote_url_never_reach_a_message(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path / "gitops")
    commit(repo, {"ns/a": {"f": b"1\n"}}, "first\n")
    remote = "http://overseer:tok3n-s3cret@127.0.0.1:9/nowhere.git"  # nothing listens on port 9
    with repo.lock():
        with pytest.raises(GitFailed) as pushed:
            publish(repo, remote)
        with pytest.raises(GitFailed) as fetched:
            fetch_main(repo, remote)
    for failure in (pushed.value, fetched.value):
        assert "tok3n-s3cret" not in failure.message + failure.output
        assert "http://***@127.0.0.1:9/nowhere.git" in failure.message
    repo.close()


def test_held_and_spilled_changesets_commit_the_same_tree(tmp_path: Path) -> None:
    held = GitOpsRepo(tmp_path / "held")  # blobs kept in memory, one pack
    spilled = GitOpsRepo(tmp_path / "spilled", spill_bytes=1)  # every blob in a pack of its own
    charts: dict[str, Edit] = {
        f"ns/chart-{i}": {"Chart.yaml": f"name: c{i}\n".encode(), "templates/a.yaml": b"a: 1\n"}
        for i in range(5)
    }
    for repo in (held, spilled):
        commit(repo, {**charts, "README.md": b"hello\n"}, "first\n")
    work = tmp_path / "by-hand"
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    apply_to_disk(work, {**charts, "README.md": b"hello\n"})
    expected = git_tree_of(work)  # what git itself makes of the same files
    assert git(held.root, "rev-parse", "HEAD^{tree}") == expected
    assert git(spilled.root, "rev-parse", "HEAD^{tree}") == expected
    changed: dict[str, Edit] = {p: {"Chart.yaml": b"name: changed\n"} for p in list(charts)[:3]}
    changed["ns/chart-4"] = None
    for repo in (held, spilled):
        commit(repo, changed, "second\n")
    apply_to_disk(work, changed)
    expected = git_tree_of(work)
    for repo in (held, spilled):
        assert git(repo.root, "rev-parse", "HEAD^{tree}") == expected
        assert clean(repo.root)
        git(repo.root, "fsck", "--strict")
        repo.close()


def test_descends_follows_parents_in_process(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path / "gitops")
    first = commit(repo, {"ns/a": {"f": b"1\n"}}, "first\n")
    second = commit(repo, {"ns/a": {"f": b"2\n"}}, "second\n")
    assert first and second
    objects = repo.objects
    assert objects.descends(second, first) and objects.descends(first, first)
    assert not objects.descends(first, second)
    assert not objects.descends(second, "0" * 40)  # not in this repository
    repo.close()


@pytest.mark.parametrize("spill_bytes", [32 << 20, 1000], ids=["in-memory", "spilled"])
def test_putting_what_the_base_holds_writes_no_object(tmp_path: Path, spill_bytes: int) -> None:
    """A full render puts every chart again; those its base holds add nothing to the packs."""
    root = tmp_path / "gitops"
    charts: dict[str, Edit] = {
        f"ns/chart-{i}": {"Chart.yaml": f"name: c{i}\n".encode() * 40, "values.yaml": b"a: 1\n"}
        for i in range(50)
    }
    first = GitOpsRepo(root, spill_bytes=spill_bytes)
    commit(first, charts, "first\n")
    first.close()
    git(root, "repack", "-a", "-d", "-q")

    def objects_in_packs() -> int:
        return sum(
            int(line.split()[1])
            for line in git(root, "count-objects", "-v").splitlines()
            if line.startswith("in-pack:")
        )

    before = objects_in_packs()
    again = GitOpsRepo(root, spill_bytes=spill_bytes)  # a new process: it knows no object
    assert commit(again, charts, "the same\n") is None
    changed = {"ns/chart-0": {"Chart.yaml": b"name: new\n", "values.yaml": b"a: 1\n"}}
    assert commit(again, {**charts, **changed}, "one changed\n") is not None
    # The changed chart's blob, its tree, the namespace's tree, the root and the commit.
    assert objects_in_packs() - before == 5
    git(root, "fsck", "--strict")
    again.close()


def test_a_discarded_changeset_forgets_what_it_spilled(tmp_path: Path) -> None:
    """Its pack is referenced by nothing, and `git gc` may prune it: a later commit writes anew."""
    repo = GitOpsRepo(tmp_path / "gitops", spill_bytes=1)
    data = b"spilled\n"
    with repo.changes() as tx:
        tx.put("ns/a", {"f": data})  # the blob goes out in a pack at once; no commit follows
    sha = object_id(b"blob", data)
    assert sha not in repo.objects._stored
    git(repo.root, "gc", "--prune=now", "-q")  # the pack's blob is unreachable: gone
    commit(repo, {"ns/a": {"f": data}}, "later\n")
    git(repo.root, "fsck", "--strict")  # the blob was written again: nothing is missing
    assert git(repo.root, "cat-file", "-p", "HEAD:ns/a/f") == "spilled"
    repo.close()


def test_the_lock_follows_a_lock_file_replaced_between_holds(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path / "gitops")
    path = repo.git_dir / "overseer.lock"
    with repo.lock():  # its file stays open from now on
        pass
    # Replaced (a restored backup, a hand): another process locks the file now at the path.
    fresh = path.with_name("overseer.lock.new")
    fresh.write_bytes(b"")
    os.replace(fresh, path)
    with repo.lock():
        held = os.fstat(repo._lock_fd).st_ino  # type: ignore[arg-type]
        assert held == os.stat(path).st_ino
    repo.close()


def test_the_journal_kept_open_sees_what_another_process_did(tmp_path: Path) -> None:
    path = tmp_path / "overseer-journal"
    ours, theirs = Journal(path), Journal(path)
    ours.append({"n": 1})
    theirs.clear()  # another writer emptied it between our holds
    assert ours.entries() == []
    theirs.append({"n": 2})
    assert ours.entries() == [{"n": 2}]
    path.unlink()  # removed by hand: what comes next goes to the file at the path
    ours.append({"n": 3})
    assert Journal(path).entries() == [{"n": 3}]
    ours.close()
    theirs.close()


def _deleted_packs_held(repo: GitOpsRepo) -> list[str]:
    held = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith(f"{repo.git_dir}/objects/pack/") and target.endswith("(deleted)"):
            held.append(target)
    return held


def test_a_repack_leaves_libgit2_no_deleted_pack_to_try(tmp_path: Path) -> None:
    """libgit2 keeps every pack it has seen, and tries the gone ones on every lookup miss."""
    repo = GitOpsRepo(tmp_path / "gitops", worktree=LAZY)
    try:
        trees = []
        for n in range(5):
            sha = commit(repo, {f"ns/app-{n}": {"f": b"%d\n" % n}}, "c\n")
            tree = repo.tree_of(sha)
            assert tree is not None
            trees.append(tree)
        contents = [repo.objects.read(tree) for tree in trees]
        git(repo.root, "repack", "-a", "-d", "-q")  # the five packs are replaced by one
        repo.objects._packs_checked = time.monotonic()  # as if it had just looked
        assert [repo.objects.read(tree) for tree in trees] == contents
        assert _deleted_packs_held(repo)  # what libgit2 does without help
        repo.objects.forget_packs()
        assert [repo.objects.read(tree) for tree in trees] == contents
        assert not _deleted_packs_held(repo)
        # A process that only reads (the server beside its writer) notices by itself, within
        # a second, that a repack removed packs it knew.
        commit(repo, {"ns/app-5": {"f": b"5\n"}}, "c\n")
        repo.objects.forget_packs()
        assert [repo.objects.read(tree) for tree in trees] == contents
        git(repo.root, "repack", "-a", "-d", "-q")
        repo.objects._packs_checked = 0.0  # its second is up
        assert [repo.objects.read(tree) for tree in trees] == contents
        assert not _deleted_packs_held(repo)
    finally:
        repo.close()


def test_a_ref_never_names_a_commit_the_repository_lacks(
    committed: tuple[GitOpsRepo, str],
) -> None:
    repo, first = committed
    with pytest.raises(GitFailed, match="not in the repository"):
        repo.refs.update("refs/heads/other", "2" * 40, None)
    assert git(repo.root, "for-each-ref", "--format=%(refname)") == "refs/heads/main"
    repo.refs.update("refs/heads/other", first, None)  # one it has is fine
