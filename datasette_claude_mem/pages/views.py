"""The memory's HTML pages: the dashboard, a session's page and the context preview.

Each page asks storage/overview.py for its rows over one of Datasette's read connections (in
its read thread), builds charts, links and a timeline from them, and hands plain data to a
template; the templates escape everything. The row pages of observations, learnings and the
queue are Datasette's own, with templates that add a readable view; `row_extras` gives them
what they show beyond the row itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from datasette.resources import DatabaseResource, TableResource
from datasette.utils import tilde_decode, urlsafe_components
from datasette.utils.asgi import Forbidden, NotFound, Request, Response

from datasette_claude_mem import plugin
from datasette_claude_mem.claude_code.context import MAX_BYTES, SECTIONS, build_context
from datasette_claude_mem.names import MENU_LABEL, PREFIX, WRITE_ACTION
from datasette_claude_mem.pages.charts import activity_chart, queue_chart
from datasette_claude_mem.pages.formatting import (
    duration,
    json_list,
    parse_ts,
    pretty_json,
    relative_to_project,
    short_project,
)
from datasette_claude_mem.pages.links import Links
from datasette_claude_mem.storage import overview
from datasette_claude_mem.storage.queries import QUERIES
from datasette_claude_mem.storage.redactions import read_redaction_counts
from datasette_claude_mem.storage.retention import RULE_WORDS, Policy, space, with_measurement
from datasette_claude_mem.worker import in_server

if TYPE_CHECKING:
    from datasette.app import Datasette
    from datasette.database import Database

    from datasette_claude_mem.storage.store import Store

T = TypeVar("T")

# Claude Code cuts SessionStart context above this many bytes to a short preview.
CLAUDE_CONTEXT_LIMIT = 10_000
ACTIVITY_DAYS = 14
TIMELINE_LIMIT = 2_000
DASHBOARD_PROJECTS = 50
RAW_OUTPUT_SHOWN = 64 * 1024
TABLES = (
    ("sessions", "Agent sessions, one row each"),
    ("observations", "Compressed accounts of tool use"),
    ("function_map", "Functions of the files sessions saw"),
    ("call_graph", "Who calls whom"),
    ("learnings", "Things learned about projects"),
    ("pending_queue", "Tool outputs waiting to be compressed"),
    ("pending_payloads", "The queued tool inputs and outputs"),
    ("event_log", "Everything else that happened"),
)


# What the pages show, built from the storage's rows


def project_list(store: Store, limit: int | None = None) -> list[dict[str, Any]]:
    """Every project the memory knows, most recently active first, with its short name."""
    projects = [{**p, "short": short_project(p["project"])} for p in overview.projects(store)]
    return projects if limit is None else projects[:limit]


def activity_days(store: Store, today: date, days: int = ACTIVITY_DAYS) -> list[dict[str, Any]]:
    """One entry per day up to today, oldest first, with a label and every kind's count."""
    counts = overview.activity(store, (today - timedelta(days=days - 1)).isoformat())
    result = []
    for offset in range(days - 1, -1, -1):
        day = today - timedelta(days=offset)
        key = day.isoformat()
        result.append(
            {
                "day": key,
                "label": day.strftime("%b %d").replace(" 0", " "),
                **{kind: counts[kind].get(key, 0) for kind in overview.ACTIVITY_KINDS},
            }
        )
    return result


def queue_summary(store: Store) -> dict[str, Any]:
    """The queue's state with its chart and a health word for the page's colour."""
    row = overview.queue_state(store)
    states = [
        ("waiting", "Waiting", row["waiting"]),
        ("in_progress", "In progress", row["in_progress"]),
        ("done", "Done", row["done"]),
        ("failed", "Failed", row["failed"]),
        ("dead_letters", "Dead letters", row["dead_letters"]),
    ]
    row["chart"] = queue_chart(states)
    stuck = row["oldest_waiting_seconds"] is not None and row["oldest_waiting_seconds"] > 600
    row["health"] = "bad" if row["dead_letters"] else "warn" if row["failed"] or stuck else "good"
    return row


