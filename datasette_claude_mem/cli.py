"""`datasette claude-mem ...`: serve the memory, make tokens for hooks, migrate a file,
import claude-mem's memory."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import click

from datasette_claude_mem.names import (
    DEFAULT_PORT,
    DEFAULT_URL,
    HOOK_ACTOR,
    METADATA,
    PLUGIN,
    SERVE_CONFIG,
)
from datasette_claude_mem.settings import Config
from datasette_claude_mem.storage.errors import StoreError
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


def _plugin_settings(config_file: Path) -> dict:
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


@claude_mem.command()
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Memory database file [default: $CLAUDE_MEM_DIR/claude-mem.db]",
)
@click.option("-h", "--host", default="127.0.0.1", show_default=True, help="Address to listen on")
@click.option(
    "-p",
    "--port",
    default=DEFAULT_PORT,
    show_default=True,
    type=int,
    help="Port to listen on (0 picks a free one)",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="A further host name the server is reached by (repeatable)",
)
@click.argument("datasette_args", nargs=-1, type=click.UNPROCESSED)
def serve(
    db_path: Path | None,
    host: str,
    port: int,
    allowed_hosts: tuple[str, ...],
    datasette_args: tuple[str, ...],
) -> None:
    """Serve the memory database (created on first run) with its API and pages.

    Anything after -- goes to `datasette serve` as it is.
    """
    from datasette.cli import serve as datasette_serve

    from datasette_claude_mem.claude_code.coexist import claude_mem_note, legacy_dir
    from datasette_claude_mem.names import DB_FILENAME

    config = Config.load() if db_path is not None else default_config()
    config.ensure_dirs()
    db_path = (db_path or config.db_path).expanduser().resolve()
    open_memory(config, db_path).close()
    beside = legacy_dir() / DB_FILENAME
    if beside.resolve() != db_path:
        note = claude_mem_note(beside, db_path)
        if note:
            click.echo(note, err=True)
    # Datasette's own way to take a secret, kept out of the process list.
    os.environ["DATASETTE_SECRET"] = ensure_secret(config)
    serve_config = serve_config_path(config)
    hosts = [*allowed_hosts]
    if host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):
        hosts.append(host)
    click.echo(f"Memory database: {db_path}", err=True)
    click.echo("Token for hooks: datasette claude-mem token", err=True)
    click.echo(
        "Sign in with this link (it works once; for another: datasette claude-mem login):", err=True
    )
    args = [
        str(db_path),
        "--host", host,
        "--port", str(port),
        "--root",
        "-c", str(serve_config),
        "-s", "plugins.datasette-claude-mem.database", db_path.stem,
    ]  # fmt: skip
    if hosts:
        # Added to the configuration's own list, which -s would otherwise replace.
        configured = _plugin_settings(serve_config).get("allowed_hosts") or []
        args += [
            "-s",
            "plugins.datasette-claude-mem.allowed_hosts",
            json.dumps([*configured, *hosts]),
        ]
    args += ["-m", str(METADATA)]
    datasette_serve.main(args=[*args, *datasette_args], prog_name="datasette claude-mem serve")


@claude_mem.command()
@click.option("-e", "--expires-after", type=int, help="Seconds until the token expires")
def token(expires_after: int | None) -> None:
    """Print a token that lets hooks and scripts write to the memory."""
    click.echo(create_token(ensure_secret(default_config()), expires_after))


@claude_mem.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def migrate(path: Path) -> None:
    """Create or migrate a memory database file."""
    import sqlite3

    try:
        store = Store(path)
    except sqlite3.DatabaseError as error:
        raise click.ClickException(f"{path} could not be migrated: {error}") from error
    applied = [row["name"] for row in store.db["_sqlite_migrations"].rows]
    store.close()
    click.echo(f"{path}: schema at {applied[-1]}", file=sys.stdout)


def settings_file_options(command: Callable) -> Callable:
    """--project and --settings: which Claude Code settings file to edit."""
    command = click.option(
        "--settings",
        type=click.Path(dir_okay=False, path_type=Path),
        help="A settings file to edit instead",
    )(command)
    return click.option(
        "--project", is_flag=True, help="This project's .claude/settings.json, not the user's"
    )(command)


def mcp_file_options(command: Callable) -> Callable:
    """--mcp-config and --no-mcp: where the MCP server is registered, or not at all."""
    command = click.option(
        "--no-mcp", is_flag=True, help="Leave Claude Code's MCP servers as they are"
    )(command)
    return click.option(
        "--mcp-config",
        type=click.Path(dir_okay=False, path_type=Path),
        help="The file holding mcpServers [default: ~/.claude.json, .mcp.json with "
        "--project, none with --settings]",
    )(command)


def _mcp_target(
    project: bool, settings: Path | None, mcp_config: Path | None, no_mcp: bool
) -> Path | None:
    """Where the MCP server goes; a settings file named by hand names no MCP file with it."""
    from datasette_claude_mem.claude_code.install import mcp_config_path

    if no_mcp or (settings is not None and mcp_config is None):
        return None
    return mcp_config or mcp_config_path(Path.cwd() if project else None)


def _settings_target(project: bool, settings: Path | None) -> Path:
    from datasette_claude_mem.claude_code.install import settings_path

    if settings is not None:
        return settings
    return settings_path(Path.cwd() if project else None)


@claude_mem.command()
@settings_file_options
@click.option(
    "--url",
    default=DEFAULT_URL,
    show_default=True,
    help="Where the memory server answers",
)
@click.option(
    "--command",
    "use_command",
    is_flag=True,
    help="Install command hooks that spool events while the server is down",
)
@mcp_file_options
def install(
    project: bool,
    settings: Path | None,
    url: str,
    use_command: bool,
    mcp_config: Path | None,
    no_mcp: bool,
) -> None:
    """Add the memory's hooks to Claude Code's settings (merging, with a backup), and its
    MCP server to Claude Code's MCP servers."""
    from datasette_claude_mem.claude_code import install as installer

    path = _settings_target(project, settings)
    mcp_path = _mcp_target(project, settings, mcp_config, no_mcp)
    try:
        if mcp_path is not None:
            installer.read_mcp_config(mcp_path)  # a broken file stops the install untouched
        changed = installer.install(path, url=url, command=use_command)
        mcp_changed = None if mcp_path is None else installer.install_mcp(mcp_path, url=url)
    except installer.SettingsError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"{'Updated' if changed else 'Already up to date:'} {path}")
    if mcp_changed is not None:
        done = "MCP server added to" if mcp_changed else "MCP server already in"
        click.echo(f"{done} {mcp_path}")
    click.echo(
        f"Claude Code sends the token from the environment variable {installer.TOKEN_VAR}:\n"
        f"    export {installer.TOKEN_VAR}=$(datasette claude-mem token)"
    )
    if use_command and url != DEFAULT_URL:
        click.echo(f"    export CLAUDE_MEM_URL={url}")


