"""Read every observation again and again while writers run; report any row not whole.

Each pass is one read transaction (a snapshot), in which every row must be exactly what its
writer wrote, each writer's rows must be a prefix 0..k-1 of what it writes, each session's
observation_count must equal its rows, and totals must never go down between passes.

usage: reader.py DB PROJECT GO_FILE STOP_FILE TAG=SESSION_ID...
prints one JSON line {"passes": n, "max_seen": m, "errors": [...]}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from common import TITLE_RE, check_observation, wait_for

from datasette_claude_mem.storage.store import Store


def snapshot(store: Store, sessions: dict[str, str], project: str) -> tuple[int, list[str]]:
    errors: list[str] = []
    total = 0
    store.conn.execute("BEGIN")
    try:
        for tag, session_id in sessions.items():
            rows = store.list_observations(session_id, limit=100_000, with_embeddings=True)
            count = store.get_session(session_id).observation_count
            if count != len(rows):
                errors.append(f"{tag}: observation_count {count} but {len(rows)} rows")
            seen = set()
            for obs in rows:
                problem = check_observation(obs.model_dump(), sessions, project)
                if problem:
                    errors.append(problem)
                    continue
                seen.add(int(TITLE_RE.match(obs.title)["i"]))
            if seen != set(range(len(seen))):
                errors.append(f"{tag}: rows are not a prefix: {sorted(seen)[:10]}...")
            total += len(rows)
        raw = store.conn.execute("SELECT count(*) FROM observations").fetchone()[0]
        if raw != total:
            errors.append(f"table has {raw} rows, sessions {total}")
    finally:
        store.conn.execute("COMMIT")
    return total, errors


def main() -> int:
    db, project, go, stop = sys.argv[1:5]
    sessions = dict(arg.split("=", 1) for arg in sys.argv[5:])
    store = Store(db)
    wait_for(Path(go))
    passes, last, errors = 0, 0, []
    while True:
        done = Path(stop).exists()
        total, problems = snapshot(store, sessions, project)
        passes += 1
        errors.extend(problems)
        if total < last:
            errors.append(f"total went down from {last} to {total}")
        last = total
        if done or len(errors) > 20:
            break
    print(json.dumps({"passes": passes, "max_seen": last, "errors": errors[:20]}))
    store.close()
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
