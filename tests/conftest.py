"""Fixtures every test may use: a fresh memory, a store on it, a Datasette instance over it
with tokens, and real memory server processes."""

from __future__ import annotations

import copy
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from datasette.app import Datasette
from datasette.tokens import TokenRestrictions
from helpers import (
    SECRET,
    MakeDs,
    MemServer,
    api_call,
    bearer,
    empty_sqlite_file,
    load_serve_config,
    mount_tmpfs,
    unmount,
)

from datasette_claude_mem.settings import Config
from datasette_claude_mem.storage.store import Store


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    base = tmp_path / "claude-mem"
    monkeypatch.setenv("CLAUDE_MEM_DIR", str(base))
    monkeypatch.delenv("CLAUDE_MEM_PROJECT", raising=False)
    cfg = Config.load()
    cfg.ensure_dirs()
    return cfg


@pytest.fixture
def store(config: Config):
    s = Store(config.db_path)
    yield s
    s.close()


@pytest.fixture
def session(store: Store, tmp_path: Path):
    """An active session in a project directory of its own."""
    from datasette_claude_mem.storage.models import SessionStart

    project_dir = tmp_path / "repo"
    (project_dir / ".git").mkdir(parents=True)
    return store.create_session(SessionStart(project_dir=str(project_dir))).row


@pytest.fixture
def python() -> str:
    """The interpreter running the tests, for child processes."""
    return sys.executable


@pytest.fixture
def mem_server_factory(tmp_path: Path):
    """Make MemServer instances (started); every one is terminated after the test."""
    made: list[MemServer] = []

    def make(base_dir: Path | None = None, *, worker: bool = False, start: bool = True):
        index = len(made)
        base = base_dir or tmp_path / f"server-{index}"
        server = MemServer(base, tmp_path / f"server-{index}.log", worker=worker)
        made.append(server)
        return server.start() if start else server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def mem_server(mem_server_factory) -> MemServer:
    """A running memory server over a fresh CLAUDE_MEM_DIR."""
    return mem_server_factory()


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


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs of the test's own; the test is skipped where none may be mounted."""
    target = tmp_path / "tmpfs"
    target.mkdir()
    if not mount_tmpfs(target):
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        yield target
    finally:
        unmount(target)