@claude_mem.command()
@settings_file_options
@mcp_file_options
def uninstall(project: bool, settings: Path | None, mcp_config: Path | None, no_mcp: bool) -> None:
    """Remove the memory's hooks and MCP server from Claude Code's settings, and nothing else."""
    from datasette_claude_mem.claude_code import install as installer

    path = _settings_target(project, settings)
    mcp_path = _mcp_target(project, settings, mcp_config, no_mcp)
    try:
        changed = installer.uninstall(path)
        mcp_changed = None if mcp_path is None else installer.uninstall_mcp(mcp_path)
    except installer.SettingsError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"{'Removed the memory hooks from' if changed else 'No memory hooks in'} {path}")
    if mcp_changed is not None:
        done = "Removed the MCP server from" if mcp_changed else "No memory MCP server in"
        click.echo(f"{done} {mcp_path}")


@claude_mem.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--once", is_flag=True, help="Handle one batch and stop")
@click.option("--batch-size", default=5, show_default=True, type=click.IntRange(1, 500))
@click.option(
    "--interval",
    default=1.0,
    show_default=True,
    type=float,
    help="Seconds to wait when the queue is empty",
)
@click.option("--lease-seconds", default=300.0, show_default=True, type=float)
@click.option("--llm-model", help="Compress with this llm model (needs the llm extra)")
def worker(
    path: Path | None,
    once: bool,
    batch_size: int,
    interval: float,
    lease_seconds: float,
    llm_model: str | None,
) -> None:
    """Turn queued tool outputs into observations, apart from the server."""
    from datasette_claude_mem.worker.loop import Worker

    config = Config.load() if path is not None else default_config()
    store = open_memory(config, path or config.db_path)
    compressor = None
    if llm_model:
        from datasette_claude_mem.worker.llm_compress import LLMCompressor, LLMUnavailable

        try:
            compressor = LLMCompressor(store, model_id=llm_model)
        except LLMUnavailable as error:
            store.close()
            raise click.ClickException(str(error)) from error
    runner = Worker(compressor, batch_size=batch_size, lease_seconds=lease_seconds)
    try:
        if once:
            report = runner.run_once(store)
            click.echo(f"{report.done} done, {report.failed} failed")
        else:
            runner.run(store, interval=interval)
    except KeyboardInterrupt:
        pass
    finally:
        store.close()


