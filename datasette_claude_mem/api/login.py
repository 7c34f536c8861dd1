"""Sign-in links the running server accepts, made by any process that holds its secret.

Datasette's own root link (`--root`) carries a random token that lives only in the server's
memory and works once, so a second link needs a restart. These links are signed with the
secret the server is started with instead: `datasette claude-mem login` makes one, and
/-/claude-mem/login turns it into the root actor's cookie. Each link works once per server
and only until it expires.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from datasette.utils.asgi import Forbidden, Request, Response
from itsdangerous import BadSignature

from datasette_claude_mem import plugin
from datasette_claude_mem.names import PREFIX

if TYPE_CHECKING:
    from datasette.app import Datasette

LOGIN_PATH = f"{PREFIX}/login"
NAMESPACE = "claude-mem-login"
ROOT = "root"
ANOTHER = "make another with: datasette claude-mem login"


def sign_in_link(secret: str, base_url: str, expires_after: int = 600) -> str:
    """A link to base_url's server that signs its user in as root, once, for a while."""
    from datasette.app import Datasette

    ds = Datasette(secret=secret)
    try:
        token = ds.sign(
            {"a": ROOT, "n": secrets.token_urlsafe(16), "e": int(time.time()) + expires_after},
            NAMESPACE,
        )
    finally:
        ds.close()
    return f"{base_url.rstrip('/')}{LOGIN_PATH}?token={token}"


async def login(request: Request, datasette: Datasette) -> Response:
    try:
        claim = datasette.unsign(request.args.get("token") or "", NAMESPACE)
    except BadSignature:
        raise Forbidden("This sign-in link is not valid for this server") from None
    now = time.time()
    if not isinstance(claim, dict) or claim.get("a") != ROOT or not isinstance(claim.get("e"), int):
        raise Forbidden("This sign-in link is not valid for this server")
    if claim["e"] < now:
        raise Forbidden(f"This sign-in link has expired; {ANOTHER}")
    used = plugin.state(datasette).used_sign_in_links
    for nonce in [n for n, expires in used.items() if expires < now]:
        del used[nonce]
    if claim.get("n") in used:
        raise Forbidden(f"This sign-in link has been used; {ANOTHER}")
    used[str(claim.get("n"))] = claim["e"]
    response = Response.redirect(datasette.urls.path(PREFIX))
    datasette.set_actor_cookie(response, {"id": ROOT})
    return response


def routes() -> list[tuple[str, Callable]]:
    return [(rf"^{LOGIN_PATH}$", login)]
