//! Paid MCP tools over the payment gate (being built: issue 17).