@claude_mem.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--repair",
    is_flag=True,
    help="Put back lost triggers, defaults, CHECKs and indexes; rebuild the search index",
)
def doctor(path: Path | None, repair: bool) -> None:
    """Check a memory file against the schema its migrations make; exit 1 if it differs."""
    import sqlite3

    from datasette_claude_mem.storage import doctor as checks
    from datasette_claude_mem.storage.database import connect

    path = path or default_config().db_path
    if not path.is_file():
        raise click.ClickException(f"{path}: no such file")
    conn = None
    try:
        conn = connect(path)
        if repair:
            for action in checks.repair(conn):
                click.echo(f"repaired: {action}")
        problems = checks.check(conn, full=True)
    except sqlite3.DatabaseError as error:
        raise click.ClickException(f"{path} cannot be checked: {error}") from error
    finally:
        if conn is not None:
            conn.close()
    if not problems:
        click.echo(f"{path}: ok, the schema and search index are as the migrations make them")
        return
    for problem in problems:
        click.echo(f"{path}: {problem}")
    hint = "" if repair else f"; run: datasette claude-mem doctor --repair {path}"
    click.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''}{hint}", err=True)
    sys.exit(1)


@claude_mem.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--all", "everything", is_flag=True, help="Also re-embed rows whose text changed")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1, 1024))
def embed(path: Path | None, everything: bool, batch_size: int) -> None:
    """Compute the vectors semantic search needs, for rows that have none (needs the
    embeddings extra)."""
    from datasette_claude_mem.storage.search import missing_extra

    reason = missing_extra()
    if reason:
        raise click.ClickException(f"semantic search is not installed ({reason})")
    from datasette_claude_mem.storage.vectors import SentenceTransformerEmbedder
    from datasette_claude_mem.worker.embed import backfill

    path = path or default_config().db_path
    if not path.is_file():
        raise click.ClickException(f"{path}: no such file")
    embedder = SentenceTransformerEmbedder()
    with Store(path) as store:
        written = backfill(
            store,
            embedder,
            everything=everything,
            batch_size=batch_size,
            progress=lambda count: click.echo(f"{count} embedded", err=True),
        )
    click.echo(f"{path}: {written} vectors written with {embedder.name} ({embedder.version})")


@claude_mem.command(name="index-docs")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".")
@click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--project", help="The project key [default: the repository of ROOT]")
@click.option("--glob", "globs", multiple=True, help="Which files (repeatable) [default: "
              "CLAUDE.md, README*, docs/**/*.md, .claude/**/*.md]")  # fmt: skip
def index_docs(root: Path, db_path: Path | None, project: str | None, globs: tuple[str, ...]):
    """Index a project's markdown documents for search (unchanged files are skipped)."""
    from datasette_claude_mem.worker import docs

    with Store(db_path or default_config().db_path) as store:
        run = docs.index_docs(store, root, project, tuple(globs) or docs.DEFAULT_GLOBS)
    click.echo(
        f"{run['project']}: {run['files_seen']} files, {run['files_indexed']} indexed, "
        f"{run['files_unchanged']} unchanged, {run['files_removed']} removed, "
        f"{run['chunks']} chunks in {run['duration_ms']} ms"
    )
    errors = json.loads(run["errors"])
    for error in errors:
        click.echo(f"error: {error}", err=True)
    if errors:
        sys.exit(1)


@claude_mem.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--url", default=DEFAULT_URL, show_default=True, help="Where the memory server answers"
)
@click.option(
    "--command",
    "use_command",
    is_flag=True,
    help="Command hooks that spool events while the server is down",
)
def plugin(directory: Path, url: str, use_command: bool) -> None:
    """Write a Claude Code plugin with the memory's hooks, in a marketplace folder."""
    from datasette_claude_mem.claude_code import plugin_files

    try:
        plugin_files.write_plugin(directory, url=url, command=use_command)
    except plugin_files.PluginDirError as error:
        raise click.ClickException(str(error)) from error
    where = directory.resolve()
    click.echo(f"Wrote the plugin {plugin_files.plugin_id()} in {where}")
    click.echo(
        "Install it in Claude Code:\n"
        f"    claude plugin marketplace add {where}\n"
        f"    claude plugin install {plugin_files.plugin_id()}\n"
        "or, in a session: /plugin marketplace add, then /plugin install"
    )


@claude_mem.command(name="import-claude-mem")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Memory database file to import into [default: $CLAUDE_MEM_DIR/claude-mem.db]",
)
def import_claude_mem(path: Path | None, db_path: Path | None) -> None:
    """Bring claude-mem's sessions, prompts, observations and summaries into this memory.

    PATH is claude-mem's database [default: ~/.claude-mem/claude-mem.db]; it is opened
    read-only. Importing again adds nothing.
    """
    from datasette_claude_mem.claude_code import claude_mem_import as importer
    from datasette_claude_mem.claude_code.coexist import legacy_dir
    from datasette_claude_mem.names import DB_FILENAME

    config = Config.load() if db_path is not None else default_config()
    source = (path or legacy_dir() / DB_FILENAME).expanduser()
    if importer.inspect(source) is None:
        raise click.ClickException(
            f"{source} is not a claude-mem database (one with the tables "
            f"{' and '.join(sorted(importer.REQUIRED_TABLES))}); nothing was imported"
        )
    target = (db_path or config.db_path).expanduser()
    if target.exists() and target.resolve() == source.resolve():
        raise click.ClickException(f"{source} is claude-mem's database: import it into another")
    config.ensure_dirs()
    store = open_memory(config, target)
    try:
        report = importer.import_claude_mem(store, source)
    finally:
        store.close()
    click.echo(f"Imported {source} into {target}: {report.as_text()}")
    for name, key in sorted(report.projects.items()):
        if name != key:
            click.echo(f"    project {name} -> {key}")


