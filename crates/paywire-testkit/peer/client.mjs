// One paid request with the official x402 TypeScript client: wrapFetchWithPayment +
// x402Client.fromConfig with the exact and upto EVM client schemes (exact signs EIP-3009 or
// Permit2, as the requirements say), allowing the given asset (a non-default asset) through
// spendControls.allowedAssets.
//
// Usage: node client.mjs '{"url": "...", "privateKey": "0x..", "network": "eip155:31337",
//   "asset": "0x..", "maxAmountPerPayment": "1000000", "method": "GET"}'
// Prints one JSON line on stdout: {status, body, paymentResponseHeader, paymentResponse (the SDK's
// decoding of it), paymentResponseError, paymentRequiredHeader, headers}.
import { x402Client, x402HTTPClient } from "@x402/core/client";
import { wrapFetchWithPayment } from "@x402/fetch";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { UptoEvmScheme } from "@x402/evm/upto/client";
import { privateKeyToAccount } from "viem/accounts";

const config = JSON.parse(process.argv[2]);
const account = privateKeyToAccount(config.privateKey);
const client = x402Client.fromConfig({
  schemes: [
    { network: config.network, client: new ExactEvmScheme(account) },
    { network: config.network, client: new UptoEvmScheme(account) },
  ],
  spendControls: {
    allowedAssets: [
      { network: config.network, asset: config.asset, maxAmountPerPayment: config.maxAmountPerPayment },
    ],
  },
});
const fetchWithPayment = wrapFetchWithPayment(fetch, client);

try {
  const response = await fetchWithPayment(config.url, { method: config.method ?? "GET" });
  const headers = {};
  response.headers.forEach((value, name) => {
    headers[name] = value;
  });
  const body = await response.text();
  // The SDK's own reading of the receipt (base64 check + JSON.parse).
  let paymentResponse = null;
  let paymentResponseError = null;
  if (response.headers.get("payment-response") || response.headers.get("x-payment-response")) {
    try {
      paymentResponse = new x402HTTPClient(client).getPaymentSettleResponse((name) => response.headers.get(name));
    } catch (error) {
      paymentResponseError = error instanceof Error ? error.message : String(error);
    }
  }
  console.log(
    JSON.stringify({
      status: response.status,
      body,
      paymentResponseHeader: response.headers.get("payment-response"),
      paymentResponse,
      paymentResponseError,
      paymentRequiredHeader: response.headers.get("payment-required"),
      headers,
    }),
  );
} catch (error) {
  console.error("client error:", error);
  process.exit(1);
}
