"""One MCP tool call paid with the official x402 Python SDK (x402.mcp).

``x402.mcp.x402MCPSession`` over an mcp 1.x ``ClientSession`` on streamable HTTP (or on a
stdio child process), with an ``x402Client`` holding the exact EVM client scheme for the
payer's eth-account key. Spend controls allow the given (non-default) asset up to
``maxAmountPerPayment`` atomic units.

Usage: python mcp_client.py '{"url": "http://127.0.0.1:P/mcp", "tool": "get_weather",
  "arguments": {"city": "Lisbon"}, "privateKey": "0x..", "network": "eip155:31337",
  "asset": "0x..", "maxAmountPerPayment": "1000000", "autoPayment": true,
  "command": null}'
With "command": ["prog", "arg", ...] instead of "url", the server is a stdio child process.

Prints one JSON line on stdout:
  {"isError", "content", "structuredContent", "meta" (the result's _meta), "paymentMade",
   "paymentResponse" (the SDK's parse of _meta["x402/payment-response"]),
   "paymentResponseValid" (whether that validated as the SDK's SettleResponse),
   "paymentRequired" (the SDK's parse of a final payment-required result, else null),
   "paymentPayload"
   (what was sent in _meta["x402/payment"], if anything), "tools" (names from tools/list),
   "error" (an exception the SDK raised, as text; then the other fields are null)}
Exits 0 whenever it printed that line.
"""

import asyncio
import json
import sys
import traceback
from contextlib import asynccontextmanager
from datetime import datetime, timezone

from eth_account import Account
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client

from x402 import x402Client
from x402.schemas import SettleResponse
from x402.mcp import x402MCPSession
from x402.mechanisms.evm.exact import ExactEvmClientScheme

CONFIG = json.loads(sys.argv[1])


def log(*parts):
    stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    print(stamp, *parts, file=sys.stderr, flush=True)


def build_payment_client(sent):
    account = Account.from_key(CONFIG["privateKey"])
    client = x402Client()
    client.register(CONFIG["network"], ExactEvmClientScheme(account))
    client.set_spend_controls(
        {
            "allowed_assets": [
                {
                    "network": CONFIG["network"],
                    "asset": CONFIG["asset"],
                    "max_amount_per_payment": str(CONFIG.get("maxAmountPerPayment", "1000000")),
                }
            ]
        }
    )

    def remember(context):
        # The payload exactly as x402MCPSession will send it (model_dump(by_alias=True)).
        sent.append(context.payment_payload.model_dump(by_alias=True, mode="json"))

    client.on_after_payment_creation(remember)
    return client


@asynccontextmanager
async def open_streams():
    command = CONFIG.get("command")
    if command:
        params = StdioServerParameters(command=command[0], args=list(command[1:]))
        async with stdio_client(params) as (read, write):
            yield read, write
    else:
        async with streamablehttp_client(CONFIG["url"]) as (read, write, _session_id):
            yield read, write


def dump(value):
    if value is None:
        return None
    if hasattr(value, "model_dump"):
        return value.model_dump(by_alias=True, mode="json", exclude_none=True)
    return value


async def call():
    sent = []
    payment_client = build_payment_client(sent)
    async with open_streams() as (read, write):
        async with ClientSession(read, write) as session:
            mcp = x402MCPSession(
                session, payment_client, auto_payment=CONFIG.get("autoPayment", True)
            )
            await mcp.initialize()
            tools = await mcp.list_tools()
            result = await mcp.call_tool(CONFIG["tool"], CONFIG.get("arguments") or {})
            raw = result.raw_result
            # The same reading the session does on a first answer (structuredContent, then
            # content text), applied to the final one: shows whether the SDK understands a
            # payment-required (or settlement-failed) result.
            required = mcp._extract_payment_required(raw) if result.is_error else None
            return {
                "isError": bool(result.is_error),
                "content": [dump(item) for item in result.content],
                "structuredContent": getattr(raw, "structuredContent", None),
                "meta": getattr(raw, "meta", None),
                "paymentMade": result.payment_made,
                "paymentResponse": dump(result.payment_response),
                "paymentResponseValid": isinstance(result.payment_response, SettleResponse),
                "paymentRequired": dump(required),
                "paymentPayload": sent[-1] if sent else None,
                "tools": [tool.name for tool in tools.tools],
                "error": None,
            }


def main():
    try:
        output = asyncio.run(call())
    except BaseException as error:  # noqa: BLE001 - reported to the test, not swallowed
        log("client error:", "".join(traceback.format_exception(error)))
        output = {"error": f"{type(error).__name__}: {error}"}
    print(json.dumps(output), flush=True)


if __name__ == "__main__":
    main()
