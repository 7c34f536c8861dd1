"""The plugin's names, its URL prefix and the files it ships, each defined once.

A leaf module: everything may import it, it imports nothing of the package.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

PLUGIN = "datasette-claude-mem"
DATABASE_NAME = "claude-mem"
DB_FILENAME = "claude-mem.db"
# The memory's directory under the home directory. claude-mem (another memory for Claude
# Code) keeps its own database at ~/.claude-mem/claude-mem.db, this project's old default.
DEFAULT_DIR_NAME = ".datasette-claude-mem"
CLAUDE_MEM_DIR_NAME = ".claude-mem"
WRITE_ACTION = "claude-mem-write"
HOOK_ACTOR = "claude-mem"
DEFAULT_PORT = 8765
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"

# Every route of the plugin, JSON and HTML, lives under this prefix.
PREFIX = "/-/claude-mem"
HOOK_PATH = f"{PREFIX}/hooks"
MCP_PATH = f"{PREFIX}/mcp"
MCP_SERVER_NAME = "claude-mem"
MENU_LABEL = "Claude memory"

PACKAGE_DIR = Path(__file__).parent
# The serve configuration; a user's copy in the memory directory wins (cli.serve_config_path).
SERVE_CONFIG = PACKAGE_DIR / "datasette.yaml"
HOOK_SCRIPT = PACKAGE_DIR / "claude_code" / "hook_script.py"
# templates/ and metadata.yml sit at the top of the repository: pyproject.toml maps the first
# to this package's templates and carries the second beside it, in the wheel and in editable
# installs alike.
TEMPLATES_DIR = Path(str(files("datasette_claude_mem.templates")))
METADATA = TEMPLATES_DIR.parent / "metadata.yml"
