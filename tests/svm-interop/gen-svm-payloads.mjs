// PaymentPayloads for the Solana `exact` scheme exactly as the official TS client
// (x402Client + ExactSvmScheme from @x402/svm/exact/client) builds them, for fixed inputs.
//
// The client reads the mint and (unless the requirements carry extra.recentBlockhash) the
// latest blockhash over JSON-RPC: a tiny in-process fake RPC on 127.0.0.1 answers with fixed
// values and records every request it got. crypto.getRandomValues is pinned, so the memo
// nonce of the vectors without extra.memo is fixed too; ed25519 signing is deterministic.
// Output: a JSON array on stdout (see README.md for how to run and for the layout).
import http from "node:http";
import { x402Client, x402HTTPClient } from "@x402/core/client";
import { decodePaymentSignatureHeader, encodePaymentSignatureHeader } from "@x402/core/http";
import { ExactSvmScheme } from "@x402/svm/exact/client";
import { ExactSvmScheme as ExactSvmFacilitatorScheme } from "@x402/svm/exact/facilitator";
import { transactionMessageHash } from "@x402/svm";
import { findAssociatedTokenPda } from "@solana-program/token-2022";
import {
  createKeyPairSignerFromPrivateKeyBytes,
  getBase58Decoder,
  getBase58Encoder,
  getCompiledTransactionMessageDecoder,
  getTransactionDecoder,
} from "@solana/kit";

const TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
const TOKEN_2022_PROGRAM = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb";
const DEVNET = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";
const MAINNET = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp";
const USDC_DEVNET = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU";
const USDC_MAINNET = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
const PYUSD_DEVNET = "CXk2AMBfi3TwaEL2468s6zP8xq9NxTXjp9gjMgzeUynM"; // a Token-2022 default asset

// Test-only seeds: 32 bytes each, never holding real funds.
const CLIENT_SEED_HEX = "11".repeat(32);
const FEE_PAYER_SEED_HEX = "22".repeat(32);
const PAY_TO_SEED_HEX = "33".repeat(32);
const CUSTOM_MINT_SEED_HEX = "44".repeat(32);
const RANDOM_HEX = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
// 32 bytes 0x07 in base58: a fixed, valid blockhash.
const BLOCKHASH = getBase58Decoder().decode(new Uint8Array(32).fill(7));
const LAST_VALID_BLOCK_HEIGHT = 1000150;
const RPC_SLOT = 1000000;

// --- determinism -----------------------------------------------------------
const randomBytes = Buffer.from(RANDOM_HEX, "hex");
let randomCalls = [];
const realCrypto = globalThis.crypto;
Object.defineProperty(globalThis, "crypto", {
  configurable: true,
  writable: true,
  value: {
    subtle: realCrypto.subtle,
    randomUUID: () => {
      throw new Error("randomUUID not expected");
    },
    getRandomValues(arr) {
      const bytes = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
      if (bytes.length > randomBytes.length) throw new Error(`unexpected getRandomValues(${bytes.length})`);
      bytes.set(randomBytes.subarray(0, bytes.length));
      randomCalls.push(bytes.length);
      return arr;
    },
  },
});

const signerFromSeed = (hex) => createKeyPairSignerFromPrivateKeyBytes(Buffer.from(hex, "hex"));
const clientSigner = await signerFromSeed(CLIENT_SEED_HEX);
const feePayer = (await signerFromSeed(FEE_PAYER_SEED_HEX)).address;
const payTo = (await signerFromSeed(PAY_TO_SEED_HEX)).address;
const customMint = (await signerFromSeed(CUSTOM_MINT_SEED_HEX)).address;

// --- fake JSON-RPC ---------------------------------------------------------
// mint address -> { owner (token program), decimals }
const mints = new Map();
let rpcCalls = [];

/** An SPL mint account body (82 bytes): no mint authority, supply 0, decimals, initialized, no freeze authority. */
function mintAccountData(decimals) {
  const data = Buffer.alloc(82);
  data[44] = decimals;
  data[45] = 1;
  return data.toString("base64");
}

function answer(method, params) {
  const context = { slot: RPC_SLOT };
  if (method === "getLatestBlockhash") {
    return { context, value: { blockhash: BLOCKHASH, lastValidBlockHeight: LAST_VALID_BLOCK_HEIGHT } };
  }
  if (method === "getAccountInfo") {
    const mint = mints.get(params[0]);
    if (!mint) return { context, value: null };
    if (params[1]?.encoding !== "base64") throw new Error(`unexpected encoding ${params[1]?.encoding}`);
    return {
      context,
      value: {
        data: [mintAccountData(mint.decimals), "base64"],
        executable: false,
        lamports: 1461600,
        owner: mint.owner,
        rentEpoch: 0,
        space: 82,
      },
    };
  }
  throw new Error(`unexpected RPC method ${method}`);
}