def dashboard_data(store: Store, now: datetime) -> dict[str, Any]:
    """Everything the dashboard shows: counts, projects, sessions, learnings, queue, charts."""
    counts = overview.table_counts(store, [name for name, _ in TABLES])
    tables = [
        {"name": name, "description": description, "count": counts[name]}
        for name, description in TABLES
    ]
    days = activity_days(store, now.date())
    projects = project_list(store)
    return {
        "tables": tables,
        "counts": counts,
        "active_learnings": overview.active_learning_count(store),
        "project_count": len(projects),
        "projects": projects[:DASHBOARD_PROJECTS],
        "sessions": overview.recent_sessions(store, 12),
        "learnings": overview.top_learnings(store, 15),
        "queue": queue_summary(store),
        "redactions": read_redaction_counts(store.conn),
        "tombstones": [t.model_dump(mode="json") for t in store.tombstones(10)],
        "activity": days,
        "activity_chart": activity_chart(days),
        "activity_totals": {key: sum(d[key] for d in days) for key in overview.ACTIVITY_KINDS},
    }


@dataclass
class TimelineEntry:
    at: str
    kind: str  # prompt, tool_use, observation, event
    title: str
    text: str = ""
    link: str | None = None
    badge: str | None = None
    files: list[str] = field(default_factory=list)
    order: str = ""
    error: bool = False
    new_day: str | None = None
    agent: str | None = None  # the subagent that acted, "type (id)"


def _event_text(event_type: str, data: dict[str, Any]) -> str:
    if event_type == "UserPromptSubmit" and isinstance(data.get("prompt"), str):
        return data["prompt"]
    if not data:
        return ""
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def _agent(row: dict[str, Any]) -> str | None:
    """Who acted, when a subagent did: its type and id."""
    if not row.get("agent_id"):
        return None
    return f"{row.get('agent_type') or 'subagent'} ({row['agent_id']})"


def _timeline(rows: dict[str, Any], links: Links) -> list[TimelineEntry]:
    """Events, tool uses and observations as one list in time order, each new day marked."""
    entries: list[TimelineEntry] = []
    for e in rows["events"]:
        try:
            data = json.loads(e["data"] or "{}")
        except ValueError:
            data = {"data": e["data"]}
        is_prompt = e["event_type"] == "UserPromptSubmit"
        entries.append(
            TimelineEntry(
                at=e["created_at"],
                kind="prompt" if is_prompt else "event",
                title="Prompt" if is_prompt else e["event_type"],
                text=_event_text(e["event_type"], data if isinstance(data, dict) else {}),
                link=links.row("event_log", e["id"]),
                badge=duration(e["duration_ms"] / 1000) if e["duration_ms"] else None,
                order=e["id"],
            )
        )
    for t in rows["tool_uses"]:
        entries.append(
            TimelineEntry(
                at=t["created_at"],
                kind="tool_use",
                title=t["tool_name"],
                link=links.row("pending_queue", t["id"]),
                badge="dead letter"
                if t["status"] == "error" and t["attempts"] >= t["max_attempts"]
                else t["status"],
                files=json_list(t["files_touched"]),
                text=t["last_error"] or "",
                error=bool(t["last_error"]),
                order=t["id"],
                agent=_agent(t),
            )
        )
    for o in rows["observations"]:
        entries.append(
            TimelineEntry(
                at=o["created_at"],
                kind="observation",
                title=o["title"],
                text=o["summary"],
                link=links.row("observations", o["id"]),
                # What it was for (bugfix, test...); its tool when it predates types.
                badge=o["type"] or o["tool_name"],
                files=json_list(o["files_touched"]),
                order=o["id"],
                agent=_agent(o),
            )
        )
    entries.sort(key=lambda entry: (entry.at, entry.order))
    day = None
    for entry in entries:
        moment = parse_ts(entry.at)
        label = moment.strftime("%A %Y-%m-%d") if moment else None
        if label != day:
            entry.new_day = day = label
    return entries


