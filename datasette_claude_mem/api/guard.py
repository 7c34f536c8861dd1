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


def _write_refusal(headers: dict[str, str]) -> str | None:
    """Why a write must be refused as one a browser was tricked into sending, or None.

    A page on another origin is refused by what the browser says of it. A cookie also rides
    along on a form that a page elsewhere submits, and older browsers send no Origin with it:
    such a write needs a same-origin mark or a JSON body (which no form can send across
    sites without a preflight). A browser never adds a Bearer token on its own.
    """
    origin = headers.get("origin")
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site == "cross-site" or (
        origin is not None and urlsplit(origin).netloc.lower() != headers.get("host", "").lower()
    ):
        return "Cross-site requests are not accepted"
    if "cookie" not in headers or headers.get("authorization", "").lower().startswith("bearer "):
        return None
    if origin is not None or fetch_site in OWN_FETCH_SITES:
        return None
    if headers.get("content-type", "").split(";")[0].strip().lower() == "application/json":
        return None
    return (
        "A write signed in by cookie must come from this server's own pages "
        "(an Origin or Sec-Fetch-Site header) or send JSON; scripts should use a Bearer token"
    )


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
            refusal = _write_refusal(headers)
            if refusal is not None:
                await _refuse(send, 403, refusal)
                return
        await app(scope, receive, send)

    return guarded