def _existing_memory(config: Config, db_path: Path | None) -> Path:
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


@claude_mem.command(name="export")
@db_option
@click.option("--project", help="Only this project's rows (and its sessions')")
@click.option("--with-queue", is_flag=True, help="Also the queue and its raw tool outputs")
@click.argument("file", default="-", type=click.Path(dir_okay=False, allow_dash=True))
def export_command(db_path: Path | None, project: str | None, with_queue: bool, file: str) -> None:
    """Write the memory as JSON lines to FILE (standard output when FILE is - or omitted)."""
    from datasette_claude_mem.storage import portable

    config = Config.load()
    store = Store.open(config, _existing_memory(config, db_path))
    try:
        lines = portable.export_lines(store.conn, project=project, with_queue=with_queue)
        if file == "-":
            with click.open_file("-", "wb") as out:
                out.writelines(lines)
        else:
            portable.write_file(Path(file), lines)
    except StoreError as error:
        raise click.ClickException(str(error)) from error
    finally:
        store.close()


@claude_mem.command(name="import")
@db_option
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
def import_command(db_path: Path | None, file: str) -> None:
    """Add the rows of an export (FILE, or - for standard input) to the memory.

    Rows already there are left as they are; a file with any bad line changes nothing.
    """
    from datasette_claude_mem.redaction.redactor import Redactor
    from datasette_claude_mem.storage import portable

    config = Config.load()
    redactor = Redactor(config.redact_patterns)
    try:
        source = click.open_file(file, "rb")
    except OSError as error:
        raise click.ClickException(f"{file} cannot be read: {error}") from error
    store = Store.open(config, db_path, redact_text=redactor.text, redact_value=redactor.value)
    try:
        with source:
            report = portable.import_lines(store, source)
    except StoreError as error:
        raise click.ClickException(f"{file}: {error}; nothing was imported") from error
    finally:
        store.close()
    added = ", ".join(f"{n} {t}" for t, n in report.added.items() if n) or "nothing"
    click.echo(f"Added {added}; {report.total_skipped} rows were already there")


@claude_mem.command()
@db_option
@click.option("--force", is_flag=True, help="Replace FILE if it exists")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def backup(db_path: Path | None, force: bool, file: Path) -> None:
    """Copy the memory to FILE while it is in use, and check the copy."""
    from datasette_claude_mem.storage import backup as backups

    config = Config.load()
    try:
        report = backups.backup(
            _existing_memory(config, db_path),
            file,
            force=force,
            busy_timeout_ms=config.busy_timeout_ms,
        )
    except backups.BackupError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Backed up {report.total_rows} rows ({report.size} bytes) to {file}; checked")


@claude_mem.command()
@db_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def restore(db_path: Path | None, yes: bool, file: Path) -> None:
    """Replace the memory with a backup; the memory as it was is kept beside it."""
    from datasette_claude_mem.storage import backup as backups

    config = Config.load()
    target = (db_path or config.db_path).expanduser()
    if not yes:
        click.confirm(f"Replace the memory at {target} with {file}?", abort=True)
    try:
        report, kept = backups.restore(file, target, busy_timeout_ms=config.busy_timeout_ms)
    except backups.BackupError as error:
        raise click.ClickException(f"{error}; the memory was not changed") from error
    Store.open(config, target).close()  # a backup from an older version is migrated
    if kept is not None:
        click.echo(f"The memory as it was is kept at {kept}")
    click.echo(f"Restored {report.total_rows} rows from {file} into {target}")


@claude_mem.command()
@click.option(
    "--url",
    default=DEFAULT_URL,
    show_default=True,
    help="Where the memory server answers",
)
@click.option(
    "--expires-after",
    default=600,
    show_default=True,
    type=click.IntRange(1, 86400),
    help="Seconds the link stays good",
)
def login(url: str, expires_after: int) -> None:
    """Print a fresh sign-in link for the running server (each link works once)."""
    from datasette_claude_mem.api.login import sign_in_link

    click.echo(sign_in_link(ensure_secret(Config.load()), url, expires_after))
