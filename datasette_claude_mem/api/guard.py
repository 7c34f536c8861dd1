"""Refuse requests that a browser was tricked into sending.

DNS rebinding makes a hostile page's own host name resolve to 127.0.0.1, so its requests
reach this server with a Host header that is not one the server is served as. A page on
another origin can also make a browser POST here. Both are refused before Datasette sees them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from datasette.utils.asgi import Response

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# What a browser says of a request made by this server's own pages or typed by the user.
OWN_FETCH_SITES = {"same-origin", "none"}

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]


def _host_name(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def host_allowed(host: str | None, allowed: Iterable[str]) -> bool:
    """Host names are compared without their ports: the port is the server's own business."""
    if not host:
        return False
    name = _host_name(host)
    return any(name == _host_name(a) for a in allowed)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def _refuse(send: Callable, status: int, message: str) -> None:
    await Response.error(message, status).asgi_send(send)


def _cookie_write_of_unknown_origin(headers: dict[str, str]) -> bool:
    """A cookie rides along on any form a page elsewhere submits, and old browsers send no
    Origin with it: without a same-origin mark or a JSON body (which a form cannot send
    across sites without a preflight), the cookie cannot be taken as the user's intent.
    A Bearer token is never sent by a browser on its own, so such requests pass."""
    if "cookie" not in headers or headers.get("authorization", "").lower().startswith("bearer "):
        return False
    if headers.get("origin") is not None or headers.get("sec-fetch-site") in OWN_FETCH_SITES:
        return False
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    return content_type != "application/json"


def guard(app: ASGIApp, allowed_hosts: Callable[[], Iterable[str]]) -> ASGIApp:
    """Wrap an ASGI app with the Host and Origin checks."""

    async def guarded(scope: Scope, receive: Callable, send: Callable) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        headers = _headers(scope)
        hosts = allowed_hosts()  # lower case
        host = headers.get("host")
        if "*" not in hosts and not host_allowed(host, hosts):
            await _refuse(
                send,
                400,
                f"This server is not served as {host!r}; add it to the plugin's "
                "allowed_hosts setting if it should be.",
            )
            return
        if scope.get("method", "GET").upper() not in SAFE_METHODS:
            origin = headers.get("origin")
            if headers.get("sec-fetch-site") == "cross-site" or (
                origin is not None and urlsplit(origin).netloc.lower() != (host or "").lower()
            ):
                await _refuse(send, 403, "Cross-site requests are not accepted")
                return
            if _cookie_write_of_unknown_origin(headers):
                await _refuse(
                    send,
                    403,
                    "A write signed in by cookie must come from this server's own pages "
                    "(an Origin or Sec-Fetch-Site header) or send JSON; "
                    "scripts should use a Bearer token",
                )
                return
        await app(scope, receive, send)

    return guarded
