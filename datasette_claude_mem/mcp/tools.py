"""The MCP tools: search → timeline → get, about, remember, forget and context.

Each call checks the caller's Datasette permission again (view-database on the memory to
read, the plugin's write action to remember or forget), works out the current project, and
answers compact text. A failure the caller can fix is a tool error with a message, never a
server error.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field, ValidationError

from datasette_claude_mem import plugin
from datasette_claude_mem.api.errors import ApiError
from datasette_claude_mem.api.routes import actor_name, authorise
from datasette_claude_mem.mcp import answers
from datasette_claude_mem.mcp.caller import SCOPE_KEY, Caller
from datasette_claude_mem.names import WRITE_ACTION
from datasette_claude_mem.storage import recall as lookup
from datasette_claude_mem.storage.errors import NotFound, StoreError
from datasette_claude_mem.storage.kinds import ObservationType
from datasette_claude_mem.storage.models import (
    LearningCategory,
    LearningCreate,
    MemoryEntrySave,
    new_id,
)
from datasette_claude_mem.storage.store import Store

T = TypeVar("T")

INSTRUCTIONS = (
    "The coding memory of this machine's past sessions. Use search first (one line per hit, "
    "with ids), then timeline(id) to see what happened around a hit, then get(ids) for the "
    "full records of the few that matter. about(path or function) gathers what is known "
    "about one piece of code; remember saves a learning or a note on purpose; forget retires "
    "one that is wrong. Pass session_id (from the memory context) or project."
)

Project = Annotated[
    str | None,
    Field(description="Project key to read; by default the calling session's project"),
]
SessionId = Annotated[
    str | None,
    Field(description="Your Claude Code session id (named in the memory context); its "
          "project is the current one"),
]  # fmt: skip


def _caller(ctx: Context) -> Caller:
    request = ctx.request_context.request
    caller = getattr(request, "scope", {}).get(SCOPE_KEY)
    if caller is None:
        raise ToolError("This tool is served only through the memory server's MCP endpoint")
    return caller


async def _check(caller: Caller, action: str) -> None:
    try:
        await authorise(caller.datasette, caller.request, action)
    except ApiError as error:
        raise ToolError("; ".join(error.messages)) from error


async def _read(caller: Caller, fn: Callable[[Store], T]) -> T:
    db = plugin.memory_database(caller.datasette)
    if db is None:
        raise ToolError("The memory database is not attached to this server")
    try:
        return await db.execute_fn(lambda conn: fn(plugin.open_store(caller.datasette, conn)))
    except (StoreError, sqlite3.OperationalError) as error:
        raise ToolError(str(error)) from error


async def _write(caller: Caller, fn: Callable[[Store], T]) -> T:
    try:
        return await plugin.write(caller.datasette, fn)
    except (StoreError, ValidationError, sqlite3.IntegrityError) as error:
        raise ToolError(str(error)) from error


def _default_project(caller: Caller) -> str | None:
    """The token's own project, else the server's configured one."""
    actor = caller.actor or {}
    return actor.get("project") or plugin.state(caller.datasette).config.default_project


async def _project(caller: Caller, session_id: str | None, project: str | None) -> str:
    """The calling session's project, else the one named, else the token's default."""
    if session_id:

        def of_session(store: Store) -> str:
            session = store.get_session(session_id)
            if session is None:
                raise ToolError(f"No session {session_id!r} in the memory")
            return session.project

        found = await _read(caller, of_session)
        if project and project != found:
            raise ToolError(f"Session {session_id!r} belongs to {found!r}, not {project!r}")
        return found
    chosen = project or _default_project(caller)
    if not chosen:
        raise ToolError("No current project: pass session_id (from the memory context) or project")
    return chosen


def _visible(item: lookup.Record, project: str) -> bool:
    return item.project is None or item.project == project


async def search(
    ctx: Context,
    query: Annotated[str, Field(min_length=1, max_length=500, description="Words to find")],
    project: Project = None,
    session_id: SessionId = None,
    kinds: Annotated[
        list[Literal["observation", "learning", "note", "session", "prompt"]] | None,
        Field(description="Only these kinds (default all)"),
    ] = None,
    types: Annotated[
        list[ObservationType] | None,
        Field(description="Only observations of these types (bugfix, feature, failure...)"),
    ] = None,
    since: Annotated[
        str | None,
        Field(pattern=r"^\d{4}-\d{2}-\d{2}", description="Only rows from this date (YYYY-MM-DD…)"),
    ] = None,
    limit: Annotated[int, Field(ge=1, le=50, description="Most hits to list")] = 10,
) -> str:
    caller = _caller(ctx)
    await _check(caller, "view-database")
    current = await _project(caller, session_id, project)
    hits = await _read(
        caller,
        lambda s: lookup.search(
            s,
            current,
            query,
            kinds=kinds,
            since=since,
            limit=limit,
            types=[str(t) for t in types] if types else None,
        ),
    )
    return answers.search_answer(query, current, hits)


async def timeline(
    ctx: Context,
    id: Annotated[str | None, Field(description="A row id from search")] = None,
    session_id: Annotated[
        str | None,
        Field(
            description="A session to show from its start when no id is given; with an id, "
            "the calling session, whose project is the current one"
        ),
    ] = None,
    before: Annotated[int, Field(ge=0, le=50, description="Rows before it")] = 5,
    after: Annotated[int, Field(ge=0, le=50, description="Rows after it")] = 5,
    project: Project = None,
) -> str:
    caller = _caller(ctx)
    await _check(caller, "view-database")
    if not id and not session_id:
        raise ToolError("Pass id (from search) or session_id")
    current = await _project(caller, session_id, project)

    def run(store: Store) -> list[lookup.Hit]:
        anchor = lookup.record(store, id) if id else None
        if id and (anchor is None or not _visible(anchor, current)):
            raise ToolError(f"No row {id!r} in project {current}")
        if session_id and not id:
            session = store.get_session(session_id)
            if session is None or session.project != current:
                raise ToolError(f"No session {session_id!r} in project {current}")
        return lookup.timeline(store, anchor, None if id else session_id, before, after)

    return answers.timeline_answer(id, await _read(caller, run))


async def get(
    ctx: Context,
    ids: Annotated[
        list[Annotated[str, Field(min_length=1)]],
        Field(min_length=1, max_length=20, description="Row ids from search or timeline"),
    ],
    project: Project = None,
    session_id: SessionId = None,
) -> str:
    caller = _caller(ctx)
    await _check(caller, "view-database")
    current = await _project(caller, session_id, project)

    def run(store: Store) -> list[str]:
        parts = []
        for row_id in dict.fromkeys(ids):
            item = lookup.record(store, row_id)
            if item is None or not _visible(item, current):
                parts.append(f"## {row_id}\nNot found in project {current}.")
            else:
                parts.append(answers.record_text(item))
        return parts

    return answers.get_answer(await _read(caller, run))


async def about(
    ctx: Context,
    path: Annotated[str | None, Field(description="A file path as the project records it")] = None,
    function: Annotated[
        str | None, Field(description="A function or method name (Class.method or method)")
    ] = None,
    project: Project = None,
    session_id: SessionId = None,
) -> str:
    caller = _caller(ctx)
    await _check(caller, "view-database")
    if not path and not function:
        raise ToolError("Pass path or function")
    current = await _project(caller, session_id, project)
    found = await _read(caller, lambda s: lookup.about(s, current, path, function))
    return answers.about_answer(function or path or "", found)


async def remember(
    ctx: Context,
    text: Annotated[str, Field(min_length=1, max_length=20_000,
                                description="What to remember, in a sentence or a few")],
    kind: Annotated[Literal["learning", "note"], Field(description="learning: a lasting "
                    "fact about the code; note: anything else")] = "note",
    category: Annotated[str | None, Field(description="For a learning: architecture, "
                        "convention, gotcha, dependency or pattern (default pattern)")] = None,
    confidence: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5,
    namespace: Annotated[str | None, Field(description="With key: a versioned entry, e.g. "
                         "project:<key>/decisions; global/... for every project")] = None,
    key: Annotated[str | None, Field(description="With namespace: saving the same key again "
                   "makes a new version that supersedes the last")] = None,
    functions: Annotated[list[str] | None, Field(description="For a learning: the functions "
                         "it is about (name, or path::name); it is flagged stale once one of "
                         "them changes")] = None,
    project: Project = None,
    session_id: SessionId = None,
) -> str:  # fmt: skip
    caller = _caller(ctx)
    await _check(caller, WRITE_ACTION)
    if bool(namespace) != bool(key):
        raise ToolError("namespace and key go together: pass both or neither")
    current = await _project(caller, session_id, project)
    actor = str((caller.actor or {}).get("id", ""))
    if kind == "learning" and not namespace:
        if category is not None and category not in LearningCategory.__members__.values():
            raise ToolError(f"category must be one of {', '.join(LearningCategory)}")
        data = LearningCreate(
            category=category or LearningCategory.PATTERN, content=text,
            confidence=confidence, project=current, source_session_id=session_id,
            functions=[name for name in functions or [] if name.strip()],
        )  # fmt: skip
        saved = await _write(caller, lambda s: s.create_learning(data))
        verb = "Saved" if saved.created else "Already known:"
        return f"{verb} learning {saved.row.id} ({saved.row.category}, project {current})."
    namespace = namespace or f"project:{current}/notes"
    owner = _namespace_project(namespace, current)
    entry = MemoryEntrySave(
        namespace=namespace, key=key or new_id(), value=text, kind=kind, category=category,
        confidence=confidence, project=owner, session_id=session_id, created_by=actor,
    )  # fmt: skip
    saved = await _write(caller, lambda s: s.save_entry(entry))
    row = saved.row
    if not saved.created:
        return f"Already saved: {row.kind} {row.id} ({row.namespace}#{row.key} v{row.version})."
    return f"Saved {row.kind} {row.id} ({row.namespace}#{row.key} v{row.version})."


def _namespace_project(namespace: str, current: str) -> str | None:
    """global/... belongs to every project; project:<key>/... must be the current one (keys
    are often paths, so the namespace is compared with the current key, not split)."""
    if namespace == "global" or namespace.startswith("global/"):
        return None
    ours = f"project:{current}"
    if namespace.startswith("project:") and not (
        namespace == ours or namespace.startswith(ours + "/")
    ):
        raise ToolError(
            f"Namespace {namespace!r} is not under {ours!r}: name that project with project=..."
        )
    return current


async def forget(
    ctx: Context,
    id: Annotated[str, Field(min_length=1, description="A learning, note or observation id")],
    reason: Annotated[str, Field(min_length=1, max_length=2_000, description="Why it is "
                      "wrong or no longer wanted; kept with the row")],
    project: Project = None,
    session_id: SessionId = None,
) -> str:  # fmt: skip
    caller = _caller(ctx)
    await _check(caller, WRITE_ACTION)
    current = await _project(caller, session_id, project)
    by = actor_name(caller.actor)

    def run(store: Store) -> Any:
        item = lookup.record(store, id)
        if item is None or item.kind not in ("observation", "learning", "note"):
            raise NotFound(f"No learning, note or observation {id!r}")
        if not _visible(item, current):
            raise NotFound(f"No learning, note or observation {id!r} in project {current}")
        return store.forget(id, reason, by)

    done = await _write(caller, run)
    return f"Forgot {done.kind} {done.id}: it is out of search and the context."


async def context(ctx: Context, project: Project = None, session_id: SessionId = None) -> str:
    caller = _caller(ctx)
    await _check(caller, "view-database")
    current = await _project(caller, session_id, project)
    from datasette_claude_mem.claude_code.context import build_context

    built = await _read(caller, lambda s: build_context(s, current, current_session=session_id))
    return built.with_tools_line(session_id) or f"The memory holds nothing yet for {current}."


DESCRIPTIONS = {
    search: "Search the memory of past sessions (observations, learnings, notes, session "
    "summaries, prompts), best match first. One line per hit: id · date · kind · title · "
    "file · estimated tokens to get it. Only the current project's rows (and global "
    "learnings and notes) unless project names another. Start here; then timeline or get.",
    timeline: "What happened around one row (by id from search) or in one session: the "
    "prompts and observations just before and after it, oldest first, one line each.",
    get: "The full records of up to 20 ids from search or timeline, clipped to a bounded size.",
    about: "What the memory knows about one file (path) or function: its functions and what "
    "changed in them, callers and callees, and the observations and learnings naming it.",
    remember: "Save something on purpose: a learning (a lasting fact about the code) or a "
    "note. With namespace and key it is a versioned entry: saving the key again supersedes "
    "the last version, which stays in the history.",
    forget: "Retire a learning, note or observation that is wrong or unwanted, with the "
    "reason: it leaves search and the context at once and stays on record.",
    context: "The memory context a session starts with (for clients without hooks).",
}
READ_ONLY = {search, timeline, get, about, context}


def make_server() -> MCPServer:
    from mcp.types import ToolAnnotations

    # Every request would otherwise log lines of its own on the server's stderr.
    server = MCPServer(name="claude-mem", instructions=INSTRUCTIONS, log_level="WARNING")
    for fn, description in DESCRIPTIONS.items():
        server.add_tool(
            fn,
            name=fn.__name__,
            description=description,
            annotations=ToolAnnotations(readOnlyHint=fn in READ_ONLY),
            structured_output=False,
        )
    return server
