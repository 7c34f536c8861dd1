"""Claude Code hook events in, Claude Code hook output out.

Claude Code posts each hook's JSON input here (an http hook, or the command-hook script) and
reads the answer as it reads a command hook's output. Everything an event carries is stored
in one transaction; only SessionStart answers with something: the memory context (again
after a compaction; after a resume only what is new since the session last got it).

Tool uses (PostToolUse, and PostToolUseFailure with its error) are queued for the worker;
a subagent's carry its agent_id and agent_type and belong to the session that started it
(Claude Code sends the parent's session_id). Stop's last assistant message becomes the
session's summary at once, and Stop queues the summary's rebuild from the whole session for
the worker; PostCompact's compact summary is kept on the session.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from datasette_claude_mem.claude_code import hook_script
from datasette_claude_mem.claude_code.context import build_context
from datasette_claude_mem.claude_code.raw_output import bound as bound_output
from datasette_claude_mem.settings import Config
from datasette_claude_mem.storage.models import (
    CLAUDE_CODE_EVENTS,
    QueueItemCreate,
    SessionStart,
    SessionStatus,
    SessionUpdate,
    ToolFailure,
    utc_now,
)
from datasette_claude_mem.storage.project import project_key
from datasette_claude_mem.storage.store import Store
from datasette_claude_mem.worker.compress import files_from_tool_input
from datasette_claude_mem.worker.session_summary import summary_item

RECORDED_EVENTS = set(CLAUDE_CODE_EVENTS)
# Kept as they came (the hook script, which redacts before it spools, keeps the same ones).
COMMON_FIELDS = set(hook_script.COMMON_FIELDS)
TOOL_EVENTS = ("PostToolUse", "PostToolUseFailure")
SESSION_EVENTS = ("SessionStart", "Stop", "PostCompact")
# A session's summary and compaction summary are read in pages and in the context: bounded.
SUMMARY_MAX_CHARS = 4000


@dataclass
class HookResult:
    output: dict[str, Any]
    event: str
    session_id: str | None
    project: str | None
    duration_ms: float


def _optional_text(value: Any, limit: int = 200) -> str | None:
    return str(value)[:limit] if isinstance(value, str | int) and str(value) else None


def _duration_ms(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return int(value)


def _mcp_server(value: Any) -> str | None:
    """The MCP server's name: Claude Code sends {"name": ..., "source": ...}."""
    if isinstance(value, dict):
        value = value.get("name")
    return _optional_text(value)


def tool_use(payload: dict[str, Any], session_id: str, cap: int) -> QueueItemCreate:
    """The queue item of a PostToolUse or PostToolUseFailure: for a failure, its error
    takes the place of the output the tool never gave. The output keeps its head and tail up
    to the cap (raw_output.py says why); its full size is kept."""
    failed = payload.get("hook_event_name") == "PostToolUseFailure"
    failure = None
    if failed:
        failure = ToolFailure.INTERRUPT if payload.get("is_interrupt") else ToolFailure.ERROR
    raw, truncated, full_bytes = bound_output(
        payload.get("error" if failed else "tool_response"), cap
    )
    tool_input = payload.get("tool_input")
    tool_input = tool_input if isinstance(tool_input, dict) else {"value": tool_input}
    tool_name = str(payload.get("tool_name") or "unknown")
    return QueueItemCreate(
        session_id=session_id,
        tool_use_id=str(payload.get("tool_use_id") or "") or None,
        tool_name=tool_name,
        tool_input=tool_input,
        raw_output=raw,
        files_touched=files_from_tool_input(tool_name, tool_input),
        truncated=truncated,
        raw_bytes=full_bytes,
        agent_id=_optional_text(payload.get("agent_id")),
        agent_type=_optional_text(payload.get("agent_type")),
        prompt_id=_optional_text(payload.get("prompt_id")),
        duration_ms=_duration_ms(payload.get("duration_ms")),
        mcp_server=_mcp_server(payload.get("mcp_server")),
        failure=failure,
    )


