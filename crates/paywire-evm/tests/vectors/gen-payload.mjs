// PaymentPayload exactly as the official TS client (x402Client + ExactEvmScheme) builds it,
// made deterministic by pinning Date.now and crypto.getRandomValues.
// Output: JSON object on stdout (see README.md for how to run).
import { x402Client, x402HTTPClient } from "@x402/core/client";
import {
  decodePaymentSignatureHeader,
  encodePaymentRequiredHeader,
  encodePaymentSignatureHeader,
} from "@x402/core/http";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { privateKeyToAccount } from "viem/accounts";

const FIXED_NOW_MS = 1740672094000; // => validBefore = 1740672094 + maxTimeoutSeconds(60) = 1740672154
const RANDOM_HEX = "f3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480";
const PAYER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"; // anvil #1

// --- determinism -----------------------------------------------------------
Date.now = () => FIXED_NOW_MS;
const randomBytes = Buffer.from(RANDOM_HEX, "hex");
const randomCalls = [];
const realCrypto = globalThis.crypto;
Object.defineProperty(globalThis, "crypto", {
  configurable: true,
  writable: true,
  value: {
    subtle: realCrypto.subtle,
    randomUUID: () => { throw new Error("randomUUID not expected"); },
    getRandomValues(arr) {
      const bytes = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
      if (bytes.length > randomBytes.length) throw new Error(`unexpected getRandomValues(${bytes.length})`);
      bytes.set(randomBytes.subarray(0, bytes.length));
      randomCalls.push(bytes.length);
      return arr;
    },
  },
});

// --- input -----------------------------------------------------------------
const paymentRequired = {
  x402Version: 2,
  error: "Payment required",
  resource: {
    url: "https://api.example.com/premium-data",
    description: "Premium data",
    mimeType: "application/json",
  },
  accepts: [
    {
      scheme: "exact",
      network: "eip155:84532",
      amount: "10000",
      asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
      payTo: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
      maxTimeoutSeconds: 60,
      extra: { name: "USDC", version: "2" },
    },
  ],
};

// --- run the official client -------------------------------------------------
const account = privateKeyToAccount(PAYER_KEY);
const client = new x402Client().register("eip155:84532", new ExactEvmScheme(account));
const httpClient = new x402HTTPClient(client);

const paymentPayload = await client.createPaymentPayload(paymentRequired);
const paymentPayloadJson = JSON.stringify(paymentPayload);
const headers = httpClient.encodePaymentSignatureHeader(paymentPayload);
const headerValue = headers["PAYMENT-SIGNATURE"];

// sanity checks
if (encodePaymentSignatureHeader(paymentPayload) !== headerValue) throw new Error("header helper mismatch");
if (Buffer.from(paymentPayloadJson, "utf8").toString("base64") !== headerValue) throw new Error("not plain base64(JSON)");
if (JSON.stringify(decodePaymentSignatureHeader(headerValue)) !== paymentPayloadJson) throw new Error("roundtrip mismatch");

process.stdout.write(
  JSON.stringify(
    {
      generator: "gen-payload.mjs (x402Client + ExactEvmScheme from @x402/evm/exact/client)",
      injected: {
        dateNowMs: FIXED_NOW_MS,
        getRandomValues: "0x" + RANDOM_HEX,
        getRandomValuesCalls: randomCalls,
        payerPrivateKey: PAYER_KEY,
        payerAddress: account.address,
      },
      paymentRequired,
      paymentRequiredJson: JSON.stringify(paymentRequired),
      paymentRequiredHeader: encodePaymentRequiredHeader(paymentRequired),
      paymentPayload,
      paymentPayloadJson,
      paymentSignatureHeaderName: Object.keys(headers)[0],
      paymentSignatureHeader: headerValue,
    },
    null,
    2,
  ) + "\n",
);
