// The official x402 TypeScript resource server with its sign-in-with-x support: server.mjs's
// paid GET /weather, declared with declareSIWxExtension() from @x402/extensions/sign-in-with-x,
// and createSIWxResourceServerExtension({storage: new InMemorySIWxStorage(), origin}) registered
// on the x402ResourceServer (challenges in 402s, payments recorded after settle, SIGN-IN-WITH-X
// proofs checked on requests). The origin is the configured public origin
// http://127.0.0.1:<port>.
//
// Usage: node siwx-server.mjs '{"facilitatorUrl": "...", "network": "eip155:31337", "payTo": "0x..",
//   "amount": "10000", "asset": "0x..", "eip712Name": "USD Coin", "eip712Version": "2"}'
// Prints "READY <port>" on stdout once it listens on 127.0.0.1 and an unpaid GET /weather
// answered 402. Logs every request (payment-signature, sign-in-with-x) and SIWX hook event.
import express from "express";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { HTTPFacilitatorClient } from "@x402/core/server";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import {
  InMemorySIWxStorage,
  createSIWxResourceServerExtension,
  declareSIWxExtension,
} from "@x402/extensions/sign-in-with-x";

const config = JSON.parse(process.argv[2]);
const log = (...args) => console.error(new Date().toISOString(), ...args);

const app = express();
app.use((req, res, next) => {
  log(
    req.method,
    req.url,
    "payment-signature:",
    req.get("payment-signature") ?? "-",
    "sign-in-with-x:",
    req.get("sign-in-with-x") ?? "-",
  );
  res.on("finish", () => {
    log(req.method, req.url, "->", res.statusCode, "payment-response:", res.get("payment-response") ?? "-");
  });
  next();
});

const listener = app.listen(config.port ?? 0, "127.0.0.1", async () => {
  const port = listener.address().port;
  const origin = `http://127.0.0.1:${port}`;
  const server = new x402ResourceServer(new HTTPFacilitatorClient({ url: config.facilitatorUrl }))
    .register(config.network, new ExactEvmScheme())
    .registerExtension(
      createSIWxResourceServerExtension({
        storage: new InMemorySIWxStorage(),
        origin,
        onEvent: (event) => log("siwx event:", JSON.stringify(event)),
      }),
    );
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
      extensions: declareSIWxExtension({ statement: "Sign in to access your purchased weather" }),
    },
  };
  app.use(paymentMiddleware(routes, server));
  app.get("/weather", (req, res) => {
    res.json({ report: { weather: "sunny", temperature: 70 } });
  });
  try {
    const probe = await fetch(`${origin}/weather`);
    if (probe.status !== 402) {
      log(`self-check: unpaid GET /weather answered ${probe.status}: ${await probe.text()}`);
      process.exit(1);
    }
    log("self-check 402 payment-required:", probe.headers.get("payment-required"));
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
