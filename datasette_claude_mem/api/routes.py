"""The JSON write API under /-/claude-mem/: parse, validate, authorise, call the store, answer.

Each endpoint is declared once, in ENDPOINTS; the router, the 405 answers and the OpenAPI
description are all made from that table, so they cannot disagree.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from datasette.resources import DatabaseResource
from datasette.utils.asgi import Request, Response
from pydantic import BaseModel, ValidationError

from datasette_claude_mem import plugin
from datasette_claude_mem.api.endpoint import Call, Endpoint
from datasette_claude_mem.api.errors import ApiError, error_response, validation_messages
from datasette_claude_mem.names import PREFIX
from datasette_claude_mem.storage.database import Saved, to_json
from datasette_claude_mem.storage.forget import (
    ForgetOne,
    ForgetRequest,
    LearningDelete,
    Tombstone,
)
from datasette_claude_mem.storage.models import (
    CallGraphEdge,
    EdgesAdd,
    EventCreate,
    EventLogEntry,
    FunctionMapEntry,
    FunctionMapUpsert,
    HookInput,
    HookOutput,
    Learning,
    LearningCreate,
    LearningUpdate,
    Observation,
    ObservationCreate,
    QueueClaim,
    QueueComplete,
    QueueFail,
    QueueItem,
    QueueItemCreate,
    QueueRetry,
    Session,
    SessionClose,
    SessionStart,
    format_ts,
    new_id,
)
from datasette_claude_mem.storage.search import SearchResult
from datasette_claude_mem.storage.store import Store

if TYPE_CHECKING:
    from datasette.app import Datasette

JSON_TYPE = "application/json; charset=utf-8"


def json_response(body: Any, status: int = 200) -> Response:
    """Response.json through the store's encoder: a claimed batch can be large."""
    return Response(to_json(body), status=status, content_type=JSON_TYPE)


def ok(row: BaseModel | None = None, status: int = 200, **extra: Any) -> Response:
    body: dict[str, Any] = {"ok": True}
    if row is not None:
        body["row"] = row.model_dump(mode="json")
    body.update(extra)
    return json_response(body, status=status)


def ok_rows(rows: list[BaseModel], **extra: Any) -> Response:
    return json_response({"ok": True, "rows": [r.model_dump(mode="json") for r in rows], **extra})


def saved(result: Saved) -> Response:
    """201 when this request created the row, 200 when an identical one was already there."""
    return ok(result.row, status=201 if result.created else 200, created=result.created)


# Handlers


async def start_session(call: Call) -> Response:
    return saved(await call.write(lambda s: s.create_session(call.body)))


async def close_session(call: Call) -> Response:
    data: SessionClose = call.body
    session_id = call.params["session_id"]
    session = await call.write(lambda s: s.close_session(session_id, data.summary, data.status))
    return ok(session)


async def create_observation(call: Call) -> Response:
    return saved(await call.write(lambda s: s.create_observation(call.body)))


async def enqueue(call: Call) -> Response:
    result = await call.write(lambda s: s.enqueue(call.body))
    return saved(result)


async def claim(call: Call) -> Response:
    data: QueueClaim = call.body
    items = await call.write(
        lambda s: s.claim(
            data.n, worker=data.worker, lease_seconds=data.lease_seconds, project=data.project
        )
    )
    return ok_rows(items)


async def complete(call: Call) -> Response:
    data: QueueComplete = call.body
    item_id = call.params["item_id"]
    item, observation = await call.write(
        lambda s: s.complete(item_id, data.worker, data.observation)
    )
    return ok(item, observation=observation.model_dump(mode="json") if observation else None)


async def fail(call: Call) -> Response:
    data: QueueFail = call.body
    item_id = call.params["item_id"]
    return ok(await call.write(lambda s: s.fail(item_id, data.worker, data.error)))


async def retry_failed(call: Call) -> Response:
    data: QueueRetry = call.body
    count = await call.write(lambda s: s.retry_failed(data.project, data.dead_letters))
    return ok(requeued=count)


async def upsert_functions(call: Call) -> Response:
    return ok_rows(await call.write(lambda s: s.upsert_functions(call.body)))


async def add_edges(call: Call) -> Response:
    return ok_rows(await call.write(lambda s: s.add_edges(call.body)))


async def create_learning(call: Call) -> Response:
    return saved(await call.write(lambda s: s.create_learning(call.body)))


async def update_learning(call: Call) -> Response:
    learning_id = call.params["learning_id"]
    return ok(await call.write(lambda s: s.update_learning(learning_id, call.body)))


