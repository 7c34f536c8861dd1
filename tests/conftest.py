"""Shared fixtures: a fresh memory under a temporary CLAUDE_MEM_DIR for every test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from datasette_claude_mem.config import Config
from datasette_claude_mem.store import Store

HELPERS = Path(__file__).parent / "helpers"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    base = tmp_path / "claude-mem"
    monkeypatch.setenv("CLAUDE_MEM_DIR", str(base))
    monkeypatch.delenv("CLAUDE_MEM_PROJECT", raising=False)
    cfg = Config()
    cfg.ensure_dirs()
    return cfg


@pytest.fixture
def store(config: Config):
    s = Store(config.db_path)
    yield s
    s.close()


@pytest.fixture
def session(store: Store, tmp_path: Path):
    """An active session in a project directory of its own."""
    from datasette_claude_mem.models import SessionStart

    project_dir = tmp_path / "repo"
    (project_dir / ".git").mkdir(parents=True)
    return store.create_session(SessionStart(project_dir=str(project_dir))).row


@pytest.fixture
def python() -> str:
    """The interpreter running the tests, for child processes."""
    return sys.executable
