"""`datasette claude-mem ...`: each command opens the memory and calls one module.

The commands are grouped by what they look after; importing them registers them on the group.
"""

from datasette_claude_mem.cli import claude_code, forget, memory, server
from datasette_claude_mem.cli.base import claude_mem, create_token, ensure_secret

__all__ = [
    "claude_code",
    "claude_mem",
    "create_token",
    "ensure_secret",
    "forget",
    "memory",
    "server",
]
