"""The fake Messages API answers in the API's shapes (so a failing Claude Code test is about
the memory, not the fake): streamed and plain tool_use turns chosen from the conversation,
count_tokens, compaction, side requests, and a log of every request."""

from __future__ import annotations

import json

import httpx
import pytest
from fake_anthropic import COMPACT_SUMMARY, SIDE_TEXT, FakeAnthropic, Script, ToolCall

TOOLS = [{"name": "Read", "description": "read", "input_schema": {"type": "object"}}]


@pytest.fixture
def fake():
    server = FakeAnthropic([Script("MARK-1", [ToolCall("Read", {"file_path": "a.py"})])]).start()
    yield server
    server.stop()


def sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for chunk in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def post(fake: FakeAnthropic, body: dict, path: str = "/v1/messages") -> httpx.Response:
    return httpx.post(fake.url + path + "?beta=true", json=body, timeout=10)


def test_a_streamed_turn_is_the_scripted_tool_use_then_the_closing_text(fake) -> None:
    first = {"role": "user", "content": [{"type": "text", "text": "MARK-1 go"}]}
    response = post(fake, {"model": "m", "stream": True, "tools": TOOLS, "messages": [first]})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    block = events[1][1]["content_block"]
    assert block["type"] == "tool_use" and block["name"] == "Read"
    assert json.loads(events[2][1]["delta"]["partial_json"]) == {"file_path": "a.py"}
    assert events[4][1]["delta"]["stop_reason"] == "tool_use"

    result = {"type": "tool_result", "tool_use_id": block["id"], "content": "1 line"}
    turn = [first, {"role": "assistant", "content": [block]}, {"role": "user", "content": [result]}]
    answer = post(fake, {"model": "m", "tools": TOOLS, "messages": turn}).json()
    assert answer["stop_reason"] == "end_turn"
    assert answer["content"] == [{"type": "text", "text": "Done."}]
    assert [entry.answered for entry in fake.log] == ["script:MARK-1:0", "script:MARK-1:1"]


def test_side_requests_compaction_and_count_tokens(fake) -> None:
    side = {"model": "m", "messages": [{"role": "user", "content": "title for MARK-1"}]}
    assert post(fake, side).json()["content"][0]["text"] == SIDE_TEXT  # no tools: a side call
    words = "Respond with TEXT ONLY. Do NOT call any tools. Write a <summary> of it."
    compact = {"model": "m", "tools": TOOLS, "messages": [{"role": "user", "content": words}]}
    assert COMPACT_SUMMARY in post(fake, compact).json()["content"][0]["text"]
    counted = post(fake, side, "/v1/messages/count_tokens").json()
    assert counted["input_tokens"] > 0
    assert [entry.answered for entry in fake.log] == ["side", "compact", "count_tokens"]
    assert fake.log[0].body == side and fake.log[0].method == "POST"