async def delete_learning(call: Call) -> Response:
    learning_id = call.params["learning_id"]
    data: LearningDelete = call.body
    if data.hard:
        wanted = ForgetRequest(kind="learning", id=learning_id, reason=data.reason)
        return await _erase(call, wanted)
    return ok(await call.write(lambda s: s.soft_delete_learning(learning_id)))


def actor_name(actor: dict | None) -> str:
    """Who asked, as a tombstone records it: the actor's id."""
    return str((actor or {}).get("id") or "anonymous")


async def _erase(call: Call, request: ForgetRequest) -> Response:
    by = actor_name(call.request.actor)
    return ok(await call.write(lambda s: s.erase(request, by)))


def _forget_one(kind: str, param: str) -> Callable:
    """The handler of a DELETE that forgets one row of a kind, named by a URL variable."""

    async def handler(call: Call) -> Response:
        data: ForgetOne = call.body
        wanted = ForgetRequest(kind=kind, id=call.params[param], reason=data.reason)
        return await _erase(call, wanted)

    handler.__name__ = f"forget_{kind}"
    return handler


async def forget(call: Call) -> Response:
    return await _erase(call, call.body)


async def log_event(call: Call) -> Response:
    data: EventCreate = call.body

    def run(store: Store) -> EventLogEntry:
        return store.log_event(
            data.event_type,
            data.data,
            session_id=data.session_id,
            project=data.project,
            duration_ms=data.duration_ms,
            tokens_in=data.tokens_in,
            tokens_out=data.tokens_out,
        )

    return ok(await call.write(run), status=201)


# The hook route may carry a whole tool output (a Read of a big file): far more than
# Datasette's 2 MiB default body limit.
HOOK_MAX_BODY_BYTES = 64 * 1024 * 1024


async def hook(call: Call) -> Response:
    from datasette_claude_mem.claude_code.events import handle_hook

    config = plugin.state(call.datasette).config
    # The event as Claude Code sent it (validation checked its common fields): copying a
    # large tool response through the model would only cost time.
    payload = call.raw
    # Its id is chosen here, so that the spool and this write store it once between them.
    event_id = new_id()
    stored = asyncio.ensure_future(
        call.write(lambda s: handle_hook(s, payload, config=config, event_id=event_id))
    )
    done, _ = await asyncio.wait({stored}, timeout=config.hook_wait_seconds)
    if not done:
        # Another program holds the write lock: Claude Code will not wait for it.
        return json_response(
            await plugin.keep_hook_event(call.datasette, payload, event_id, stored)
        )
    return json_response(stored.result().output)


async def context(call: Call) -> Response:
    from datasette_claude_mem.claude_code.context import build_context

    project = call.request.args.get("project")
    if not project:
        raise ApiError(400, "project: the project key is required (?project=...)")
    db = plugin.memory_database(call.datasette)

    def build(conn: sqlite3.Connection) -> dict:
        return build_context(plugin.open_store(call.datasette, conn), project).as_json()

    return json_response({"ok": True, **await db.execute_fn(build)})


async def search_memory(call: Call) -> Response:
    from datasette_claude_mem.storage.search import SearchError, search

    args = call.request.args
    query = (args.get("q") or "").strip()
    if not query:
        raise ApiError(400, "q: the words to search for are required (?q=...)")
    try:
        limit = int(args.get("limit") or 20)
    except ValueError as error:
        raise ApiError(400, "limit: must be a whole number") from error
    since = args.get("since") or None
    if since is not None:
        try:
            since = format_ts(datetime.fromisoformat(since))
        except ValueError as error:
            raise ApiError(400, f"since: {since!r} is not an ISO 8601 date or time") from error
    semantic = plugin.semantic_search(call.datasette)
    db = plugin.memory_database(call.datasette)

    def run(conn: sqlite3.Connection) -> dict:
        found = search(
            conn,
            query,
            project=args.get("project") or None,
            kinds=args.get("kinds") or None,
            types=args.get("types") or None,
            since=since,
            limit=limit,
            mode=args.get("mode") or None,
            semantic=semantic,
        )
        return found.model_dump(mode="json")

    try:
        return json_response(await db.execute_fn(run))
    except SearchError as error:
        raise ApiError(400, str(error)) from error


async def openapi(call: Call) -> Response:
    from datasette_claude_mem.api.openapi import openapi_document

    kept = plugin.state(call.datasette)
    if kept.openapi is None:
        kept.openapi = orjson.dumps(openapi_document(ENDPOINTS, PREFIX))
    return Response(kept.openapi, content_type=JSON_TYPE)


