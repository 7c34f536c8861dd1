"""Fixtures for the HTTP tests: a Datasette over a fresh memory file, and tokens for it.

conftest.py star-imports this module, so every test module gets these fixtures. The
instance is configured exactly as `datasette claude-mem serve` configures it (the packaged
datasette.yaml), with a fixed secret so tokens can be made in the test.
"""

from __future__ import annotations

import copy
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from datasette.app import Datasette
from datasette.tokens import TokenRestrictions

import datasette_claude_mem

__all__ = [
    "API",
    "SECRET",
    "api_call",
    "assert_error",
    "auth",
    "bearer",
    "ds",
    "make_ds",
    "memory_path",
    "other_token",
    "query_rows",
    "restricted_token",
    "serve_config",
    "session_id",
    "token",
]

SECRET = "test-secret-for-claude-mem"
API = "/-/claude-mem"
SERVE_CONFIG_PATH = Path(datasette_claude_mem.__file__).parent / "datasette.yaml"

MakeDs = Callable[..., Awaitable[Datasette]]


def load_serve_config() -> dict[str, Any]:
    return yaml.safe_load(SERVE_CONFIG_PATH.read_text(encoding="utf-8"))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def empty_sqlite_file(path: Path) -> Path:
    """Datasette opens files read-write but will not create them: make an empty one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sqlite3.connect(path).close()
    return path


@pytest.fixture
def serve_config() -> dict[str, Any]:
    return load_serve_config()


@pytest.fixture
def memory_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty file named as the memory database is (claude-mem.db).

    Its directory is CLAUDE_MEM_DIR, so nothing reaches the user's own ~/.claude-mem; the
    in-server queue worker is off, so queue items stay as the tests leave them.
    """
    for name in ("CLAUDE_MEM_PROJECT", "CLAUDE_MEM_ALLOWED_HOSTS", "CLAUDE_MEM_SYNCHRONOUS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLAUDE_MEM_DIR", str(tmp_path / "mem"))
    monkeypatch.setenv("CLAUDE_MEM_WORKER", "0")
    return empty_sqlite_file(tmp_path / "mem" / "claude-mem.db")


@pytest_asyncio.fixture
async def make_ds(serve_config: dict[str, Any]) -> AsyncIterator[MakeDs]:
    """Make (and start) Datasette instances; every one made is closed after the test."""
    made: list[Datasette] = []

    async def make(
        *paths: Path | str,
        config: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
        plugin: dict[str, Any] | None = None,
        start: bool = True,
        secret: str = SECRET,
    ) -> Datasette:
        cfg = copy.deepcopy(serve_config if config is None else config)
        if plugin:
            cfg.setdefault("plugins", {}).setdefault("datasette-claude-mem", {}).update(plugin)
        instance = Datasette(
            [str(p) for p in paths], config=cfg, secret=secret, settings=settings or {}
        )
        made.append(instance)
        if start:
            await instance.invoke_startup()
        return instance

    yield make
    for instance in made:
        instance.close()


@pytest_asyncio.fixture
async def ds(make_ds: MakeDs, memory_path: Path) -> Datasette:
    return await make_ds(memory_path)


@pytest_asyncio.fixture
async def token(ds: Datasette) -> str:
    """The hooks' actor, claude-mem, which the serve configuration lets write."""
    return await ds.create_token("claude-mem")


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return bearer(token)


@pytest_asyncio.fixture
async def other_token(ds: Datasette) -> str:
    """A valid token for an actor the configuration gives no rights."""
    return await ds.create_token("somebody-else")


@pytest_asyncio.fixture
async def restricted_token(ds: Datasette) -> str:
    """The claude-mem actor, but a token restricted to viewing tables."""
    return await ds.create_token(
        "claude-mem", restrictions=TokenRestrictions().allow_all("view-table")
    )


async def api_call(
    ds: Datasette,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    content: bytes | str | None = None,
):
    """One request to the plugin's API (path relative to /-/claude-mem)."""
    all_headers = dict(headers or {})
    if token is not None:
        all_headers.update(bearer(token))
    kwargs: dict[str, Any] = {"headers": all_headers}
    if content is not None:
        kwargs["content"] = content
    elif body is not None:
        kwargs["json"] = body
    return await ds.client.request(method, API + path, **kwargs)


@pytest_asyncio.fixture
async def session_id(ds: Datasette, token: str, tmp_path: Path) -> str:
    """An active session, started through the API, in a project directory of its own."""
    project_dir = tmp_path / "repo"
    (project_dir / ".git").mkdir(parents=True, exist_ok=True)
    response = await api_call(
        ds, "POST", "/sessions", {"id": "sess-1", "project_dir": str(project_dir)}, token=token
    )
    assert response.status_code == 201, response.text
    return response.json()["row"]["id"]


async def query_rows(
    ds: Datasette, sql: str, params: Any = None, database: str = "claude-mem"
) -> list[dict[str, Any]]:
    """Rows straight from the memory database, not through the API."""
    db = ds.get_database(database)
    return [dict(row) for row in (await db.execute(sql, params or [])).rows]


def assert_error(response: Any, status: int, *mentions: str, case: Any = None) -> dict[str, Any]:
    """An error in Datasette's shape, with this status, whose messages mention each word.

    `case` (the input that was sent) is shown when the check fails, for tests that loop.
    """
    where = f"case {case!r}: " if case is not None else ""
    assert response.status_code == status, f"{where}{response.status_code} {response.text}"
    body = response.json()
    assert body["ok"] is False, where
    assert body["status"] == status, where
    assert isinstance(body["errors"], list) and body["errors"], where
    assert isinstance(body["error"], str) and body["error"], where
    text = " ".join(body["errors"])
    for word in mentions:
        assert word in text, f"{where}{word!r} not mentioned in {body['errors']!r}"
    return body
