// One paid request with the official x402 TypeScript client on Solana: wrapFetchWithPayment +
// x402Client.fromConfig with the exact SVM client scheme of @x402/svm, built with an explicit
// rpcUrl (registerExactSvmScheme would use the public cluster URL). The scheme reads the mint
// (getAccountInfo, base64) and the latest blockhash (getLatestBlockhash) from that RPC.
// Spend controls are off: the test chain's mint need not be one of the SDK's default assets.
//
// Usage: node svm-client.mjs '{"url": "...", "secretKey": "...", "rpcUrl": "http://127.0.0.1:8899",
//   "network": "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1", "method": "GET"}'
// secretKey: 64 hex chars (a 32-byte ed25519 seed), base58 of a 32-byte seed or of a 64-byte
// Solana keypair (seed ‖ public key), or a JSON array of 64 bytes (a solana-keygen file).
// The network must be one of the three Solana CAIP-2 ids the SDK knows (mainnet, devnet, testnet).
// Prints one JSON line on stdout: {status, body, paymentResponseHeader, paymentResponse (the SDK's
// decoding of it), paymentResponseError, paymentRequiredHeader, headers, clientAddress,
// paymentSignatureHeaders (every PAYMENT-SIGNATURE value the client sent, in order)}.
import { x402Client, x402HTTPClient } from "@x402/core/client";
import { wrapFetchWithPayment } from "@x402/fetch";
import { ExactSvmScheme } from "@x402/svm/exact/client";
import {
  createKeyPairSignerFromBytes,
  createKeyPairSignerFromPrivateKeyBytes,
  getBase58Encoder,
} from "@solana/kit";

/** A kit signer from the accepted secret key spellings (see the header). */
async function signerFrom(secretKey) {
  const text = String(secretKey).trim();
  let bytes;
  if (/^[0-9a-fA-F]{64}$/.test(text)) {
    bytes = Uint8Array.from(Buffer.from(text, "hex"));
  } else if (text.startsWith("[")) {
    bytes = Uint8Array.from(JSON.parse(text));
  } else {
    bytes = Uint8Array.from(getBase58Encoder().encode(text));
  }
  if (bytes.length === 32) return createKeyPairSignerFromPrivateKeyBytes(bytes);
  if (bytes.length === 64) return createKeyPairSignerFromBytes(bytes);
  throw new Error(`secretKey must be 32 or 64 bytes, got ${bytes.length}`);
}

const config = JSON.parse(process.argv[2]);
const paymentSignatureHeaders = [];
const recordingFetch = async (input, init) => {
  const request = new Request(input, init);
  const sent = request.headers.get("payment-signature");
  if (sent) paymentSignatureHeaders.push(sent);
  return fetch(request);
};

try {
  const signer = await signerFrom(config.secretKey);
  const client = x402Client.fromConfig({
    schemes: [{ network: config.network, client: new ExactSvmScheme(signer, { rpcUrl: config.rpcUrl }) }],
    spendControls: false,
  });
  const fetchWithPayment = wrapFetchWithPayment(recordingFetch, client);
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
      clientAddress: signer.address,
      paymentSignatureHeaders,
    }),
  );
} catch (error) {
  console.error("client error:", error);
  process.exit(1);
}
