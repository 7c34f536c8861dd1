"""Shared fixtures: a fresh memory under a temporary CLAUDE_MEM_DIR for every test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from shared import stop_process

from datasette_claude_mem.config import Config
from datasette_claude_mem.store import Store

HELPERS = Path(__file__).parent / "helpers"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    base = tmp_path / "claude-mem"
    monkeypatch.setenv("CLAUDE_MEM_DIR", str(base))
    monkeypatch.delenv("CLAUDE_MEM_PROJECT", raising=False)
    cfg = Config()
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
    from datasette_claude_mem.models import SessionStart

    project_dir = tmp_path / "repo"
    (project_dir / ".git").mkdir(parents=True)
    return store.create_session(SessionStart(project_dir=str(project_dir))).row


@pytest.fixture
def python() -> str:
    """The interpreter running the tests, for child processes."""
    return sys.executable


# The HTTP tests' fixtures (a Datasette over a fresh memory, tokens): see fixtures_server.py.
from fixtures_server import *  # noqa: E402, F403

# Real `datasette claude-mem serve` processes, for the end-to-end tests of the hooks, the
# command-hook script and the spool (tests/test_hooks_server.py, test_hook_script.py, ...).


class MemServer:
    """One `datasette claude-mem serve` over CLAUDE_MEM_DIR=base_dir on a free loopback port.

    Stopped (and restarted) on demand; the `mem_server_factory` fixture always terminates it.
    Its own worker is off unless asked for, so queue items stay as the hooks left them.
    """

    def __init__(self, base_dir: Path, log_path: Path, *, worker: bool = False) -> None:
        import socket

        from datasette_claude_mem.cli import create_token, ensure_secret

        self.base_dir = base_dir
        self.log_path = log_path
        config = Config(base_dir=base_dir)
        config.ensure_dirs()
        self.token = create_token(ensure_secret(config))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_MEM_", "DATASETTE_"))
        }
        self.env.update(CLAUDE_MEM_DIR=str(base_dir), CLAUDE_MEM_WORKER="1" if worker else "0")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.base_dir / "claude-mem.db"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def start(self, timeout: float = 60.0) -> MemServer:
        import httpx

        assert self.proc is None, "already running"
        datasette = Path(sys.executable).with_name("datasette")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(datasette), "claude-mem", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                output = self.log_path.read_text(errors="replace")
                self.proc = None
                raise RuntimeError(f"the server exited at start:\n{output}")
            try:
                if httpx.get(self.url + "/-/claude-mem/openapi.json", timeout=2).is_success:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not answer within {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)
        self.proc = None

    def restart(self) -> MemServer:
        self.stop()
        return self.start()

    def request(self, method: str, path: str, **kwargs: Any):
        import httpx

        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=60, **kwargs)

    def hook(self, payload: Any = None, **kwargs: Any):
        """POST one hook event (a dict as JSON, or raw content=...) to the hooks route."""
        if payload is not None:
            kwargs["json"] = payload
        return self.request("POST", "/-/claude-mem/hooks", **kwargs)


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
