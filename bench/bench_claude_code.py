"""What the memory's hooks cost a real Claude Code session.

The same scripted session (Read, Edit, Write, Bash twice with one failure, Grep, Glob and a
subagent, against the fake Messages API of tests/e2e) runs with no hooks, with http hooks and
with command hooks, the three interleaved in each round (their order rotating), for at least
five rounds. Each mode's wall time is a ratio to the no-hooks run of the same round; the
result is the median ratio. Then the SessionStart command hook alone: its p50 with a running
server, and with none running (where it must start one, or spool).

Run `python bench/bench_claude_code.py [--rounds N]`; it writes bench/RESULTS-claude-code.md.
The CLI comes from tests/e2e/node_modules (scripts/test installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "tests" / "e2e"), str(HERE)]

from benchlib import ServerProcess, free_port, machine, memory_env, percentile, versions  # noqa: E402
from claude_cli import (  # noqa: E402
    PINNED_VERSION,
    ClaudeWorld,
    claude_command,
    listening_pid,
)
from fake_anthropic import FakeAnthropic, Script, tool_session  # noqa: E402

from datasette_claude_mem.names import HOOK_SCRIPT  # noqa: E402

MODES = ("none", "http", "command")
GOALS = {"http": 1.10, "command": 1.25}
START_GOAL_MS = {"running": 60.0, "down": 1500.0}
BIN = Path(sys.executable).parent
REPO_FILES = {"calc.py": "def add(a, b):\n    return a + b\n", "README.md": "demo\n"}


def session_scripts(repo: Path, tag: str) -> list[Script]:
    """A fresh copy of the scripted session (new tool_use ids each time)."""
    return tool_session(repo, f"MAIN-{tag}", f"SUB-{tag}", "Done.")


def reset_repo(repo: Path) -> None:
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "--", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "clean", "-qfd"], check=True)


def start_server(base: Path, port: int, log: Path) -> ServerProcess:
    args = [str(BIN / "datasette"), "claude-mem", "serve", "--port", str(port)]
    return ServerProcess("memory", args, memory_env(base), port, log).wait(
        "/-/claude-mem/openapi.json"
    )


def token(base: Path) -> str:
    done = subprocess.run(
        [str(BIN / "datasette"), "claude-mem", "token"],
        env=memory_env(base),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def make_world(root: Path, fake: FakeAnthropic, mode: str, url: str, secret: str) -> ClaudeWorld:
    world = ClaudeWorld(root / mode, fake.url)
    world.make_repo(REPO_FILES)
    world.mem_dir = root / "mem"
    world.extra_env.update(CLAUDE_MEM_TOKEN=secret, CLAUDE_MEM_URL=url)
    if mode != "none":
        flags = ["--command"] if mode == "command" else []
        args = ["install", "--settings", str(world.settings_path), "--url", url, *flags]
        done = world.memory_cli(*args)
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
    return world


def timed_session(world: ClaudeWorld, fake: FakeAnthropic, tag: str) -> float:
    reset_repo(world.repo)
    fake.scripts[:] = session_scripts(world.repo, tag)
    started = time.perf_counter()
    session = world.run(f"MAIN-{tag}: tidy calc.py")
    seconds = time.perf_counter() - started
    if session.returncode != 0 or len(session.tool_uses()) != 9:
        raise RuntimeError(f"{tag}: the session did not run as scripted:\n{session.stderr}")
    return seconds


def hook_once(payload: bytes, env: dict[str, str]) -> tuple[float, bytes]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-S", str(HOOK_SCRIPT)],
        input=payload,
        env=env,
        capture_output=True,
        timeout=30,
    )
    return (time.perf_counter() - started) * 1000, done.stdout


def session_start_payload(repo: Path, n: int) -> bytes:
    event = {
        "session_id": f"bench-start-{n}",
        "transcript_path": str(repo / "t.jsonl"),
        "cwd": str(repo),
        "hook_event_name": "SessionStart",
        "source": "startup",
    }
    return json.dumps(event).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--hook-runs", type=int, default=40)
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS-claude-code.md")
    args = parser.parse_args()
    if args.rounds < 5:
        parser.error("at least 5 rounds")
    if claude_command() is None:
        sys.exit(f"Claude Code {PINNED_VERSION} is not installed: npm ci --prefix tests/e2e")
    began = time.perf_counter()
    load_start = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="bench-claude-code-"))
    fake = FakeAnthropic().start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(root / "mem", port, root / "server.log")
    secret = token(root / "mem")
    worlds = {mode: make_world(root, fake, mode, url, secret) for mode in MODES}
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    try:
        timed_session(worlds["none"], fake, "warm")  # the first run of the binary is slower
        for round_no in range(args.rounds):
            order = MODES[round_no % 3 :] + MODES[: round_no % 3]
            for mode in order:
                times[mode].append(timed_session(worlds[mode], fake, f"{mode}{round_no}"))

        hook_env = {**worlds["command"].env(), "CLAUDE_MEM_URL": url}
        repo = worlds["command"].repo
        running = [
            hook_once(session_start_payload(repo, n), hook_env)[0] for n in range(args.hook_runs)
        ]
    finally:
        server.stop()
    # No server: the hook has to start one (or spool). Each try starts from none running.
    down, started_one = [], 0
    pid_file = worlds["command"].mem_dir / "server.pid"
    try:
        for n in range(5):
            ms, _ = hook_once(session_start_payload(repo, 1000 + n), hook_env)
            down.append(ms)
            # A server the hook started (it may still be coming up): stop it before the next.
            deadline = time.monotonic() + 15
            pid = listening_pid(port)
            while pid is None and pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
                pid = listening_pid(port)
            if pid is not None:
                started_one += 1
                os.kill(pid, 15)
                # Gone, not only closed its port: it holds the memory directory's start lock.
                while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
            pid_file.unlink(missing_ok=True)
    finally:
        fake.stop()
        shutil.rmtree(root, ignore_errors=True)
    write_results(args, times, running, down, started_one, began, load_start)


def write_results(args, times, running, down, started_one, began, load_start) -> None:
    ratios = {
        mode: [t / base for t, base in zip(times[mode], times["none"], strict=True)]
        for mode in ("http", "command")
    }
    lines = [
        "# Claude Code session benchmark results",
        "",
        f"Written by `python bench/bench_claude_code.py --rounds {args.rounds}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, in {time.perf_counter() - began:.0f} s.",
        "",
        f"- Machine: {machine()}; load average at start {load_start:.2f} / end "
        f"{os.getloadavg()[0]:.2f} (1 min)",
        "- Versions: "
        + ", ".join(f"{k} {v}" for k, v in versions("datasette", "sqlite-utils").items())
        + f", Claude Code {PINNED_VERSION}",
        "- The session: `claude -p` against the fake Messages API of tests/e2e, 9 tool uses "
        "(Read, Edit, Write, Bash, a failing Bash, Grep, Glob, a subagent running Bash), "
        "about 12 model requests. One memory server serves the http and command hooks; its "
        "worker is off. Times are seconds of wall clock for the whole `claude` process.",
        "- Rounds run the three modes back to back in a rotating order; each ratio is to the "
        "no-hooks run of the same round.",
        "",
        "## Goals",
        "",
    ]
    for mode, goal in GOALS.items():
        median = statistics.median(ratios[mode])
        verdict = "met" if median <= goal else "NOT met"
        lines.append(
            f"- {mode} hooks, median ratio to no hooks: {verdict} ({median:.3f}x vs <= {goal}x)"
        )
    run_p50 = percentile(running, 0.5)
    verdict = "met" if run_p50 <= START_GOAL_MS["running"] else "NOT met"
    lines.append(
        f"- SessionStart command hook with a running server, p50: {verdict} "
        f"({run_p50:.1f} ms vs <= {START_GOAL_MS['running']:.0f} ms)"
    )
    down_p50 = percentile(down, 0.5)
    if started_one:
        verdict = "met" if down_p50 <= START_GOAL_MS["down"] else "NOT met"
        what = f"started a server in {started_one} of {len(down)} tries"
    else:
        verdict = "not measured"
        what = "it started no server (it spooled the event), so this is the spool path's time"
    lines.append(
        f"- SessionStart command hook with no server running, p50: {verdict} "
        f"({down_p50:.1f} ms vs <= {START_GOAL_MS['down']:.0f} ms; {what})"
    )
    added = {
        mode: statistics.median(
            t - base for t, base in zip(times[mode], times["none"], strict=True)
        )
        for mode in ("http", "command")
    }
    lines += [
        "",
        f"Median wall time the hooks add to a session: http {added['http'] * 1000:.0f} ms, "
        f"command {added['command'] * 1000:.0f} ms. The fake model answers at once, so the "
        "scripted session is nearly all tool and hook time; with a real model's seconds per "
        "turn the same added time is a far smaller ratio.",
    ]
    lines += ["", "## Sessions (seconds)", ""]
    lines.append("| round | no hooks | http | command | http ratio | command ratio |")
    lines.append("|---|---|---|---|---|---|")
    for i in range(args.rounds):
        lines.append(
            f"| {i + 1} | {times['none'][i]:.2f} | {times['http'][i]:.2f} | "
            f"{times['command'][i]:.2f} | {ratios['http'][i]:.3f}x | {ratios['command'][i]:.3f}x |"
        )
    lines.append(
        f"| median | {statistics.median(times['none']):.2f} | "
        f"{statistics.median(times['http']):.2f} | {statistics.median(times['command']):.2f} | "
        f"{statistics.median(ratios['http']):.3f}x | {statistics.median(ratios['command']):.3f}x |"
    )
    lines += ["", "## SessionStart command hook (milliseconds, whole process)", ""]
    lines.append("| server | n | p50 | p90 | max |")
    lines.append("|---|---|---|---|---|")
    for name, values in (("running", running), ("not running", down)):
        lines.append(
            f"| {name} | {len(values)} | {percentile(values, 0.5):.1f} | "
            f"{percentile(values, 0.9):.1f} | {max(values):.1f} |"
        )
    args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