const server = http.createServer((req, res) => {
  let body = "";
  req.on("data", (chunk) => (body += chunk));
  req.on("end", () => {
    const request = JSON.parse(body);
    rpcCalls.push({ method: request.method, params: request.params });
    let reply;
    try {
      reply = { jsonrpc: "2.0", id: request.id, result: answer(request.method, request.params) };
    } catch (error) {
      reply = { jsonrpc: "2.0", id: request.id, error: { code: -32601, message: String(error) } };
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(reply));
  });
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const rpcUrl = `http://127.0.0.1:${server.address().port}`;

// --- the cases -------------------------------------------------------------
const cases = [
  {
    name: "devnet-usdc-token-memo",
    network: DEVNET,
    mint: USDC_DEVNET,
    tokenProgram: TOKEN_PROGRAM,
    decimals: 6,
    amount: "10000",
    extra: { feePayer, memo: "paywire-order-0001" },
  },
  {
    name: "devnet-usdc-token-random-nonce",
    network: DEVNET,
    mint: USDC_DEVNET,
    tokenProgram: TOKEN_PROGRAM,
    decimals: 6,
    amount: "10000",
    extra: { feePayer },
  },
  {
    name: "devnet-pyusd-token2022-memo",
    network: DEVNET,
    mint: PYUSD_DEVNET,
    tokenProgram: TOKEN_2022_PROGRAM,
    decimals: 6,
    amount: "250000",
    extra: { feePayer, memo: "paywire-order-0002" },
  },
  {
    name: "devnet-custom-token2022-9-decimals-random-nonce",
    network: DEVNET,
    mint: customMint,
    tokenProgram: TOKEN_2022_PROGRAM,
    decimals: 9,
    amount: "1",
    extra: { feePayer },
  },
  {
    name: "devnet-usdc-token-server-blockhash",
    network: DEVNET,
    mint: USDC_DEVNET,
    tokenProgram: TOKEN_PROGRAM,
    decimals: 6,
    amount: "10000",
    // What the official server adds when built with an rpcUrl: the client then skips getLatestBlockhash.
    extra: { feePayer, memo: "paywire-order-0003", recentBlockhash: BLOCKHASH, lastValidBlockHeight: String(LAST_VALID_BLOCK_HEIGHT) },
  },
  {
    name: "mainnet-usdc-token-u64-max",
    network: MAINNET,
    mint: USDC_MAINNET,
    tokenProgram: TOKEN_PROGRAM,
    decimals: 6,
    amount: "18446744073709551615",
    extra: { feePayer, memo: "paywire-order-0004" },
  },
];

/** A view of the wire transaction so Rust tests can assert the layout without a second decoder. */
function decodeWire(base64) {
  const bytes = Buffer.from(base64, "base64");
  const tx = getTransactionDecoder().decode(bytes);
  const compiled = getCompiledTransactionMessageDecoder().decode(tx.messageBytes);
  const accounts = compiled.staticAccounts.map(String);
  const { numSignerAccounts, numReadonlySignerAccounts, numReadonlyNonSignerAccounts } = compiled.header;
  const isSigner = (i) => i < numSignerAccounts;
  const isWritable = (i) =>
    i < numSignerAccounts ? i < numSignerAccounts - numReadonlySignerAccounts : i < accounts.length - numReadonlyNonSignerAccounts;
  const hex = (b) => Buffer.from(b).toString("hex");
  return {
    version: compiled.version,
    header: compiled.header,
    staticAccounts: accounts,
    recentBlockhash: compiled.lifetimeToken,
    addressTableLookups: compiled.addressTableLookups ?? [],
    instructions: (compiled.instructions ?? []).map((ix) => ({
      programId: accounts[ix.programAddressIndex],
      accounts: (ix.accountIndices ?? []).map((i) => ({ address: accounts[i], signer: isSigner(i), writable: isWritable(i) })),
      dataHex: hex(ix.data ?? new Uint8Array()),
    })),
    signatures: Object.entries(tx.signatures).map(([address, sig]) => ({ address, signatureHex: sig ? hex(sig) : null })),
    messageBytesHex: hex(tx.messageBytes),
    wireBytesHex: hex(bytes),
    // @x402/svm's duplicate-settlement key: base64(sha256(messageBytes)).
    messageHashBase64: transactionMessageHash(tx),
  };
}

// The official facilitator's verify, with a stub signer whose simulation always succeeds (so only
// the static rules run): the vectors must pass it, and it tells which `payer` it reports.
const simulated = [];
const officialFacilitator = new ExactSvmFacilitatorScheme({
  getAddresses: () => [feePayer],
  simulateTransaction: async (transaction) => {
    simulated.push(transaction);
  },
});

const out = [];
for (const c of cases) {
  mints.clear();
  mints.set(c.mint, { owner: c.tokenProgram, decimals: c.decimals });
  rpcCalls = [];
  randomCalls = [];
  const requirements = {
    scheme: "exact",
    network: c.network,
    amount: c.amount,
    asset: c.mint,
    payTo,
    maxTimeoutSeconds: 60,
    extra: c.extra,
  };
  const paymentRequired = {
    x402Version: 2,
    error: "Payment required",
    resource: { url: "https://api.example.com/premium-data", description: "Premium data", mimeType: "application/json" },
    accepts: [requirements],
  };
  // A fresh client per case (its mint cache would hide the getAccountInfo call otherwise).
  // register() with an explicit rpcUrl: registerExactSvmScheme would use the public cluster URL.
  const client = x402Client.fromConfig({
    schemes: [{ network: c.network, client: new ExactSvmScheme(clientSigner, { rpcUrl }) }],
    spendControls: false,
  });
  const paymentPayload = await client.createPaymentPayload(paymentRequired);
  const paymentPayloadJson = JSON.stringify(paymentPayload);
  const headers = new x402HTTPClient(client).encodePaymentSignatureHeader(paymentPayload);
  const header = headers["PAYMENT-SIGNATURE"];
  if (encodePaymentSignatureHeader(paymentPayload) !== header) throw new Error("header helper mismatch");
  if (Buffer.from(paymentPayloadJson, "utf8").toString("base64") !== header) throw new Error("not plain base64(JSON)");
  if (JSON.stringify(decodePaymentSignatureHeader(header)) !== paymentPayloadJson) throw new Error("roundtrip mismatch");

  const tokenProgram = c.tokenProgram;
  const [sourceAta] = await findAssociatedTokenPda({ mint: c.mint, owner: clientSigner.address, tokenProgram });
  const [destinationAta] = await findAssociatedTokenPda({ mint: c.mint, owner: payTo, tokenProgram });
  const memo = c.extra.memo ?? randomBytes.subarray(0, 16).toString("hex");
  simulated.length = 0;
  const officialVerify = await officialFacilitator.verify(paymentPayload, requirements);
  if (!officialVerify.isValid || simulated.length !== 1) throw new Error(`${c.name}: official verify ${JSON.stringify(officialVerify)}`);
  out.push({
    name: c.name,
    requirements,
    paymentRequired,
    paymentPayload,
    paymentPayloadJson,
    paymentSignatureHeader: header,
    inputs: {
      clientSeedHex: CLIENT_SEED_HEX,
      clientAddress: clientSigner.address,
      feePayerSeedHex: FEE_PAYER_SEED_HEX,
      feePayer,
      payToSeedHex: PAY_TO_SEED_HEX,
      payTo,
      mint: c.mint,
      tokenProgram,
      decimals: c.decimals,
      blockhash: BLOCKHASH,
      lastValidBlockHeight: LAST_VALID_BLOCK_HEIGHT,
      sourceAta: sourceAta.toString(),
      destinationAta: destinationAta.toString(),
      memoUtf8: memo,
    },
    injected: {
      getRandomValues: RANDOM_HEX,
      getRandomValuesCalls: randomCalls,
    },
    rpcCalls,
    officialFacilitatorVerify: officialVerify,
    decoded: decodeWire(paymentPayload.payload.transaction),
  });
}
server.close();

// Self-checks of the facts recorded in FACTS.md, so a new SDK version fails loudly here.
for (const v of out) {
  const d = v.decoded;
  const programs = d.instructions.map((ix) => ix.programId);
  const expected = ["ComputeBudget111111111111111111111111111111", "ComputeBudget111111111111111111111111111111", v.inputs.tokenProgram, "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"];
  if (JSON.stringify(programs) !== JSON.stringify(expected)) throw new Error(`${v.name}: programs ${programs}`);
  if (d.staticAccounts[0] !== v.inputs.feePayer) throw new Error(`${v.name}: fee payer not first`);
  if (d.signatures[0].signatureHex !== null) throw new Error(`${v.name}: fee payer slot is signed`);
  if (Buffer.from(d.instructions[3].dataHex, "hex").toString("utf8") !== v.inputs.memoUtf8) throw new Error(`${v.name}: memo`);
  if (getBase58Encoder().encode(d.recentBlockhash).length !== 32) throw new Error(`${v.name}: blockhash`);
}

process.stdout.write(JSON.stringify(out, null, 2) + "\n");
