"""The queue of raw tool outputs: /queue, /queue/claim, /queue/{id}/complete|fail, /queue/retry."""

from __future__ import annotations

import asyncio
import json

import pytest
from datasette.app import Datasette
from helpers import api_call, assert_error, query_rows


def item(session_id: str, tool_use_id: str = "tu-1", **fields) -> dict:
    return {
        "session_id": session_id,
        "tool_use_id": tool_use_id,
        "tool_name": "Read",
        "tool_input": {"file_path": "src/app.py"},
        "raw_output": "def main():\n    pass\n",
        "files_touched": ["src/app.py"],
        **fields,
    }


async def enqueue(ds: Datasette, token: str, session_id: str, *ids: str) -> list[dict]:
    rows = []
    for tool_use_id in ids:
        response = await api_call(ds, "POST", "/queue", item(session_id, tool_use_id), token=token)
        assert response.status_code == 201, response.text
        rows.append(response.json()["row"])
    return rows


async def claim(ds: Datasette, token: str, **body) -> list[dict]:
    response = await api_call(ds, "POST", "/queue/claim", body, token=token)
    assert response.status_code == 200, response.text
    return response.json()["rows"]


@pytest.mark.asyncio
async def test_enqueue_then_repeat_is_idempotent(ds: Datasette, token: str, session_id: str):
    body = item(session_id, max_attempts=4)
    first = await api_call(ds, "POST", "/queue", body, token=token)
    assert first.status_code == 201, first.text
    assert first.json()["created"] is True
    row = first.json()["row"]
    assert row["session_id"] == session_id
    assert row["tool_use_id"] == "tu-1"
    assert row["status"] == "raw"
    assert row["attempts"] == 0 and row["max_attempts"] == 4
    assert row["files_touched"] == ["src/app.py"]
    assert row["raw_bytes"] == len(body["raw_output"].encode())
    stored = await query_rows(ds, "SELECT * FROM pending_queue")
    assert [r["id"] for r in stored] == [row["id"]]
    payload = await query_rows(ds, "SELECT * FROM pending_payloads")
    assert payload[0]["item_id"] == row["id"]
    assert json.loads(payload[0]["tool_input"]) == {"file_path": "src/app.py"}
    assert payload[0]["raw_output"] == body["raw_output"]

    again = await api_call(ds, "POST", "/queue", body, token=token)
    assert again.status_code == 200, again.text
    assert again.json()["created"] is False
    assert again.json()["row"]["id"] == row["id"]
    assert await query_rows(ds, "SELECT count(*) AS n FROM pending_queue") == [{"n": 1}]


@pytest.mark.asyncio
async def test_enqueue_without_tool_use_id_always_adds(ds: Datasette, token: str, session_id: str):
    body = item(session_id)
    del body["tool_use_id"]
    for _ in range(2):
        response = await api_call(ds, "POST", "/queue", body, token=token)
        assert response.status_code == 201
    assert await query_rows(ds, "SELECT count(*) AS n FROM pending_queue") == [{"n": 2}]


@pytest.mark.asyncio
async def test_enqueue_for_unknown_session_is_404(ds: Datasette, token: str):
    response = await api_call(ds, "POST", "/queue", item("ghost"), token=token)
    assert_error(response, 404, "ghost")


INVALID_ITEMS = [
    ({"tool_name": ""}, ["tool_name"]),
    ({"tool_input": ["a"]}, ["tool_input"]),
    ({"raw_output": None}, ["raw_output"]),
    ({"max_attempts": 0}, ["max_attempts"]),
    ({"max_attempts": 101}, ["max_attempts"]),
    ({"truncated": "maybe"}, ["truncated"]),
    ({"tool_use_id": ""}, ["tool_use_id"]),
    ({"status": "done"}, ["status"]),
    ({"tool_name": 1, "files_touched": [None], "x": 1}, ["tool_name", "files_touched.0", "x"]),
]


@pytest.mark.asyncio
async def test_invalid_queue_item_names_each_field(ds: Datasette, token: str, session_id: str):
    for change, fields in INVALID_ITEMS:
        response = await api_call(ds, "POST", "/queue", {**item(session_id), **change}, token=token)
        assert_error(response, 400, *fields, case=change)
    assert await query_rows(ds, "SELECT count(*) AS n FROM pending_queue") == [{"n": 0}]


