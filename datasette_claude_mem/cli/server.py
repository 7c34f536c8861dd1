"""Commands that run the memory: serve it, make tokens and sign-in links, migrate a file, run
the worker."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

import click

from datasette_claude_mem.cli.base import (
    claude_mem,
    create_token,
    default_config,
    ensure_secret,
    open_memory,
    plugin_settings,
    serve_config_path,
)
from datasette_claude_mem.names import (
    DEFAULT_PORT,
    DEFAULT_URL,
    METADATA,
)
from datasette_claude_mem.settings import Config
from datasette_claude_mem.storage.database import close_cleanly, unwritable
from datasette_claude_mem.storage.store import Store


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
    db_path = (db_path or config.db_path).expanduser().resolve()
    read_only = db_path.exists() and unwritable(db_path) is not None
    if not read_only:
        config.ensure_dirs()
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
        # A memory that cannot be written is served for reading (the plugin says so), opened
        # immutable: a WAL file whose journal cannot be made is otherwise not even read.
        *(["-i"] if read_only else []),
        str(db_path),
        "--host", host,
        "--port", str(port),
        "--root",
        "-c", str(serve_config),
        "-s", "plugins.datasette-claude-mem.database", db_path.stem,
    ]  # fmt: skip
    if hosts:
        # Added to the configuration's own list, which -s would otherwise replace.
        configured = plugin_settings(serve_config).get("allowed_hosts") or []
        args += [
            "-s",
            "plugins.datasette-claude-mem.allowed_hosts",
            json.dumps([*configured, *hosts]),
        ]
    args += ["-m", str(METADATA)]
    code = 0
    # uvicorn shuts down gracefully on SIGTERM and Ctrl-C, then raises the signal again with
    # the handler it found: this one, so that the stop ends here, quietly, and the memory is
    # closed cleanly after Datasette has closed its connections.
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        code = datasette_serve.main(
            args=[*args, *datasette_args],
            prog_name="datasette claude-mem serve",
            standalone_mode=False,
        )
    except (click.exceptions.Abort, Stopped):
        pass  # Ctrl-C or SIGTERM: a stop asked for, not an error (no "Aborted!")
    finally:
        signal.signal(signal.SIGTERM, previous)
        try:
            close_cleanly(db_path)
        except sqlite3.Error as error:
            said = f"{db_path}: not closed cleanly ({error}); the next start recovers"
            click.echo(said, err=True)
    if isinstance(code, int) and code:
        sys.exit(code)


class Stopped(Exception):
    """SIGTERM reached the server: it has shut down."""


def _stopped(signum: int, frame: object) -> None:
    raise Stopped


@claude_mem.command()
@click.option("-e", "--expires-after", type=int, help="Seconds until the token expires")
def token(expires_after: int | None) -> None:
    """Print a token that lets hooks and scripts write to the memory."""
    click.echo(create_token(ensure_secret(default_config()), expires_after))


@claude_mem.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def migrate(path: Path) -> None:
    """Create or migrate a memory database file."""

    try:
        store = Store(path)
    except sqlite3.DatabaseError as error:
        raise click.ClickException(f"{path} could not be migrated: {error}") from error
    applied = [row["name"] for row in store.db["_sqlite_migrations"].rows]
    store.close()
    click.echo(f"{path}: schema at {applied[-1]}", file=sys.stdout)


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
    from datasette_claude_mem.worker.upkeep import Upkeep

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
            upkeep = Upkeep(config, path or config.db_path)
            runner.run(store, interval=interval, idle=lambda: upkeep.step_on(store))
    except KeyboardInterrupt:
        pass
    finally:
        try:
            # Items it claimed and did not finish wait again at once, not for the lease
            # (a stop does not wait long for that: the lease runs out in any case).
            store.write_timeout = 5.0
            store.release_leases(runner.worker_id)
        except sqlite3.Error as error:
            click.echo(f"leases left to run out: {error}", err=True)
        finally:
            store.close()


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