def bounded_summary(store: Store, text: str) -> str:
    """Redacted first, then cut: a cut made first could split a secret the redactor would
    then no longer recognise."""
    text = store.redact_text(text.strip())
    if len(text) <= SUMMARY_MAX_CHARS:
        return text
    return text[: SUMMARY_MAX_CHARS - 1].rstrip() + "…"


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
    event_id: str | None = None,
    with_context: bool = True,
    redacted_before: dict[str, int] | None = None,
) -> HookResult:
    """Store what one hook event says, and answer as Claude Code expects.

    ``redacted_before``: what the command hook took from a spooled event before spooling it,
    counted with what is taken here."""
    started = time.perf_counter()
    config = config or Config()
    payload = storable(payload)
    event = str(payload.get("hook_event_name") or "unknown")
    session_id = payload.get("session_id")
    session_id = str(session_id) if session_id else None
    cwd = str(payload.get("cwd") or "")
    excluded = config.excluded_projects
    # Finding the project of a directory looks at the file system: only when it is needed,
    # to check the exclusions or to start a session.
    project = _project(cwd) if cwd and excluded else None
    if project is not None and is_excluded(project, excluded):
        return HookResult({}, event, session_id, project, 0.0)

    output: dict[str, Any] = {}
    # Redacted value by value (never as encoded JSON), counting what was taken: the counts go
    # on the event row, the secrets nowhere.
    redactions: dict[str, int] = dict(redacted_before or {})
    data: dict[str, Any] = store.redact_value(
        {k: v for k, v in payload.items() if k not in COMMON_FIELDS}, redactions
    )
    context_since: str | None = None
    wants_context = event == "SessionStart" and with_context
    with store.write():
        if event_id and store.has_event(event_id):
            # Taken in already (a spool read twice, or a write that finished after its
            # event was spooled): nothing is stored twice.
            return HookResult({}, event, session_id, project, 0.0)
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
        # Only these events change the session row: one that was never started is left alone.
        known = bool(session_id) and (
            bool(cwd) or (event in SESSION_EVENTS and store.get_session(session_id) is not None)
        )
        if event in TOOL_EVENTS and session_id:
            # From the fields redacted above: redacted whole, then cut to the cap, so a key
            # begun in the head and ended in the part dropped is still found.
            item = store.enqueue(
                tool_use({**payload, **data}, session_id, config.raw_output_cap),
                redacted=True,
            ).row
            # The event row says what happened; the payload lives in the queue.
            data = {"tool_name": item.tool_name, "queue_item_id": item.id}
            data["truncated"] = item.truncated
            for key in ("agent_id", "agent_type", "failure"):
                if getattr(item, key):
                    data[key] = str(getattr(item, key))
        elif event == "SessionEnd" and session_id and store.get_session(session_id):
            store.close_session(session_id, checkpoint=False)
        elif event == "Stop" and session_id and known:
            message = payload.get("last_assistant_message")
            if isinstance(message, str) and message.strip():
                summary = bounded_summary(store, message)
                store.update_session(session_id, SessionUpdate(summary=summary))
                # The worker rebuilds the summary from the whole session (session_summary.py);
                # until it has, the last message stands for it.
                store.enqueue(summary_item(session_id, summary), redacted=True)
        elif event == "PostCompact" and session_id and known:
            summary = payload.get("compact_summary")
            if isinstance(summary, str) and summary.strip():
                store.set_compact_summary(session_id, bounded_summary(store, summary))
        if wants_context and session_id and known:
            # Taken before the context is read: what arrives meanwhile counts as new next
            # time, so a resumed session may hear of a thing twice but never misses one.
            previous = store.mark_context(session_id, utc_now())
            if payload.get("source") == "resume":
                context_since = previous
        if event not in RECORDED_EVENTS:
            data = {"unknown_event": True, **data}
        if redactions:
            data["redactions"] = dict(sorted(redactions.items()))
        duration_ms = (time.perf_counter() - started) * 1000
        store.log_event(
            event,
            data,
            session_id=session_id,
            project=project,
            duration_ms=round(duration_ms),
            event_id=event_id,
            redacted=True,
        )
    if wants_context and project:
        output = _context_output(store, project, session_id, config, context_since)
    if event == "SessionEnd":
        store.checkpoint()
    return HookResult(output, event, session_id, project, (time.perf_counter() - started) * 1000)


def _context_output(
    store: Store, project: str, session_id: str | None, config: Config, since: str | None
) -> dict[str, Any]:
    context = build_context(store, project, config=config, current_session=session_id, since=since)
    if not context.markdown:
        return {}
    return {
        "hookSpecificOutput": {
            "hookEventName": "SessionStart",
            "additionalContext": context.with_tools_line(session_id),
        }
    }


def session_start_output(
    store: Store, payload: dict[str, Any], *, config: Config
) -> dict[str, Any]:
    """The SessionStart answer for an event not stored yet (it waits in the server's
    spool): read only, so it can be given while another program holds the write lock."""
    cwd = str(payload.get("cwd") or "")
    if not cwd:
        return {}
    session_id = str(payload.get("session_id") or "") or None
    project = _project(cwd)
    if is_excluded(project, config.excluded_projects):
        return {}
    return _context_output(store, project, session_id, config, None)
