#!/usr/bin/env python3
"""Claude Code command hook: post the event on stdin to the memory server.

For machines where the server is not always running. It prints the server's answer, and
when the server cannot be reached (or is busy) appends the event to a spool file that the
server takes in at its next start. It always exits 0, quickly: it must never block the agent.

It runs once per tool call, so its start-up is its cost. Run it with `python -S`; it
imports nothing but the C socket module: http.client alone costs ~100 ms (it imports ssl
and email), socket ~10 ms (enum conversions), json and the idna codec ~9 ms each (re). The
request is plain HTTP/1.1 written by hand, and http.client is imported only for an https://
URL.

Only when it spools does it load more: json and the server's own redaction rules (the
package's redaction modules are standard library only), so that no secret waits in the
spool in clear. The spool is 0600 in a 0700 directory.

A SessionStart that finds no server is handed to session_start.py beside this file, which
starts the server and answers the context (from the file itself if the server is slow).

Settings: the server's URL as the first argument, or CLAUDE_MEM_URL (default
http://127.0.0.1:8765); CLAUDE_MEM_TOKEN, CLAUDE_MEM_DIR, CLAUDE_MEM_TIMEOUT (seconds,
default 5).
"""

import os
import sys
import time

try:
    import _socket as sockets  # the C module: what socket wraps, without its start-up cost
except ImportError:  # pragma: no cover - an interpreter without it
    import socket as sockets

DEFAULT_URL = "http://127.0.0.1:8765"
PATH = "/-/claude-mem/hooks"
# The memory's directory when CLAUDE_MEM_DIR is not set (names.DEFAULT_DIR_NAME).
DEFAULT_DIR_NAME = ".datasette-claude-mem"
SESSION_START_SCRIPT = "session_start.py"


def server_url() -> str:
    """The URL install wrote after the script's path, else CLAUDE_MEM_URL, else the default."""
    given = sys.argv[1] if len(sys.argv) > 1 and "://" in sys.argv[1] else ""
    return given or os.environ.get("CLAUDE_MEM_URL") or DEFAULT_URL


def base_dir() -> str:
    return os.environ.get("CLAUDE_MEM_DIR") or os.path.join(
        os.path.expanduser("~"), DEFAULT_DIR_NAME
    )


def event_name(body: bytes) -> bytes | None:
    """The event's hook_event_name, found without json (whose import costs more than the
    rest of the script; only spooling loads it)."""
    key = b'"hook_event_name"'
    at = body.find(key)
    if at < 0:
        return None
    rest = body[at + len(key) :].lstrip()
    if not rest.startswith(b":"):
        return None
    rest = rest[1:].lstrip()
    end = rest.find(b'"', 1)
    return rest[1:end] if rest.startswith(b'"') and end > 0 else None


class ServerError(Exception):
    """The server answered, but not with an answer worth printing."""


