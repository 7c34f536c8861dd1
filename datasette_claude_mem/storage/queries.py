"""The stored queries: the questions people and agents ask of the memory, as read-only SQL.

A parameter left out of the URL arrives as an empty string, so every filter reads
"empty means any" and every number has a default.
"""

from __future__ import annotations

from dataclasses import dataclass

from datasette_claude_mem.storage.migrations import last_name
from datasette_claude_mem.storage.search import keyword_sql


@dataclass(frozen=True)
class StoredQuery:
    name: str
    title: str
    description: str
    sql: str
    parameters: tuple[str, ...]


PROJECT = "(:project = '' OR project = :project)"


def _edges_query(name: str, side: str, title: str, what: str) -> StoredQuery:
    """Call graph edges by one end: `side` is the end named by :function and :file."""
    other = "caller" if side == "callee" else "callee"
    return StoredQuery(
        name=name,
        title=title,
        description=(
            f"{what} (a bare name also matches methods of that name); "
            f"file narrows to the {side}'s file."
        ),
        sql=f"""SELECT caller_file, caller_function, callee_file, callee_function, resolution,
    confidence, times_confirmed, source, project, session_id, created_at, id
FROM call_graph
WHERE {last_name(f"{side}_function")} = {last_name(":function")}
  AND {PROJECT}
  AND ({side}_function = :function
    OR substr({side}_function, -length(:function) - 1) = '.' || :function)
  AND (:file = '' OR {side}_file = :file)
ORDER BY confidence DESC, {other}_file, {other}_function
LIMIT 500""",
        parameters=("project", "function", "file"),
    )


QUERIES = (
    StoredQuery(
        name="active_learnings",
        title="Active learnings",
        description=(
            "Learnings still in force, most confident first. With a project, its own "
            "learnings and the global ones; category and min_confidence narrow the list."
        ),
        sql="""SELECT id, coalesce(project, '(global)') AS project, category, content,
    confidence, source_session_id, created_at, updated_at
FROM learnings
WHERE is_active = 1
  AND (:project = '' OR project = :project OR project IS NULL)
  AND (:category = '' OR category = :category)
  AND confidence >= CAST(coalesce(nullif(:min_confidence, ''), 0) AS REAL)
ORDER BY confidence DESC, updated_at DESC, id DESC
LIMIT 500""",
        parameters=("project", "category", "min_confidence"),
    ),
    StoredQuery(
        name="changed_functions",
        title="Changed functions",
        description=(
            "Functions that sessions found new, modified or deleted, newest first; "
            "narrow by project and session_id."
        ),
        sql=f"""SELECT id, project, session_id, file_path, qualified_name, kind, signature,
    change_type, updated_at
FROM function_map
WHERE change_type != 'unchanged'
  AND {PROJECT}
  AND (:session_id = '' OR session_id = :session_id)
ORDER BY updated_at DESC, id DESC
LIMIT 500""",
        parameters=("project", "session_id"),
    ),
    _edges_query("callers", "callee", "Callers of a function", "Who calls a function"),
    _edges_query("callees", "caller", "Callees of a function", "What a function calls"),
    StoredQuery(
        name="queue_stats",
        title="Queue health",
        description=(
            "Tool outputs waiting for compression: counts by state, the age of the oldest "
            "waiting item in seconds, retries spent, and dead letters (failed with no "
            "attempts left)."
        ),
        sql=f"""SELECT
    count(*) FILTER (WHERE status = 'raw') AS waiting,
    count(*) FILTER (WHERE status = 'processing') AS in_progress,
    count(*) FILTER (WHERE status = 'done') AS done,
    count(*) FILTER (WHERE status = 'error' AND attempts < max_attempts) AS failed,
    count(*) FILTER (WHERE status = 'error' AND attempts >= max_attempts) AS dead_letters,
    coalesce(sum(max(attempts - 1, 0)), 0) AS retries,
    round((julianday('now') - julianday(min(created_at) FILTER (WHERE status = 'raw')))
        * 86400, 1) AS oldest_waiting_age_seconds
FROM pending_queue
WHERE {PROJECT}""",
        parameters=("project",),
    ),
    StoredQuery(
        name="recent_sessions",
        title="Recent sessions",
        description="The latest sessions, newest first, with their observation counts.",
        sql=f"""SELECT id, project, project_dir, status, started_at, ended_at,
    observation_count, summary
FROM sessions
WHERE {PROJECT}
ORDER BY started_at DESC, id DESC
LIMIT CAST(coalesce(nullif(:limit, ''), 20) AS INTEGER)""",
        parameters=("project", "limit"),
    ),
    StoredQuery(
        name="session_timeline",
        title="Session timeline",
        description=(
            "Everything that happened in one session, in order: prompts, tool uses, "
            "observations and other events."
        ),
        sql="""SELECT at, kind, name, detail, id FROM (
    SELECT created_at AS at,
        CASE event_type WHEN 'UserPromptSubmit' THEN 'prompt' ELSE 'event' END AS kind,
        event_type AS name,
        coalesce(json_extract(data, '$.prompt'), data) AS detail,
        id
    FROM event_log WHERE session_id = :session_id AND event_type != 'PostToolUse'
    UNION ALL
    SELECT created_at, 'tool_use', tool_name, files_touched, id
    FROM pending_queue WHERE session_id = :session_id
    UNION ALL
    SELECT created_at, 'observation', title, summary, id
    FROM observations WHERE session_id = :session_id
)
ORDER BY at, id""",
        parameters=("session_id",),
    ),
    StoredQuery(
        name="search_memory",
        title="Search memory",
        description=(
            "Full-text search over observations, learnings (global ones included), session "
            "summaries, prompts, saved notes and project documents, best first; each word of q "
            "must match. kinds narrows to some of observation, learning, session, prompt, note, "
            "doc (comma-separated); types keeps only observations of those types (bugfix, "
            "feature, refactor, change, test, discovery, decision, failure, config, "
            "comma-separated); since is an ISO 8601 UTC time. The same search as the JSON "
            "API's /-/claude-mem/search."
        ),
        sql=keyword_sql(
            match="claude_mem_fts_query(:q)",
            limit="CAST(coalesce(nullif(:limit, ''), 100) AS INTEGER)",
        ),
        parameters=("q", "project", "kinds", "types", "since", "limit"),
    ),
)

QUERY_SQL = {query.name: query.sql for query in QUERIES}
