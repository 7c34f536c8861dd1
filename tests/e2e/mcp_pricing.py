"""A tiny stdio MCP server (made with the MCP Python SDK) that Claude Code starts in the
end-to-end tests, so that a session really calls an MCP tool."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

PRICES = {"apple": 3, "pear": 5}

server = MCPServer("pricing")


@server.tool()
def lookup_price(sku: str) -> str:
    """The price of one item, by its name."""
    price = PRICES.get(sku)
    return f"{sku} costs {price}" if price is not None else f"no price for {sku}"


if __name__ == "__main__":
    server.run("stdio")
