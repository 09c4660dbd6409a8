"""A paid MCP tool server built with the official x402 Python SDK (x402.mcp).

FastMCP (mcp 1.x) with one tool wrapped by ``x402.mcp.create_payment_wrapper`` (the SDK's
FastMCP decorator), priced in ``exact`` on the devnet through an ``x402ResourceServer`` over an
``HTTPFacilitatorClient`` (the facilitator under test), and one free tool.

Usage: python mcp_server.py '{"facilitatorUrl": "http://127.0.0.1:P", "network": "eip155:31337",
  "payTo": "0x..", "amount": "10000", "asset": "0x..", "eip712Name": "USD Coin",
  "eip712Version": "2", "paidTool": "get_weather", "freeTool": "ping",
  "resourceUrl": null, "transport": "http", "logFile": null, "pauseFile": null}'

transport "http" (default): streamable HTTP at http://127.0.0.1:<port>/mcp; prints
"READY <port>" on stdout once it listens and the facilitator's /supported was read.
transport "stdio": MCP over stdin/stdout (nothing else may go to stdout); logs go to stderr.

Log lines go to stderr, or are appended to "logFile" when set (with stdio, the client owns the
server's stderr). Every tool run is logged as "TOOL_RUN <name> <arguments JSON>" so a test can
count how often the tool body ran; every settlement as "SETTLED <SettleResponse JSON>".
With "pauseFile", the paid tool's body waits (after logging TOOL_RUN, i.e. after verification)
until that file exists, so a test can act between verification and settlement.
"""

import asyncio
import json
import logging
import os
import socket
import sys
from datetime import datetime, timezone

import uvicorn
from mcp.server.fastmcp import FastMCP

from x402 import x402ResourceServer
from x402.http import HTTPFacilitatorClient
from x402.mcp import PaymentWrapperHooks, create_payment_wrapper
from x402.mechanisms.evm.exact import ExactEvmServerScheme
from x402.schemas import ResourceConfig, ResourceInfo

CONFIG = json.loads(sys.argv[1])


def log(*parts):
    stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    if CONFIG.get("logFile"):
        with open(CONFIG["logFile"], "a", encoding="utf-8") as file:
            print(stamp, *parts, file=file, flush=True)
    else:
        print(stamp, *parts, file=sys.stderr, flush=True)


def build_resource_server():
    facilitator = HTTPFacilitatorClient({"url": CONFIG["facilitatorUrl"]})
    server = x402ResourceServer(facilitator)
    server.register(CONFIG["network"], ExactEvmServerScheme())
    # Reads GET /supported once (synchronously); build_payment_requirements needs it.
    server.initialize()
    return server


def build_accepts(server):
    config = ResourceConfig(
        scheme="exact",
        pay_to=CONFIG["payTo"],
        network=CONFIG["network"],
        # An AssetAmount: the devnet USDC is not one of the SDK's default assets.
        price={
            "amount": str(CONFIG["amount"]),
            "asset": CONFIG["asset"],
            "extra": {"name": CONFIG["eip712Name"], "version": CONFIG["eip712Version"]},
        },
        max_timeout_seconds=CONFIG.get("maxTimeoutSeconds", 300),
    )
    return server.build_payment_requirements(config)


def build_app(server, accepts):
    paid_name = CONFIG.get("paidTool", "get_weather")
    free_name = CONFIG.get("freeTool", "ping")
    resource_url = CONFIG.get("resourceUrl") or f"mcp://tool/{paid_name}"
    mcp = FastMCP("paywire-python-peer", host="127.0.0.1", log_level="WARNING")

    def after_settlement(context):
        log("SETTLED", context.settlement.model_dump_json(by_alias=True, exclude_none=True))

    paid = create_payment_wrapper(
        server,
        accepts=accepts,
        resource=ResourceInfo(
            url=resource_url,
            description="Weather report (paid)",
            mime_type="application/json",
        ),
        hooks=PaymentWrapperHooks(on_after_settlement=after_settlement),
    )

    async def paid_tool(city: str) -> dict:
        log("TOOL_RUN", paid_name, json.dumps({"city": city}))
        pause_file = CONFIG.get("pauseFile")
        while pause_file and not os.path.exists(pause_file):
            await asyncio.sleep(0.02)
        return {"city": city, "weather": "sunny", "temperature": 70}

    # The wrapper names the default resource after the function; keep the name configurable.
    paid_tool.__name__ = paid_name
    mcp.tool(name=paid_name, description="Weather report (paid)")(paid(paid_tool))

    def free_tool(message: str = "pong") -> str:
        log("TOOL_RUN", free_name, json.dumps({"message": message}))
        return message

    mcp.tool(name=free_name, description="Echoes its message (free)")(free_tool)
    return mcp


async def serve_http(mcp):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", CONFIG.get("port", 0)))
    port = sock.getsockname()[1]
    config = uvicorn.Config(mcp.streamable_http_app(), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise SystemExit("uvicorn stopped before it started")
        await asyncio.sleep(0.01)
    print(f"READY {port}", flush=True)
    await task


def main():
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    server = build_resource_server()
    accepts = build_accepts(server)
    log("ACCEPTS", json.dumps([a.model_dump(by_alias=True, exclude_none=True) for a in accepts]))
    mcp = build_app(server, accepts)
    if CONFIG.get("transport", "http") == "stdio":
        mcp.run("stdio")
    else:
        asyncio.run(serve_http(mcp))


if __name__ == "__main__":
    main()
