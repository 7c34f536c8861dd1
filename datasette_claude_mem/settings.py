"""Every setting of the memory, read once, typed.

Settings come from three places, in this order of precedence: the plugin's configuration
(``plugins.datasette-claude-mem`` in Datasette's configuration, for the server), the
environment (``CLAUDE_MEM_*``, for the server and every command alike), and the defaults
here. ``Config.load`` is the one place that reads them; everything else is handed the
object it made. Every path hangs off one base directory, ``~/.datasette-claude-mem`` unless
CLAUDE_MEM_DIR names another, so a test or a second memory is one variable away.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from datasette_claude_mem.names import DATABASE_NAME, DB_FILENAME, DEFAULT_DIR_NAME

ENV_DIR = "CLAUDE_MEM_DIR"
ENV_SYNCHRONOUS = "CLAUDE_MEM_SYNCHRONOUS"
ENV_ALLOWED_HOSTS = "CLAUDE_MEM_ALLOWED_HOSTS"
ENV_EXCLUDED = "CLAUDE_MEM_EXCLUDE_PROJECTS"
ENV_WORKER = "CLAUDE_MEM_WORKER"
ENV_EMBEDDINGS = "CLAUDE_MEM_EMBEDDINGS"
ENV_RAW_OUTPUT_CAP = "CLAUDE_MEM_RAW_OUTPUT_CAP"
OFF = ("0", "false", "off", "no")
_BUDGET_PREFIX = "ctx_"
RETENTION_DAYS = ("retention_days", "dead_letter_retention_days", "event_retention_days")
# Settings of the worker's upkeep, each also read from CLAUDE_MEM_<NAME>.
_UPKEEP = (*RETENTION_DAYS, "vacuum_step_pages", "backup_dir", "backup_keep")


class SettingsError(ValueError):
    """A setting with a value the memory cannot work with; the message names it."""


def _words(value: str | None) -> tuple[str, ...]:
    """A comma-separated environment value as its non-empty items."""
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


@dataclass
class WorkerSettings:
    """The in-server queue worker: on by default, polling an empty queue once a second."""

    enabled: bool = True
    interval: float = 1.0
    batch_size: int = 5
    lease_seconds: float = 300.0


@dataclass
class Config:
    # Not ~/.claude-mem: claude-mem keeps its own claude-mem.db there.
    base_dir: Path = field(default_factory=lambda: Path.home() / DEFAULT_DIR_NAME)
    # The name of the memory among Datasette's databases.
    database: str = DATABASE_NAME

    # NORMAL survives any crash of the application; FULL also survives a power loss.
    synchronous: str = "NORMAL"
    busy_timeout_ms: int = 5000
    # A write waiting for another program's write lock gives up after this long (503).
    write_timeout_seconds: float = 30.0
    # A hook event waits this long for the lock, then is kept in the server's spool.
    hook_wait_seconds: float = 1.0

    # Host names the server answers to besides loopback (DNS rebinding guard).
    allowed_hosts: tuple[str, ...] = ()
    # Projects (keys, or directories above them) whose hook events are not kept.
    excluded_projects: tuple[str, ...] = ()
    # Further secret shapes to redact, as regular expressions.
    redact_patterns: tuple[str, ...] = ()
    # Where the command hook spools; None: spool.jsonl beside the memory, when the memory
    # is the one in base_dir.
    spool: Path | None = None
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    # Semantic search when the embeddings extra is installed; off keeps search keyword-only.
    embeddings: bool = True
    # The MCP tools' project when the caller names neither a session nor a project.
    default_project: str | None = None

    # Context budget at session start, in tokens (characters / 4): 2,000 in all.
    ctx_session_index: int = 300
    ctx_function_map: int = 500
    ctx_learnings: int = 300
    ctx_observations: int = 600
    ctx_call_graph: int = 300

    # Bytes of a tool's output the queue keeps (head and tail; claude_code/raw_output.py
    # says why 64 KB).
    raw_output_cap: int = 64 * 1024

    # Compression of queued tool outputs into observations by an llm model.
    compression_model: str | None = None
    compression_daily_token_budget: int = 200_000

    # Retention, in days (0 keeps forever). A finished tool use's raw input and output go
    # after retention_days (its observation stays); a dead letter, kept for a person to
    # retry, after dead_letter_retention_days; event rows after event_retention_days, but
    # never the prompts, which search and the session pages read.
    retention_days: int = 30
    dead_letter_retention_days: int = 90
    event_retention_days: int = 90
    # Free pages handed back to the file system per upkeep step: small steps keep the
    # write lock for milliseconds, so hooks never wait behind it.
    vacuum_step_pages: int = 256
    # A checked backup a day into backup_dir (None: none), keeping the newest backup_keep.
    backup_dir: Path | None = None
    backup_keep: int = 7

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir).expanduser()
        self.synchronous = str(self.synchronous).upper()
        if self.synchronous not in ("NORMAL", "FULL"):
            raise SettingsError(
                f"synchronous must be NORMAL or FULL, not {self.synchronous.lower()!r}"
            )
        if self.spool is not None:
            self.spool = Path(self.spool).expanduser()
        if self.backup_dir is not None:
            self.backup_dir = Path(self.backup_dir).expanduser()
        for name in (*RETENTION_DAYS, "vacuum_step_pages", "backup_keep"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SettingsError(f"{name} must be a whole number, 0 or more, not {value!r}")
        if self.vacuum_step_pages < 1 or self.backup_keep < 1:
            raise SettingsError("vacuum_step_pages and backup_keep must be 1 or more")
        if not isinstance(self.raw_output_cap, int) or self.raw_output_cap < 4096:
            raise SettingsError(
                f"raw_output_cap must be a number of bytes, 4096 or more, not "
                f"{self.raw_output_cap!r}"
            )

    @classmethod
    def load(
        cls,
        plugin_config: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Config:
        """The settings from the plugin's configuration, the environment and the defaults."""
        env = os.environ if environ is None else environ
        plugin = dict(plugin_config or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(plugin) - known)
        if unknown:
            raise SettingsError(f"unknown datasette-claude-mem settings: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        if env.get(ENV_DIR):
            values["base_dir"] = Path(env[ENV_DIR])
        if env.get(ENV_SYNCHRONOUS):
            values["synchronous"] = env[ENV_SYNCHRONOUS]
        for name in (
            "database",
            "synchronous",
            "busy_timeout_ms",
            "write_timeout_seconds",
            "hook_wait_seconds",
            "spool",
            "default_project",
        ):
            if plugin.get(name) is not None:
                values[name] = plugin[name]
        for name in ("compression_model", "compression_daily_token_budget", *_UPKEEP):
            if plugin.get(name) is not None:
                values[name] = plugin[name]
        for name in _UPKEEP:
            raw = env.get(f"CLAUDE_MEM_{name.upper()}")
            if raw:
                values[name] = raw if name == "backup_dir" else _whole(name, raw)
        if env.get(ENV_RAW_OUTPUT_CAP):
            try:
                values["raw_output_cap"] = int(env[ENV_RAW_OUTPUT_CAP])
            except ValueError:
                raise SettingsError(
                    f"{ENV_RAW_OUTPUT_CAP} must be a number of bytes, "
                    f"not {env[ENV_RAW_OUTPUT_CAP]!r}"
                ) from None
        if plugin.get("raw_output_cap") is not None:
            values["raw_output_cap"] = plugin["raw_output_cap"]
        # Lists add up: the configuration's and the environment's both count.
        values["allowed_hosts"] = tuple(
            h.lower()
            for h in (*plugin.get("allowed_hosts", ()), *_words(env.get(ENV_ALLOWED_HOSTS)))
        )
        values["excluded_projects"] = (
            *plugin.get("excluded_projects", ()),
            *_words(env.get(ENV_EXCLUDED)),
        )
        values["redact_patterns"] = tuple(plugin.get("redact_patterns") or ())
        values["worker"] = _worker_settings(plugin.get("worker", True), env.get(ENV_WORKER))
        if plugin.get("embeddings") is not None:
            values["embeddings"] = bool(plugin["embeddings"])
        if env.get(ENV_EMBEDDINGS, "").strip().lower() in OFF:
            values["embeddings"] = False
        values.update(overrides)
        return cls(**values)

    @property
    def db_path(self) -> Path:
        return self.base_dir / DB_FILENAME

    @property
    def secret_path(self) -> Path:
        return self.base_dir / "secret"

    @property
    def spool_path(self) -> Path:
        return self.spool or self.base_dir / "spool.jsonl"

    @property
    def context_budget(self) -> dict[str, int]:
        """Tokens for each context section, by its key: the field `ctx_<key>` holds the
        budget of the section claude_code/context.py names `<key>` (this module cannot
        import that one, which reads its settings from here)."""
        return {
            f.name.removeprefix(_BUDGET_PREFIX): getattr(self, f.name)
            for f in fields(self)
            if f.name.startswith(_BUDGET_PREFIX)
        }

    def ensure_dirs(self) -> None:
        """Create the directory private to the user: it holds tool outputs."""
        self.base_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.base_dir.stat().st_mode & 0o777 != 0o700:  # a read-only one may be right
            self.base_dir.chmod(0o700)


def _whole(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        message = f"CLAUDE_MEM_{name.upper()} must be a whole number, not {raw!r}"
        raise SettingsError(message) from None


def _worker_settings(configured: Any, environment: str | None) -> WorkerSettings:
    """`worker: false` or CLAUDE_MEM_WORKER=0 switch it off; a mapping sets its knobs."""
    settings = WorkerSettings()
    if isinstance(configured, Mapping):
        unknown = sorted(set(configured) - {f.name for f in fields(WorkerSettings)})
        if unknown:
            raise SettingsError(f"unknown worker settings: {', '.join(unknown)}")
        settings = WorkerSettings(**configured)
    elif configured is False:
        settings.enabled = False
    if environment is not None and environment.strip().lower() in OFF:
        settings.enabled = False
    return settings
