"""What the benchmark scripts share: server processes, free ports, percentiles, and a
description of the run.

The scripts run as `python bench/NAME.py`, so this file is importable beside them.
"""

from __future__ import annotations

import http.client
import os
import platform
import socket
import sqlite3
import subprocess
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` (0 to 1) of the values lie: nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def machine() -> str:
    """The system, its CPU count and CPU model, for a results file."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs ({cpu})"
    )


def versions(*packages: str) -> dict[str, str]:
    """Python's, SQLite's and each package's version ('-' when it is not installed)."""
    found = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "-"
    return found


def memory_env(base: Path, worker: bool = False) -> dict[str, str]:
    """The environment of a memory server over `base`: its worker off unless asked for, and
    nothing of the caller's own claude-mem or Datasette settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_MEM_", "DATASETTE_"))}
    env.update(CLAUDE_MEM_DIR=str(base), CLAUDE_MEM_WORKER="1" if worker else "0")
    return env


class ServerProcess:
    """A server child process on 127.0.0.1, its output in `log`; see wait() and stop()."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], port: int, log: Path):
        self.name = name
        self.port = port
        self.env = env
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                args, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def wait(self, path: str, timeout: float = 120.0) -> ServerProcess:
        """Until GET path answers below 500; a server that never does is stopped."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text(errors='replace')}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                try:
                    conn.request("GET", path)
                    if conn.getresponse().status < 500:
                        return self
                finally:
                    conn.close()
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not answer in {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)


# ASGI helpers for the bare apps the benchmarks measure against.

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


async def serve_lifespan(receive: Receive, send: Send) -> None:
    """Answer uvicorn's lifespan messages until shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def echo_app(scope: dict, receive: Receive, send: Send) -> None:
    """Reads the whole body and answers {}: what any request costs before any work."""
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    await read_body(receive)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})
