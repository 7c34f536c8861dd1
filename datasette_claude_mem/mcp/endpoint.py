"""The MCP route: Datasette authenticates the request, the official SDK speaks the protocol.

The SDK's session manager needs a running task group. Datasette gives plugins no lifespan
to hold one, so each event loop that serves the route starts its own manager once, in a
task that lives as long as the loop (the real server has one loop; each test has its own).
Stateless JSON mode: no session state between requests, every call is checked afresh.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import TYPE_CHECKING, Any

from datasette.utils.asgi import Request, Response

from datasette_claude_mem import plugin
from datasette_claude_mem.api.errors import ApiError
from datasette_claude_mem.api.routes import authorise
from datasette_claude_mem.mcp.caller import SCOPE_KEY, Caller
from datasette_claude_mem.names import MCP_PATH

if TYPE_CHECKING:
    from datasette.app import Datasette
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager


class _Running:
    """A session manager running inside a task on one event loop."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self.manager = manager
        self.ready = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run(), name="claude-mem-mcp")

    async def _run(self) -> None:
        try:
            async with self.manager.run():
                self.ready.set()
                await asyncio.Event().wait()  # until the loop ends and cancels it
        finally:
            self.ready.set()  # a manager that failed to start must not leave callers waiting

    async def started(self) -> StreamableHTTPSessionManager:
        await self.ready.wait()
        if self.task.done():
            raise RuntimeError("the MCP session manager stopped")
        return self.manager


async def session_manager(datasette: Datasette) -> StreamableHTTPSessionManager:
    """The manager for the running loop, started on first use. The SDK is imported then, in
    a thread: it takes a second or more, which neither the server's start nor the hooks
    answered meanwhile should wait for."""
    loop = asyncio.get_running_loop()
    managers: dict[Any, _Running] = plugin.state(datasette).mcp_managers
    running = managers.get(loop)
    if running is None or running.task.done():
        for gone in [key for key in managers if key.is_closed()]:
            del managers[gone]
        tools = await asyncio.to_thread(importlib.import_module, "datasette_claude_mem.mcp.tools")
        from mcp.server.transport_security import TransportSecuritySettings

        running = managers.get(loop)  # another request may have started it meanwhile
        if running is not None and not running.task.done():
            return await running.started()
        server = tools.make_server()
        # The Host and Origin checks are the plugin's own (api/guard.py), for every route.
        server.streamable_http_app(
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        running = managers[loop] = _Running(server.session_manager)
    return await running.started()


async def mcp_view(scope: dict, receive: Any, send: Any, request: Request, datasette: Datasette):
    """Refuse callers without read access before any MCP message is read; the tools check
    the permission each needs again on every call."""
    if plugin.memory_database(datasette) is None:
        return Response.error(
            f"No memory database named {plugin.memory_database_name(datasette)!r}", 404
        )
    try:
        await authorise(datasette, request, "view-database")
    except ApiError as error:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return Response.error(error.messages, error.status, headers=headers)
    manager = await session_manager(datasette)
    scope = {**scope, SCOPE_KEY: Caller(datasette, request)}
    await manager.handle_request(scope, receive, send)
    return None


def routes() -> list[tuple[str, Any]]:
    return [(f"^{MCP_PATH}$", mcp_view)]
