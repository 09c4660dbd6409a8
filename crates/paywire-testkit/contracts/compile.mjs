// Compiles Solidity fixtures with a pinned solc-js and writes `<Contract>.json` (ABI, creation
// bytecode, compiler version, source keccak-256) next to each source, which is committed so
// tests never need solc. Each `<Contract>.sol` must define a contract named `<Contract>`;
// relative imports are resolved next to the importing file.
//
//   node crates/paywire-testkit/contracts/compile.mjs           # SmartWallet.sol, WalletFactory.sol, ShortchangeToken.sol
//   node crates/paywire-testkit/contracts/compile.mjs --check   # exit 1 if any JSON is stale
//   node crates/paywire-testkit/contracts/compile.mjs [--check] path/to/Other.sol ...
//
// solc-js is installed on first use with `npm install solc@<SOLC_VERSION>` into
// `$PAYWIRE_SOLC_PREFIX`, default `${PAYWIRE_DEVNET_CACHE:-$HOME/.cache/paywire-devnet}/npm-solc-<SOLC_VERSION>`
// (next to the test kit's anvil cache, outside the repository).

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const SOLC_VERSION = "0.8.26";
const DEFAULT_SOURCES = ["SmartWallet.sol", "WalletFactory.sol", "ShortchangeToken.sol"];
const OPTIMIZER = { enabled: true, runs: 200 };
const EVM_VERSION = "cancun";

const here = dirname(fileURLToPath(import.meta.url));
const cache = process.env.PAYWIRE_DEVNET_CACHE || join(homedir(), ".cache", "paywire-devnet");
const prefix = process.env.PAYWIRE_SOLC_PREFIX || join(cache, `npm-solc-${SOLC_VERSION}`);

function loadSolc() {
  const pkg = join(prefix, "node_modules", "solc", "package.json");
  const installed = existsSync(pkg) && JSON.parse(readFileSync(pkg, "utf8")).version;
  if (installed !== SOLC_VERSION) {
    console.error(`installing solc@${SOLC_VERSION} into ${prefix}`);
    execFileSync(
      "npm",
      ["install", "--prefix", prefix, "--no-audit", "--no-fund", "--loglevel=error", `solc@${SOLC_VERSION}`],
      { stdio: "inherit" },
    );
  }
  const solc = createRequire(join(prefix, "package.json"))("solc");
  if (!solc.version().startsWith(`${SOLC_VERSION}+`)) {
    throw new Error(`expected solc ${SOLC_VERSION}, loaded ${solc.version()}`);
  }
  return solc;
}

const solc = loadSolc();
const check = process.argv.includes("--check");
const paths = process.argv.slice(2).filter((a) => a !== "--check");
const sources = paths.length > 0 ? paths.map((p) => resolve(p)) : DEFAULT_SOURCES.map((s) => join(here, s));
let failed = false;
for (const path of sources) failed = !compileOne(path) || failed;
process.exit(failed ? 1 : 0);

// Compiles `path` (contract = file name without `.sol`); writes or checks the JSON next to it.
function compileOne(path) {
  const dir = dirname(path);
  const source = basename(path);
  const contractName = source.replace(/\.sol$/, "");
  const input = {
    language: "Solidity",
    sources: { [source]: { content: readFileSync(path, "utf8") } },
    settings: {
      optimizer: OPTIMIZER,
      evmVersion: EVM_VERSION,
      outputSelection: { [source]: { [contractName]: ["abi", "evm.bytecode.object", "metadata"] } },
    },
  };
  // Imports are source unit names relative to `dir` (solc normalises "./X.sol" to "X.sol").
  const findImports = (name) => {
    const file = join(dir, name);
    return existsSync(file) ? { contents: readFileSync(file, "utf8") } : { error: `not found: ${file}` };
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const diagnostics = output.errors ?? [];
  for (const d of diagnostics) console.error(d.formattedMessage ?? d.message);
  if (diagnostics.length > 0) {
    // Warnings count too: the fixture must compile cleanly.
    console.error(`${diagnostics.length} diagnostic(s); not writing ${contractName}.json`);
    return false;
  }

  const contract = output.contracts[source][contractName];
  const metadata = JSON.parse(contract.metadata);
  const artifact = {
    contractName,
    solc: solc.version(),
    settings: { optimizer: OPTIMIZER, evmVersion: EVM_VERSION },
    // keccak256 of the .sol file as compiled; the Rust tests compare it with the source.
    sourceKeccak256: metadata.sources[source].keccak256,
  };
  const imported = Object.keys(metadata.sources).filter((s) => s !== source).sort();
  if (imported.length > 0) {
    // The imported files' hashes too (their code is embedded, e.g. via `type(C).creationCode`).
    artifact.importedSourcesKeccak256 = Object.fromEntries(imported.map((s) => [s, metadata.sources[s].keccak256]));
  }
  artifact.abi = contract.abi;
  artifact.bytecode = `0x${contract.evm.bytecode.object}`;
  const text = `${JSON.stringify(artifact, null, 2)}\n`;
  const target = join(dir, `${contractName}.json`);
  const shown = relative(process.cwd(), target) || target;

  if (check) {
    const current = existsSync(target) ? readFileSync(target, "utf8") : "";
    if (current !== text) {
      console.error(`${shown} is stale; run: node crates/paywire-testkit/contracts/compile.mjs${paths.length > 0 ? ` ${relative(process.cwd(), path)}` : ""}`);
      return false;
    }
    console.error(`${shown} is up to date (solc ${solc.version()})`);
  } else {
    writeFileSync(target, text);
    console.error(`wrote ${shown} (solc ${solc.version()}, ${(artifact.bytecode.length - 2) / 2} bytes of creation code)`);
  }
  return true;
}
