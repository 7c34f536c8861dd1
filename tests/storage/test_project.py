"""Project keys: one repository is one project, from any subdirectory or worktree."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from datasette_claude_mem.storage.models import SessionStart
from datasette_claude_mem.storage.project import project_key
from datasette_claude_mem.storage.store import Store


@pytest.fixture(autouse=True)
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAUDE_MEM_PROJECT", raising=False)


def git(*args: str, cwd: Path) -> None:
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "init.defaultBranch=main",
            *args,
        ],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A real repository with one commit (a worktree needs one)."""
    root = tmp_path / "myrepo"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "README").write_text("hi\n")
    git("init", "-q", cwd=root)
    git("add", "README", cwd=root)
    git("commit", "-q", "-m", "first", cwd=root)
    return root


def test_every_subdirectory_of_a_repo_is_the_same_project(repo: Path) -> None:
    key = project_key(repo)
    assert key == str(repo.resolve())
    assert project_key(repo / "src") == key
    assert project_key(repo / "src" / "pkg") == key


def test_a_worktree_is_the_same_project_as_its_main_checkout(repo: Path, tmp_path: Path) -> None:
    worktree = tmp_path / "feature-branch"
    git("worktree", "add", "-q", "-b", "feature", str(worktree), cwd=repo)
    assert (worktree / ".git").is_file()  # a real linked worktree, not a copy
    assert project_key(worktree) == project_key(repo)
    (worktree / "src" / "pkg").mkdir(parents=True, exist_ok=True)
    assert project_key(worktree / "src" / "pkg") == project_key(repo)


def test_a_worktree_with_a_relative_gitdir_is_the_same_project(repo: Path, tmp_path: Path) -> None:
    worktree = tmp_path / "rel"
    git("worktree", "add", "-q", "-b", "rel", str(worktree), cwd=repo)
    dot_git = worktree / ".git"
    absolute = Path(dot_git.read_text().removeprefix("gitdir:").strip())
    relative = Path("..") / absolute.relative_to(tmp_path)
    dot_git.write_text(f"gitdir: {relative}\n")
    assert project_key(worktree) == project_key(repo)


def test_worktrees_of_a_bare_repository_share_its_key(repo: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    git("clone", "-q", "--bare", str(repo), str(bare), cwd=tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    git("worktree", "add", "-q", str(one), "main", cwd=bare)
    git("worktree", "add", "-q", "-b", "b2", str(two), cwd=bare)
    assert project_key(one) == project_key(two) == str(bare.resolve())


def test_a_directory_outside_any_repo_is_its_own_project(tmp_path: Path) -> None:
    a, b = tmp_path / "notes" / "a", tmp_path / "notes" / "b"
    a.mkdir(parents=True)
    b.mkdir()
    assert project_key(a) == str(a.resolve())
    assert project_key(b) == str(b.resolve())
    assert project_key(a) != project_key(b)


def test_a_symlinked_path_is_the_same_project(repo: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(repo / "src")
    assert project_key(link) == project_key(repo)


def test_a_directory_that_does_not_exist_still_gets_a_key(tmp_path: Path) -> None:
    assert project_key(tmp_path / "gone" / "away") == str((tmp_path / "gone" / "away").resolve())


def test_the_environment_override_wins(
    repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_PROJECT", "shared-name")
    assert project_key(repo) == "shared-name"
    assert project_key(tmp_path) == "shared-name"
    assert project_key(repo, override="explicit") == "explicit"


def test_sessions_from_a_worktree_share_the_main_checkouts_memory(
    store: Store, repo: Path, tmp_path: Path
) -> None:
    worktree = tmp_path / "wt"
    git("worktree", "add", "-q", "-b", "wt", str(worktree), cwd=repo)
    main = store.create_session(SessionStart(project_dir=str(repo / "src"))).row
    side = store.create_session(SessionStart(project_dir=str(worktree))).row
    assert main.project == side.project == str(repo.resolve())
    assert {s.id for s in store.list_sessions(project=main.project)} == {main.id, side.id}
