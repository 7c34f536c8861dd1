"""Commands that look after the memory file: check and repair it, embed and index it, export
and import it, apply retention, back it up and restore it."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import click

from datasette_claude_mem.cli.base import (
    claude_mem,
    db_option,
    default_config,
    existing_memory,
)
from datasette_claude_mem.settings import Config
from datasette_claude_mem.storage.errors import StoreError
from datasette_claude_mem.storage.store import Store


@claude_mem.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--repair",
    is_flag=True,
    help="Put back lost triggers, defaults, CHECKs and indexes; rebuild the search index",
)
def doctor(path: Path | None, repair: bool) -> None:
    """Check a memory file against the schema its migrations make; exit 1 if it differs."""

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
    from datasette_claude_mem.storage.embeddings import backfill
    from datasette_claude_mem.storage.vectors import SentenceTransformerEmbedder

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
    from datasette_claude_mem.storage import documents as docs

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


@claude_mem.command(name="export")
@db_option
@click.option("--project", help="Only this project's rows (and its sessions')")
@click.option("--with-queue", is_flag=True, help="Also the queue and its raw tool outputs")
@click.argument("file", default="-", type=click.Path(dir_okay=False, allow_dash=True))
def export_command(db_path: Path | None, project: str | None, with_queue: bool, file: str) -> None:
    """Write the memory as JSON lines to FILE (standard output when FILE is - or omitted)."""
    from datasette_claude_mem.storage import portable

    config = Config.load()
    store = Store.open(config, existing_memory(config, db_path))
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
            existing_memory(config, db_path),
            file,
            force=force,
            busy_timeout_ms=config.busy_timeout_ms,
        )
    except backups.BackupError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Backed up {report.total_rows} rows ({report.size} bytes) to {file}; checked")


@claude_mem.command()
@db_option
@click.option("--dry-run", is_flag=True, help="Say what retention would remove; change nothing")
def purge(db_path: Path | None, dry_run: bool) -> None:
    """Apply retention now: remove old raw tool outputs, dead letters and event rows, and
    give the space back to the file system."""
    from datasette_claude_mem.pages.formatting import size
    from datasette_claude_mem.storage.retention import (
        RULE_WORDS,
        Policy,
        file_size,
        freeable,
        purge,
        vacuum_step,
    )

    config = Config.load()
    path = existing_memory(config, db_path)
    policy = Policy.from_config(config)
    with Store.open(config, path) as store:
        if dry_run:
            for rule, (rows, nbytes) in freeable(store.conn, policy).items():
                click.echo(f"{RULE_WORDS[rule]}s: {rows}, about {size(nbytes)}")
            return
        before = file_size(path)
        done = purge(store, policy)
        # Here, and only here, a file of any size gets the VACUUM that brings incremental
        # auto_vacuum: the person asked for it, and the server's worker leaves it be.
        while vacuum_step(store, config.vacuum_step_pages, vacuum_up_to=None):
            pass
        store.checkpoint()
    click.echo(
        f"Removed {done.payloads} raw tool outputs, {done.dead_letters} dead letters and "
        f"{done.events} event rows; {path} went from {size(before)} to {size(file_size(path))}"
    )


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