ENDPOINTS: list[Endpoint] = [
    Endpoint("POST", "/sessions", start_session, "Start or resume a session", SessionStart,
             Session, statuses=(201, 200)),
    Endpoint("POST", "/sessions/{session_id}/close", close_session,
             "Close a session and checkpoint the WAL", SessionClose, Session),
    Endpoint("DELETE", "/sessions/{session_id}", _forget_one("session", "session_id"),
             "Forget a session for good, with everything recorded in it", ForgetOne,
             Tombstone),
    Endpoint("POST", "/observations", create_observation, "Store an observation",
             ObservationCreate, Observation, statuses=(201, 200)),
    Endpoint("DELETE", "/observations/{observation_id}",
             _forget_one("observation", "observation_id"),
             "Forget an observation for good, with its tool use", ForgetOne, Tombstone),
    Endpoint("POST", "/queue", enqueue, "Queue a raw tool use for compression",
             QueueItemCreate, QueueItem, statuses=(201, 200)),
    Endpoint("POST", "/queue/claim", claim, "Claim a batch of waiting items under a lease",
             QueueClaim, QueueItem, many=True),
    Endpoint("POST", "/queue/{item_id}/complete", complete,
             "Mark a claimed item done, optionally with its observation", QueueComplete,
             QueueItem),
    Endpoint("POST", "/queue/{item_id}/fail", fail,
             "Record a failed attempt: retried later, or a dead letter", QueueFail, QueueItem),
    Endpoint("POST", "/queue/retry", retry_failed,
             "Send failed items whose backoff has passed back to the queue", QueueRetry),
    Endpoint("POST", "/functions", upsert_functions,
             "Record a file's functions, detecting what changed", FunctionMapUpsert,
             FunctionMapEntry, many=True),
    Endpoint("POST", "/edges", add_edges, "Add call graph edges", EdgesAdd, CallGraphEdge,
             many=True),
    Endpoint("POST", "/learnings", create_learning, "Record a learning", LearningCreate,
             Learning, statuses=(201, 200)),
    Endpoint("PATCH", "/learnings/{learning_id}", update_learning, "Update a learning",
             LearningUpdate, Learning),
    Endpoint("DELETE", "/learnings/{learning_id}", delete_learning,
             "Retire a learning (soft delete), or with hard, delete it for good",
             LearningDelete, Learning, also_returns=(Tombstone,)),
    Endpoint("DELETE", "/notes/{note_id}", _forget_one("note", "note_id"),
             "Forget a note for good, every version of its key", ForgetOne, Tombstone),
    Endpoint("POST", "/forget", forget,
             "Forget for good: a project, everything before a date, or one row by kind and id",
             ForgetRequest, Tombstone),
    Endpoint("POST", "/events", log_event, "Record an event", EventCreate, EventLogEntry,
             statuses=(201,)),
    Endpoint("POST", "/hooks", hook, "Take a Claude Code hook event; answer with hook output",
             HookInput, HookOutput, raw_response=True, max_body_bytes=HOOK_MAX_BODY_BYTES),
    Endpoint("GET", "/context", context,
             "The memory context a new session of a project starts with",
             permission="view-database", query={"project": "The project key"}),
    Endpoint("GET", "/search", search_memory,
             "Search the memory: keyword, semantic or hybrid, best first",
             returns=SearchResult, raw_response=True, permission="view-database",
             query={"q": "The words to search for"},
             optional_query={
                 "project": "Only this project's hits (and global learnings)",
                 "mode": "keyword, semantic or hybrid (default: hybrid when embeddings are "
                         "installed, else keyword)",
                 "kinds": "Comma-separated: observation, learning, session, prompt, note, doc "
                          "(default all)",
                 "types": "Comma-separated observation types: bugfix, feature, refactor, "
                          "change, test, discovery, decision, failure, config (only "
                          "observations of those types)",
                 "since": "Only hits created at or after this ISO 8601 UTC time",
                 "limit": "How many hits, 1 to 200 (default 20)",
             }),
    Endpoint("GET", "/openapi.json", openapi, "This API's OpenAPI description",
             permission=None),
]  # fmt: skip


# Dispatch


async def _read_body(request: Request, endpoint: Endpoint) -> Any:
    raw = await request.post_body(max_bytes=endpoint.max_body_bytes)
    if not raw.strip():
        if endpoint.body is not None and not any(
            f.is_required() for f in endpoint.body.model_fields.values()
        ):
            return {}
        raise ApiError(400, "A JSON object body is required")
    try:
        data = orjson.loads(raw)
        if _maybe_lossy(data):
            raise ValueError("an integer orjson read as a float")
    except orjson.JSONDecodeError as error:
        if "depth limit" in str(error):
            # Deeper than any store or page can take; the standard library would read it
            # only to fail later, differently on each Python version.
            raise ApiError(400, "The body's JSON is nested too deeply") from error
        data = _standard_json(raw)
    except ValueError:
        data = _standard_json(raw)
    if not isinstance(data, dict):
        raise ApiError(400, "The body must be a JSON object")
    return data


