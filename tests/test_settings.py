"""Settings: where the memory lives and the knobs a user can turn, read once by Config.load
from the plugin's configuration, the environment and the defaults."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from datasette.app import Datasette
from helpers import empty_sqlite_file

from datasette_claude_mem import plugin
from datasette_claude_mem.cli import claude_mem
from datasette_claude_mem.settings import Config, SettingsError, WorkerSettings
from datasette_claude_mem.storage.store import Store
from datasette_claude_mem.worker.loop import Worker

SYNCHRONOUS_FULL = 2  # what PRAGMA synchronous answers for FULL


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in (
        "CLAUDE_MEM_DIR",
        "CLAUDE_MEM_SYNCHRONOUS",
        "CLAUDE_MEM_ALLOWED_HOSTS",
        "CLAUDE_MEM_EXCLUDE_PROJECTS",
        "CLAUDE_MEM_WORKER",
    ):
        monkeypatch.delenv(name, raising=False)
    return home


def test_defaults(clean_env: Path) -> None:
    cfg = Config.load()
    # Not ~/.claude-mem: claude-mem keeps its own claude-mem.db there.
    assert cfg.base_dir == clean_env / ".datasette-claude-mem"
    assert cfg.db_path == clean_env / ".datasette-claude-mem" / "claude-mem.db"
    assert cfg.spool_path == clean_env / ".datasette-claude-mem" / "spool.jsonl"
    assert cfg.synchronous == "NORMAL"
    assert cfg.database == "claude-mem"
    assert cfg.worker == WorkerSettings(enabled=True, interval=1.0, batch_size=5)
    assert sum(cfg.context_budget.values()) == 2000


def test_claude_mem_dir_moves_everything(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_DIR", str(tmp_path / "elsewhere"))
    cfg = Config.load()
    assert cfg.base_dir == tmp_path / "elsewhere"
    assert cfg.db_path.parent == cfg.secret_path.parent == cfg.spool_path.parent == cfg.base_dir


def test_claude_mem_dir_expands_the_home_directory(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_DIR", "~/memories")
    assert Config.load().base_dir == clean_env / "memories"


def test_an_explicit_base_dir_wins_over_the_environment(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_DIR", str(tmp_path / "env"))
    assert Config.load(base_dir=tmp_path / "arg").db_path == tmp_path / "arg" / "claude-mem.db"
    assert Config(base_dir="~/x").base_dir == clean_env / "x"


def test_the_plugin_configuration_wins_and_lists_add_up(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_SYNCHRONOUS", "normal")
    monkeypatch.setenv("CLAUDE_MEM_ALLOWED_HOSTS", "Mem.Example, other.example")
    monkeypatch.setenv("CLAUDE_MEM_EXCLUDE_PROJECTS", "/secret/work")
    cfg = Config.load(
        {
            "synchronous": "FULL",
            "database": "memory",
            "allowed_hosts": ["team.example"],
            "excluded_projects": ["/private"],
            "worker": {"interval": 0.1},
        }
    )
    assert cfg.synchronous == "FULL"
    assert cfg.database == "memory"
    assert cfg.allowed_hosts == ("team.example", "mem.example", "other.example")
    assert cfg.excluded_projects == ("/private", "/secret/work")
    assert cfg.worker.enabled and cfg.worker.interval == 0.1


@pytest.mark.parametrize(
    ("configured", "environment", "enabled"),
    [
        (True, None, True),
        (False, None, False),
        (True, "0", False),
        ({"batch_size": 2}, "off", False),
    ],
)
def test_the_worker_is_switched_off_by_either_place(
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    configured: object,
    environment: str | None,
    enabled: bool,
) -> None:
    if environment is not None:
        monkeypatch.setenv("CLAUDE_MEM_WORKER", environment)
    assert Config.load({"worker": configured}).worker.enabled is enabled


@pytest.mark.parametrize(
    ("plugin_config", "mentions"),
    [
        ({"synchronus": "FULL"}, "synchronus"),
        ({"worker": {"intervall": 1}}, "intervall"),
        ({"synchronous": "OFF"}, "synchronous"),
    ],
)
def test_bad_settings_are_refused_by_name(
    clean_env: Path, plugin_config: dict, mentions: str
) -> None:
    with pytest.raises(SettingsError, match=mentions):
        Config.load(plugin_config)


def test_a_bad_synchronous_value_in_the_environment_is_refused(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_SYNCHRONOUS", "off")
    with pytest.raises(SettingsError, match="synchronous"):
        Config.load()


def test_the_raw_output_cap_comes_from_either_place(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Config.load().raw_output_cap == 64 * 1024
    monkeypatch.setenv("CLAUDE_MEM_RAW_OUTPUT_CAP", "131072")
    assert Config.load().raw_output_cap == 131072
    assert Config.load({"raw_output_cap": 8192}).raw_output_cap == 8192


@pytest.mark.parametrize("value", ["12", "lots", "-5"])
def test_a_bad_raw_output_cap_is_refused_by_name(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_RAW_OUTPUT_CAP", value)
    with pytest.raises(SettingsError, match="CLAUDE_MEM_RAW_OUTPUT_CAP|raw_output_cap"):
        Config.load()
    with pytest.raises(SettingsError, match="raw_output_cap"):
        Config.load({"raw_output_cap": "big"}, environ={})


def test_retention_and_backup_settings_come_from_either_place(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    defaults = Config.load()
    assert (
        defaults.retention_days,
        defaults.dead_letter_retention_days,
        defaults.event_retention_days,
        defaults.backup_dir,
        defaults.backup_keep,
    ) == (30, 90, 90, None, 7)
    monkeypatch.setenv("CLAUDE_MEM_RETENTION_DAYS", "7")
    monkeypatch.setenv("CLAUDE_MEM_BACKUP_DIR", str(tmp_path / "b"))
    loaded = Config.load({"event_retention_days": 0, "backup_keep": 3})
    assert (loaded.retention_days, loaded.event_retention_days) == (7, 0)
    assert (loaded.backup_dir, loaded.backup_keep) == (tmp_path / "b", 3)
    monkeypatch.setenv("CLAUDE_MEM_DEAD_LETTER_RETENTION_DAYS", "a while")
    with pytest.raises(SettingsError, match="CLAUDE_MEM_DEAD_LETTER_RETENTION_DAYS"):
        Config.load()
    with pytest.raises(SettingsError, match="backup_keep"):
        Config.load({"backup_keep": 0}, environ={})


def test_ensure_dirs_creates_a_private_directory(clean_env: Path, tmp_path: Path) -> None:
    """The directory holds raw tool outputs: only its owner may read it."""
    cfg = Config(base_dir=tmp_path / "deep" / "mem")
    cfg.ensure_dirs()
    assert cfg.base_dir.is_dir()
    assert stat.S_IMODE(cfg.base_dir.stat().st_mode) == 0o700
    cfg.base_dir.chmod(0o755)
    cfg.ensure_dirs()  # again: no error, and tightened
    assert stat.S_IMODE(cfg.base_dir.stat().st_mode) == 0o700


def test_synchronous_from_the_environment_reaches_a_store(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_SYNCHRONOUS", "full")
    monkeypatch.setenv("CLAUDE_MEM_DIR", str(tmp_path / "mem"))
    with Store.open(Config.load()) as store:
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == SYNCHRONOUS_FULL


def test_synchronous_from_the_environment_reaches_the_worker_command(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`datasette claude-mem worker` opens its own connection: the setting reaches it too."""
    monkeypatch.setenv("CLAUDE_MEM_SYNCHRONOUS", "FULL")
    monkeypatch.setenv("CLAUDE_MEM_DIR", str(tmp_path / "mem"))
    seen: list[int] = []
    real_run_once = Worker.run_once

    def run_once(self: Worker, store: Store):
        seen.append(store.conn.execute("PRAGMA synchronous").fetchone()[0])
        return real_run_once(self, store)

    monkeypatch.setattr(Worker, "run_once", run_once)
    result = CliRunner().invoke(claude_mem, ["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert seen == [SYNCHRONOUS_FULL]


@pytest.mark.asyncio
async def test_synchronous_from_the_environment_reaches_the_servers_connections(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_SYNCHRONOUS", "FULL")
    path = empty_sqlite_file(tmp_path / "claude-mem.db")
    ds = Datasette([str(path)], config={"plugins": {"datasette-claude-mem": {"worker": False}}})
    await ds.invoke_startup()
    db = ds.get_database("claude-mem")
    read = await db.execute("PRAGMA synchronous")
    written = await db.execute_write_fn(
        lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]
    )
    assert read.first()[0] == written == SYNCHRONOUS_FULL
    assert plugin.state(ds).config.synchronous == "FULL"


def test_store_creates_the_database_inside_the_configured_dir(config: Config) -> None:
    with Store.open(config) as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert config.db_path.is_file()
