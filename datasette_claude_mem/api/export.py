"""GET /-/claude-mem/export: the memory, or one project of it, as a JSON lines download.

The same lines `datasette claude-mem export` writes (storage/portable.py), streamed from one
snapshot on a connection of its own, so a large memory is never held in memory whole and
the server's writes carry on meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from itertools import islice
from typing import TYPE_CHECKING
from urllib.parse import quote

from datasette.utils.asgi import AsgiStream, Request, Response

from datasette_claude_mem import plugin
from datasette_claude_mem.api.errors import ApiError, error_response
from datasette_claude_mem.api.routes import authorise
from datasette_claude_mem.names import PREFIX
from datasette_claude_mem.storage import portable
from datasette_claude_mem.storage.database import connect

if TYPE_CHECKING:
    from datasette.app import Datasette

EXPORT_PATH = f"{PREFIX}/export"
VIEW_ACTION = "view-database"
LINES_PER_CHUNK = 500
_FLAGS = {"": False, "0": False, "false": False, "1": True, "true": True}


def _chunks(lines: Iterator[bytes]) -> Iterator[str]:
    while chunk := b"".join(islice(lines, LINES_PER_CHUNK)):
        yield chunk.decode("utf-8")


async def _prepare(request: Request, datasette: Datasette) -> AsgiStream:
    db = plugin.memory_database(datasette)
    if db is None or not db.path:
        raise ApiError(404, f"No memory database named {plugin.memory_database_name(datasette)!r}")
    await authorise(datasette, request, VIEW_ACTION)
    project = request.args.get("project")
    if project is not None and not project.strip():
        raise ApiError(400, "project: give a project key, or leave it out for the whole memory")
    flag = (request.args.get("with_queue") or "").lower()
    if flag not in _FLAGS:
        raise ApiError(400, "with_queue: must be 1 or 0")
    if project is not None and not await db.execute_fn(
        lambda conn: portable.project_exists(conn, project)
    ):
        raise ApiError(404, f"No project {project!r} in the memory")
    config = plugin.state(datasette).config
    path = db.path

    async def stream(writer) -> None:
        conn = connect(path, busy_timeout_ms=config.busy_timeout_ms)
        chunks = _chunks(portable.export_lines(conn, project=project, with_queue=_FLAGS[flag]))
        try:
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                await writer.write(chunk)
        finally:
            chunks.close()
            conn.close()

    name = f"claude-mem-{project or 'all'}.jsonl"
    disposition = f"attachment; filename*=UTF-8''{quote(name, safe='')}"
    return AsgiStream(
        stream,
        headers={"Content-Disposition": disposition, "Cache-Control": "no-store"},
        content_type="application/x-ndjson; charset=utf-8",
    )


async def export(request: Request, datasette: Datasette) -> Response | AsgiStream:
    if request.method not in ("GET", "HEAD"):
        return Response.error(
            f"Method {request.method} not allowed; use GET", 405, headers={"Allow": "GET"}
        )
    try:
        return await _prepare(request, datasette)
    except Exception as error:
        response = error_response(error)
        if response is None:
            raise
        return response


def routes() -> list[tuple[str, Callable]]:
    return [(rf"^{EXPORT_PATH}$", export)]
