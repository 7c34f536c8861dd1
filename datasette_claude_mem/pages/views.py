"""The memory's HTML pages: the dashboard, a session's page and the context preview.

Each page reads what it shows in one function over a read connection (run by Datasette in
its read thread) and hands plain data to a template; the templates escape everything. The
charts are drawn here as geometry and by the templates as inline SVG: no script, no fetch.
The row pages of observations, learnings and the queue are Datasette's own, with templates
that add a readable view; `row_extras` gives them what they show beyond the row itself.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from datasette.resources import DatabaseResource, TableResource
from datasette.utils import tilde_decode, tilde_encode, urlsafe_components
from datasette.utils.asgi import Forbidden, NotFound, Request, Response

from datasette_claude_mem import plugin
from datasette_claude_mem.claude_code.context import MAX_BYTES, build_context
from datasette_claude_mem.names import MENU_LABEL, PREFIX
from datasette_claude_mem.pages.formatting import (
    count,
    duration,
    json_list,
    parse_ts,
    pretty_json,
    relative_to_project,
    short_project,
)
from datasette_claude_mem.storage.queries import QUERIES, QUERY_SQL

if TYPE_CHECKING:
    from datasette.app import Datasette
    from datasette.database import Database

# Claude Code cuts SessionStart context above this many bytes to a short preview.
CLAUDE_CONTEXT_LIMIT = 10_000
ACTIVITY_DAYS = 14
TIMELINE_LIMIT = 2_000
DASHBOARD_PROJECTS = 50
RAW_OUTPUT_SHOWN = 64 * 1024
ROW_TABLES = ("observations", "learnings", "pending_queue", "sessions")
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
CONTEXT_SECTIONS = (
    ("session_index", "Recent sessions"),
    ("learnings", "Learnings"),
    ("function_map", "Recently changed functions"),
    ("call_graph", "Callers of changed functions"),
    ("observations", "Recent observations"),
)


# Links


class Links:
    """Every URL the pages link to, built from Datasette's URL helpers."""

    def __init__(self, datasette: Datasette, database: str) -> None:
        self.ds = datasette
        self.database = database

    @staticmethod
    def _qs(params: dict[str, Any]) -> str:
        kept = {k: v for k, v in params.items() if v is not None}
        return ("?" + urlencode(kept)) if kept else ""

    def dashboard(self) -> str:
        return self.ds.urls.path(PREFIX)

    def session(self, session_id: str) -> str:
        return self.ds.urls.path(f"{PREFIX}/sessions/{tilde_encode(session_id)}")

    def context_preview(self, project: str | None = None) -> str:
        return self.ds.urls.path(f"{PREFIX}/context-preview") + self._qs({"project": project})

    def context_json(self, project: str) -> str:
        return self.ds.urls.path(f"{PREFIX}/context") + self._qs({"project": project})

    def openapi(self) -> str:
        return self.ds.urls.path(f"{PREFIX}/openapi.json")

    def database_page(self) -> str:
        return self.ds.urls.database(self.database)

    def table(self, table: str, **filters: Any) -> str:
        return self.ds.urls.table(self.database, table) + self._qs(filters)

    def row(self, table: str, pk: str) -> str:
        return self.ds.urls.row(self.database, table, tilde_encode(str(pk)))

    def query(self, name: str, **params: Any) -> str:
        return self.ds.urls.query(self.database, name) + self._qs(params)

    def file(self, path: str, project: str | None) -> str:
        """The function map rows of a file."""
        return self.table(
            "function_map", file_path=relative_to_project(path, project), project=project
        )

    def callers(self, function: str, project: str | None, file: str | None = None) -> str:
        return self.query("callers", project=project or "", function=function, file=file or "")

    def callees(self, function: str, project: str | None, file: str | None = None) -> str:
        return self.query("callees", project=project or "", function=function, file=file or "")


# Charts


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str
    tooltip: str


