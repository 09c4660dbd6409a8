// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {SmartWallet} from "./SmartWallet.sol";

/// @title WalletFactory
/// @notice A CREATE2 factory for `SmartWallet` (a test fixture, not for real funds). The
///         wallet of (`owner`, `salt`) has an address known before it exists, so tests can
///         sign for a counterfactual wallet (EIP-6492) and deploy it later, or never.
contract WalletFactory {
    /// @notice `deploy` created the wallet of `owner` and `salt` at `wallet`.
    event WalletDeployed(address indexed wallet, address indexed owner, bytes32 salt);

    /// @notice Deploys the wallet of `owner` and `salt` unless it exists; returns its
    ///         address (`predict(owner, salt)`) either way. Reverts only if the wallet's
    ///         constructor does (`owner` is zero).
    function deploy(address owner, bytes32 salt) external returns (address wallet) {
        wallet = predict(owner, salt);
        if (wallet.code.length != 0) return wallet;
        SmartWallet created = new SmartWallet{salt: salt}(owner);
        assert(address(created) == wallet);
        emit WalletDeployed(wallet, owner, salt);
    }

    /// @notice The CREATE2 address of the wallet of `owner` and `salt` deployed by this
    ///         factory: `keccak256(0xff ++ factory ++ salt ++ keccak256(initCode))[12:]`,
    ///         where `initCode` is SmartWallet's creation code followed by `abi.encode(owner)`.
    function predict(address owner, bytes32 salt) public view returns (address) {
        bytes32 initCodeHash = keccak256(abi.encodePacked(type(SmartWallet).creationCode, abi.encode(owner)));
        bytes32 digest = keccak256(abi.encodePacked(bytes1(0xff), address(this), salt, initCodeHash));
        return address(uint160(uint256(digest)));
    }
}
