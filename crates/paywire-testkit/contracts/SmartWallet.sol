// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title SmartWallet
/// @notice A minimal EIP-1271 contract wallet for x402 tests (a test fixture, not for real
///         funds). It has one ECDSA owner, fixed at deployment; a signature of the wallet is
///         the owner's 65-byte (r, s, v) signature over the hash itself (no re-hashing).
contract SmartWallet {
    /// @dev `bytes4(keccak256("isValidSignature(bytes32,bytes)"))`, EIP-1271's magic value.
    bytes4 internal constant MAGIC_VALUE = 0x1626ba7e;
    /// @dev What `isValidSignature` returns for an invalid signature.
    bytes4 internal constant INVALID_SIGNATURE = 0xffffffff;
    /// @dev secp256k1n / 2: larger `s` values are malleable and rejected (as in EIP-2).
    uint256 internal constant HALF_CURVE_ORDER =
        0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// @notice The only key whose signatures are valid for this wallet.
    address public immutable owner;

    /// @notice `execute` was called by someone other than the owner.
    error NotOwner();
    /// @notice The constructor was given the zero address.
    error ZeroOwner();

    constructor(address owner_) {
        if (owner_ == address(0)) revert ZeroOwner();
        owner = owner_;
    }

    /// @notice Accepts plain ETH transfers.
    receive() external payable {}

    /// @notice EIP-1271: returns `0x1626ba7e` iff `signature` is a 65-byte (r, s, v)
    ///         signature by `owner` over `hash`, with `s` in the lower half of the curve
    ///         order and `v` 27 or 28; `0xffffffff` otherwise. Never reverts.
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        if (signature.length != 65) return INVALID_SIGNATURE;
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > HALF_CURVE_ORDER) return INVALID_SIGNATURE;
        if (v != 27 && v != 28) return INVALID_SIGNATURE;
        address signer = ecrecover(hash, v, r, s);
        if (signer == address(0) || signer != owner) return INVALID_SIGNATURE;
        return MAGIC_VALUE;
    }

    /// @notice Calls `to` with `value` wei and `data`, as the wallet; owner only. Bubbles up
    ///         the callee's revert data.
    function execute(address to, uint256 value, bytes calldata data) external payable returns (bytes memory) {
        if (msg.sender != owner) revert NotOwner();
        (bool ok, bytes memory result) = to.call{value: value}(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(result, 32), mload(result))
            }
        }
        return result;
    }
}
