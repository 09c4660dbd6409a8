#!/usr/bin/env python3
"""Send-and-mine rate of a bare anvil as its chain grows (no paywire involved).

Usage: start anvil as the devnet does, then run this script against it, e.g.
  anvil --port 18545 --mixed-mining --block-time 1 --silent &
  python3 docs/benchmarks/anvil-chain-length.py http://127.0.0.1:18545 8 320

Eight of anvil's unlocked dev accounts send plain transfers (eth_sendTransaction),
each waiting for its receipt before the next; every round of ROUNDS sends PER
transactions and prints the rate, the median latency and the block reached.
Standard library only.
"""
import json
import sys
import threading
import time
import urllib.request

WORKERS = 8


def rpc(url, method, params):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    return json.loads(urllib.request.urlopen(request).read())


def worker(url, account, count, latencies):
    for _ in range(count):
        began = time.time()
        tx = {"from": account, "to": "0x000000000000000000000000000000000000dEaD", "value": "0x1"}
        tx_hash = rpc(url, "eth_sendTransaction", [tx])["result"]
        while rpc(url, "eth_getTransactionReceipt", [tx_hash])["result"] is None:
            time.sleep(0.002)
        latencies.append(time.time() - began)


def main():
    url, rounds, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    accounts = rpc(url, "eth_accounts", [])["result"][:WORKERS]
    for round_index in range(rounds):
        latencies = []
        threads = [
            threading.Thread(target=worker, args=(url, account, per // WORKERS, latencies))
            for account in accounts
        ]
        began = time.time()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.time() - began
        latencies.sort()
        block = int(rpc(url, "eth_blockNumber", [])["result"], 16)
        print(
            f"round {round_index}: {len(latencies) / elapsed:.0f} tx/s, "
            f"p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, block {block}",
            flush=True,
        )


if __name__ == "__main__":
    main()
