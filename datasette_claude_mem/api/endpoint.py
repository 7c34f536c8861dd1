"""What an API endpoint is (its method, path, models and permission) and what its handler
is given: the routes list them, the OpenAPI document describes them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datasette.utils.asgi import Request, Response
from pydantic import BaseModel

from datasette_claude_mem import plugin
from datasette_claude_mem.names import WRITE_ACTION

if TYPE_CHECKING:
    from datasette.app import Datasette

    from datasette_claude_mem.storage.store import Store


@dataclass
class Call:
    """One request to an endpoint, with its validated body and URL variables."""

    request: Request
    datasette: Datasette
    params: dict[str, str]
    body: Any = None
    raw: dict[str, Any] | None = None  # the JSON object as sent, before validation

    async def write(self, fn: Callable[[Store], Any]) -> Any:
        return await plugin.write(self.datasette, fn)


Handler = Callable[[Call], Awaitable[Response]]


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    returns: type[BaseModel] | None = None
    # Other shapes the row may take (DELETE /learnings/{id} with hard answers a Tombstone).
    also_returns: tuple[type[BaseModel], ...] = ()
    many: bool = False
    statuses: tuple[int, ...] = (200,)
    permission: str | None = WRITE_ACTION
    raw_response: bool = False
    max_body_bytes: int | None = None
    query: dict[str, str] = field(default_factory=dict)
    optional_query: dict[str, str] = field(default_factory=dict)
