"""A scripted stand-in for the Anthropic Messages API on 127.0.0.1, for driving the real
Claude Code CLI without a model.

Claude Code's main loop sends the whole conversation on every turn, so the answer to a request
is chosen from the request alone: the last prompt that names a script (a marker word in the
user's text) picks it, and the number of assistant turns since that prompt is the step. Each step
is a tool_use turn (Claude Code then really runs the tool and sends its result back) or the
closing text. Requests that belong to no script (titles, summaries, Claude Code's other side
calls) get a short text. Every request is logged, headers and body, for the tests to read.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SIDE_TEXT = "ok"
COMPACT_SUMMARY = "Compacted: the assistant read, edited and tested the demo repository."


@dataclass
class ToolCall:
    """One tool_use turn: Claude Code runs `name` with `input` under this id.

    Either may be a function of the request being answered, for a turn that uses what an
    earlier tool answered (an id it listed) or what Claude Code offers (a tool's name).
    """

    name: str | Callable[[dict[str, Any]], str]
    input: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]
    id: str = ""


@dataclass
class Script:
    """The turns for a conversation whose first user text contains `marker`."""

    marker: str
    steps: list[ToolCall]
    final_text: str = "Done."


@dataclass
class Logged:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    answered: str = ""  # "script:MARKER:STEP", "side" or "count_tokens"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if isinstance(block, dict):
            if block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif block.get("type") == "tool_result":
                parts.append(_text_of(block.get("content")))
    return "\n".join(parts)


def request_text(body: Any) -> str:
    """Everything the model would read in a request: system prompt and every message."""
    if not isinstance(body, dict):
        return ""
    system = body.get("system")
    texts = [_text_of(system) if not isinstance(system, str) else system]
    texts += [_text_of(m.get("content")) for m in body.get("messages", []) if isinstance(m, dict)]
    return "\n".join(texts)


def _prompt_text(message: Any) -> str:
    """The text a user message says itself: its text blocks, not the tool results it carries."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    return "\n".join(
        str(b.get("text", ""))
        for b in content or []
        if isinstance(b, dict) and b.get("type") == "text"
    )


def is_compaction(body: dict[str, Any]) -> bool:
    """Claude Code's request to summarise the conversation so far (/compact): text only."""
    messages = body.get("messages") or []
    if not messages or messages[-1].get("role") != "user":
        return False
    last = _prompt_text(messages[-1])
    return "<summary>" in last and "Do NOT call any tools" in last


