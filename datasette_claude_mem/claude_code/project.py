"""Which project a directory belongs to.

A project is one repository: every subdirectory and every git worktree of it gets the same
key, the path of the main working tree. Reading .git by hand (rather than running git) keeps
this fast enough for a hook. A directory outside any repository is its own project.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_PROJECT = "CLAUDE_MEM_PROJECT"


def _common_git_dir(dot_git: Path) -> Path | None:
    """The repository's shared .git directory, following a worktree's `gitdir:` file."""
    if dot_git.is_dir():
        return dot_git
    try:
        text = dot_git.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    git_dir = Path(text.removeprefix("gitdir:").strip())
    if not git_dir.is_absolute():
        git_dir = (dot_git.parent / git_dir).resolve()
    commondir = git_dir / "commondir"
    if commondir.is_file():
        shared = Path(commondir.read_text(encoding="utf-8").strip())
        return shared if shared.is_absolute() else (git_dir / shared).resolve()
    return git_dir


def project_key(directory: str | os.PathLike[str], override: str | None = None) -> str:
    """The project key for a working directory; `override` (or CLAUDE_MEM_PROJECT) wins."""
    chosen = override or os.environ.get(ENV_PROJECT)
    if chosen:
        return chosen
    start = Path(directory).expanduser()
    try:
        start = start.resolve()
    except (OSError, ValueError):  # ValueError: a NUL in the path, on Python 3.13
        return str(start)
    for candidate in (start, *start.parents):
        dot_git = candidate / ".git"
        try:
            if not dot_git.exists():
                continue
        except (OSError, ValueError):  # too long, or a NUL: it cannot hold a repository
            continue
        common = _common_git_dir(dot_git)
        if common is None:
            return str(candidate)
        # A bare repository's worktrees share a common dir that is not named .git.
        return str(common.parent if common.name == ".git" else common)
    return str(start)