def _standard_json(raw: bytes) -> Any:
    """The standard library takes what orjson refuses or reads lossily: integers beyond 64
    bits, lone surrogates, NaN. Its message is the one a client sees."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(400, f"The body is not valid JSON: {error}") from error
    except RecursionError as error:
        raise ApiError(400, "The body's JSON is nested too deeply") from error


def _maybe_lossy(value: Any) -> bool:
    """Whether orjson may have read an integer beyond 64 bits as a float (it does so
    silently); a float that large in the body is re-read by the standard library."""
    if isinstance(value, float):
        return abs(value) >= 2**63
    if isinstance(value, dict):
        return any(_maybe_lossy(v) for v in value.values())
    if isinstance(value, list):
        return any(_maybe_lossy(v) for v in value)
    return False


# Checking a permission runs SQL in a thread pool: about a third of a write's time. Answers
# are kept for a few seconds per actor (its token restrictions included), so a permission
# taken away stops working within PERMISSION_TTL_SECONDS.
PERMISSION_TTL_SECONDS = 5.0
_PERMISSION_CACHE_SIZE = 1024


async def _allowed(datasette: Datasette, actor: dict | None, action: str) -> bool:
    cache = plugin.state(datasette).permissions
    key = (action, orjson.dumps(actor, default=str, option=orjson.OPT_SORT_KEYS))
    now = time.monotonic()
    hit = cache.get(key)
    if hit is not None and hit[1] > now:
        return hit[0]
    allowed = await datasette.allowed(
        action=action,
        resource=DatabaseResource(plugin.memory_database_name(datasette)),
        actor=actor,
    )
    if len(cache) >= _PERMISSION_CACHE_SIZE:
        cache.clear()
    cache[key] = (allowed, now + PERMISSION_TTL_SECONDS)
    return allowed


async def authorise(datasette: Datasette, request: Request, action: str) -> None:
    allowed = await _allowed(datasette, request.actor, action)
    if allowed:
        return
    if request.actor is None:
        if request.headers.get("authorization"):
            raise ApiError(401, "The token was not accepted: it is malformed, bad or expired")
        raise ApiError(401, "A token is required: send Authorization: Bearer <token>")
    raise ApiError(403, f"Permission denied: this actor may not {action}")


async def _dispatch(endpoint: Endpoint, request: Request, datasette: Datasette) -> Response:
    if plugin.memory_database(datasette) is None:
        raise ApiError(404, f"No memory database named {plugin.memory_database_name(datasette)!r}")
    if endpoint.permission is not None:
        await authorise(datasette, request, endpoint.permission)
    call = Call(request=request, datasette=datasette, params=dict(request.url_vars))
    if endpoint.body is not None:
        data = await _read_body(request, endpoint)
        call.raw = data
        try:
            call.body = endpoint.body.model_validate(data)
        except ValidationError as error:
            raise ApiError(400, validation_messages(error)) from error
    return await endpoint.handler(call)


async def answer(endpoint: Endpoint, request: Request, datasette: Datasette) -> Response:
    """Run an endpoint, turning every failure a client can cause into a JSON error."""
    try:
        return await _dispatch(endpoint, request, datasette)
    except Exception as error:
        response = error_response(error)
        if response is None:
            raise
        return response


def _route_regex(path: str) -> str:
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", PREFIX + path)
    return f"^{pattern}$"


# Paths whose GET is a page (pages/views.py routes them and hands the API's methods here).
PAGE_PATHS = frozenset({"/sessions/{session_id}"})


def _by_path() -> dict[str, dict[str, Endpoint]]:
    by_path: dict[str, dict[str, Endpoint]] = {}
    for endpoint in ENDPOINTS:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint
    return by_path


def routes() -> list[tuple[str, Callable]]:
    """One Datasette route per path; methods it does not take get 405 with Allow."""
    return [
        (_route_regex(path), _view(methods))
        for path, methods in _by_path().items()
        if path not in PAGE_PATHS
    ]


def path_view(path: str) -> Callable:
    """The API's methods of a path whose GET is a page."""
    return _view(_by_path()[path], also_allowed=("GET",))


def _view(methods: dict[str, Endpoint], also_allowed: tuple[str, ...] = ()) -> Callable:
    allow = ", ".join(sorted({*methods, *also_allowed}))

    async def view(request: Request, datasette: Datasette) -> Response:
        endpoint = methods.get(request.method)
        if endpoint is None and request.method == "HEAD":
            endpoint = methods.get("GET")
        if endpoint is None:
            return Response.error(
                f"Method {request.method} not allowed; use {allow}", 405, headers={"Allow": allow}
            )
        return await answer(endpoint, request, datasette)

    return view
