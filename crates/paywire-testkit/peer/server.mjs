// The official x402 TypeScript resource server: @x402/express paymentMiddleware with
// x402ResourceServer(HTTPFacilitatorClient) and the exact EVM server scheme, one paid route
// GET /weather priced {amount, asset, extra: {name, version}} on the devnet.
//
// Usage: node server.mjs '{"facilitatorUrl": "...", "network": "eip155:31337", "payTo": "0x..",
//   "amount": "10000", "asset": "0x..", "eip712Name": "USD Coin", "eip712Version": "2",
//   "quiet": false}'
// With "quiet": true it does not log every request (the load tool measures it).
// Prints "READY <port>" on stdout once it listens on 127.0.0.1 and an unpaid GET /weather
// answered 402 (so the facilitator's /supported was fetched).
import express from "express";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { HTTPFacilitatorClient } from "@x402/core/server";
import { ExactEvmScheme } from "@x402/evm/exact/server";

const config = JSON.parse(process.argv[2]);
const log = (...args) => console.error(new Date().toISOString(), ...args);

const server = new x402ResourceServer(new HTTPFacilitatorClient({ url: config.facilitatorUrl }))
  .register(config.network, new ExactEvmScheme());

const routes = {
  "GET /weather": {
    accepts: {
      scheme: "exact",
      network: config.network,
      payTo: config.payTo,
      price: {
        amount: config.amount,
        asset: config.asset,
        extra: { name: config.eip712Name, version: config.eip712Version },
      },
    },
    description: "Weather report",
    mimeType: "application/json",
  },
};

const app = express();
app.use((req, res, next) => {
  if (config.quiet) {
    next();
    return;
  }
  log(req.method, req.url, "payment-signature:", req.get("payment-signature") ?? "-");
  res.on("finish", () => {
    log(req.method, req.url, "->", res.statusCode, "payment-response:", res.get("payment-response") ?? "-");
  });
  next();
});
app.use(paymentMiddleware(routes, server));
app.get("/weather", (req, res) => {
  res.json({ report: { weather: "sunny", temperature: 70 } });
});

const listener = app.listen(config.port ?? 0, "127.0.0.1", async () => {
  const port = listener.address().port;
  try {
    const probe = await fetch(`http://127.0.0.1:${port}/weather`);
    if (probe.status !== 402) {
      log(`self-check: unpaid GET /weather answered ${probe.status}: ${await probe.text()}`);
      process.exit(1);
    }
  } catch (error) {
    log("self-check failed:", error);
    process.exit(1);
  }
  console.log(`READY ${port}`);
});
listener.on("error", (error) => {
  log("listen error:", error);
  process.exit(1);
});
