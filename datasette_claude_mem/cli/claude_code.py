"""Commands that connect Claude Code: its settings' hooks and MCP server, the plugin, and
claude-mem's memory brought in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from datasette_claude_mem.cli.base import (
    claude_mem,
    default_config,
    open_memory,
)
from datasette_claude_mem.names import (
    DEFAULT_URL,
)
from datasette_claude_mem.settings import Config


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
