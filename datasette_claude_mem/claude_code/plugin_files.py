"""A Claude Code plugin, and a one-plugin marketplace to install it from, written to a folder.

`claude plugin marketplace add DIR` then `claude plugin install` (or /plugin in a session)
installs the memory's hooks and its MCP server without editing settings.json. The files are
written, not shipped in the repository, because the hook commands name this machine's
interpreter and the installed package's hook script.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from datasette_claude_mem.claude_code.install import hook_groups, our_mcp_server
from datasette_claude_mem.names import DEFAULT_URL, MCP_SERVER_NAME, PLUGIN

# Claude Code warns that a plugin named with "claude" in it reads as one of Anthropic's own.
PLUGIN_NAME = "datasette-agent-memory"
MARKETPLACE_NAME = "datasette-agent-memory"
PLUGIN_FOLDER = "plugin"
DESCRIPTION = "Memory for Claude Code kept in one SQLite file, served by Datasette"


class PluginDirError(Exception):
    pass


def plugin_id() -> str:
    """What `claude plugin install` takes: plugin@marketplace."""
    return f"{PLUGIN_NAME}@{MARKETPLACE_NAME}"


def _version() -> str:
    try:
        return version(PLUGIN)
    except PackageNotFoundError:  # pragma: no cover - run from a source tree never installed
        return "0.0.0"


def plugin_files(url: str = DEFAULT_URL, command: bool = False) -> dict[str, dict[str, Any]]:
    """Each file's path (relative to the marketplace folder) and its JSON."""
    author = {"name": PLUGIN}
    plugin = {
        "name": PLUGIN_NAME,
        "version": _version(),
        "description": DESCRIPTION,
        "author": author,
        "license": "Apache-2.0",
        # The same entry `install` writes to ~/.claude.json: the plugin alone gives the agent
        # its recall tools, with the token read from the environment as the hooks read it.
        "mcpServers": {MCP_SERVER_NAME: our_mcp_server(url)},
    }
    marketplace = {
        "name": MARKETPLACE_NAME,
        "owner": author,
        "description": DESCRIPTION,
        "plugins": [
            {
                "name": PLUGIN_NAME,
                "source": f"./{PLUGIN_FOLDER}",
                "description": DESCRIPTION,
                "version": plugin["version"],
            }
        ],
    }
    hooks = {
        "description": "Send Claude Code's events to the memory; the context comes back",
        "hooks": {event: [group] for event, group in hook_groups(url, command).items()},
    }
    return {
        ".claude-plugin/marketplace.json": marketplace,
        f"{PLUGIN_FOLDER}/.claude-plugin/plugin.json": plugin,
        f"{PLUGIN_FOLDER}/hooks/hooks.json": hooks,
    }


def write_plugin(directory: Path, url: str = DEFAULT_URL, command: bool = False) -> list[Path]:
    """Write (or rewrite) the marketplace and plugin; refuse a folder holding another one."""
    existing = directory / ".claude-plugin" / "marketplace.json"
    if existing.exists():
        try:
            name = json.loads(existing.read_text(encoding="utf-8")).get("name")
        except (json.JSONDecodeError, AttributeError):
            name = None
        if name != MARKETPLACE_NAME:
            raise PluginDirError(f"{existing} belongs to another marketplace; nothing was written")
    written = []
    for relative, content in plugin_files(url, command).items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, path)
        written.append(path)
    return written
