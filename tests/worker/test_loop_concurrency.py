"""Workers as real OS processes on one memory file: no item lost, none made twice.

1,000 queued tool uses; two worker processes and a third that is SIGKILLed in the middle
of a batch, with the rest of that batch still under its lease; then a restarted worker (the
`datasette claude-mem worker` command) picks up what was left, the dead worker's items too
once their short leases run out. Every item must end as exactly one observation linked by
queue_item_id, or as a dead letter.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import PROCESSES

from datasette_claude_mem.storage.models import QueueItemCreate
from datasette_claude_mem.storage.store import Store

DATASETTE = str(Path(sys.executable).parent / "datasette")
ITEMS = 1000
LEASE = "1.5"
BATCH = "10"
PER_WORKER = 350
BLOCK_AFTER = 25  # the victim hangs on its 25th item: the 5th of its third batch


def payload(n: int, session_id: str) -> QueueItemCreate:
    """Real-shaped tool uses, each different, so each compresses to its own observation."""
    kind = n % 3
    if kind == 0:
        path = f"/home/dev/project/src/module_{n}.py"
        body = "".join(f"def fn_{n}_{k}(x):\n    return x + {k}\n\n" for k in range(n % 7 + 1))
        return QueueItemCreate(
            session_id=session_id,
            tool_use_id=f"use-{n}",
            tool_name="Read",
            tool_input={"file_path": path},
            raw_output=json.dumps({"type": "text", "file": {"filePath": path, "content": body}}),
            files_touched=[path],
        )
    if kind == 1:
        path = f"/home/dev/project/src/module_{n}.py"
        return QueueItemCreate(
            session_id=session_id,
            tool_use_id=f"use-{n}",
            tool_name="Edit",
            tool_input={
                "file_path": path,
                "old_string": f"return {n}",
                "new_string": f"return {n + 1}",
            },
            raw_output=json.dumps({"filePath": path, "oldString": f"return {n}"}),
            files_touched=[path],
        )
    output = "".join(f"test_{n}_{k} PASSED\n" for k in range(20)) + f"20 passed in {n}.01s\n"
    return QueueItemCreate(
        session_id=session_id,
        tool_use_id=f"use-{n}",
        tool_name="Bash",
        tool_input={"command": f"pytest -k case_{n}"},
        raw_output=json.dumps({"stdout": output, "stderr": "", "interrupted": False}),
    )


def start_worker(db: Path, name: str, go: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            str(PROCESSES / "worker_proc.py"),
            str(db),
            name,
            LEASE,
            BATCH,
            str(PER_WORKER),
            str(go),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_workers_killed_and_restarted_never_lose_or_double_an_item(
    store: Store, session, config, tmp_path: Path
) -> None:
    for n in range(ITEMS):
        store.enqueue(payload(n, session.id))
    assert store.queue_stats().waiting == ITEMS
    db = config.db_path
    go = tmp_path / "go"
    marker = tmp_path / "victim-blocked"

    victim = start_worker(db, "victim", go, str(BLOCK_AFTER), str(marker))
    workers = [start_worker(db, f"worker-{k}", go) for k in (1, 2)]
    try:
        go.touch()
        wait_until(marker.exists, 60, "the victim to block mid-batch")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        assert victim.returncode == -signal.SIGKILL
        record = json.loads(marker.read_text())
        # Killed mid-batch: it had finished the items before the one it hung on.
        batch = record["batch"]
        assert len(batch) == int(BATCH)
        position = batch.index(record["blocked"])
        assert position == (BLOCK_AFTER - 1) % int(BATCH)
        finished, stranded = batch[:position], batch[position:]
        for item_id in finished:
            assert store.get_queue_item(item_id, include_payload=False).status == "done"

        reports = []
        for proc in workers:
            out, err = proc.communicate(timeout=90)
            assert proc.returncode == 0, err
            reports.append(json.loads(out))
    finally:
        for proc in (victim, *workers):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for report in reports:
        assert report["handled"] >= PER_WORKER and report["failed"] == report["lease_lost"]

    # The workers stopped with work left: a restarted worker picks up where they stopped.
    left = store.queue_stats()
    assert left.waiting + left.processing > 0
    restart = subprocess.Popen(
        [
            DATASETTE,
            "claude-mem",
            "worker",
            str(db),
            "--lease-seconds",
            LEASE,
            "--batch-size",
            BATCH,
            "--interval",
            "0.05",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CLAUDE_MEM_DIR": str(config.base_dir)},
    )
    try:

        def drained() -> bool:
            stats = store.queue_stats()
            return stats.waiting == stats.processing == stats.failed == 0

        wait_until(drained, 60, "the restarted worker to drain the queue")
        restart.send_signal(signal.SIGINT)
        _, err = restart.communicate(timeout=30)
        assert restart.returncode == 0, err
    finally:
        if restart.poll() is None:
            restart.kill()
            restart.wait()

    # Every item is done with exactly one observation, or a dead letter; none lost.
    stats = store.queue_stats()
    assert stats.done + stats.dead_letters == ITEMS
    per_item = dict(
        store.db.execute(
            "SELECT queue_item_id, count(*) FROM observations GROUP BY queue_item_id"
        ).fetchall()
    )
    assert set(per_item.values()) == {1}
    done = {r[0] for r in store.db.execute("SELECT id FROM pending_queue WHERE status = 'done'")}
    assert set(per_item) == done
    assert store.db.execute("SELECT count(*) FROM observations").fetchone()[0] == len(done)
    assert store.get_session(session.id).observation_count == len(done)
    dead = store.db.execute(
        "SELECT count(*) FROM pending_queue WHERE status = 'error' AND attempts >= max_attempts "
        "AND last_error IS NOT NULL"
    ).fetchone()[0]
    assert dead == stats.dead_letters

    # The dead worker's held items went to another worker, on a second attempt.
    for item_id in stranded:
        item = store.get_queue_item(item_id, include_payload=False)
        assert item.attempts >= 2
        assert item.status == "done" or item.attempts >= item.max_attempts
        if item.status == "done":
            assert per_item[item_id] == 1

    # Each process logged its batches, the restarted one under its own name.
    names = {e.data["worker"] for e in store.query_events("worker_batch", limit=10_000)}
    assert {"victim", "worker-1", "worker-2"} <= names
    assert len(names) == 4
    logged = sum(e.data["done"] for e in store.query_events("worker_batch", limit=10_000))
    # All but the items of the batch the victim never got to log.
    assert logged == len(done) - len(finished)
