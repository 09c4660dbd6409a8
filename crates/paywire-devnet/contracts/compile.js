// Compiles the Solidity sources given on stdin ({"File.sol": "source", ...}) with the solc-js
// module named by the last argument; prints {"Contract": "0x<creation code>", ...} or the errors.
const solc = require(process.argv[process.argv.length - 1]);
let text = "";
process.stdin.on("data", (chunk) => (text += chunk));
process.stdin.on("end", () => {
  const sources = {};
  for (const [name, content] of Object.entries(JSON.parse(text))) sources[name] = { content };
  const input = {
    language: "Solidity",
    sources,
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: "cancun",
      outputSelection: { "*": { "*": ["evm.bytecode.object"] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  if (errors.length > 0) {
    process.stderr.write(errors.map((e) => e.formattedMessage).join("\n"));
    process.exit(1);
  }
  const code = {};
  for (const file of Object.values(output.contracts)) {
    for (const [name, contract] of Object.entries(file)) code[name] = "0x" + contract.evm.bytecode.object;
  }
  process.stdout.write(JSON.stringify(code));
});