@dataclass
class FakeAnthropic:
    """The fake API server; `start()` binds a free loopback port."""

    scripts: list[Script] = field(default_factory=list)
    log: list[Logged] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeAnthropic:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                fake._record(self, None, "get")
                self._send_json(404, {"type": "error", "error": {"type": "not_found_error"}})

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {"unparsed": raw.decode("utf-8", "replace")}
                path = self.path.split("?", 1)[0]
                if path.endswith("/count_tokens"):
                    fake._record(self, body, "count_tokens")
                    self._send_json(200, {"input_tokens": len(request_text(body)) // 4 + 1})
                    return
                if not path.endswith("/v1/messages"):
                    fake._record(self, body, "unknown")
                    self._send_json(404, {"type": "error", "error": {"type": "not_found_error"}})
                    return
                blocks, stop, answered = fake.answer(body)
                fake._record(self, body, answered)
                message = fake._message(body, blocks, stop)
                if body.get("stream"):
                    self._send_stream(message)
                else:
                    self._send_json(200, message)

            def _send_json(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _send_stream(self, message: dict[str, Any]) -> None:
                events = list(stream_events(message))
                data = b"".join(
                    f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()
                    for name, payload in events
                )
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _record(self, handler: BaseHTTPRequestHandler, body: Any, answered: str) -> None:
        with self._lock:
            self.log.append(
                Logged(handler.command, handler.path, dict(handler.headers.items()), body, answered)
            )

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            self._ids += 1
            return f"{prefix}_fake{self._ids:06d}"

    def script_for(self, body: dict[str, Any]) -> tuple[Script, int] | None:
        """The script of the newest prompt that names one, and the step reached in it."""
        messages = body.get("messages") or []
        if not body.get("tools"):
            return None
        for index in range(len(messages) - 1, -1, -1):
            message = messages[index]
            if message.get("role") != "user":
                continue
            text = _prompt_text(message)
            script = next((s for s in self.scripts if s.marker in text), None)
            if script is not None:
                later = messages[index + 1 :]
                return script, sum(1 for m in later if m.get("role") == "assistant")
        return None

    def answer(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str]:
        """The content blocks, stop reason and log label for one /v1/messages request."""
        if is_compaction(body):
            text = f"<analysis>short</analysis>\n<summary>{COMPACT_SUMMARY}</summary>"
            return [{"type": "text", "text": text}], "end_turn", "compact"
        found = self.script_for(body)
        if found is None:
            return [{"type": "text", "text": SIDE_TEXT}], "end_turn", "side"
        script, step = found
        label = f"script:{script.marker}:{step}"
        if step >= len(script.steps):
            return [{"type": "text", "text": script.final_text}], "end_turn", label
        call = script.steps[step]
        if not call.id:
            call.id = self._next_id("toolu")
        name = call.name(body) if callable(call.name) else call.name
        arguments = call.input(body) if callable(call.input) else call.input
        block = {"type": "tool_use", "id": call.id, "name": name, "input": arguments}
        return [block], "tool_use", label

    def _message(
        self, body: dict[str, Any], blocks: list[dict[str, Any]], stop: str
    ) -> dict[str, Any]:
        return {
            "id": self._next_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-fake"),
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": len(request_text(body)) // 4 + 1, "output_tokens": 8},
        }

    def model_requests(self, marker: str | None = None) -> list[Logged]:
        """The requests answered from a script (the main loop's and subagents' turns)."""
        with self._lock:
            entries = list(self.log)
        prefix = "script:" if marker is None else f"script:{marker}:"
        return [entry for entry in entries if entry.answered.startswith(prefix)]


def stream_events(message: dict[str, Any]):
    """The SSE events of a streamed Messages API answer, in the order the API sends them."""
    head = {**message, "content": [], "stop_reason": None}
    head["usage"] = {**message["usage"], "output_tokens": 1}
    yield "message_start", {"type": "message_start", "message": head}
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            start = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        yield (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": start},
        )
        yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": message["usage"]["output_tokens"]},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def tool_session(
    repo: Path, main: str, sub: str, answer: str, *, extra: list[ToolCall] = ()
) -> list[Script]:
    """The scripted session the end-to-end tests and the benchmark play: it makes Claude
    Code really Read, Edit, Write, run Bash (the second command fails), Grep, Glob, any
    extra tools, and start a subagent (turn `sub`) that runs Bash."""
    return [
        Script(sub, [ToolCall("Bash", {"command": "ls", "description": "List"})], "Sub."),
        Script(
            main,
            [
                ToolCall("Read", {"file_path": str(repo / "calc.py")}),
                ToolCall(
                    "Edit",
                    {
                        "file_path": str(repo / "calc.py"),
                        "old_string": "return a + b",
                        "new_string": "return b + a",
                    },
                ),
                ToolCall("Write", {"file_path": str(repo / "notes.txt"), "content": "notes\n"}),
                ToolCall("Bash", {"command": "git status --short", "description": "Status"}),
                ToolCall("Bash", {"command": "cat no_such_file.txt", "description": "Fails"}),
                ToolCall("Grep", {"pattern": "def add", "path": str(repo)}),
                ToolCall("Glob", {"pattern": "*.py"}),
                *extra,
                ToolCall(
                    "Agent",
                    {
                        "description": "List the files",
                        "prompt": f"{sub}: list the files",
                        "subagent_type": "general-purpose",
                    },
                ),
            ],
            answer,
        ),
    ]
