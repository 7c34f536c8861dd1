"""A queue worker (datasette_claude_mem.worker.loop.Worker) in a process of its own.

usage: worker_proc.py DB NAME LEASE_SECONDS BATCH MAX_ITEMS GO_FILE [BLOCK_AFTER MARKER]

Runs batches with the default compressor until it has handled MAX_ITEMS items (0: no limit)
or nothing is waiting, held or due for a retry. With BLOCK_AFTER, the compressor touches
MARKER once it has compressed that many items and then hangs inside the batch, holding the
rest of it under lease, so the parent can kill the process mid-batch; MARKER holds JSON:
{"blocked": the item it hangs on, "batch": the ids of the batch, in order}.
prints one JSON line: {"handled", "done", "failed", "lease_lost", "batches"}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from common import wait_for

from datasette_claude_mem.storage.store import Store
from datasette_claude_mem.worker.loop import DefaultCompressor, Worker


class RecordingWorker(Worker):
    """Remembers the batch it claimed last."""

    batch: list[str] = []

    def claim(self, store):
        items = super().claim(store)
        self.batch = [item.id for item in items]
        return items


class BlockingCompressor(DefaultCompressor):
    def __init__(self, block_after: int | None, marker: Path | None) -> None:
        self.count = 0
        self.block_after = block_after
        self.marker = marker
        self.worker: RecordingWorker | None = None

    def __call__(self, item):
        self.count += 1
        if self.block_after is not None and self.count >= self.block_after:
            assert self.marker is not None and self.worker is not None
            record = {"blocked": item.id, "batch": self.worker.batch}
            partial = self.marker.with_suffix(".tmp")
            partial.write_text(json.dumps(record))
            partial.rename(self.marker)
            time.sleep(120)
        return super().__call__(item)


def drained(store: Store) -> bool:
    stats = store.queue_stats()
    return stats.waiting == 0 and stats.processing == 0 and stats.failed == 0


def main() -> int:
    db, name, lease, batch, max_items, go = sys.argv[1:7]
    block_after = int(sys.argv[7]) if len(sys.argv) > 7 else None
    marker = Path(sys.argv[8]) if len(sys.argv) > 8 else None
    store = Store(db)
    compressor = BlockingCompressor(block_after, marker)
    worker = RecordingWorker(
        compressor, worker_id=name, batch_size=int(batch), lease_seconds=float(lease)
    )
    compressor.worker = worker
    limit = int(max_items)
    wait_for(Path(go))
    handled = done = failed = lease_lost = batches = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        report = worker.run_once(store)
        if report.outcomes:
            batches += 1
        handled += len(report.outcomes)
        done += report.done
        failed += report.failed
        lease_lost += sum(1 for o in report.outcomes if o.error and "is not held" in o.error)
        if limit and handled >= limit:
            break
        if not report.outcomes:
            if drained(store):
                break
            time.sleep(0.02)
    else:
        print(f"{name} gave up: the queue never drained", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "handled": handled,
                "done": done,
                "failed": failed,
                "lease_lost": lease_lost,
                "batches": batches,
            }
        )
    )
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