def spool_id() -> str:
    """A UUIDv7: it becomes the event's id, and ids sort as the events happened.

    The store orders events by (created_at, id), and spooled events all get the time they
    were taken in, so their ids alone keep them in order (a random uuid4 would shuffle the
    events taken in within one millisecond).
    """
    ms, ns = divmod(time.time_ns(), 1_000_000)
    # The 12 bits after the version hold the fraction of the millisecond (RFC 9562, 6.2).
    value = ms << 80 | 0x7 << 76 | (ns * 4096 // 1_000_000) << 64 | 0b10 << 62
    value |= int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


# The fields every event has, which say where it came from and are kept as they are.
COMMON_FIELDS = ("session_id", "transcript_path", "cwd", "permission_mode", "hook_event_name")


class RulesUnavailable(Exception):
    """The redaction rules could not be loaded: an event is then not spooled at all."""


def _scrubber():
    """The server's redaction engine, loaded from this package without the package itself.

    The package's __init__ needs Datasette, which `python -S` cannot see; an empty stand-in
    for it lets the redaction modules (standard library only) be imported from its folder.
    """
    name = "datasette_claude_mem"
    if name not in sys.modules:
        package = type(sys)(name)
        package.__path__ = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
        sys.modules[name] = package
    try:
        from datasette_claude_mem.redaction.scrub import Scrubber
    except Exception as error:  # noqa: BLE001 - any failure to load means: do not spool
        raise RulesUnavailable(f"could not load the redaction rules: {error}") from error
    return Scrubber()


def redact_event(event: dict, counts: dict | None = None) -> dict:
    """The event with every field but the common ones redacted, as the server does; what was
    taken is added to ``counts`` by kind."""
    scrubber = _scrubber()
    return {k: v if k in COMMON_FIELDS else scrubber.value(v, counts) for k, v in event.items()}


def spool_line(body: bytes) -> bytes | None:
    """The spool's line for an event: its id, when, and the event redacted; None if no event."""
    import json

    try:
        event = json.loads(body)
    except (ValueError, RecursionError):
        return None  # not an event; nothing worth keeping
    if not isinstance(event, dict):
        return None
    counts: dict[str, int] = {}
    entry = {"id": spool_id(), "spooled_at": time.time(), "payload": redact_event(event, counts)}
    if counts:
        entry["redactions"] = counts  # the server's count would find only markers
    return json.dumps(entry).encode("ascii") + b"\n"


def spool(body: bytes) -> None:
    line = spool_line(body)
    if line is None:
        return
    base = base_dir()
    os.makedirs(base, mode=0o700, exist_ok=True)
    if os.stat(base).st_mode & 0o077:
        os.chmod(base, 0o700)  # made earlier, or under a loose umask: private from now on
    append_line(os.path.join(base, "spool.jsonl"), line)


def append_line(path: str, line: bytes, *, durable: bool = False) -> None:
    """Append one whole line to a spool, as the server's reader expects; ``durable``: on the
    disk (fsync) before this returns, for a line whose event was already acknowledged."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no POSIX locks: the plain append
        fcntl = None
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.fchmod(fd, 0o600)  # a spool made by an older hook, or copied in, is private too
            if fcntl is not None:
                # The server renames the spool and then locks it before reading it: a line
                # written under this shared lock to the file still at `path` is read.
                fcntl.flock(fd, fcntl.LOCK_SH)
                try:
                    moved = os.fstat(fd).st_ino != os.stat(path).st_ino
                except FileNotFoundError:
                    moved = True
                if moved:
                    continue  # taken away meanwhile: write to the new spool
            # One write of a whole line with O_APPEND: concurrent hooks never interleave lines.
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(f"only {written} of {len(line)} bytes reached the spool")
            if durable:
                os.fsync(fd)
                _sync_directory(os.path.dirname(path) or ".")  # a spool just made, too
            return
        finally:
            os.close(fd)


def _sync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _headers(host: str, length: int) -> dict[str, str]:
    headers = {
        "Host": host,
        "Content-Type": "application/json",
        "Content-Length": str(length),
        "Connection": "close",
    }
    token = os.environ.get("CLAUDE_MEM_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _split_host(host: str, default_port: int) -> tuple[str, int]:
    if host.startswith("["):  # [::1]:8765
        name, _, rest = host[1:].partition("]")
        return name, int(rest[1:]) if rest.startswith(":") else default_port
    name, _, port = host.partition(":")
    return name, int(port) if port else default_port


def _connect(host: str, port: int, timeout: float):
    error: OSError = ConnectionError(f"no address for {host}")
    # An ASCII name as bytes: a str would load the idna codec (and re with it), ~9 ms.
    name = host.encode("ascii") if host.isascii() else host
    for family, kind, proto, _, address in sockets.getaddrinfo(name, port, 0, sockets.SOCK_STREAM):
        sock = sockets.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            return sock
        except OSError as failed:
            sock.close()
            error = failed
    raise error


def _dechunk(data: bytes) -> bytes:
    out = []
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return b"".join(out)
        out.append(data[:size])
        data = data[size + 2 :]


def _exchange(host: str, body: bytes, timeout: float) -> tuple[int, bytes]:
    """One POST over a plain socket; the answer's status and body."""
    name, port = _split_host(host, 80)
    head = f"POST {PATH} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in _headers(host, len(body)).items()
    )
    sock = _connect(name, port, timeout)
    try:
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    finally:
        sock.close()
    status_and_headers, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
    lines = status_and_headers.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ServerError(f"not an HTTP answer: {lines[0][:80]!r}")
    fields = {}
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        fields[key.strip().lower()] = value.strip().lower()
    if fields.get(b"transfer-encoding") == b"chunked":
        payload = _dechunk(payload)
    elif fields.get(b"content-length", b"").isdigit():
        payload = payload[: int(fields[b"content-length"])]
    return int(parts[1]), payload


def _exchange_tls(host: str, body: bytes, timeout: float) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPSConnection(host, timeout=timeout)
    headers = _headers(host, len(body))
    try:
        conn.request("POST", PATH, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    except http.client.HTTPException as error:
        raise ConnectionError(str(error)) from error
    finally:
        conn.close()


def post(body: bytes) -> bytes | None:
    """The server's answer; OSError when it cannot be reached or is busy (so: spool)."""
    url = server_url()
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    timeout = float(os.environ.get("CLAUDE_MEM_TIMEOUT", "5"))
    exchange = _exchange_tls if scheme == "https" else _exchange
    status, answer = exchange(host, body, timeout)
    if 200 <= status < 300:
        return answer
    if status == 503:
        # Busy: nothing was stored, so keep the event for the server's next start.
        raise ConnectionError("the server is busy (503)")
    sys.stderr.write(f"claude-mem: server answered {status}\n")
    return None


def hand_over_session_start(body: bytes) -> None:
    """Replace this process with session_start.py, the event on its stdin; returns only if
    that cannot be done. Without -S: it may need the package, to read the memory file."""
    if len(body) > 60_000:  # more than a pipe holds unread
        return
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), SESSION_START_SCRIPT)
    read_end, write_end = os.pipe()
    os.write(write_end, body)
    os.close(write_end)
    os.dup2(read_end, 0)
    os.close(read_end)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, script, *sys.argv[1:2]])


def main() -> int:
    body = sys.stdin.buffer.read()
    if not body.strip():
        return 0
    try:
        answer = post(body)
    except OSError:
        if event_name(body) == b"SessionStart":
            try:
                hand_over_session_start(body)
            except OSError as error:
                sys.stderr.write(f"claude-mem: could not start the server: {error}\n")
        try:
            spool(body)
        except (OSError, RulesUnavailable) as error:
            sys.stderr.write(f"claude-mem: could not spool the event: {error}\n")
        return 0
    if answer:
        sys.stdout.buffer.write(answer)
    return 0


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # noqa: BLE001 - a hook must never fail the agent
        sys.stderr.write(f"claude-mem: {error}\n")
    # Everything is written: skip the interpreter's teardown (~4 ms of a ~20 ms run).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
