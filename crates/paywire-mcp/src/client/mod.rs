//! An MCP client that pays for tool calls (being built: issue 17).
