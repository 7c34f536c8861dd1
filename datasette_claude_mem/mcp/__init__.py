"""The memory's MCP server: tools an agent calls mid-session, served over Streamable HTTP
at /-/claude-mem/mcp inside the same Datasette process as the rest of the API."""