@pytest.mark.asyncio
async def test_claim_gives_oldest_first_with_payloads(ds: Datasette, token: str, session_id: str):
    made = await enqueue(ds, token, session_id, "a", "b", "c")
    rows = await claim(ds, token, worker="w1", n=2, lease_seconds=60)
    assert [r["id"] for r in rows] == [made[0]["id"], made[1]["id"]]
    for row in rows:
        assert row["status"] == "processing"
        assert row["lease_owner"] == "w1"
        assert row["attempts"] == 1
        assert row["lease_expires_at"] is not None
        assert row["tool_input"] == {"file_path": "src/app.py"}
        assert row["raw_output"].startswith("def main")
    stored = await query_rows(ds, "SELECT tool_use_id, status, lease_owner FROM pending_queue")
    assert sorted((r["tool_use_id"], r["status"], r["lease_owner"]) for r in stored) == [
        ("a", "processing", "w1"),
        ("b", "processing", "w1"),
        ("c", "raw", None),
    ]
    rest = await claim(ds, token, worker="w2", n=5)
    assert [r["tool_use_id"] for r in rest] == ["c"]
    assert await claim(ds, token, worker="w3") == []


@pytest.mark.asyncio
async def test_claim_with_empty_body_uses_defaults(ds: Datasette, token: str, session_id: str):
    await enqueue(ds, token, session_id, *[f"t{i}" for i in range(7)])
    response = await api_call(ds, "POST", "/queue/claim", token=token, content=b"")
    assert response.status_code == 200, response.text
    rows = response.json()["rows"]
    assert len(rows) == 5
    assert {r["lease_owner"] for r in rows} == {"api"}


@pytest.mark.asyncio
async def test_claim_by_project(ds: Datasette, token: str, session_id: str):
    await enqueue(ds, token, session_id, "a")
    assert await claim(ds, token, project="another-project") == []
    project = (await query_rows(ds, "SELECT project FROM sessions"))[0]["project"]
    assert len(await claim(ds, token, project=project)) == 1


INVALID_CLAIMS = [
    ({"n": 0}, ["n"]),
    ({"n": 501}, ["n"]),
    ({"n": "five"}, ["n"]),
    ({"lease_seconds": 0}, ["lease_seconds"]),
    ({"lease_seconds": 86401}, ["lease_seconds"]),
    ({"worker": ""}, ["worker"]),
    ({"n": -1, "worker": 3, "greedy": True}, ["n", "worker", "greedy"]),
]


@pytest.mark.asyncio
async def test_invalid_claim_names_each_field(ds: Datasette, token: str, session_id: str):
    await enqueue(ds, token, session_id, "a")
    for body, fields in INVALID_CLAIMS:
        response = await api_call(ds, "POST", "/queue/claim", body, token=token)
        assert_error(response, 400, *fields, case=body)
    assert await query_rows(ds, "SELECT status FROM pending_queue") == [{"status": "raw"}]


