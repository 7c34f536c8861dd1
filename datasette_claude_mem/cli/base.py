"""The command group and what its commands share: the settings, the signing secret, the memory
file a command opens."""

from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path

import click

from datasette_claude_mem.names import (
    HOOK_ACTOR,
    PLUGIN,
    SERVE_CONFIG,
)
from datasette_claude_mem.settings import Config
from datasette_claude_mem.storage.store import Store


def ensure_secret(config: Config) -> str:
    """The signing secret, made once and kept private, so tokens survive restarts."""
    config.ensure_dirs()
    path = config.secret_path
    if path.exists():
        secret = path.read_text(encoding="utf-8").strip()
        if secret:
            return secret
    secret = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")
    path.chmod(0o600)
    return secret


def serve_config_path(config: Config) -> Path:
    """The user's own copy of the serve configuration wins over the packaged one."""
    mine = config.base_dir / "datasette.yaml"
    return mine if mine.exists() else SERVE_CONFIG


def default_config() -> Config:
    """The settings, after moving this memory out of claude-mem's directory if it is there."""
    from datasette_claude_mem.claude_code.coexist import MemoryInUse, legacy_dir, move_legacy_memory

    config = Config.load()
    try:
        moved = move_legacy_memory(config)
    except MemoryInUse as error:
        raise click.ClickException(
            f"This memory is still at {legacy_dir()}, claude-mem's directory, and moves to "
            f"{config.base_dir}; but another process has it open ({error}). Stop that process "
            "(a memory server of an older version?) and run this again."
        ) from error
    if moved is not None:
        click.echo(f"Moved this memory from {moved} to {config.base_dir}", err=True)
    return config


def open_memory(config: Config, db_path: Path) -> Store:
    """The memory at db_path, created or migrated; a clear error for any other database."""
    from datasette_claude_mem.claude_code.claude_mem_import import inspect

    found = inspect(db_path) if db_path.exists() else None
    if found is not None:
        raise click.ClickException(
            f"{db_path} is claude-mem's database ({found.sessions} sessions, "
            f"{found.observations} observations): it was left untouched, and cannot be this "
            "memory. Serve "
            f"this memory from its own file (leave out --db, or set CLAUDE_MEM_DIR to another "
            f"directory), then bring claude-mem's memory in with: datasette claude-mem "
            f"import-claude-mem {db_path}"
        )
    try:
        return Store.open(config, db_path)
    except sqlite3.DatabaseError as error:
        raise click.ClickException(
            f"{db_path} is not a memory database and was left untouched: {error}"
        ) from error


def plugin_settings(config_file: Path) -> dict:
    """The plugin's part of a Datasette configuration file."""
    import yaml

    loaded = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    return (loaded.get("plugins") or {}).get(PLUGIN) or {}


def create_token(secret: str, expires_after: int | None = None) -> str:
    from datasette.app import Datasette
    from datasette.cli import run_sync

    ds = Datasette(secret=secret)
    return run_sync(lambda: ds.create_token(HOOK_ACTOR, expires_after=expires_after))


@click.group(name="claude-mem")
def claude_mem() -> None:
    """Memory for coding agents, kept in one SQLite file."""


def existing_memory(config: Config, db_path: Path | None) -> Path:
    """The memory a command reads: it must exist (such a command never creates one)."""
    path = (db_path or config.db_path).expanduser()
    if not path.exists():
        raise click.ClickException(f"there is no memory at {path}")
    return path


db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Memory database file [default: $CLAUDE_MEM_DIR/claude-mem.db]",
)
