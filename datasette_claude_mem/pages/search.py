"""The search page: a box, the memory's hits linked to their rows, the query's words marked.

It calls the same search as the JSON API. Snippets come marked with characters no text holds;
they are split here into plain and marked pieces, and the template escapes every piece.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from datasette.utils.asgi import Request, Response

from datasette_claude_mem import plugin
from datasette_claude_mem.names import PREFIX
from datasette_claude_mem.pages.links import Links
from datasette_claude_mem.pages.views import memory_database, project_list
from datasette_claude_mem.storage.models import SearchHit, format_ts
from datasette_claude_mem.storage.search import (
    HTML_MARKS,
    KINDS,
    MODES,
    TYPES,
    SearchError,
    search,
)

if TYPE_CHECKING:
    from datasette.app import Datasette

PAGE_PATH = f"{PREFIX}/find"
KIND_LABELS = {
    "observation": "Observations",
    "learning": "Learnings",
    "session": "Session summaries",
    "prompt": "Prompts",
    "note": "Saved notes",
    "doc": "Documents",
}


def pieces(snippet: str) -> list[tuple[str, bool]]:
    """The snippet as (text, is_a_match) pieces, from the marks the search put around matches."""
    start, end = HTML_MARKS
    result = []
    for i, chunk in enumerate(snippet.split(start)):
        if i == 0:
            result.append((chunk, False))
            continue
        marked, _, rest = chunk.partition(end)
        result += [(marked, True), (rest, False)]
    return [(text, marked) for text, marked in result if text]


def hit_link(links: Links, hit: SearchHit) -> str:
    if hit.kind == "session":
        return links.session(hit.id)
    table = {
        "observation": "observations",
        "learning": "learnings",
        "prompt": "prompts",
        "note": "memory_entries",
        "doc": "doc_chunks",
    }
    return links.row(table[hit.kind], hit.id)


def _form(request: Request) -> dict[str, Any]:
    args = request.args
    chosen = [k for k in args.getlist("kinds") if k] or list(KINDS)
    return {
        "q": (args.get("q") or "").strip(),
        "project": (args.get("project") or "").strip(),
        "mode": args.get("mode") or "",
        "kinds": chosen,
        "types": [t for t in args.getlist("types") if t],
        "limit": args.get("limit") or "20",
        "since": args.get("since") or "",
    }


async def search_page(request: Request, datasette: Datasette) -> Response:
    if request.method not in ("GET", "HEAD"):
        return Response.text("Use GET", 405, headers={"Allow": "GET"})
    db = await memory_database(datasette, request)
    links = Links(datasette, db.name)
    form = _form(request)
    semantic = plugin.semantic_search(datasette)
    error, status = None, 200
    try:
        limit = int(form["limit"])
        since = format_ts(datetime.fromisoformat(form["since"])) if form["since"] else None
    except ValueError:
        error, status = "limit must be a whole number and since an ISO 8601 date", 400
        limit, since = 20, None

    def read(conn: sqlite3.Connection) -> dict[str, Any]:
        projects = project_list(plugin.open_store(datasette, conn), limit=500)
        data: dict[str, Any] = {"projects": projects, "result": None}
        if form["q"] and error is None:
            data["result"] = search(
                conn,
                form["q"],
                project=form["project"] or None,
                kinds=form["kinds"],
                types=form["types"],
                since=since,
                limit=limit,
                mode=form["mode"] or None,
                semantic=semantic,
                marks=HTML_MARKS,
            )
        return data

    try:
        data = await db.execute_fn(read)
    except SearchError as problem:
        error, status = str(problem), 400
        data = await db.execute_fn(
            lambda conn: {"projects": project_list(plugin.open_store(datasette, conn), 500)}
        )
        data["result"] = None
    hits = []
    if data["result"] is not None:
        hits = [
            {
                "hit": hit,
                "href": hit_link(links, hit),
                "pieces": pieces(hit.snippet),
                "at": format_ts(hit.created_at),
            }
            for hit in data["result"].hits
        ]
    context = {
        "links": links,
        "database": db.name,
        "form": form,
        "data": data,
        "hits": hits,
        "error": error,
        "kinds": [(k, KIND_LABELS[k]) for k in KINDS],
        "modes": MODES,
        "types": TYPES,
        "semantic_available": semantic is not None and semantic.available_reason() is None,
        "api_url": _api_url(datasette, form),
    }
    html = await datasette.render_template("claude_mem_search.html", context, request=request)
    return Response.html(html, status=status, headers={"Cache-Control": "private, no-store"})


def _api_url(datasette: Datasette, form: dict[str, Any]) -> str:
    """The same search through the JSON API."""
    params = {"q": form["q"], "project": form["project"], "mode": form["mode"]}
    params.update({"since": form["since"], "limit": form["limit"]})
    if set(form["kinds"]) != set(KINDS):
        params["kinds"] = ",".join(form["kinds"])
    if form["types"]:
        params["types"] = ",".join(form["types"])
    kept = {key: value for key, value in params.items() if value}
    return datasette.urls.path(f"{PREFIX}/search") + "?" + urlencode(kept)


def routes() -> list[tuple[str, Callable]]:
    return [(rf"^{PAGE_PATH}$", search_page)]