def session_data(store: Store, session_id: str, links: Links) -> dict | None:
    """A session's page: its timeline, the files and functions it touched, its counts."""
    rows = overview.session_rows(store, session_id, TIMELINE_LIMIT)
    if rows is None:
        return None
    session, functions = rows["session"], rows["functions"]
    project = session["project"]
    files: dict[str, dict[str, Any]] = {}
    for source in (*rows["tool_uses"], *rows["observations"]):
        for path in json_list(source["files_touched"]):
            rel = relative_to_project(path, project)
            files.setdefault(rel, {"path": rel, "functions": []})
    for fn in functions:
        files.setdefault(fn["file_path"], {"path": fn["file_path"], "functions": []})
        files[fn["file_path"]]["functions"].append(fn)
    changed = [f for f in functions if f["change_type"] != "unchanged"]
    agents: dict[str, dict[str, Any]] = {}
    for kind, counted in (("tool_uses", 1), ("observations", 0)):
        for source in rows[kind]:
            if source["agent_id"]:
                agent = agents.setdefault(
                    source["agent_id"],
                    {"id": source["agent_id"], "type": source["agent_type"], "tool_uses": 0},
                )
                agent["tool_uses"] += counted
    started, ended = parse_ts(session["started_at"]), parse_ts(session["ended_at"])
    return {
        "session": session,
        "project_short": short_project(project),
        "timeline": _timeline(rows, links),
        "timeline_truncated": any(
            len(rows[kind]) >= TIMELINE_LIMIT for kind in ("events", "tool_uses", "observations")
        ),
        "files": sorted(files.values(), key=lambda f: f["path"]),
        "functions": functions,
        "learnings": rows["learnings"],
        "agents": list(agents.values()),
        "counts": {
            **rows["totals"],
            "files": len(files),
            "functions": len(functions),
            "functions_changed": len(changed),
            "learnings": len(rows["learnings"]),
        },
        "took": duration((ended - started).total_seconds()) if started and ended else None,
    }


# Pages


async def memory_database(datasette: Datasette, request: Request) -> Database:
    """The memory database, if it exists and this actor may view it."""
    db = plugin.memory_database(datasette)
    name = plugin.memory_database_name(datasette)
    if db is None:
        raise NotFound(f"No memory database named {name!r}")
    allowed = await datasette.allowed(
        action="view-database", resource=DatabaseResource(name), actor=request.actor
    )
    if not allowed:
        raise Forbidden("You do not have permission to view the memory database")
    return db


async def may_forget(datasette: Datasette, actor: dict | None) -> bool:
    """Whether the pages show forget buttons: the actor holds the write permission."""
    return await datasette.allowed(
        action=WRITE_ACTION,
        resource=DatabaseResource(plugin.memory_database_name(datasette)),
        actor=actor,
    )


async def _read(datasette: Datasette, db: Database, read: Callable[..., T], *args: Any) -> T:
    """`read(store, *args)` in Datasette's read thread, with a store on its read connection."""
    return await db.execute_fn(lambda conn: read(plugin.open_store(datasette, conn), *args))


async def _render(
    datasette: Datasette, request: Request, template: str, context: dict[str, Any]
) -> Response:
    context = {
        "links": Links(datasette, plugin.memory_database_name(datasette)),
        **context,
    }
    html = await datasette.render_template(template, context, request=request)
    return Response.html(html, headers={"Cache-Control": "private, no-store"})


def _get_only(view: Callable) -> Callable:
    async def inner(request: Request, datasette: Datasette) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response.text(
                f"Method {request.method} not allowed; use GET", 405, headers={"Allow": "GET"}
            )
        return await view(request, datasette)

    return inner


async def dashboard(request: Request, datasette: Datasette) -> Response:
    db = await memory_database(datasette, request)
    now = datetime.now(UTC)
    data = await _read(datasette, db, dashboard_data, now)
    config = plugin.state(datasette).config
    policy = Policy.from_config(config)
    live = await db.execute_fn(lambda conn: space(conn, policy, now=now))
    upkeep = plugin.state(datasette).upkeep
    data["space"] = with_measurement(live, upkeep.space if upkeep is not None else None)
    data["retention"] = policy
    data["rule_words"] = RULE_WORDS
    queries = [{"name": q.name, "title": q.title, "description": q.description} for q in QUERIES]
    return await _render(
        datasette,
        request,
        "claude_mem_dashboard.html",
        {
            "data": data,
            "queries": queries,
            "now": now,
            "database": db.name,
            "worker_process": in_server.status(datasette),
        },
    )


async def session_page(request: Request, datasette: Datasette) -> Response:
    db = await memory_database(datasette, request)
    session_id = tilde_decode(request.url_vars["session_id"])
    links = Links(datasette, db.name)
    data = await _read(datasette, db, session_data, session_id, links)
    if data is None:
        raise NotFound(f"No session {session_id!r} in the memory")
    context = {
        "data": data,
        "database": db.name,
        "may_forget": await may_forget(datasette, request.actor),
    }
    return await _render(datasette, request, "claude_mem_session.html", context)


