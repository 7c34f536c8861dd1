"""Forgetting from the pages: a project's page (what it holds, and forgetting it whole or
before a date) and the one form every forget button posts to.

The buttons are plain forms with a confirmation; the post needs the write permission, and
the Host and cross-origin checks of api/guard.py and Datasette's own run before it. A refused
or bad post answers Datasette's JSON error; a forget done sends the person back with a message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from datasette.utils import tilde_decode
from datasette.utils.asgi import NotFound, Request, Response

from datasette_claude_mem import plugin
from datasette_claude_mem.api.errors import ApiError, error_response
from datasette_claude_mem.api.routes import actor_name, authorise
from datasette_claude_mem.names import PREFIX, WRITE_ACTION
from datasette_claude_mem.pages.formatting import short_project
from datasette_claude_mem.pages.links import Links
from datasette_claude_mem.pages.views import may_forget, memory_database
from datasette_claude_mem.storage.forget import SCOPE_KINDS, ForgetRequest, Tombstone

if TYPE_CHECKING:
    from datasette.app import Datasette

FORM_FIELDS = ("kind", "id", "project", "before", "reason")
KIND_LABELS = {
    "session": "Sessions, with their tool uses, observations, events and prompts",
    "observation": "Observations and tool uses",
    "learning": "Learnings",
    "note": "Saved notes",
    "event": "Events and prompts",
    "document": "Indexed documents",
}


async def project_page(request: Request, datasette: Datasette) -> Response:
    if request.method not in ("GET", "HEAD"):
        return Response.text(
            f"Method {request.method} not allowed; use GET", 405, headers={"Allow": "GET"}
        )
    db = await memory_database(datasette, request)
    project = tilde_decode(request.url_vars["project"])
    data = await db.execute_fn(
        lambda conn: plugin.open_store(datasette, conn).project_holdings(project)
    )
    if data is None:
        raise NotFound(f"No project {project!r} in the memory")
    context = {
        "project": project,
        "project_short": short_project(project),
        "data": data,
        "total": sum(data["counts"].values()),
        "kind_labels": KIND_LABELS,
        "may_forget": await may_forget(datasette, request.actor),
        "links": Links(datasette, db.name),
        "database": db.name,
    }
    html = await datasette.render_template("claude_mem_project.html", context, request=request)
    return Response.html(html, headers={"Cache-Control": "private, no-store"})


def _form_request(body: bytes) -> tuple[ForgetRequest, str | None]:
    """The forget a form asks for, and where to go after it."""
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError as error:
        raise ApiError(400, "The form is not UTF-8") from error
    data: dict[str, Any] = {
        name: form[name][0].strip() for name in FORM_FIELDS if form.get(name, [""])[0].strip()
    }
    kinds = [k for k in form.get("kinds", []) if k]
    if form.get("kinds_shown") and not kinds:
        # Every box unticked means nothing, not everything.
        raise ApiError(400, "kinds: tick at least one kind of thing to forget")
    if kinds and set(kinds) != set(SCOPE_KINDS):
        data["kinds"] = kinds
    back = (form.get("next") or [None])[0]
    return ForgetRequest.model_validate(data), back


def _safe_back(datasette: Datasette, back: str | None) -> str:
    """Only back to one of the memory's own pages, never to another site."""
    home = datasette.urls.path(PREFIX)
    if back and back.startswith(home) and "//" not in back and "\\" not in back:
        return back
    return home


def forgot_message(tombstone: Tombstone) -> str:
    rows = ", ".join(f"{n} {table}" for table, n in tombstone.counts.items())
    return f"Forgot {tombstone.count} rows for good ({rows or 'nothing matched'})"


async def forget_form(request: Request, datasette: Datasette) -> Response:
    """The forget buttons' post: forget, then back to the page with what went."""
    try:
        if request.method != "POST":
            raise ApiError(405, f"Method {request.method} not allowed; use POST")
        if plugin.memory_database(datasette) is None:
            raise ApiError(404, "No memory database")
        await authorise(datasette, request, WRITE_ACTION)
        wanted, back = _form_request(await request.post_body())
        by = actor_name(request.actor)
        tombstone = await plugin.write(datasette, lambda store: store.erase(wanted, by))
    except Exception as error:
        response = error_response(error)
        if response is None:
            raise
        if response.status == 405:
            response.headers["Allow"] = "POST"
        return response
    datasette.add_message(request, forgot_message(tombstone), datasette.INFO)
    return Response.redirect(_safe_back(datasette, back))


def routes() -> list[tuple[str, Callable]]:
    return [
        (rf"^{PREFIX}/projects/(?P<project>[^/]+)$", project_page),
        (rf"^{PREFIX}/forget/form$", forget_form),
    ]
