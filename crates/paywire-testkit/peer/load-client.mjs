// Many paid requests from one Node process with the official x402 TypeScript client
// (wrapFetchWithPayment + x402Client.fromConfig with the exact EVM client scheme), so that a
// throughput figure is not dominated by Node start-up as it would be with one client.mjs per
// request. Worker w of `concurrency` pays from privateKeys[w % privateKeys.length].
//
// Usage: node load-client.mjs '{"url": "...", "privateKeys": ["0x.."], "network": "eip155:31337",
//   "asset": "0x..", "maxAmountPerPayment": "1000000", "requests": 50, "concurrency": 8}'
// Prints one JSON line on stdout: {requests, concurrency, ok, errors, seconds, perSecond,
// latenciesMs (successful requests only), firstError}. A request counts as ok when it ends
// 200 with a PAYMENT-RESPONSE header.
import { x402Client } from "@x402/core/client";
import { wrapFetchWithPayment } from "@x402/fetch";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { privateKeyToAccount } from "viem/accounts";

const config = JSON.parse(process.argv[2]);
const requests = config.requests;
const concurrency = Math.max(1, config.concurrency);

const payingFetch = (privateKey) =>
  wrapFetchWithPayment(
    fetch,
    x402Client.fromConfig({
      schemes: [{ network: config.network, client: new ExactEvmScheme(privateKeyToAccount(privateKey)) }],
      spendControls: {
        allowedAssets: [
          { network: config.network, asset: config.asset, maxAmountPerPayment: config.maxAmountPerPayment },
        ],
      },
    }),
  );

const latenciesMs = [];
let next = 0;
let errors = 0;
let firstError = null;
const noteError = (message) => {
  errors += 1;
  firstError ??= message;
};

const worker = async (index) => {
  const fetchWithPayment = payingFetch(config.privateKeys[index % config.privateKeys.length]);
  while (next < requests) {
    next += 1;
    const began = performance.now();
    try {
      const response = await fetchWithPayment(config.url, { method: "GET" });
      // Drain the body so the connection is reusable and the timing includes it.
      await response.text();
      if (response.status === 200 && response.headers.get("payment-response")) {
        latenciesMs.push(performance.now() - began);
      } else {
        noteError(`status ${response.status}`);
      }
    } catch (error) {
      noteError(error instanceof Error ? error.message : String(error));
    }
  }
};

const started = performance.now();
await Promise.all(Array.from({ length: concurrency }, (_, index) => worker(index)));
const seconds = (performance.now() - started) / 1000;
console.log(
  JSON.stringify({
    requests,
    concurrency,
    ok: latenciesMs.length,
    errors,
    seconds,
    perSecond: seconds > 0 ? latenciesMs.length / seconds : 0,
    latenciesMs,
    firstError,
  }),
);
