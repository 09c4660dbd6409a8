// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title ShortchangeToken
/// @notice A hostile EIP-3009 token for x402 tests (a test fixture, not for real funds).
///         `transferWithAuthorization` checks the payer's EIP-712 signature, the time window
///         and the nonce, marks the nonce used and emits `AuthorizationUsed`, exactly like
///         Circle's USDC, and returns successfully; but the payee receives `value - shortfall`:
///         - `shortfall == 0`: an honest transfer;
///         - `0 < shortfall < value`: a fee-on-transfer token; the payer is charged `value`,
///           the payee gets `value - shortfall` and the token keeps the rest (two `Transfer`s);
///         - `shortfall >= value`: nothing moves at all and no `Transfer` is emitted (a token
///           that reports success without paying).
///         A successful receipt therefore proves nothing; only the `Transfer(from, to, value)`
///         log of the exact value does (field lesson 12).
contract ShortchangeToken {
    /// @dev EIP-712 type hash of the domain (name, version, chainId, verifyingContract).
    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    /// @dev EIP-3009 type hash of `TransferWithAuthorization`.
    bytes32 internal constant TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );
    /// @dev secp256k1n / 2: larger `s` values are malleable and rejected (as in EIP-2).
    uint256 internal constant HALF_CURVE_ORDER =
        0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// @notice EIP-712 domain name.
    string public name;
    /// @notice EIP-712 domain version.
    string public version;
    /// @notice Decimals, as USDC.
    uint8 public constant decimals = 6;
    /// @notice How much less than the signed value the payee receives.
    uint256 public shortfall;
    /// @notice The deployer: the only account that may mint or change the shortfall.
    address public immutable owner;
    /// @notice Token balances.
    mapping(address => uint256) public balanceOf;
    /// @dev authorizer => nonce => used.
    mapping(address => mapping(bytes32 => bool)) internal usedAuthorizations;

    /// @notice ERC-20 transfer (also mints, from the zero address).
    event Transfer(address indexed from, address indexed to, uint256 value);
    /// @notice EIP-3009: the authorization `nonce` of `authorizer` was used.
    event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);

    /// @notice `mint` or `setShortfall` was called by someone other than the owner.
    error NotOwner();
    /// @notice The authorization is outside its validity window.
    error AuthorizationNotValidNow();
    /// @notice The authorization's nonce was used before.
    error AuthorizationUsedBefore();
    /// @notice The signature is not `from`'s over the authorization.
    error InvalidSignature();
    /// @notice The payer's balance is below the signed value.
    error InsufficientBalance();

    constructor(string memory name_, string memory version_, uint256 shortfall_) {
        name = name_;
        version = version_;
        shortfall = shortfall_;
        owner = msg.sender;
    }

    /// @notice Credits `value` to `to`; owner only.
    function mint(address to, uint256 value) external {
        if (msg.sender != owner) revert NotOwner();
        balanceOf[to] += value;
        emit Transfer(address(0), to, value);
    }

    /// @notice Changes how much every later transfer keeps back; owner only.
    function setShortfall(uint256 shortfall_) external {
        if (msg.sender != owner) revert NotOwner();
        shortfall = shortfall_;
    }

    /// @notice EIP-3009: whether `authorizer` has used `nonce`.
    function authorizationState(address authorizer, bytes32 nonce) external view returns (bool) {
        return usedAuthorizations[authorizer][nonce];
    }

    /// @notice The EIP-712 domain separator of this token on this chain.
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256(bytes(name)), keccak256(bytes(version)), block.chainid, address(this))
        );
    }

    /// @notice EIP-3009 with a (v, r, s) signature.
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        _transferWithAuthorization(from, to, value, validAfter, validBefore, nonce, v, r, s);
    }

    /// @notice EIP-3009 with a 65-byte (r, s, v) signature (FiatTokenV2_2's `bytes` form;
    ///         contract wallets are not supported).
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external {
        if (signature.length != 65) revert InvalidSignature();
        _transferWithAuthorization(
            from,
            to,
            value,
            validAfter,
            validBefore,
            nonce,
            uint8(signature[64]),
            bytes32(signature[0:32]),
            bytes32(signature[32:64])
        );
    }

    function _transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) internal {
        if (block.timestamp <= validAfter || block.timestamp >= validBefore) revert AuthorizationNotValidNow();
        if (usedAuthorizations[from][nonce]) revert AuthorizationUsedBefore();
        bytes32 structHash =
            keccak256(abi.encode(TRANSFER_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce));
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", DOMAIN_SEPARATOR(), structHash));
        if (uint256(s) > HALF_CURVE_ORDER || (v != 27 && v != 28)) revert InvalidSignature();
        address signer = ecrecover(digest, v, r, s);
        if (signer == address(0) || signer != from) revert InvalidSignature();
        if (balanceOf[from] < value) revert InsufficientBalance();

        usedAuthorizations[from][nonce] = true;
        emit AuthorizationUsed(from, nonce);
        if (shortfall >= value) return;
        uint256 paid = value - shortfall;
        balanceOf[from] -= value;
        balanceOf[to] += paid;
        emit Transfer(from, to, paid);
        if (shortfall > 0) {
            balanceOf[address(this)] += shortfall;
            emit Transfer(from, address(this), shortfall);
        }
    }
}
