"""Add this memory's hooks to Claude Code's settings, and take them out again.

Only entries that point at this memory are touched: other hooks and settings are kept as they
are, a backup is written before any change, and installing twice changes nothing.

SessionStart is a command hook in every mode: Claude Code runs no http hook for it (nor for
Setup), and the command hook script can start a server that is not running.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from datasette_claude_mem.names import (
    DEFAULT_URL,
    HOOK_PATH,
    HOOK_SCRIPT,
    MCP_PATH,
    MCP_SERVER_NAME,
)
from datasette_claude_mem.storage.models import HOOK_EVENTS

EVENTS = HOOK_EVENTS
TOOL_EVENTS = {"PostToolUse", "PostToolUseFailure"}
# Events Claude Code sends only to command (or mcp_tool) hooks.
COMMAND_ONLY_EVENTS = {"SessionStart", "Setup"}
TOKEN_VAR = "CLAUDE_MEM_TOKEN"
SCRIPT = HOOK_SCRIPT


class SettingsError(Exception):
    pass


def settings_path(project_dir: Path | None = None) -> Path:
    if project_dir is not None:
        return project_dir / ".claude" / "settings.json"
    return Path.home() / ".claude" / "settings.json"


def is_ours(hook: Any) -> bool:
    if not isinstance(hook, dict):
        return False
    if hook.get("type") == "http":
        return str(hook.get("url", "")).endswith(HOOK_PATH)
    # The package's own script, not any script that happens to be called hook_script.py.
    command = str(hook.get("command", ""))
    ours = SCRIPT.parent.name in command and SCRIPT.name in command
    return hook.get("type") == "command" and ours


def our_hook(event: str, url: str, command: bool) -> dict[str, Any]:
    timeout = 15 if event == "SessionStart" else 5
    if command or event in COMMAND_ONLY_EVENTS:
        # Quoted: Claude Code runs it with a shell, and either path may hold a space.
        line = f"{shlex.quote(sys.executable)} -S {shlex.quote(str(SCRIPT))}"
        if url.rstrip("/") != DEFAULT_URL:
            line += f" {shlex.quote(url.rstrip('/'))}"
        return {"type": "command", "command": line, "timeout": timeout}
    return {
        "type": "http",
        "url": url.rstrip("/") + HOOK_PATH,
        "headers": {"Authorization": f"Bearer ${TOKEN_VAR}"},
        "allowedEnvVars": [TOKEN_VAR],
        "timeout": timeout,
    }


def hook_groups(url: str = DEFAULT_URL, command: bool = False) -> dict[str, dict[str, Any]]:
    """Our one hook group for each event: what settings.json and the plugin's hooks.json hold."""
    groups = {}
    for event in EVENTS:
        group: dict[str, Any] = {"hooks": [our_hook(event, url, command)]}
        if event in TOOL_EVENTS:
            group = {"matcher": "*", **group}
        groups[event] = group
    return groups


def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except json.JSONDecodeError as error:
        raise SettingsError(f"{path} is not valid JSON ({error}); it was left as it is") from error
    if not isinstance(data, dict):
        raise SettingsError(f"{path} does not hold a JSON object; it was left as it is")
    return data


def _without_ours(settings: dict[str, Any]) -> dict[str, Any]:
    hooks = settings.get("hooks")
    if not isinstance(hooks, dict):
        return settings
    cleaned: dict[str, Any] = {}
    for event, groups in hooks.items():
        if not isinstance(groups, list):
            cleaned[event] = groups
            continue
        kept_groups = []
        for group in groups:
            if isinstance(group, dict) and isinstance(group.get("hooks"), list):
                kept = [h for h in group["hooks"] if not is_ours(h)]
                if not kept and group["hooks"]:
                    continue
                group = {**group, "hooks": kept}
            kept_groups.append(group)
        if kept_groups or not groups:
            cleaned[event] = kept_groups
    result = dict(settings)
    if cleaned or not hooks:
        result["hooks"] = cleaned  # a hooks object that was empty already stays
    else:
        result.pop("hooks")
    return result


def _save(path: Path, before: dict[str, Any], after: dict[str, Any]) -> bool:
    if after == before and path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        shutil.copy2(path, path.with_name(path.name + ".claude-mem.bak"))
    temporary = path.with_name(path.name + ".claude-mem.tmp")
    temporary.write_text(json.dumps(after, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return True


def install(path: Path, url: str = DEFAULT_URL, command: bool = False) -> bool:
    """Write our hook entries; returns whether the file changed."""
    before = _load(path)
    after = _without_ours(before)
    hooks = dict(after.get("hooks") or {})
    for event, group in hook_groups(url, command).items():
        hooks[event] = [*(hooks.get(event) or []), group]
    after["hooks"] = hooks
    return _save(path, before, after)


def uninstall(path: Path) -> bool:
    """Remove only our hook entries; returns whether the file changed."""
    before = _load(path)
    return _save(path, before, _without_ours(before)) if path.exists() else False


# The MCP server, for Claude Code: user scope in ~/.claude.json, project scope in .mcp.json.


def mcp_config_path(project_dir: Path | None = None) -> Path:
    if project_dir is not None:
        return project_dir / ".mcp.json"
    return Path.home() / ".claude.json"


def our_mcp_server(url: str = DEFAULT_URL) -> dict[str, Any]:
    """Claude Code expands ${VAR} in headers, so the token stays in the environment."""
    return {
        "type": "http",
        "url": url.rstrip("/") + MCP_PATH,
        "headers": {"Authorization": f"Bearer ${{{TOKEN_VAR}}}"},
    }


def read_mcp_config(path: Path) -> dict[str, Any]:
    """The file's JSON, refused (before anything is written) when it cannot hold servers."""
    data = _load(path)
    servers = data.get("mcpServers")
    if servers is not None and not isinstance(servers, dict):
        raise SettingsError(f"{path}: mcpServers is not a JSON object; it was left as it is")
    return data


def install_mcp(path: Path, url: str = DEFAULT_URL) -> bool:
    """Register the memory's MCP server, leaving every other server and key as it is."""
    before = read_mcp_config(path)
    servers = before.get("mcpServers")
    after = {**before, "mcpServers": {**(servers or {}), MCP_SERVER_NAME: our_mcp_server(url)}}
    return _save(path, before, after)


def uninstall_mcp(path: Path) -> bool:
    """Remove only the memory's MCP server; an mcpServers left empty goes too."""
    before = _load(path) if path.exists() else {}
    servers = before.get("mcpServers")
    if not isinstance(servers, dict) or MCP_SERVER_NAME not in servers:
        return False
    kept = {name: entry for name, entry in servers.items() if name != MCP_SERVER_NAME}
    after = {k: v for k, v in before.items() if k != "mcpServers"}
    if kept:
        after["mcpServers"] = kept
    return _save(path, before, after)