@dataclass
class Chart:
    title: str
    description: str
    width: int
    height: int
    bars: list[Bar] = field(default_factory=list)
    x_labels: list[tuple[float, float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    value_labels: list[tuple[float, float, str]] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    plot_left: float = 0
    plot_right: float = 0
    plot_bottom: float = 0


def nice_max(value: float) -> int:
    """The axis top: the value rounded up to 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return int(step * power)
    return int(10 * power)  # pragma: no cover - the loop always returns


def activity_chart(days: list[dict[str, Any]]) -> Chart:
    """Grouped bars: tool uses and observations per day."""
    series = (
        ("tool_uses", "Tool uses", "tool use"),
        ("observations", "Observations", "observation"),
    )
    width, height = 480, 200
    left, right, top, bottom = 34, 6, 10, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = nice_max(max([d[key] for d in days for key, _, _ in series] + [0]))
    group = plot_w / max(len(days), 1)
    bar_w = min(12.0, (group - 6) / len(series))
    chart = Chart(
        title=f"Activity over the last {len(days)} days",
        description="Tool uses and observations recorded per day (UTC)",
        width=width,
        height=height,
        legend=[(key, label) for key, label, _ in series],
        plot_left=left,
        plot_right=width - right,
        plot_bottom=top + plot_h,
    )
    for tick in range(5):
        value = top_value * tick / 4
        y = top + plot_h - plot_h * tick / 4
        chart.y_ticks.append((round(y, 1), f"{value:,.0f}" if value == int(value) else ""))
    for i, day in enumerate(days):
        x0 = left + i * group + (group - bar_w * len(series)) / 2
        for j, (key, _, noun) in enumerate(series):
            h = plot_h * day[key] / top_value
            if day[key] and h < 2:
                h = 2.0
            chart.bars.append(
                Bar(
                    x=round(x0 + j * bar_w, 1),
                    y=round(top + plot_h - h, 1),
                    width=round(bar_w - 1, 1),
                    height=round(h, 1),
                    series=key,
                    tooltip=f"{day['day']}: {count(day[key], noun)}",
                )
            )
        if i % 2 == (len(days) - 1) % 2:
            chart.x_labels.append(
                (round(left + i * group + group / 2, 1), height - bottom + 18, day["label"])
            )
    return chart


def queue_chart(states: list[tuple[str, str, int]]) -> Chart:
    """Horizontal bars: how many queue items are in each state."""
    width, row_h = 480, 26
    left, right, top = 84, 48, 4
    height = top * 2 + row_h * len(states)
    plot_w = width - left - right
    top_value = max([count for _, _, count in states] + [1])
    chart = Chart(
        title="Queue depth by state",
        description="Items of the compression queue in each state",
        width=width,
        height=height,
        plot_left=left,
    )
    for i, (key, label, depth) in enumerate(states):
        y = top + i * row_h
        w = plot_w * depth / top_value
        if depth and w < 3:
            w = 3.0
        chart.bars.append(
            Bar(
                x=left,
                y=y + 5,
                width=round(w, 1),
                height=row_h - 10,
                series=key,
                tooltip=f"{label}: {depth:,}",
            )
        )
        chart.x_labels.append((left - 8, y + row_h / 2 + 4, label))
        chart.value_labels.append((round(left + w + 6, 1), y + row_h / 2 + 4, f"{depth:,}"))
    return chart


# Reading


def _rows(conn: sqlite3.Connection, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _one(conn: sqlite3.Connection, sql: str, params: Any = ()) -> dict[str, Any] | None:
    found = _rows(conn, sql, params)
    return found[0] if found else None


def _counts_by(conn: sqlite3.Connection, sql: str, params: Any = ()) -> dict[Any, int]:
    return {key: count for key, count in conn.execute(sql, params).fetchall()}


def read_projects(conn: sqlite3.Connection, limit: int | None = None) -> list[dict[str, Any]]:
    """Every project the memory knows, most recently active first, with its counts."""
    sessions = {
        r["project"]: r
        for r in _rows(
            conn,
            "SELECT project, count(*) AS sessions, max(started_at) AS last_started "
            "FROM sessions GROUP BY project",
        )
    }
    observations = _counts_by(conn, "SELECT project, count(*) FROM observations GROUP BY project")
    learnings = _counts_by(
        conn,
        "SELECT project, count(*) FROM learnings WHERE is_active = 1 AND project IS NOT NULL "
        "GROUP BY project",
    )
    names = set(sessions) | set(observations) | set(learnings)
    projects = [
        {
            "project": name,
            "short": short_project(name),
            "sessions": sessions.get(name, {}).get("sessions", 0),
            "observations": observations.get(name, 0),
            "learnings": learnings.get(name, 0),
            "last_started": sessions.get(name, {}).get("last_started"),
        }
        for name in names
    ]
    projects.sort(key=lambda p: (p["last_started"] or "", p["project"]), reverse=True)
    return projects if limit is None else projects[:limit]


def read_activity(
    conn: sqlite3.Connection, today: date, days: int = ACTIVITY_DAYS
) -> list[dict[str, Any]]:
    since = (today - timedelta(days=days - 1)).isoformat()
    per_day = {
        "tool_uses": "SELECT substr(created_at, 1, 10), count(*) FROM pending_queue "
        "WHERE created_at >= ? GROUP BY 1",
        "observations": "SELECT substr(created_at, 1, 10), count(*) FROM observations "
        "WHERE created_at >= ? GROUP BY 1",
        "sessions": "SELECT substr(started_at, 1, 10), count(*) FROM sessions "
        "WHERE started_at >= ? GROUP BY 1",
        "prompts": "SELECT substr(created_at, 1, 10), count(*) FROM event_log "
        "WHERE event_type = 'UserPromptSubmit' AND created_at >= ? GROUP BY 1",
    }
    counts = {key: _counts_by(conn, sql, [since]) for key, sql in per_day.items()}
    result = []
    for offset in range(days - 1, -1, -1):
        day = today - timedelta(days=offset)
        key = day.isoformat()
        result.append(
            {
                "day": key,
                "label": day.strftime("%b %d").replace(" 0", " "),
                **{name: counts[name].get(key, 0) for name in per_day},
            }
        )
    return result


def read_queue(conn: sqlite3.Connection, now: datetime) -> dict[str, Any]:
    row = _one(conn, QUERY_SQL["queue_stats"], {"project": ""})
    assert row is not None
    row["oldest_waiting_seconds"] = row.pop("oldest_waiting_age_seconds")
    batch = _one(
        conn,
        "SELECT * FROM event_log WHERE event_type = 'worker_batch' "
        "ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    if batch is not None:
        try:
            batch["data"] = json.loads(batch["data"] or "{}")
        except ValueError:
            batch["data"] = {}
    row["last_batch"] = batch
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


def read_dashboard(conn: sqlite3.Connection, now: datetime) -> dict[str, Any]:
    tables = []
    for name, description in TABLES:
        count = conn.execute(f"SELECT count(*) FROM [{name}]").fetchone()[0]
        tables.append({"name": name, "description": description, "count": count})
    sessions = _rows(
        conn,
        # The twelve sessions first, then their first prompts; `+event_type` keeps SQLite
        # on the session index (the event type index would read every prompt ever made).
        """SELECT s.*, (SELECT json_extract(e.data, '$.prompt') FROM event_log e
                WHERE e.session_id = s.id AND +e.event_type = 'UserPromptSubmit'
                ORDER BY e.created_at, e.id LIMIT 1) AS first_prompt
        FROM (SELECT * FROM sessions ORDER BY started_at DESC, id DESC LIMIT 12) s
        ORDER BY s.started_at DESC, s.id DESC""",
    )
    learnings = _rows(
        conn,
        "SELECT * FROM learnings WHERE is_active = 1 "
        "ORDER BY confidence DESC, updated_at DESC, id DESC LIMIT 15",
    )
    active_learnings = conn.execute(
        "SELECT count(*) FROM learnings WHERE is_active = 1"
    ).fetchone()[0]
    days = read_activity(conn, now.date())
    projects = read_projects(conn)
    return {
        "tables": tables,
        "counts": {t["name"]: t["count"] for t in tables},
        "active_learnings": active_learnings,
        "project_count": len(projects),
        "projects": projects[:DASHBOARD_PROJECTS],
        "sessions": sessions,
        "learnings": learnings,
        "queue": read_queue(conn, now),
        "activity": days,
        "activity_chart": activity_chart(days),
        "activity_totals": {
            key: sum(d[key] for d in days)
            for key in ("tool_uses", "observations", "sessions", "prompts")
        },
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


def read_session(conn: sqlite3.Connection, session_id: str, links: Links) -> dict | None:
    session = _one(conn, "SELECT * FROM sessions WHERE id = ?", [session_id])
    if session is None:
        return None
    project = session["project"]
    events = _rows(
        conn,
        "SELECT * FROM event_log WHERE session_id = ? AND event_type != 'PostToolUse' "
        "ORDER BY created_at, id LIMIT ?",
        [session_id, TIMELINE_LIMIT],
    )
    tool_uses = _rows(
        conn,
        "SELECT id, tool_name, tool_use_id, files_touched, status, attempts, max_attempts, "
        "last_error, raw_bytes, created_at, agent_id, agent_type, failure "
        "FROM pending_queue WHERE session_id = ? "
        "ORDER BY created_at, id LIMIT ?",
        [session_id, TIMELINE_LIMIT],
    )
    observations = _rows(
        conn,
        "SELECT id, tool_name, title, summary, files_touched, functions_changed, "
        "tokens_raw, tokens_compressed, created_at, agent_id, agent_type "
        "FROM observations WHERE session_id = ? "
        "ORDER BY created_at, id LIMIT ?",
        [session_id, TIMELINE_LIMIT],
    )
    functions = _rows(
        conn,
        "SELECT id, file_path, qualified_name, kind, signature, change_type, updated_at "
        "FROM function_map WHERE session_id = ? ORDER BY file_path, qualified_name",
        [session_id],
    )
    learnings = _rows(
        conn,
        "SELECT * FROM learnings WHERE source_session_id = ? ORDER BY created_at, id",
        [session_id],
    )
    totals = _one(
        conn,
        """SELECT
            (SELECT count(*) FROM event_log WHERE session_id = :s
                AND +event_type = 'UserPromptSubmit') AS prompts,
            (SELECT count(*) FROM event_log WHERE session_id = :s
                AND event_type != 'PostToolUse') AS events,
            (SELECT count(*) FROM pending_queue WHERE session_id = :s) AS tool_uses,
            (SELECT count(*) FROM observations WHERE session_id = :s) AS observations""",
        {"s": session_id},
    )
    assert totals is not None

    entries: list[TimelineEntry] = []
    for e in events:
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
    for t in tool_uses:
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
    for o in observations:
        entries.append(
            TimelineEntry(
                at=o["created_at"],
                kind="observation",
                title=o["title"],
                text=o["summary"],
                link=links.row("observations", o["id"]),
                badge=o["tool_name"],
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

    files: dict[str, dict[str, Any]] = {}
    for source in (*tool_uses, *observations):
        for path in json_list(source["files_touched"]):
            rel = relative_to_project(path, project)
            files.setdefault(rel, {"path": rel, "functions": []})
    for fn in functions:
        files.setdefault(fn["file_path"], {"path": fn["file_path"], "functions": []})
        files[fn["file_path"]]["functions"].append(fn)
    changed = [f for f in functions if f["change_type"] != "unchanged"]
    agents: dict[str, dict[str, Any]] = {}
    for rows, counted in ((tool_uses, 1), (observations, 0)):
        for source in rows:
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
        "timeline": entries,
        "timeline_truncated": any(
            len(rows) >= TIMELINE_LIMIT for rows in (events, tool_uses, observations)
        ),
        "files": sorted(files.values(), key=lambda f: f["path"]),
        "functions": functions,
        "learnings": learnings,
        "agents": list(agents.values()),
        "counts": {
            **totals,
            "files": len(files),
            "functions": len(functions),
            "functions_changed": len(changed),
            "learnings": len(learnings),
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
    data = await db.execute_fn(lambda conn: read_dashboard(conn, now))
    queries = [{"name": q.name, "title": q.title, "description": q.description} for q in QUERIES]
    return await _render(
        datasette,
        request,
        "claude_mem_dashboard.html",
        {"data": data, "queries": queries, "now": now, "database": db.name},
    )


async def session_page(request: Request, datasette: Datasette) -> Response:
    db = await memory_database(datasette, request)
    session_id = tilde_decode(request.url_vars["session_id"])
    links = Links(datasette, db.name)
    data = await db.execute_fn(lambda conn: read_session(conn, session_id, links))
    if data is None:
        raise NotFound(f"No session {session_id!r} in the memory")
    return await _render(
        datasette, request, "claude_mem_session.html", {"data": data, "database": db.name}
    )


async def context_preview(request: Request, datasette: Datasette) -> Response:
    db = await memory_database(datasette, request)
    project = (request.args.get("project") or "").strip()
    config = plugin.state(datasette).config
    budget = config.context_budget

    def read(conn: sqlite3.Connection) -> dict[str, Any]:
        result: dict[str, Any] = {"projects": read_projects(conn, limit=500)}
        if project:
            context = build_context(plugin.open_store(datasette, conn), project, config=config)
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
                for key, title in CONTEXT_SECTIONS
            ]
            result["budget_total"] = sum(budget.values())
            result["bytes_percent"] = min(100, round(100 * size / CLAUDE_CONTEXT_LIMIT))
        return result

    data = await db.execute_fn(read)
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


def routes() -> list[tuple[str, Callable]]:
    return [
        (rf"^{PREFIX}/?$", _get_only(dashboard)),
        (rf"^{PREFIX}/context-preview$", _get_only(context_preview)),
        (rf"^{PREFIX}/sessions/(?P<session_id>[^/]+)$", _get_only(session_page)),
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


def read_row_extras(conn: sqlite3.Connection, table: str, pk: str, payloads: bool) -> dict:
    """What a row page shows beyond the row: its related rows."""
    extras: dict[str, Any] = {}
    if table == "observations":
        row = _one(conn, "SELECT * FROM observations WHERE id = ?", [pk])
        if row is None:
            return {}
        extras["session"] = _one(
            conn, "SELECT id, status, started_at FROM sessions WHERE id = ?", [row["session_id"]]
        )
        if row["queue_item_id"]:
            extras["queue_item"] = _one(
                conn, "SELECT id, status, tool_name FROM pending_queue WHERE id = ?",
                [row["queue_item_id"]],
            )  # fmt: skip
    elif table == "pending_queue":
        row = _one(conn, "SELECT * FROM pending_queue WHERE id = ?", [pk])
        if row is None:
            return {}
        extras["session"] = _one(
            conn, "SELECT id, status, started_at FROM sessions WHERE id = ?", [row["session_id"]]
        )
        extras["observations"] = _rows(
            conn, "SELECT id, title FROM observations WHERE queue_item_id = ? ORDER BY id", [pk]
        )
        if payloads:
            payload = _one(
                conn,
                "SELECT tool_input, substr(raw_output, 1, ?) AS raw_output, "
                "length(CAST(raw_output AS BLOB)) AS raw_output_bytes "
                "FROM pending_payloads WHERE item_id = ?",
                [RAW_OUTPUT_SHOWN, pk],
            )
            if payload is not None:
                payload["tool_input"] = pretty_json(payload["tool_input"])
                payload["cut"] = len(payload["raw_output"]) >= RAW_OUTPUT_SHOWN
            extras["payload"] = payload
    elif table == "learnings":
        row = _one(conn, "SELECT * FROM learnings WHERE id = ?", [pk])
        if row is None:
            return {}
        if row["source_session_id"]:
            extras["session"] = _one(
                conn, "SELECT id, status, started_at FROM sessions WHERE id = ?",
                [row["source_session_id"]],
            )  # fmt: skip
    elif table == "sessions":
        row = _one(conn, "SELECT * FROM sessions WHERE id = ?", [pk])
        if row is None:
            return {}
    else:
        return {}
    extras["row"] = row
    return extras


async def row_extras(
    datasette: Datasette, request: Request | None, database: str | None, table: str | None
) -> dict[str, Any] | None:
    """Template variables for the memory's row pages: `claude_mem`, or nothing."""
    if request is None or table not in ROW_TABLES:
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
    extras = await db.execute_fn(lambda conn: read_row_extras(conn, table, pk_values[0], payloads))
    if not extras:
        return None
    return {
        "claude_mem": {
            **extras,
            "links": Links(datasette, database),
            "payloads_allowed": payloads,
            "raw_output_shown": RAW_OUTPUT_SHOWN,
        }
    }
