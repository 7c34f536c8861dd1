"""Claude Code hook events in, Claude Code hook output out.

Claude Code posts each hook's JSON input here (an http hook, or the command-hook script) and
reads the answer as it reads a command hook's output. Everything an event carries is stored
in one transaction; only SessionStart answers with something: the memory context.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from datasette_claude_mem.claude_code.context import build_context
from datasette_claude_mem.claude_code.project import project_key
from datasette_claude_mem.settings import Config
from datasette_claude_mem.storage.models import (
    HOOK_EVENTS,
    QueueItemCreate,
    SessionStart,
    SessionStatus,
    SessionUpdate,
)
from datasette_claude_mem.storage.store import Store, to_json
from datasette_claude_mem.worker.compress import files_from_tool_input

# Kept in the queue as it came, up to this size; a larger output keeps its head and is
# marked truncated (Claude Code itself caps what a tool returns well below this).
MAX_RAW_OUTPUT_BYTES = 8 * 1024 * 1024

RECORDED_EVENTS = set(HOOK_EVENTS)
COMMON_FIELDS = {"session_id", "transcript_path", "cwd", "permission_mode", "hook_event_name"}


@dataclass
class HookResult:
    output: dict[str, Any]
    event: str
    session_id: str | None
    project: str | None
    duration_ms: float


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return to_json(value)


def _truncate(text: str) -> tuple[str, bool]:
    if len(text) * 4 <= MAX_RAW_OUTPUT_BYTES:  # no character takes more than 4 bytes
        return text, False
    data = text.encode("utf-8")
    if len(data) <= MAX_RAW_OUTPUT_BYTES:
        return text, False
    head = data[:MAX_RAW_OUTPUT_BYTES].decode("utf-8", errors="ignore")
    return head + f"\n[truncated: {len(data)} bytes in all]", True


def _project(cwd: str) -> str:
    """The project key of a hook's cwd; a path the system cannot even look at is its own key."""
    try:
        return project_key(cwd)
    except (OSError, ValueError):  # a name too long for the system, an embedded NUL
        return cwd


def storable(value: Any) -> Any:
    """The payload with lone surrogates (valid in JSON, not in UTF-8) made '?': an event
    Claude Code was told we took must not be dropped for one odd character."""
    if isinstance(value, str):
        if value.isascii():
            return value
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


def is_excluded(project: str, excluded: Iterable[str]) -> bool:
    """A project is excluded by its key or by any directory above it."""
    for item in excluded:
        item = item.rstrip("/")
        if item and (project == item or project.startswith(item + "/")):
            return True
    return False


def handle_hook(
    store: Store,
    payload: dict[str, Any],
    *,
    config: Config | None = None,
    excluded_projects: Iterable[str] = (),
    event_id: str | None = None,
    with_context: bool = True,
) -> HookResult:
    """Store what one hook event says, and answer as Claude Code expects."""
    started = time.perf_counter()
    payload = storable(payload)
    event = str(payload.get("hook_event_name") or "unknown")
    session_id = payload.get("session_id")
    session_id = str(session_id) if session_id else None
    cwd = str(payload.get("cwd") or "")
    excluded = list(excluded_projects)
    # Finding the project of a directory looks at the file system: only when it is needed,
    # to check the exclusions or to start a session.
    project = _project(cwd) if cwd and excluded else None
    if project is not None and is_excluded(project, excluded):
        return HookResult({}, event, session_id, project, 0.0)

    output: dict[str, Any] = {}
    data: dict[str, Any] = {k: v for k, v in payload.items() if k not in COMMON_FIELDS}
    with store.write():
        if session_id and cwd:
            session = (
                store.get_session(session_id)
                or store.create_session(
                    SessionStart(id=session_id, project_dir=cwd, project=project or _project(cwd))
                ).row
            )
            project = session.project
            if event == "SessionStart" and session.status != SessionStatus.ACTIVE:
                # A resumed session (claude --resume) is open again until its next SessionEnd.
                store.update_session(
                    session_id, SessionUpdate(status=SessionStatus.ACTIVE, ended_at=None)
                )
        elif cwd:
            project = project or _project(cwd)
        if event == "PostToolUse" and session_id:
            raw, truncated = _truncate(_text(payload.get("tool_response")))
            tool_input = payload.get("tool_input")
            tool_input = tool_input if isinstance(tool_input, dict) else {"value": tool_input}
            tool_name = str(payload.get("tool_name") or "unknown")
            item = store.enqueue(
                QueueItemCreate(
                    session_id=session_id,
                    tool_use_id=str(payload.get("tool_use_id") or "") or None,
                    tool_name=tool_name,
                    tool_input=tool_input,
                    raw_output=raw,
                    files_touched=files_from_tool_input(tool_name, tool_input),
                    truncated=truncated,
                )
            ).row
            # The event row says what happened; the payload lives in the queue.
            data = {"tool_name": tool_name, "queue_item_id": item.id, "truncated": truncated}
        elif event == "SessionEnd" and session_id and store.get_session(session_id):
            store.close_session(session_id, checkpoint=False)
        if event not in RECORDED_EVENTS:
            data = {"unknown_event": True, **data}
        duration_ms = (time.perf_counter() - started) * 1000
        store.log_event(
            event,
            data,
            session_id=session_id,
            project=project,
            duration_ms=round(duration_ms),
            event_id=event_id,
        )
    if event == "SessionStart" and with_context and project:
        context = build_context(store, project, config=config, current_session=session_id)
        if context.markdown:
            output = {
                "hookSpecificOutput": {
                    "hookEventName": "SessionStart",
                    "additionalContext": context.with_tools_line(session_id),
                }
            }
    if event == "SessionEnd":
        store.checkpoint()
    return HookResult(output, event, session_id, project, (time.perf_counter() - started) * 1000)
