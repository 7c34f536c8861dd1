#!/usr/bin/env python3
"""Claude Code command hook: post the event on stdin to the memory server.

For machines where the server is not always running. It imports only the standard library
(http.client, not urllib, which alone costs ~100 ms to import), prints the server's answer,
and when the server cannot be reached appends the event to a spool file that the server
takes in at its next start. It always exits 0, quickly: it must never block the agent.

Settings: CLAUDE_MEM_URL (default http://127.0.0.1:8765), CLAUDE_MEM_TOKEN, CLAUDE_MEM_DIR.
"""

import http.client
import json
import os
import sys
import time
import uuid

DEFAULT_URL = "http://127.0.0.1:8765"
PATH = "/-/claude-mem/hooks"


def spool(body: bytes) -> None:
    base = os.environ.get("CLAUDE_MEM_DIR") or os.path.join(os.path.expanduser("~"), ".claude-mem")
    os.makedirs(base, mode=0o700, exist_ok=True)
    try:
        payload = json.loads(body)
    except ValueError:
        return  # not an event; nothing worth keeping
    line = json.dumps({"id": str(uuid.uuid4()), "spooled_at": time.time(), "payload": payload})
    fd = os.open(os.path.join(base, "spool.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        # One write of a whole line with O_APPEND: concurrent hooks never interleave lines.
        os.write(fd, (line + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def post(body: bytes) -> bytes | None:
    url = os.environ.get("CLAUDE_MEM_URL") or DEFAULT_URL
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    timeout = float(os.environ.get("CLAUDE_MEM_TIMEOUT", "5"))
    if scheme == "https":
        conn = http.client.HTTPSConnection(host, timeout=timeout)
    else:
        conn = http.client.HTTPConnection(host, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    token = os.environ.get("CLAUDE_MEM_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request("POST", PATH, body=body, headers=headers)
        response = conn.getresponse()
        answer = response.read()
    finally:
        conn.close()
    if 200 <= response.status < 300:
        return answer
    sys.stderr.write(f"claude-mem: server answered {response.status}\n")
    return None


def main() -> int:
    body = sys.stdin.buffer.read()
    if not body.strip():
        return 0
    try:
        answer = post(body)
    except (OSError, http.client.HTTPException):
        try:
            spool(body)
        except OSError as error:
            sys.stderr.write(f"claude-mem: could not spool the event: {error}\n")
        return 0
    if answer:
        sys.stdout.buffer.write(answer)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as error:  # noqa: BLE001 - a hook must never fail the agent
        sys.stderr.write(f"claude-mem: {error}\n")
        sys.exit(0)
