"""Who is calling an MCP tool: the route puts it in the ASGI scope, the tools read it there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from datasette.utils.asgi import Request

if TYPE_CHECKING:
    from datasette.app import Datasette

SCOPE_KEY = "claude_mem_caller"


@dataclass
class Caller:
    """Who is calling, handed to the tools through the ASGI scope: the SDK runs tools in
    its own task, where nothing of the route's task is visible but the request."""

    datasette: Datasette
    request: Request

    @property
    def actor(self) -> dict[str, Any] | None:
        return self.request.actor