@pytest.mark.asyncio
async def test_complete_with_an_observation(ds: Datasette, token: str, session_id: str):
    (made,) = await enqueue(ds, token, session_id, "a")
    await claim(ds, token, worker="w1")
    observation = {
        "session_id": session_id,
        "tool_name": "Read",
        "title": "Read app.py",
        "summary": "main() does nothing yet",
    }
    response = await api_call(
        ds,
        "POST",
        f"/queue/{made['id']}/complete",
        {"worker": "w1", "observation": observation},
        token=token,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["row"]["status"] == "done"
    assert answer["row"]["lease_owner"] is None
    assert answer["row"]["completed_at"] is not None
    assert answer["observation"]["queue_item_id"] == made["id"]
    assert answer["observation"]["title"] == "Read app.py"
    stored = await query_rows(ds, "SELECT queue_item_id, title FROM observations")
    assert stored == [{"queue_item_id": made["id"], "title": "Read app.py"}]
    queue = await query_rows(ds, "SELECT status FROM pending_queue WHERE id = ?", [made["id"]])
    assert queue == [{"status": "done"}]

    # Completing it again: it is no longer held by anyone.
    again = await api_call(
        ds, "POST", f"/queue/{made['id']}/complete", {"worker": "w1"}, token=token
    )
    assert_error(again, 409, "not held")


@pytest.mark.asyncio
async def test_complete_without_observation(ds: Datasette, token: str, session_id: str):
    (made,) = await enqueue(ds, token, session_id, "a")
    await claim(ds, token, worker="w1")
    response = await api_call(
        ds, "POST", f"/queue/{made['id']}/complete", {"worker": "w1"}, token=token
    )
    assert response.status_code == 200, response.text
    assert response.json()["observation"] is None
    assert response.json()["row"]["status"] == "done"


@pytest.mark.asyncio
async def test_complete_by_the_wrong_worker_is_409(ds: Datasette, token: str, session_id: str):
    (made,) = await enqueue(ds, token, session_id, "a")
    await claim(ds, token, worker="w1")
    response = await api_call(
        ds, "POST", f"/queue/{made['id']}/complete", {"worker": "w2"}, token=token
    )
    assert_error(response, 409, "w2")
    stored = await query_rows(ds, "SELECT status, lease_owner FROM pending_queue")
    assert stored == [{"status": "processing", "lease_owner": "w1"}]


@pytest.mark.asyncio
async def test_complete_of_an_unclaimed_item_is_409(ds: Datasette, token: str, session_id: str):
    (made,) = await enqueue(ds, token, session_id, "a")
    response = await api_call(
        ds, "POST", f"/queue/{made['id']}/complete", {"worker": "w1"}, token=token
    )
    assert_error(response, 409, "raw")


@pytest.mark.asyncio
async def test_complete_after_the_lease_expired_and_another_worker_claimed(
    ds: Datasette, token: str, session_id: str
):
    (made,) = await enqueue(ds, token, session_id, "a")
    assert len(await claim(ds, token, worker="slow", lease_seconds=0.001)) == 1
    await asyncio.sleep(0.05)
    reclaimed = await claim(ds, token, worker="fast")
    assert [r["id"] for r in reclaimed] == [made["id"]]
    assert reclaimed[0]["attempts"] == 2

    late = await api_call(
        ds,
        "POST",
        f"/queue/{made['id']}/complete",
        {
            "worker": "slow",
            "observation": {
                "session_id": session_id,
                "tool_name": "Read",
                "title": "late",
                "summary": "",
            },
        },
        token=token,
    )
    assert_error(late, 409, "slow")
    # Nothing of the late completion was kept: no observation, still held by the new worker.
    assert await query_rows(ds, "SELECT count(*) AS n FROM observations") == [{"n": 0}]
    failing = await api_call(
        ds, "POST", f"/queue/{made['id']}/fail", {"worker": "slow", "error": "x"}, token=token
    )
    assert_error(failing, 409)
    done = await api_call(
        ds, "POST", f"/queue/{made['id']}/complete", {"worker": "fast"}, token=token
    )
    assert done.status_code == 200, done.text


@pytest.mark.asyncio
async def test_complete_with_an_observation_for_an_unknown_session_rolls_back(
    ds: Datasette, token: str, session_id: str
):
    (made,) = await enqueue(ds, token, session_id, "a")
    await claim(ds, token, worker="w1")
    body = {
        "worker": "w1",
        "observation": {"session_id": "ghost", "tool_name": "x", "title": "t", "summary": ""},
    }
    response = await api_call(ds, "POST", f"/queue/{made['id']}/complete", body, token=token)
    assert_error(response, 404, "ghost")
    stored = await query_rows(ds, "SELECT status FROM pending_queue")
    assert stored == [{"status": "processing"}]


@pytest.mark.asyncio
async def test_unknown_item_is_404(ds: Datasette, token: str):
    for action, body in (("complete", {"worker": "w"}), ("fail", {"worker": "w", "error": "e"})):
        response = await api_call(ds, "POST", f"/queue/nope/{action}", body, token=token)
        assert_error(response, 404, "nope", case=action)


INVALID_OUTCOMES = [
    ("complete", {}, ["worker"]),
    ("complete", {"worker": ""}, ["worker"]),
    ("complete", {"worker": "w", "error": "e"}, ["error"]),
    ("complete", {"worker": "w", "observation": {"title": "t"}}, ["observation.session_id"]),
    ("complete", {"worker": "w", "observation": "done"}, ["observation"]),
    ("fail", {"worker": "w"}, ["error"]),
    ("fail", {"error": "boom"}, ["worker"]),
    ("fail", {"worker": "w", "error": ""}, ["error"]),
    ("fail", {"worker": None, "error": 3, "retry": True}, ["worker", "error", "retry"]),
]


@pytest.mark.asyncio
async def test_invalid_complete_and_fail(ds: Datasette, token: str, session_id: str):
    (made,) = await enqueue(ds, token, session_id, "a")
    await claim(ds, token, worker="w")
    for action, body, fields in INVALID_OUTCOMES:
        response = await api_call(ds, "POST", f"/queue/{made['id']}/{action}", body, token=token)
        assert_error(response, 400, *fields, case=(action, body))
    stored = await query_rows(ds, "SELECT status FROM pending_queue")
    assert stored == [{"status": "processing"}]


@pytest.mark.asyncio
async def test_fail_then_retry_then_dead_letter(ds: Datasette, token: str, session_id: str):
    body = {**item(session_id, "a"), "max_attempts": 1}
    made = (await api_call(ds, "POST", "/queue", body, token=token)).json()["row"]
    await claim(ds, token, worker="w")
    response = await api_call(
        ds, "POST", f"/queue/{made['id']}/fail", {"worker": "w", "error": "model down"},
        token=token,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    row = response.json()["row"]
    assert row["status"] == "error"
    assert row["last_error"] == "model down"
    assert row["lease_owner"] is None
    stored = await query_rows(ds, "SELECT status, last_error, attempts FROM pending_queue")
    assert stored == [{"status": "error", "last_error": "model down", "attempts": 1}]

    # Its one attempt is spent: a plain retry leaves the dead letter alone ...
    plain = await api_call(ds, "POST", "/queue/retry", {}, token=token)
    assert plain.status_code == 200, plain.text
    assert plain.json() == {"ok": True, "requeued": 0}
    # ... and dead_letters gives it one more attempt.
    revived = await api_call(ds, "POST", "/queue/retry", {"dead_letters": True}, token=token)
    assert revived.json() == {"ok": True, "requeued": 1}
    stored = await query_rows(ds, "SELECT status, max_attempts FROM pending_queue")
    assert stored == [{"status": "raw", "max_attempts": 2}]
    assert [r["id"] for r in await claim(ds, token, worker="w2")] == [made["id"]]


@pytest.mark.asyncio
async def test_retry_waits_for_the_backoff(ds: Datasette, token: str, session_id: str):
    (made,) = await enqueue(ds, token, session_id, "a")
    await claim(ds, token, worker="w")
    await api_call(
        ds, "POST", f"/queue/{made['id']}/fail", {"worker": "w", "error": "e"}, token=token
    )
    # The backoff (2 s after the first attempt) has not passed yet.
    response = await api_call(ds, "POST", "/queue/retry", token=token, content=b"")
    assert response.status_code == 200, response.text
    assert response.json()["requeued"] == 0
    other = await api_call(ds, "POST", "/queue/retry", {"project": "elsewhere"}, token=token)
    assert other.json()["requeued"] == 0


@pytest.mark.asyncio
async def test_invalid_retry(ds: Datasette, token: str):
    response = await api_call(
        ds, "POST", "/queue/retry", {"dead_letters": "please", "all": 1}, token=token
    )
    assert_error(response, 400, "dead_letters", "all")


@pytest.mark.asyncio
async def test_queue_routes_take_only_post(ds: Datasette, token: str):
    for path in ("/queue", "/queue/claim", "/queue/retry", "/queue/x/complete", "/queue/x/fail"):
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            response = await api_call(ds, method, path, token=token)
            assert_error(response, 405, case=(method, path))
            assert response.headers["allow"] == "POST"
