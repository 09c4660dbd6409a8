// The official x402 TypeScript resource server selling two routes paid with Permit2, settled
// by the facilitator at facilitatorUrl:
// - GET /permit2: `exact` with assetTransferMethod "permit2" ({amount, asset});
// - GET /metered?units=N: `upto` with maximum `max`; the handler reports N atomic units of usage
//   through @x402/express's setSettlementOverrides, so the server settles N.
//
// Usage: node server-metered.mjs '{"facilitatorUrl": "...", "network": "eip155:31337",
//   "payTo": "0x..", "asset": "0x..", "amount": "10000", "max": "50000"}'
// Prints "READY <port>" once it listens on 127.0.0.1 and unpaid requests to both routes
// answered 402 (so the facilitator's /supported was fetched).
import express from "express";
import { paymentMiddleware, setSettlementOverrides, x402ResourceServer } from "@x402/express";
import { HTTPFacilitatorClient } from "@x402/core/server";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import { UptoEvmScheme } from "@x402/evm/upto/server";

const config = JSON.parse(process.argv[2]);
const log = (...args) => console.error(new Date().toISOString(), ...args);

const server = new x402ResourceServer(new HTTPFacilitatorClient({ url: config.facilitatorUrl }))
  .register(config.network, new ExactEvmScheme())
  .register(config.network, new UptoEvmScheme());

const routes = {
  "GET /permit2": {
    accepts: {
      scheme: "exact",
      network: config.network,
      payTo: config.payTo,
      price: { amount: config.amount, asset: config.asset, extra: { assetTransferMethod: "permit2" } },
    },
    description: "A fixed-price report paid with Permit2",
    mimeType: "application/json",
  },
  "GET /metered": {
    accepts: {
      scheme: "upto",
      network: config.network,
      payTo: config.payTo,
      price: { amount: config.max, asset: config.asset, extra: {} },
    },
    description: "Usage-priced generation",
    mimeType: "application/json",
  },
};

const app = express();
app.use((req, res, next) => {
  log(req.method, req.url, "payment-signature:", req.get("payment-signature") ?? "-");
  res.on("finish", () => {
    log(req.method, req.url, "->", res.statusCode, "payment-response:", res.get("payment-response") ?? "-");
  });
  next();
});
app.use(paymentMiddleware(routes, server));
app.get("/permit2", (req, res) => {
  res.json({ report: "paid with permit2" });
});
app.get("/metered", (req, res) => {
  const units = String(req.query.units ?? "0");
  setSettlementOverrides(res, { amount: units });
  res.json({ generated: units });
});

const listener = app.listen(0, "127.0.0.1", async () => {
  const port = listener.address().port;
  try {
    for (const path of ["/permit2", "/metered"]) {
      const probe = await fetch(`http://127.0.0.1:${port}${path}`);
      if (probe.status !== 402) {
        log(`self-check: unpaid GET ${path} answered ${probe.status}: ${await probe.text()}`);
        process.exit(1);
      }
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
