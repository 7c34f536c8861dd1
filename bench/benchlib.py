"""What the benchmark scripts share: free ports, percentiles, and a description of the run.

The scripts run as `python bench/NAME.py`, so this file is importable beside them.
"""

from __future__ import annotations

import os
import platform
import socket
import sqlite3
from importlib import metadata
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` (0 to 1) of the values lie: nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def machine() -> str:
    """The system, its CPU count and CPU model, for a results file."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs ({cpu})"
    )


def versions(*packages: str) -> dict[str, str]:
    """Python's, SQLite's and each package's version ('-' when it is not installed)."""
    found = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "-"
    return found
