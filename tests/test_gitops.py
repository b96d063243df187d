"""The GitOps wrapper's in-process commits agree with what git itself would commit, and leave
the index and the work tree agreeing with them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from generator.config import Settings
from generator.errors import UserError
from generator.gitops import Edit, GitOpsRepo, _RefUpdater
from generator.service.context import Context
from generator.write import STAGING_PREFIX, ChartTree


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


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


def test_commit_edits_builds_the_tree_git_would(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path / "gitops")
    mirror = tmp_path / "mirror"  # the same edits, committed by git from a work tree
    mirror.mkdir()
    git(mirror, "init", "-q")
    for number, edits in enumerate(ROUNDS):
        commit = repo.commit_edits(edits, f"round {number}\n")
        assert commit is not None
        apply_to_disk(mirror, edits)
        assert git(repo.root, "rev-parse", "HEAD^{tree}") == git_tree_of(mirror)
        assert git(repo.root, "rev-parse", "HEAD") == commit
        # The index and the work tree agree with the commit: nothing staged, modified or left over.
        assert git(repo.root, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(repo.root, "rev-list", "--count", "HEAD") == str(len(ROUNDS))
    assert sorted(p.name for p in repo.root.iterdir()) == [".git", ".overseer", "other"]
    assert git(repo.root, "log", "-1", "--format=%an <%ae>|%cn <%ce>") == (
        "Overseer <overseer@localhost>|Overseer <overseer@localhost>"
    )
    subprocess.run(["git", "-C", str(repo.root), "fsck", "--strict"], check=True)
    repo.close()


ONE_CHART: dict[str, Edit] = {"ns/app": {"Chart.yaml": b"name: app\n"}}


@pytest.fixture
def committed(tmp_path: Path) -> Iterator[tuple[GitOpsRepo, str]]:
    """A repository with one chart committed, and that commit."""
    repo = GitOpsRepo(tmp_path / "gitops")
    first = repo.commit_edits(ONE_CHART, "first\n")
    assert first is not None
    yield repo, first
    repo.close()


def test_commit_edits_that_change_nothing_commit_nothing(
    committed: tuple[GitOpsRepo, str],
) -> None:
    repo, first = committed
    assert repo.commit_edits(ONE_CHART, "again\n") is None
    assert repo.commit_edits({"ns/missing": None}, "remove nothing\n") is None
    assert git(repo.root, "rev-parse", "HEAD") == first


def test_ref_update_refuses_a_branch_that_moved(committed: tuple[GitOpsRepo, str]) -> None:
    repo, first = committed
    updater = _RefUpdater(repo.root)
    with pytest.raises(UserError, match="update-ref"):
        updater.update("HEAD", first, "1" * 40)  # HEAD is not where the caller thinks
    updater.close()
    assert git(repo.root, "rev-parse", "HEAD") == first


def test_many_commits_stay_readable_as_packs_are_folded(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path / "gitops")
    for number in range(70):  # past two repack points
        edits: dict[str, Edit] = {f"ns/app-{number}": {"Chart.yaml": b"n: %d\n" % number}}
        assert repo.commit_edits(edits, f"{number}\n") is not None
    repo.close()  # waits for a repack still running
    packs = list((repo.root / ".git" / "objects" / "pack").glob("*.pack"))
    assert len(packs) < 70
    subprocess.run(["git", "-C", str(repo.root), "fsck", "--strict"], check=True)
    assert len(git(repo.root, "ls-tree", "--name-only", "HEAD", "ns/").splitlines()) == 70


def test_commit_edits_overwrites_hand_edits_only_where_it_writes(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path / "gitops")
    repo.commit_edits({"ns/a": {"f": b"1\n"}, "ns/b": {"f": b"1\n"}}, "first\n")
    (repo.root / "ns/a/f").write_bytes(b"hand edit\n")
    (repo.root / "ns/b/f").write_bytes(b"hand edit\n")
    (repo.root / "ns/a/stray").write_bytes(b"untracked\n")
    repo.commit_edits({"ns/a": {"f": b"2\n"}}, "second\n")
    assert (repo.root / "ns/a/f").read_bytes() == b"2\n"
    assert (repo.root / "ns/b/f").read_bytes() == b"hand edit\n"  # not the render's to touch
    assert (repo.root / "ns/a/stray").exists()
    status = {line.strip() for line in git(repo.root, "status", "--porcelain").splitlines()}
    assert status == {"M ns/b/f", "?? ns/a/stray"}
    repo.close()


def test_a_deferred_checkout_is_done_before_the_lock_is_let_go(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path / "gitops")
    with repo.lock():
        first = repo.commit_edits({"ns/a": {"f": b"1\n"}}, "first\n", defer_checkout=True)
        assert git(repo.root, "rev-parse", "HEAD") == first
        assert not (repo.root / "ns").exists()  # committed; the work tree follows
        # A second commit under the same lock first catches the work tree up.
        repo.commit_edits({"ns/b": {"f": b"2\n"}}, "second\n", defer_checkout=True)
        assert (repo.root / "ns/a/f").read_bytes() == b"1\n"
        assert not (repo.root / "ns/b").exists()
    assert (repo.root / "ns/b/f").read_bytes() == b"2\n"
    assert git(repo.root, "status", "--porcelain", "--untracked-files=all") == ""
    repo.close()


def test_the_next_writer_finishes_a_checkout_a_killed_process_left(tmp_path: Path) -> None:
    killed = GitOpsRepo(tmp_path / "gitops")
    # Committed, then killed before writing the work tree (the lock would otherwise finish it).
    commit = killed.commit_edits({"ns/a": {"f": b"1\n"}}, "first\n", defer_checkout=True)
    # Killed after writing a chart whose commit never landed.
    (killed.root / "ns/b").mkdir(parents=True)
    (killed.root / "ns/b/f").write_bytes(b"half")
    marker = killed.root / ".git/overseer-journal"
    marker.write_text("ns/a\nns/b\nns/")  # the last line was cut short by the kill
    after = GitOpsRepo(tmp_path / "gitops")
    with after.lock():
        assert (after.root / "ns/a/f").read_bytes() == b"1\n"
        assert not (after.root / "ns/b").exists()
    assert not marker.exists()
    assert git(after.root, "rev-parse", "HEAD") == commit
    assert git(after.root, "status", "--porcelain", "--untracked-files=all") == ""
    after.close()


def test_the_journal_outlives_another_process_recovering_it(tmp_path: Path) -> None:
    server = GitOpsRepo(tmp_path / "gitops")
    server.commit_edits({"ns/a": {"f": b"1\n"}}, "first\n")
    with server.lock():  # a render that removed an untracked directory and committed nothing
        server.record("ns/junk")
    cli = GitOpsRepo(tmp_path / "gitops")  # another process takes the lock and recovers
    with cli.lock():
        pass
    cli.close()
    with server.lock():  # the server writes a chart, then is killed before committing it
        server.record("ns/new")
        (server.root / "ns/new").mkdir()
        (server.root / "ns/new/f").write_bytes(b"uncommitted\n")
    after = GitOpsRepo(tmp_path / "gitops")
    with after.lock():
        assert not (after.root / "ns/new").exists()
    assert git(after.root, "status", "--porcelain", "--untracked-files=all") == ""
    after.close()
    server.close()


def test_recovery_clears_the_index_lock_of_a_killed_git_only(tmp_path: Path) -> None:
    repo = GitOpsRepo(tmp_path / "gitops")
    repo.commit_edits({"ns/a": {"f": b"1\n"}}, "first\n")
    journal = repo.root / ".git/overseer-journal"
    lock = repo.root / ".git/index.lock"
    # A render was killed while `git add` ran: its journal and git's lock file are left.
    (repo.root / "ns/b").mkdir()
    (repo.root / "ns/b/f").write_bytes(b"half\n")
    journal.write_text("ns/b\n")
    other = GitOpsRepo(tmp_path / "gitops")
    # While some git still has it open, it is not ours to remove.
    with lock.open("wb"), pytest.raises(UserError, match=r"index\.lock"), other.lock():
        pass
    assert lock.exists()
    other.close()
    after = GitOpsRepo(tmp_path / "gitops")
    with after.lock():  # nobody has it open any more
        assert not lock.exists() and not (after.root / "ns/b").exists()
    assert not journal.exists()
    assert git(after.root, "status", "--porcelain", "--untracked-files=all") == ""
    after.close()
    repo.close()


def test_chart_listing_skips_files_and_removes_staging_leftovers(tmp_path: Path) -> None:
    (tmp_path / "ns/app").mkdir(parents=True)
    (tmp_path / "ns/NOTES.md").write_text("not a chart\n")
    leftover = tmp_path / "ns" / f"{STAGING_PREFIX}app2.x1"
    leftover.mkdir()
    (leftover / "Chart.yaml").write_text("half\n")
    tree = ChartTree(tmp_path)
    assert tree.chart_paths() == {"ns/app"}
    assert leftover.exists()  # only a render clears them
    assert tree.chart_paths(remove_leftovers=True) == {"ns/app"}
    assert not leftover.exists()


def test_waiting_for_the_work_tree_creates_no_repository(tmp_path: Path) -> None:
    ctx = Context(Settings(tmp_path / "home", tmp_path / "gitops", None, None, "a8s"))
    with ctx.settled_work_tree():
        pass
    assert not (tmp_path / "gitops").exists()
    GitOpsRepo(tmp_path / "gitops").close()
    with ctx.settled_work_tree():  # now there is one, and its writer lock is taken
        assert ctx.repo._holder is not None
    ctx.close()
