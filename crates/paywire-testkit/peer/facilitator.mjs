// The official x402 TypeScript facilitator (x402Facilitator + registerExactEvmScheme) on
// the anvil devnet, served over HTTP like the SDK's HTTPFacilitatorClient expects it:
// GET /supported, POST /verify, POST /settle (body {x402Version, paymentPayload, paymentRequirements}).
//
// Usage: node facilitator.mjs '{"rpcUrl": "...", "privateKey": "0x..", "network": "eip155:31337",
//   "pollingIntervalMs": 50, "confirmationTimeoutMs": 180000, "upto": false, "quiet": false}'
// With "upto": true it also serves the upto scheme (UptoEvmScheme). With "quiet": true it does
// not log every request and answer (the load tool measures it; errors are still logged).
// Prints "READY <port>" on stdout once it listens on 127.0.0.1 (port 0: the OS picks).
import express from "express";
import { x402Facilitator } from "@x402/core/facilitator";
import { registerExactEvmScheme } from "@x402/evm/exact/facilitator";
import { UptoEvmScheme } from "@x402/evm/upto/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { createWalletClient, http, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { foundry } from "viem/chains";

const config = JSON.parse(process.argv[2]);
const account = privateKeyToAccount(config.privateKey);
const client = createWalletClient({
  account,
  chain: foundry,
  transport: http(config.rpcUrl),
  // viem's default is 4 s between receipt polls; anvil mines in milliseconds.
  pollingInterval: config.pollingIntervalMs ?? 50,
}).extend(publicActions);

const signer = toFacilitatorEvmSigner({
  address: account.address,
  getCode: (args) => client.getCode(args),
  readContract: (args) => client.readContract({ ...args, args: args.args || [] }),
  verifyTypedData: (args) => client.verifyTypedData(args),
  writeContract: (args) => client.writeContract({ ...args, args: args.args || [] }),
  sendTransaction: (args) => client.sendTransaction(args),
  waitForTransactionReceipt: (args) => client.waitForTransactionReceipt(args),
}, config.confirmationTimeoutMs ? { confirmationTimeoutMs: config.confirmationTimeoutMs } : undefined);

const facilitator = new x402Facilitator();
registerExactEvmScheme(facilitator, { signer, networks: config.network });
if (config.upto) {
  facilitator.register(config.network, new UptoEvmScheme(signer));
}

const log = (...args) => console.error(new Date().toISOString(), ...args);
// Per-request logging (JSON.stringify of every body) would dominate a load measurement, so
// "quiet" skips the stringify too, not only the write.
const verbose = !config.quiet;
const failure = (res, route, error) => {
  log(`${route} error:`, error);
  res.status(500).json({ error: error instanceof Error ? error.message : String(error) });
};

const app = express();
app.use(express.json({ limit: "1mb" }));
app.get("/supported", (req, res) => {
  try {
    res.json(facilitator.getSupported());
  } catch (error) {
    failure(res, "supported", error);
  }
});
app.post("/verify", async (req, res) => {
  try {
    if (verbose) log("verify request:", JSON.stringify(req.body));
    const answer = await facilitator.verify(req.body.paymentPayload, req.body.paymentRequirements);
    if (verbose) log("verify answer:", JSON.stringify(answer));
    res.json(answer);
  } catch (error) {
    failure(res, "verify", error);
  }
});
app.post("/settle", async (req, res) => {
  try {
    if (verbose) log("settle request:", JSON.stringify(req.body));
    const answer = await facilitator.settle(req.body.paymentPayload, req.body.paymentRequirements);
    if (verbose) log("settle answer:", JSON.stringify(answer));
    res.json(answer);
  } catch (error) {
    failure(res, "settle", error);
  }
});

const listener = app.listen(config.port ?? 0, "127.0.0.1", () => {
  console.log(`READY ${listener.address().port}`);
});
listener.on("error", (error) => {
  log("listen error:", error);
  process.exit(1);
});
