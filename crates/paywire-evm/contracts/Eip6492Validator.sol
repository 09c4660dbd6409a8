// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Eip6492Validator
/// @notice Checks a signature of `signer` over `hash` in a "deployless" `eth_call`: the
///         call has no `to`, and its data is this contract's creation code followed by
///         `abi.encode(address signer, bytes32 hash, bytes signature)`. The constructor does
///         all the work and ends the call with one byte of return data: `0x01` if the
///         signature is valid, `0x00` if not. It never reverts on an invalid or malformed
///         signature. Nothing is ever deployed: `eth_call` discards all state changes.
///
///         - EIP-6492: a signature ending with the 32-byte magic suffix `0x6492…6492` is
///           `abi.encode(address factory, bytes factoryCalldata, bytes innerSignature)`
///           followed by the suffix. If `signer` has no code yet, the constructor first calls
///           `factory` with `factoryCalldata` (a failure is ignored), then validates
///           `innerSignature` as below. If `signer` still has no code, it is invalid.
///         - EIP-1271: if `signer` has code, the signature is valid iff
///           `signer.isValidSignature(hash, signature)` returns `0x1626ba7e`.
///         - Otherwise `signer` is an EOA: valid iff the signature is a 65-byte (r, s, v)
///           signature over `hash` itself by `signer` (low `s`; `v` 27/28, or 0/1).
contract Eip6492Validator {
    bytes32 private constant ERC6492_SUFFIX = 0x6492649264926492649264926492649264926492649264926492649264926492;
    /// @dev `bytes4(keccak256("isValidSignature(bytes32,bytes)"))`.
    bytes4 private constant ERC1271_MAGIC_VALUE = 0x1626ba7e;
    /// @dev secp256k1n / 2; larger `s` values are malleable (EIP-2).
    uint256 private constant HALF_CURVE_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    constructor(address signer, bytes32 hash, bytes memory signature) {
        bool valid = _validate(signer, hash, signature);
        assembly ("memory-safe") {
            mstore8(0, valid)
            return(0, 1)
        }
    }

    function _validate(address signer, bytes32 hash, bytes memory signature) private returns (bool) {
        if (_hasSuffix(signature)) {
            (bool wellFormed, address factory, bytes memory factoryCalldata, bytes memory inner) =
                _unwrap(signature);
            if (!wellFormed) return false;
            if (signer.code.length == 0) {
                // The outcome does not matter: only whether `signer` has code afterwards.
                (bool deployed,) = factory.call(factoryCalldata);
                deployed;
                if (signer.code.length == 0) return false;
            }
            return _isValid1271(signer, hash, inner);
        }
        if (signer.code.length != 0) return _isValid1271(signer, hash, signature);
        return _isValidEcdsa(signer, hash, signature);
    }

    function _hasSuffix(bytes memory signature) private pure returns (bool) {
        if (signature.length < 32) return false;
        return _word(signature, signature.length - 32) == ERC6492_SUFFIX;
    }

    /// @dev Decodes `abi.encode(address, bytes, bytes)` from `signature` without its last 32
    ///      bytes, checking every offset and length instead of reverting.
    function _unwrap(bytes memory signature)
        private
        pure
        returns (bool wellFormed, address factory, bytes memory factoryCalldata, bytes memory inner)
    {
        uint256 bodyLength = signature.length - 32;
        if (bodyLength < 96) return (false, address(0), "", "");
        uint256 factoryWord = uint256(_word(signature, 0));
        if (factoryWord >> 160 != 0) return (false, address(0), "", "");
        factory = address(uint160(factoryWord));
        bool ok;
        (ok, factoryCalldata) = _bytesAt(signature, bodyLength, uint256(_word(signature, 32)));
        if (!ok) return (false, address(0), "", "");
        (ok, inner) = _bytesAt(signature, bodyLength, uint256(_word(signature, 64)));
        if (!ok) return (false, address(0), "", "");
        wellFormed = true;
    }

    /// @dev The ABI-encoded `bytes` at head offset `offset` of the first `bodyLength` bytes
    ///      of `data`, or `ok = false` if it does not fit.
    function _bytesAt(bytes memory data, uint256 bodyLength, uint256 offset)
        private
        pure
        returns (bool ok, bytes memory out)
    {
        if (offset > bodyLength - 32) return (false, out);
        uint256 length = uint256(_word(data, offset));
        if (length > bodyLength - 32 - offset) return (false, out);
        out = new bytes(length);
        assembly ("memory-safe") {
            mcopy(add(out, 32), add(add(data, 64), offset), length)
        }
        ok = true;
    }

    /// @dev The 32 bytes of `data` starting at `at` (the caller checks the bounds).
    function _word(bytes memory data, uint256 at) private pure returns (bytes32 value) {
        assembly ("memory-safe") {
            value := mload(add(add(data, 32), at))
        }
    }

    function _isValid1271(address signer, bytes32 hash, bytes memory signature) private view returns (bool) {
        (bool success, bytes memory result) =
            signer.staticcall(abi.encodeWithSelector(ERC1271_MAGIC_VALUE, hash, signature));
        if (!success || result.length < 32) return false;
        return bytes4(_word(result, 0)) == ERC1271_MAGIC_VALUE;
    }

    function _isValidEcdsa(address signer, bytes32 hash, bytes memory signature) private pure returns (bool) {
        if (signature.length != 65 || signer == address(0)) return false;
        bytes32 r = _word(signature, 0);
        bytes32 s = _word(signature, 32);
        uint8 v = uint8(signature[64]);
        if (v < 27) v += 27;
        if (v != 27 && v != 28) return false;
        if (uint256(s) > HALF_CURVE_ORDER) return false;
        return ecrecover(hash, v, r, s) == signer;
    }
}