async def context_preview(request: Request, datasette: Datasette) -> Response:
    db = await memory_database(datasette, request)
    project = (request.args.get("project") or "").strip()
    config = plugin.state(datasette).config
    budget = config.context_budget

    def read(store: Store) -> dict[str, Any]:
        result: dict[str, Any] = {"projects": project_list(store, limit=500)}
        if project:
            context = build_context(store, project, config=config)
            size = len(context.markdown.encode("utf-8"))
            result["context"] = context
            result["bytes"] = size
            result["sections"] = [
                {
                    "key": key,
                    "title": title,
                    "tokens": context.sections.get(key, 0),
                    "budget": budget[key],
                    "percent": min(100, round(100 * context.sections.get(key, 0) / budget[key]))
                    if budget[key]
                    else 0,
                }
                for key, title in SECTIONS
            ]
            result["budget_total"] = sum(budget.values())
            result["bytes_percent"] = min(100, round(100 * size / CLAUDE_CONTEXT_LIMIT))
        return result

    data = await _read(datasette, db, read)
    return await _render(
        datasette,
        request,
        "claude_mem_context.html",
        {
            "data": data,
            "project": project,
            "max_bytes": MAX_BYTES,
            "claude_limit": CLAUDE_CONTEXT_LIMIT,
            "database": db.name,
        },
    )


def _page_or_api(page: Callable, path: str) -> Callable:
    """A page for GET, the API's endpoints of the same path for other methods (a DELETE of
    a session forgets it)."""
    from datasette_claude_mem.api.routes import path_view

    api = path_view(path)

    async def inner(request: Request, datasette: Datasette) -> Response:
        if request.method in ("GET", "HEAD"):
            return await page(request, datasette)
        return await api(request, datasette)

    return inner


def routes() -> list[tuple[str, Callable]]:
    return [
        (rf"^{PREFIX}/?$", _get_only(dashboard)),
        (rf"^{PREFIX}/context-preview$", _get_only(context_preview)),
        (
            rf"^{PREFIX}/sessions/(?P<session_id>[^/]+)$",
            _page_or_api(session_page, "/sessions/{session_id}"),
        ),
    ]


# Menu and row pages


async def menu_links(datasette: Datasette, actor: dict | None) -> list[dict[str, str]]:
    if plugin.memory_database(datasette) is None:
        return []
    allowed = await datasette.allowed(
        action="view-database",
        resource=DatabaseResource(plugin.memory_database_name(datasette)),
        actor=actor,
    )
    if not allowed:
        return []
    return [{"href": datasette.urls.path(PREFIX), "label": MENU_LABEL}]


async def _may_view(datasette: Datasette, request: Request, database: str, table: str) -> bool:
    return await datasette.allowed(
        action="view-table", resource=TableResource(database, table), actor=request.actor
    )


def row_extras_data(store: Store, table: str, pk: str, payloads: bool) -> dict[str, Any]:
    """What a row page shows beyond the row: its related rows, and the payload made readable."""
    extras = overview.row_with_relations(
        store, table, pk, payload_chars=RAW_OUTPUT_SHOWN if payloads else None
    )
    if extras is None:
        return {}
    kind = {"observations": "observation", "learnings": "learning"}.get(table)
    if kind is not None:
        extras["stale"] = bool(store.stale_ids(kind, [pk]))
    payload = extras.get("payload")
    if payload is not None:
        payload["tool_input"] = pretty_json(payload["tool_input"])
        payload["cut"] = len(payload["raw_output"]) >= RAW_OUTPUT_SHOWN
    return extras


async def row_extras(
    datasette: Datasette, request: Request | None, database: str | None, table: str | None
) -> dict[str, Any] | None:
    """Template variables for the memory's row pages: `claude_mem`, or nothing."""
    if request is None or table not in overview.RELATED_TABLES:
        return None
    if database != plugin.memory_database_name(datasette) or "pks" not in request.url_vars:
        return None
    db = plugin.memory_database(datasette)
    if db is None:
        return None
    pk_values = urlsafe_components(request.url_vars["pks"])
    if len(pk_values) != 1:
        return None
    payloads = table == "pending_queue" and await _may_view(
        datasette, request, database, "pending_payloads"
    )
    extras = await _read(datasette, db, row_extras_data, table, pk_values[0], payloads)
    if not extras:
        return None
    return {
        "claude_mem": {
            **extras,
            "links": Links(datasette, database),
            "payloads_allowed": payloads,
            "raw_output_shown": RAW_OUTPUT_SHOWN,
            "may_forget": await may_forget(datasette, request.actor),
        }
    }
