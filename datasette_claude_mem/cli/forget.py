"""`datasette claude-mem forget`: forget for good from the command line, as the pages and
the API do, through the store's one erase."""

from __future__ import annotations

import getpass
from pathlib import Path

import click
from pydantic import ValidationError

from datasette_claude_mem.cli.base import claude_mem, db_option, existing_memory
from datasette_claude_mem.settings import Config
from datasette_claude_mem.storage.errors import StoreError
from datasette_claude_mem.storage.forget import ROW_KINDS, SCOPE_KINDS, TOMBSTONE_KINDS
from datasette_claude_mem.storage.store import Store


def _request(
    kind: str, target: str | None, project: str | None, kinds: tuple[str, ...], reason: str | None
):
    from datasette_claude_mem.storage.forget import ForgetRequest

    fields: dict = {"kind": kind, "reason": reason, "kinds": list(kinds) or None}
    if kind in ROW_KINDS:
        fields.update(id=target, project=project)
    elif kind == "project":
        fields["project"] = target or project
    else:
        fields.update(before=target, project=project)
    try:
        return ForgetRequest.model_validate(fields)
    except ValidationError as error:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in error.errors())
        raise click.UsageError(problems) from error


def _who() -> str:
    try:
        return f"{getpass.getuser()} (command line)"
    except (KeyError, OSError):
        return "command line"


@claude_mem.command()
@db_option
@click.argument("kind", type=click.Choice(TOMBSTONE_KINDS))
@click.argument("target", required=False)
@click.option("--project", help="With before: only this project's rows")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(SCOPE_KINDS),
    help="With project or before: only these kinds (repeatable) [default: all]",
)
@click.option("--reason", help="Why, kept in the tombstone")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
def forget(
    db_path: Path | None,
    kind: str,
    target: str | None,
    project: str | None,
    kinds: tuple[str, ...],
    reason: str | None,
    yes: bool,
) -> None:
    """Forget for good: KIND is session, observation, learning or note (TARGET its id),
    project (TARGET its key) or before (TARGET a date: everything older).

    The rows go with everything that came only from them, and are wiped from the file; a
    tombstone records how many, who, when and why.
    """
    from datasette_claude_mem.redaction.redactor import Redactor

    wanted = _request(kind, target, project, kinds, reason)
    config = Config.load()
    path = existing_memory(config, db_path)
    if not yes:
        named = f" {target}" if target else ""
        click.confirm(f"Forget {kind}{named} in {path} for good? It cannot be undone.", abort=True)
    redactor = Redactor(config.redact_patterns)
    store = Store.open(config, path, redact_text=redactor.text, redact_value=redactor.value)
    try:
        tombstone = store.erase(wanted, _who())
    except StoreError as error:
        raise click.ClickException(f"{error}; nothing was forgotten") from error
    finally:
        store.close()
    rows = ", ".join(f"{n} {table}" for table, n in tombstone.counts.items()) or "nothing matched"
    click.echo(f"Forgot {tombstone.count} rows for good ({rows})")
