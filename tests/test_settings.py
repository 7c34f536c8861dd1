"""Configuration: where the memory lives, and the knobs a user can turn."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from datasette_claude_mem.settings import Config
from datasette_claude_mem.storage.store import Store


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CLAUDE_MEM_DIR", raising=False)
    monkeypatch.delenv("CLAUDE_MEM_SYNCHRONOUS", raising=False)
    return home


def test_defaults(clean_env: Path) -> None:
    cfg = Config()
    # Not ~/.claude-mem: claude-mem keeps its own claude-mem.db there.
    assert cfg.base_dir == clean_env / ".datasette-claude-mem"
    assert cfg.db_path == clean_env / ".datasette-claude-mem" / "claude-mem.db"
    assert cfg.log_dir == clean_env / ".datasette-claude-mem" / "logs"
    assert cfg.synchronous == "NORMAL"
    assert sum(cfg.context_budget.values()) == 2000
    assert cfg.embedding_dim == 384


def test_claude_mem_dir_moves_everything(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_DIR", str(tmp_path / "elsewhere"))
    cfg = Config()
    assert cfg.base_dir == tmp_path / "elsewhere"
    assert cfg.db_path.parent == tmp_path / "elsewhere"
    assert cfg.log_dir.parent == tmp_path / "elsewhere"


def test_claude_mem_dir_expands_the_home_directory(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_DIR", "~/memories")
    assert Config().base_dir == clean_env / "memories"


def test_an_explicit_base_dir_wins_over_the_environment(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_DIR", str(tmp_path / "env"))
    assert Config(base_dir=tmp_path / "arg").db_path == tmp_path / "arg" / "claude-mem.db"
    assert Config(base_dir="~/x").base_dir == clean_env / "x"


def test_ensure_dirs_creates_private_directories(clean_env: Path, tmp_path: Path) -> None:
    """The directory holds raw tool outputs: only its owner may read it."""
    cfg = Config(base_dir=tmp_path / "deep" / "mem")
    cfg.ensure_dirs()
    for path in (cfg.base_dir, cfg.log_dir):
        assert path.is_dir()
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    cfg.ensure_dirs()  # again: no error


def test_ensure_dirs_tightens_existing_directories(clean_env: Path, tmp_path: Path) -> None:
    cfg = Config(base_dir=tmp_path / "mem")
    cfg.log_dir.mkdir(parents=True)
    cfg.base_dir.chmod(0o755)
    cfg.log_dir.chmod(0o777)
    cfg.ensure_dirs()
    assert stat.S_IMODE(cfg.base_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(cfg.log_dir.stat().st_mode) == 0o700


def test_synchronous_from_the_environment_reaches_the_connection(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_SYNCHRONOUS", "full")
    cfg = Config(base_dir=tmp_path / "mem")
    assert cfg.synchronous == "FULL"
    with Store(cfg.db_path, synchronous=cfg.synchronous) as store:
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_bad_synchronous_value_is_refused(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_SYNCHRONOUS", "off")
    with pytest.raises(ValueError, match="synchronous"):
        Config()


def test_store_creates_the_database_inside_the_configured_dir(config: Config) -> None:
    with Store(config.db_path) as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert config.db_path.is_file()
