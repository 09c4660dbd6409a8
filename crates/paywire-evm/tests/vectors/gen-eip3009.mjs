// Golden EIP-3009 TransferWithAuthorization vectors, computed with viem.
// Output: JSON array on stdout (see README.md for how to run).
import {
  concat,
  domainSeparator,
  hashStruct,
  hashTypedData,
  keccak256,
  parseSignature,
  recoverTypedDataAddress,
  toHex,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";

// Public anvil/hardhat dev keys (well known, never hold real funds).
const ANVIL_KEY_1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const ANVIL_KEY_2 = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9bdc4bfd4effc";
const PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";

const BASE_SEPOLIA = { chainId: 84532, verifyingContract: "0x036CbD53842c5426634e7929541eC2318f3dCF7e", name: "USDC", version: "2" };
const BASE_MAINNET = { chainId: 8453, verifyingContract: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", name: "USD Coin", version: "2" };
const ANVIL = { chainId: 31337, verifyingContract: "0x700b6a60ce7eaaea56f065753d8dcb9653dbad35", name: "USD Coin", version: "2" };

const TYPES = {
  TransferWithAuthorization: [
    { name: "from", type: "address" },
    { name: "to", type: "address" },
    { name: "value", type: "uint256" },
    { name: "validAfter", type: "uint256" },
    { name: "validBefore", type: "uint256" },
    { name: "nonce", type: "bytes32" },
  ],
};

const U256_MAX = ((1n << 256n) - 1n).toString();

const CASES = [
  {
    id: "base-sepolia-usdc-basic",
    description: "Base Sepolia USDC, 0.01 USDC, validAfter 0 (what the v2 TS client signs)",
    key: ANVIL_KEY_1, domain: BASE_SEPOLIA, to: PAY_TO,
    value: "10000", validAfter: "0", validBefore: "1740672154",
    nonce: "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480",
  },
  {
    id: "base-mainnet-usdc",
    description: "Base mainnet USDC (domain name \"USD Coin\"), non-zero validAfter",
    key: ANVIL_KEY_2, domain: BASE_MAINNET, to: PAY_TO,
    value: "1000000", validAfter: "1740672089", validBefore: "1740672154",
    nonce: "0x0000000000000000000000000000000000000000000000000000000000000001",
  },
  {
    id: "anvil-usd-coin",
    description: "Local anvil chain 31337, mock USDC, payer #1 pays account #2",
    key: ANVIL_KEY_1, domain: ANVIL, to: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    value: "10000", validAfter: "0", validBefore: "1893456000",
    nonce: "0x1111111111111111111111111111111111111111111111111111111111111111",
  },
  {
    id: "anvil-large-value-2pow200",
    description: "value = 2^200 (does not fit in u128)",
    key: ANVIL_KEY_2, domain: ANVIL, to: PAY_TO,
    value: (1n << 200n).toString(), validAfter: "0", validBefore: "1740672154",
    nonce: "0xabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd",
  },
  {
    id: "base-sepolia-u256-max-bounds",
    description: "value and validBefore = 2^256-1, zero nonce",
    key: ANVIL_KEY_2, domain: BASE_SEPOLIA, to: PAY_TO,
    value: U256_MAX, validAfter: "0", validBefore: U256_MAX,
    nonce: "0x0000000000000000000000000000000000000000000000000000000000000000",
  },
  {
    id: "base-mainnet-zero-value",
    description: "value 0, all-ones nonce",
    key: ANVIL_KEY_1, domain: BASE_MAINNET, to: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    value: "0", validAfter: "1", validBefore: "2",
    nonce: "0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
  },
];

const lc = (s) => s.toLowerCase();
const out = [];
for (const c of CASES) {
  const account = privateKeyToAccount(c.key);
  const domain = {
    name: c.domain.name,
    version: c.domain.version,
    chainId: c.domain.chainId,
    verifyingContract: c.domain.verifyingContract,
  };
  const message = {
    from: account.address,
    to: c.to,
    value: BigInt(c.value),
    validAfter: BigInt(c.validAfter),
    validBefore: BigInt(c.validBefore),
    nonce: c.nonce,
  };
  const typed = { domain, types: TYPES, primaryType: "TransferWithAuthorization", message };
  const ds = domainSeparator({ domain });
  const sh = hashStruct({ data: message, primaryType: "TransferWithAuthorization", types: TYPES });
  const digest = hashTypedData(typed);
  if (keccak256(concat(["0x1901", ds, sh])) !== digest) throw new Error(`${c.id}: digest mismatch`);
  const signature = await account.signTypedData(typed);
  const recovered = await recoverTypedDataAddress({ ...typed, signature });
  if (recovered !== account.address) throw new Error(`${c.id}: recover mismatch`);
  const sig = parseSignature(signature);
  out.push({
    id: c.id,
    description: c.description,
    inputs: {
      privateKey: lc(c.key),
      chainId: String(c.domain.chainId),
      verifyingContract: lc(c.domain.verifyingContract),
      name: c.domain.name,
      version: c.domain.version,
      from: lc(account.address),
      to: lc(c.to),
      value: c.value,
      validAfter: c.validAfter,
      validBefore: c.validBefore,
      nonce: lc(c.nonce),
    },
    typeHash: keccak256(toHex("TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)")),
    domainSeparator: lc(ds),
    structHash: lc(sh),
    digest: lc(digest),
    signature: lc(signature),
    r: lc(sig.r),
    s: lc(sig.s),
    v: Number(sig.v),
  });
}
process.stdout.write(JSON.stringify(out, null, 2) + "\n");
