"""The durable queue: raw tool outputs wait here until a worker turns them into observations."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from processes.common import PROCESSES

from datasette_claude_mem.storage.errors import LeaseLost, NotFound
from datasette_claude_mem.storage.models import (
    ObservationCreate,
    QueueItemCreate,
    QueueStatus,
    Session,
    SessionStart,
)
from datasette_claude_mem.storage.store import Store

SHORT_LEASE = 0.05


def enqueue(store: Store, session: Session, tool_use_id: str, **kw):
    fields = {"tool_name": "Bash", "raw_output": f"output of {tool_use_id}"}
    fields.update(kw)
    return store.enqueue(QueueItemCreate(session_id=session.id, tool_use_id=tool_use_id, **fields))


def make_available_now(store: Store, item_id: str) -> None:
    """Stand in for the passing of a retry backoff (seconds) without sleeping through it."""
    store.conn.execute(
        "UPDATE pending_queue SET available_at = '2000-01-01T00:00:00.000Z' WHERE id = ?",
        [item_id],
    )


def status(store: Store, item_id: str) -> str:
    return store.get_queue_item(item_id, include_payload=False).status


def test_enqueue_keeps_the_item_and_its_payload(store: Store, session: Session) -> None:
    saved = enqueue(
        store,
        session,
        "tu-1",
        tool_input={"command": "pytest -q", "timeout": 30},
        raw_output="12 passed ✓",
        files_touched=["tests/test_x.py"],
        truncated=True,
    )
    assert saved.created
    item = store.get_queue_item(saved.row.id)
    assert item.status == QueueStatus.RAW
    assert (item.attempts, item.max_attempts) == (0, 3)
    assert item.tool_use_id == "tu-1"
    assert item.project == session.project
    assert item.files_touched == ["tests/test_x.py"]
    assert item.tool_input == {"command": "pytest -q", "timeout": 30}
    assert item.raw_output == "12 passed ✓"
    assert item.raw_bytes == len("12 passed ✓".encode())
    assert item.truncated is True


def test_payload_is_kept_out_of_the_queue_row(store: Store, session: Session) -> None:
    """Claiming and completing rewrite a small row, never the whole tool output."""
    big = "x" * 200_000
    saved = enqueue(store, session, "tu-1", raw_output=big, tool_input={"file": "a.py"}).row
    columns = {r[1] for r in store.conn.execute("PRAGMA table_info(pending_queue)")}
    assert "raw_output" not in columns
    assert "tool_input" not in columns
    sizes = " + ".join(f"coalesce(length(CAST({c} AS BLOB)), 0)" for c in sorted(columns))
    row_bytes = store.conn.execute(
        f"SELECT {sizes} FROM pending_queue WHERE id = ?", [saved.id]
    ).fetchone()[0]
    assert row_bytes < 1000
    payload = store.conn.execute(
        "SELECT tool_input, raw_output FROM pending_payloads WHERE item_id = ?", [saved.id]
    ).fetchone()
    assert json.loads(payload[0]) == {"file": "a.py"}
    assert payload[1] == big
    assert store.get_queue_item(saved.id, include_payload=False).raw_output is None


def test_enqueue_is_idempotent_per_session_and_tool_use(store: Store, session: Session) -> None:
    """A hook that fires twice for one tool use queues it once."""
    first = enqueue(store, session, "tu-1")
    again = enqueue(store, session, "tu-1", raw_output="something else")
    assert first.created and not again.created
    assert again.row.id == first.row.id
    assert store.get_queue_item(first.row.id).raw_output == "output of tu-1"
    other = store.create_session(SessionStart(project_dir=session.project_dir)).row
    assert enqueue(store, other, "tu-1").created
    assert store.conn.execute("SELECT count(*) FROM pending_queue").fetchone()[0] == 2
    assert store.conn.execute("SELECT count(*) FROM pending_payloads").fetchone()[0] == 2


def test_enqueue_without_tool_use_id_always_adds(store: Store, session: Session) -> None:
    a = store.enqueue(QueueItemCreate(session_id=session.id, tool_name="Bash"))
    b = store.enqueue(QueueItemCreate(session_id=session.id, tool_name="Bash"))
    assert a.created and b.created
    assert a.row.tool_use_id != b.row.tool_use_id


def test_enqueue_for_unknown_session_is_refused(store: Store) -> None:
    with pytest.raises(NotFound):
        store.enqueue(QueueItemCreate(session_id="nope", tool_name="Bash"))
    assert store.conn.execute("SELECT count(*) FROM pending_queue").fetchone()[0] == 0


def test_dequeue_claims_oldest_first_in_batches(store: Store, session: Session) -> None:
    made = [enqueue(store, session, f"tu-{i}").row.id for i in range(5)]
    first = store.claim(3, worker="w1")
    assert [i.id for i in first] == made[:3]
    for item in first:
        assert item.status == QueueStatus.PROCESSING
        assert item.lease_owner == "w1"
        assert item.attempts == 1
        assert item.lease_expires_at > datetime.now(UTC)
        assert item.raw_output == f"output of {item.tool_use_id}"  # payload comes along
    second = store.claim(3, worker="w2")
    assert [i.id for i in second] == made[3:]
    assert store.claim(3, worker="w3") == []
    assert [status(store, i) for i in made] == ["processing"] * 5


def test_dequeue_without_payload(store: Store, session: Session) -> None:
    enqueue(store, session, "tu-1")
    (item,) = store.claim(1, include_payload=False)
    assert item.raw_output is None


def test_dequeue_by_project(store: Store, session: Session) -> None:
    other = store.create_session(SessionStart(project_dir="/o", project="other")).row
    mine = enqueue(store, session, "tu-1").row
    theirs = enqueue(store, other, "tu-1").row
    assert [i.id for i in store.claim(5, project="other")] == [theirs.id]
    assert [i.id for i in store.claim(5, project=session.project)] == [mine.id]


def test_claims_from_several_processes_never_overlap(
    store: Store, session: Session, config, tmp_path: Path, python: str
) -> None:
    """Each item is claimed by exactly one of several workers racing for it."""
    made = {enqueue(store, session, f"tu-{i}").row.id for i in range(60)}
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [python, str(PROCESSES / "worker.py"), str(config.db_path), f"w{n}", "claim", "60", "2"]
            + [str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    time.sleep(0.3)
    go.touch()
    claimed: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        claimed.extend(json.loads(out)["claimed"])
    assert sorted(claimed) == sorted(made)  # every item once, none twice
    owners = store.conn.execute(
        "SELECT count(*) FROM pending_queue WHERE status = 'processing' AND attempts = 1"
    ).fetchone()[0]
    assert owners == 60


def test_expired_lease_returns_the_item_and_counts_the_attempt(
    store: Store, session: Session
) -> None:
    """A worker that died holding an item does not strand it; a live lease is left alone."""
    item = enqueue(store, session, "tu-1").row
    held = enqueue(store, session, "tu-2").row
    assert [i.id for i in store.claim(1, worker="dead", lease_seconds=SHORT_LEASE)] == [item.id]
    assert [i.id for i in store.claim(1, worker="alive", lease_seconds=60)] == [held.id]
    time.sleep(SHORT_LEASE + 0.01)
    assert [i.id for i in store.claim(5, worker="w2")] == [item.id]
    again = store.get_queue_item(item.id)
    assert again.lease_owner == "w2"
    assert again.attempts == 2
    assert again.last_error == "lease of dead expired"
    still = store.get_queue_item(held.id)
    assert (still.lease_owner, still.attempts) == ("alive", 1)


def test_a_stopping_worker_gives_back_only_its_own_leases(store: Store, session: Session) -> None:
    """Its items wait again at once, the unfinished claim not counted; another worker's
    lease is left alone."""
    mine = enqueue(store, session, "tu-1").row
    theirs = enqueue(store, session, "tu-2").row
    store.claim(1, worker="stopping", lease_seconds=300)
    store.claim(1, worker="other", lease_seconds=300)
    assert store.release_leases("stopping") == 1
    back = store.get_queue_item(mine.id)
    assert (back.status, back.lease_owner, back.attempts) == (QueueStatus.RAW, None, 0)
    assert [i.id for i in store.claim(5, worker="next")] == [mine.id]
    assert store.get_queue_item(theirs.id).lease_owner == "other"
    assert store.release_leases("nobody") == 0


def test_complete_by_the_lease_holder(store: Store, session: Session) -> None:
    item = enqueue(store, session, "tu-1").row
    store.claim(1, worker="w1")
    done, made = store.complete(item.id, "w1")
    assert done.status == QueueStatus.DONE
    assert done.completed_at is not None
    assert (done.lease_owner, done.lease_expires_at) == (None, None)
    assert made is None
    with pytest.raises(LeaseLost):
        store.complete(item.id, "w1")  # done already: not twice


def test_complete_with_observation_links_them(store: Store, session: Session) -> None:
    item = enqueue(store, session, "tu-1").row
    store.claim(1, worker="w1")
    observation = ObservationCreate(
        session_id=session.id, tool_name="Bash", title="Ran tests", summary="12 passed"
    )
    done, made = store.complete(item.id, "w1", observation=observation)
    assert made.queue_item_id == item.id
    assert store.get_observation(made.id) == made
    assert store.get_session(session.id).observation_count == 1
    assert done.status == QueueStatus.DONE


def test_complete_is_all_or_nothing(store: Store, session: Session) -> None:
    """If the observation cannot be stored, the item stays claimed, not falsely done."""
    item = enqueue(store, session, "tu-1").row
    store.claim(1, worker="w1")
    bad = ObservationCreate(session_id="no-such-session", tool_name="B", title="t", summary="s")
    with pytest.raises(NotFound):
        store.complete(item.id, "w1", observation=bad)
    assert status(store, item.id) == "processing"
    assert store.conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 0
    assert not store.conn.in_transaction
    done, _ = store.complete(item.id, "w1")
    assert done.status == QueueStatus.DONE


def test_only_the_lease_holder_can_complete(store: Store, session: Session) -> None:
    item = enqueue(store, session, "tu-1").row
    store.claim(1, worker="slow", lease_seconds=SHORT_LEASE)
    with pytest.raises(LeaseLost):
        store.complete(item.id, "someone-else")
    time.sleep(SHORT_LEASE + 0.01)
    store.claim(1, worker="fast")
    observation = ObservationCreate(session_id=session.id, tool_name="B", title="t", summary="s")
    with pytest.raises(LeaseLost):
        store.complete(item.id, "slow", observation=observation)
    assert store.conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 0
    done, made = store.complete(item.id, "fast", observation=observation)
    assert done.status == QueueStatus.DONE
    assert made.queue_item_id == item.id
    with pytest.raises(NotFound):
        store.complete("no-such-item", "fast")


def test_fail_backs_off_then_retry_failed_requeues(store: Store, session: Session) -> None:
    item = enqueue(store, session, "tu-1").row
    store.claim(1, worker="w1")
    failed = store.fail(item.id, "w1", "API timeout")
    assert failed.status == QueueStatus.ERROR
    assert failed.last_error == "API timeout"
    assert failed.lease_owner is None
    assert failed.available_at > datetime.now(UTC)  # a backoff before the next try
    assert failed.available_at < datetime.now(UTC) + timedelta(minutes=11)
    assert store.retry_failed() == 0  # too early
    assert store.claim(1, worker="w1") == []
    make_available_now(store, item.id)
    assert store.retry_failed() == 1
    assert status(store, item.id) == "raw"
    (again,) = store.claim(1, worker="w2")
    assert again.attempts == 2


def test_backoff_grows_with_attempts(store: Store, session: Session) -> None:
    item = enqueue(store, session, "tu-1", max_attempts=5).row
    waits = []
    for _ in range(3):
        store.claim(1, worker="w")
        failed = store.fail(item.id, "w", "boom")
        waits.append(failed.available_at - failed.updated_at)
        make_available_now(store, item.id)
        store.retry_failed()
    assert waits[0] < waits[1] < waits[2]


def test_only_the_lease_holder_can_fail(store: Store, session: Session) -> None:
    item = enqueue(store, session, "tu-1").row
    store.claim(1, worker="w1")
    with pytest.raises(LeaseLost):
        store.fail(item.id, "w2", "not mine")
    assert status(store, item.id) == "processing"


def test_dead_letter_after_max_attempts(store: Store, session: Session) -> None:
    item = enqueue(store, session, "tu-1", max_attempts=2).row
    for attempt in (1, 2):
        (claimed,) = store.claim(1, worker="w")
        assert claimed.attempts == attempt
        store.fail(item.id, "w", f"failure {attempt}")
        make_available_now(store, item.id)
        store.retry_failed()
    stats = store.queue_stats()
    assert (stats.failed, stats.dead_letters, stats.waiting) == (0, 1, 0)
    assert store.retry_failed() == 0
    assert store.claim(1, worker="w") == []
    dead = store.get_queue_item(item.id)
    assert dead.status == QueueStatus.ERROR
    assert dead.last_error == "failure 2"
    assert dead.raw_output == "output of tu-1"  # kept, to be retried by hand


def test_retry_failed_can_revive_dead_letters(store: Store, session: Session) -> None:
    item = enqueue(store, session, "tu-1", max_attempts=1).row
    store.claim(1, worker="w")
    store.fail(item.id, "w", "bad prompt")
    assert store.queue_stats().dead_letters == 1
    assert store.retry_failed(dead_letters=True) == 1
    revived = store.get_queue_item(item.id)
    assert revived.status == QueueStatus.RAW
    assert revived.max_attempts == 2
    (claimed,) = store.claim(1, worker="w")  # at once, no backoff
    assert claimed.attempts == 2
    done, _ = store.complete(item.id, "w")
    assert done.status == QueueStatus.DONE


def test_a_lease_expiring_on_the_last_attempt_makes_a_dead_letter(
    store: Store, session: Session
) -> None:
    item = enqueue(store, session, "tu-1", max_attempts=1).row
    store.claim(1, worker="dead", lease_seconds=SHORT_LEASE)
    time.sleep(SHORT_LEASE + 0.01)
    assert store.claim(1, worker="w2") == []
    dead = store.get_queue_item(item.id)
    assert dead.status == QueueStatus.ERROR
    assert dead.last_error == "lease of dead expired"
    assert store.queue_stats().dead_letters == 1


def test_retry_failed_by_project(store: Store, session: Session) -> None:
    other = store.create_session(SessionStart(project_dir="/o", project="other")).row
    mine = enqueue(store, session, "tu-1").row
    theirs = enqueue(store, other, "tu-2").row
    for item in (mine, theirs):
        store.claim(1, worker="w", project=item.project)
        store.fail(item.id, "w", "x")
        make_available_now(store, item.id)
    assert store.retry_failed(project="other") == 1
    assert (status(store, mine.id), status(store, theirs.id)) == ("error", "raw")


def test_stats_count_every_state(store: Store, session: Session) -> None:
    assert store.queue_stats().oldest_waiting_age_seconds is None
    ids = [
        enqueue(store, session, f"tu-{i}", max_attempts=1 if i == 5 else 3).row.id for i in range(7)
    ]
    # 0, 1: waiting; 2: processing; 3: done; 4: failed (will retry); 5: dead letter; 6: retried
    for n in (2, 3, 4, 5, 6):
        store.conn.execute("UPDATE pending_queue SET available_at = ? WHERE id = ?", [
            f"1999-01-01T00:00:0{n}.000Z", ids[n]])  # fmt: skip
    claimed = {i.id for i in store.claim(5, worker="w")}
    assert claimed == {ids[n] for n in (2, 3, 4, 5, 6)}
    store.complete(ids[3], "w")
    store.fail(ids[4], "w", "x")
    store.fail(ids[5], "w", "x")
    store.fail(ids[6], "w", "x")
    make_available_now(store, ids[6])
    store.retry_failed()
    store.claim(1, worker="w", project=session.project)
    store.complete(ids[6], "w")
    # The oldest waiting item was queued ten minutes ago.
    queued = (datetime.now(UTC) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    store.conn.execute("UPDATE pending_queue SET created_at = ? WHERE id = ?", [queued, ids[1]])
    stats = store.queue_stats()
    assert (stats.waiting, stats.processing, stats.done, stats.failed, stats.dead_letters) == (
        2,
        1,
        2,
        1,
        1,
    )
    assert stats.retries == 1
    assert 600 <= stats.oldest_waiting_age_seconds < 900
    assert store.queue_stats(project="other").model_dump(exclude={"project"}) == {
        "waiting": 0,
        "processing": 0,
        "done": 0,
        "failed": 0,
        "dead_letters": 0,
        "retries": 0,
        "oldest_waiting_age_seconds": None,
    }


def test_queue_survives_reopen(store: Store, session: Session, config) -> None:
    """The reason the queue is a table: a restart loses nothing that was queued."""
    item = enqueue(store, session, "tu-1", tool_input={"a": 1}).row
    store.close()
    with Store(config.db_path) as reopened:
        (claimed,) = reopened.claim(1, worker="after-restart")
        assert claimed.id == item.id
        assert claimed.tool_input == {"a": 1}
        assert claimed.raw_output == "output of tu-1"


def test_items_queued_together_are_claimed_in_the_order_they_were_queued(
    store: Store, session: Session
) -> None:
    """Rows added in one statement share a millisecond; oldest-first still means FIFO."""
    values = ", ".join(f"(?, 'tu-{i:02d}', 'Bash')" for i in range(20))
    store.conn.execute(
        f"INSERT INTO pending_queue (session_id, tool_use_id, tool_name) VALUES {values}",
        [session.id] * 20,
    )
    claimed = [i.tool_use_id for i in store.claim(20, worker="w")]
    assert claimed == [f"tu-{i:02d}" for i in range(20)]


def test_has_claimable_work_sees_each_kind_of_claimable_item(
    store: Store, session: Session
) -> None:
    assert store.has_claimable_work() is False
    item = enqueue(store, session, "t1").row
    assert store.has_claimable_work() is True
    [held] = store.claim(1, worker="w", lease_seconds=SHORT_LEASE)
    assert store.has_claimable_work() is False  # held under a live lease
    time.sleep(SHORT_LEASE * 2)
    assert store.has_claimable_work() is True  # the lease ran out
    [held] = store.claim(1, worker="w")
    store.fail(held.id, "w", "boom")
    assert store.has_claimable_work() is False  # failed, waiting out its backoff
    make_available_now(store, item.id)
    assert store.has_claimable_work() is True  # backoff over
    store.conn.execute("UPDATE pending_queue SET attempts = max_attempts WHERE id = ?", [item.id])
    assert store.has_claimable_work() is False  # a dead letter is not claimable


def test_newer_item_done_sees_only_a_later_done_item_of_the_same_session_and_tool(
    store: Store, session: Session
) -> None:
    def item(tool: str = "summary"):
        return store.enqueue(QueueItemCreate(session_id=session.id, tool_name=tool)).row

    older, newer, other_tool = item(), item(), item("Bash")
    claimed = {i.id: i for i in store.claim(10, worker="w", lease_seconds=60)}
    assert not store.newer_item_done(older)
    store.complete(other_tool.id, "w")
    assert not store.newer_item_done(older)
    store.complete(newer.id, "w")
    assert store.newer_item_done(claimed[older.id])
    assert not store.newer_item_done(claimed[newer.id])
