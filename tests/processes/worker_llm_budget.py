"""Compress queue items with an LLMCompressor on a shared daily budget, racing other processes.

usage: worker_llm_budget.py DB NAME MODEL_ID BUDGET MAX_OUTPUT_TOKENS GO_FILE
Claims and finishes batches (a Worker with the LLMCompressor) until nothing is waiting.
prints one JSON line: {"model": calls the model answered, "fallback": calls it did not}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import worker_llm_model
from common import wait_for

from datasette_claude_mem.storage.store import Store
from datasette_claude_mem.worker.llm_compress import LLMCompressor
from datasette_claude_mem.worker.loop import Worker


class Counting(LLMCompressor):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.by = {"llm": 0, "default": 0}

    def __call__(self, item, grant=None):
        result = super().__call__(item, grant=grant)
        self.by[result.compressor] += 1
        return result


def main() -> int:
    db, name, model_id, budget, max_output, go = sys.argv[1:7]
    worker_llm_model.install()
    store = Store(db)
    compressor = Counting(
        store, model_id, daily_token_budget=int(budget), max_output_tokens=int(max_output)
    )
    worker = Worker(compressor, worker_id=name, batch_size=3, lease_seconds=60, index_code=False)
    wait_for(Path(go))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not worker.run_once(store).outcomes:
            stats = store.queue_stats()
            if stats.waiting == 0 and stats.processing == 0:
                break
            time.sleep(0.01)
    print(json.dumps({"model": compressor.by["llm"], "fallback": compressor.by["default"]}))
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
