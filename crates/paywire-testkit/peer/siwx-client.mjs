// One request with the official x402 TypeScript sign-in-with-x client:
// wrapFetchWithSIWx(fetch, privateKeyToAccount(key)) from @x402/extensions/sign-in-with-x.
// On a 402 whose PAYMENT-REQUIRED advertises sign-in-with-x, it signs the challenge (SIWE
// for eip155) and retries once with the SIGN-IN-WITH-X header. It never pays.
//
// Usage: node siwx-client.mjs '{"url": "...", "privateKey": "0x..", "method": "GET"}'
// Prints one JSON line on stdout: {status, body, paymentRequiredHeader, headers, exchanges}
// where exchanges lists every HTTP exchange the wrapper made: {requestHeaders, status}.
import { wrapFetchWithSIWx } from "@x402/extensions/sign-in-with-x";
import { privateKeyToAccount } from "viem/accounts";

const config = JSON.parse(process.argv[2]);
const exchanges = [];
const recordingFetch = async (input, init) => {
  const request = new Request(input, init);
  const requestHeaders = {};
  request.headers.forEach((value, name) => {
    requestHeaders[name] = value;
  });
  const response = await fetch(request);
  exchanges.push({ requestHeaders, status: response.status });
  return response;
};
const fetchWithSIWx = wrapFetchWithSIWx(recordingFetch, privateKeyToAccount(config.privateKey));

try {
  const response = await fetchWithSIWx(config.url, { method: config.method ?? "GET" });
  const headers = {};
  response.headers.forEach((value, name) => {
    headers[name] = value;
  });
  const body = await response.text();
  console.log(
    JSON.stringify({
      status: response.status,
      body,
      paymentRequiredHeader: response.headers.get("payment-required"),
      headers,
      exchanges,
    }),
  );
} catch (error) {
  console.error("siwx client error:", error);
  console.log(JSON.stringify({ error: error instanceof Error ? error.message : String(error), exchanges }));
  process.exit(1);
}
