"""How many secrets of each kind were redacted: read from the counts on the event rows.

Each hook event row carries ``data.redactions`` (kind -> how many), never the secrets; the
dashboard shows their sum.
"""

from __future__ import annotations

import sqlite3
from typing import Any

# instr() first: only the rows that took something are parsed as JSON.
_SQL = """
SELECT j.key AS kind, sum(j.value) AS count, count(DISTINCT e.id) AS events
FROM event_log e, json_each(e.data, '$.redactions') j
WHERE instr(e.data, '"redactions"') > 0 AND json_valid(e.data)
GROUP BY j.key
ORDER BY count DESC, kind
"""


def read_redaction_counts(conn: sqlite3.Connection) -> dict[str, Any]:
    """Redactions by kind, most first, with their total and the events they were in."""
    kinds = [
        {"kind": kind, "count": count, "events": events}
        for kind, count, events in conn.execute(_SQL).fetchall()
    ]
    return {"kinds": kinds, "total": sum(k["count"] for k in kinds)}
