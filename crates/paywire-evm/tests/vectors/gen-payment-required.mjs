// PaymentRequired exactly as the official TS resource server builds it for price "$0.01"
// on eip155:84532 (x402HTTPResourceServer + ExactEvmScheme from @x402/evm/exact/server).
// No facilitator is needed: an in-process stub answers getSupported().
// Output: JSON object on stdout (see README.md for how to run).
import { x402HTTPResourceServer, x402ResourceServer } from "@x402/core/server";
import { decodePaymentRequiredHeader } from "@x402/core/http";
import { ExactEvmScheme } from "@x402/evm/exact/server";

const NETWORK = "eip155:84532";
const PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const URL_ = "https://api.example.com/premium-data";

const stubFacilitator = {
  async getSupported() {
    return { kinds: [{ x402Version: 2, scheme: "exact", network: NETWORK }], extensions: [], signers: {} };
  },
  async verify() { throw new Error("not used"); },
  async settle() { throw new Error("not used"); },
};

const routes = {
  "GET /premium-data": {
    accepts: { scheme: "exact", price: "$0.01", network: NETWORK, payTo: PAY_TO, maxTimeoutSeconds: 60 },
    resource: URL_,
    description: "Premium data",
    mimeType: "application/json",
  },
};

const server = new x402ResourceServer(stubFacilitator).register(NETWORK, new ExactEvmScheme());
const http = new x402HTTPResourceServer(server, routes);
await http.initialize();

const parsedPrice = await new ExactEvmScheme().parsePrice("$0.01", NETWORK);

const adapter = {
  getHeader: () => undefined,
  getMethod: () => "GET",
  getPath: () => "/premium-data",
  getUrl: () => URL_,
  getAcceptHeader: () => "application/json",
  getUserAgent: () => "golden-vector-generator",
};
const result = await http.processHTTPRequest({ adapter, path: "/premium-data", method: "GET" });
if (result.type !== "payment-error") throw new Error(`unexpected result ${result.type}`);
const header = result.response.headers["PAYMENT-REQUIRED"];
const paymentRequiredJson = Buffer.from(header, "base64").toString("utf8");
if (JSON.stringify(decodePaymentRequiredHeader(header)) !== paymentRequiredJson) throw new Error("roundtrip mismatch");

process.stdout.write(
  JSON.stringify(
    {
      generator: "gen-payment-required.mjs (x402HTTPResourceServer.processHTTPRequest, unpaid GET, stub facilitator)",
      routeConfig: routes,
      parsePrice: { input: "$0.01", network: NETWORK, output: parsedPrice },
      httpStatus: result.response.status,
      responseHeaders: result.response.headers,
      responseBody: result.response.body,
      paymentRequired: JSON.parse(paymentRequiredJson),
      paymentRequiredJson,
      paymentRequiredHeader: header,
    },
    null,
    2,
  ) + "\n",
);
