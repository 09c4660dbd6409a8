// Permit2 payloads exactly as the official TS clients build them: `exact` with
// assetTransferMethod "permit2" (ExactEvmScheme) and `upto` (UptoEvmScheme),
// made deterministic by pinning Date.now and crypto.getRandomValues.
// Output: JSON object on stdout (see README.md for how to run).
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { UptoEvmScheme } from "@x402/evm/upto/client";
import { privateKeyToAccount } from "viem/accounts";

const FIXED_NOW_MS = 1740672094000; // => deadline = 1740672094 + maxTimeoutSeconds
const RANDOM_HEX = "f3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480";
const PAYER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"; // anvil #1

Date.now = () => FIXED_NOW_MS;
const randomBytes = Buffer.from(RANDOM_HEX, "hex");
const randomCalls = [];
const realCrypto = globalThis.crypto;
Object.defineProperty(globalThis, "crypto", {
  configurable: true,
  writable: true,
  value: {
    subtle: realCrypto.subtle,
    getRandomValues(arr) {
      const bytes = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
      if (bytes.length > randomBytes.length) throw new Error(`unexpected getRandomValues(${bytes.length})`);
      bytes.set(randomBytes.subarray(0, bytes.length));
      randomCalls.push(bytes.length);
      return arr;
    },
  },
});

const base = {
  network: "eip155:84532",
  amount: "10000",
  asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
  payTo: "0x209693bc6afc0c5328ba36faf03c514ef312287c",
  maxTimeoutSeconds: 60,
};
const cases = [
  {
    id: "exact-permit2-with-domain",
    scheme: new ExactEvmScheme(privateKeyToAccount(PAYER_KEY)),
    requirements: { scheme: "exact", ...base, extra: { name: "USDC", version: "2", assetTransferMethod: "permit2" } },
  },
  {
    id: "exact-permit2-without-domain",
    scheme: new ExactEvmScheme(privateKeyToAccount(PAYER_KEY)),
    requirements: { scheme: "exact", ...base, maxTimeoutSeconds: 300, extra: { assetTransferMethod: "permit2" } },
  },
  {
    id: "upto",
    scheme: new UptoEvmScheme(privateKeyToAccount(PAYER_KEY)),
    requirements: {
      scheme: "upto",
      ...base,
      amount: "50000",
      extra: {
        name: "USDC",
        version: "2",
        assetTransferMethod: "permit2",
        facilitatorAddress: "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc",
      },
    },
  },
];

const out = [];
for (const { id, scheme, requirements } of cases) {
  const result = await scheme.createPaymentPayload(2, requirements);
  out.push({ id, requirements, payload: result.payload, payloadJson: JSON.stringify(result.payload), extensions: result.extensions ?? null });
}

process.stdout.write(
  JSON.stringify(
    {
      generator: "gen-permit2.mjs (ExactEvmScheme from @x402/evm/exact/client, UptoEvmScheme from @x402/evm/upto/client)",
      injected: { dateNowMs: FIXED_NOW_MS, getRandomValues: "0x" + RANDOM_HEX, getRandomValuesCalls: randomCalls, payerPrivateKey: PAYER_KEY },
      cases: out,
    },
    null,
    2,
  ) + "\n",
);
