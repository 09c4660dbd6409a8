// SPDX-License-Identifier: MIT
// paywire's own test implementations of the x402 Permit2 proxies, written from the x402
// `exact` and `upto` EVM scheme specifications. Tests place them at the canonical addresses
// (production networks use the x402 Foundation's canonical deployments). The external ABI
// (functions, struct layouts, errors, events) matches what x402 clients and facilitators call.
pragma solidity ^0.8.20;

/// The part of Permit2's SignatureTransfer the proxies use.
interface IPermit2SignatureTransfer {
    struct TokenPermissions {
        address token;
        uint256 amount;
    }

    struct PermitTransferFrom {
        TokenPermissions permitted;
        uint256 nonce;
        uint256 deadline;
    }

    struct SignatureTransferDetails {
        address to;
        uint256 requestedAmount;
    }

    function permitWitnessTransferFrom(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 witness,
        string calldata witnessTypeString,
        bytes calldata signature
    ) external;
}

/// EIP-2612 `permit` of the paid token.
interface IERC20PermitToken {
    function permit(
        address owner,
        address spender,
        uint256 value,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external;
}

/// An EIP-2612 permit for Permit2, as the proxies take it.
struct EIP2612Permit {
    uint256 value;
    uint256 deadline;
    bytes32 r;
    bytes32 s;
    uint8 v;
}

/// One call at a time per proxy: a token's hooks cannot re-enter a settlement.
abstract contract SingleEntry {
    error ReentrancyGuardReentrantCall();

    uint256 private entered;

    modifier singleEntry() {
        if (entered == 1) revert ReentrancyGuardReentrantCall();
        entered = 1;
        _;
        entered = 0;
    }
}

/// Rules both proxies share.
abstract contract Permit2ProxyBase is SingleEntry {
    error InvalidDestination();
    error InvalidOwner();
    error InvalidPermit2Address();
    error PaymentTooEarly();
    error Permit2612AmountMismatch();

    event Settled();
    event SettledWithPermit();

    IPermit2SignatureTransfer public immutable PERMIT2;

    constructor(address permit2) {
        if (permit2 == address(0)) revert InvalidPermit2Address();
        PERMIT2 = IPermit2SignatureTransfer(permit2);
    }

    /// Submits the payer's EIP-2612 approval of Permit2. A permit that was already used (e.g. by a
    /// front-runner who copied it) is tolerated when the allowance it granted is in place.
    function approveWithPermit(address token, address owner, EIP2612Permit calldata permit2612, uint256 needed)
        internal
    {
        if (permit2612.value < needed) revert Permit2612AmountMismatch();
        try IERC20PermitToken(token).permit(
            owner, address(PERMIT2), permit2612.value, permit2612.deadline, permit2612.v, permit2612.r, permit2612.s
        ) {} catch {}
    }

    function checkParties(address owner, address to, uint256 validAfter) internal view {
        if (owner == address(0)) revert InvalidOwner();
        if (to == address(0)) revert InvalidDestination();
        if (block.timestamp < validAfter) revert PaymentTooEarly();
    }
}

/// `exact`: moves exactly the permitted amount to the witness's recipient.
contract x402ExactPermit2Proxy is Permit2ProxyBase {
    error InvalidAmount();

    struct Witness {
        address to;
        uint256 validAfter;
    }

    string public constant WITNESS_TYPE_STRING =
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)";
    bytes32 public constant WITNESS_TYPEHASH = keccak256("Witness(address to,uint256 validAfter)");

    constructor(address permit2) Permit2ProxyBase(permit2) {}

    function settle(
        IPermit2SignatureTransfer.PermitTransferFrom calldata permit,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external singleEntry {
        transfer(permit, owner, witness, signature);
        emit Settled();
    }

    function settleWithPermit(
        EIP2612Permit calldata permit2612,
        IPermit2SignatureTransfer.PermitTransferFrom calldata permit,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external singleEntry {
        approveWithPermit(permit.permitted.token, owner, permit2612, permit.permitted.amount);
        transfer(permit, owner, witness, signature);
        emit SettledWithPermit();
    }

    function transfer(
        IPermit2SignatureTransfer.PermitTransferFrom calldata permit,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) private {
        checkParties(owner, witness.to, witness.validAfter);
        if (permit.permitted.amount == 0) revert InvalidAmount();
        PERMIT2.permitWitnessTransferFrom(
            permit,
            IPermit2SignatureTransfer.SignatureTransferDetails({to: witness.to, requestedAmount: permit.permitted.amount}),
            owner,
            keccak256(abi.encode(WITNESS_TYPEHASH, witness.to, witness.validAfter)),
            WITNESS_TYPE_STRING,
            signature
        );
    }
}

/// `upto`: moves any amount up to the permitted maximum, only when called by the facilitator the
/// payer named in the witness.
contract x402UptoPermit2Proxy is Permit2ProxyBase {
    error AmountExceedsPermitted();
    error UnauthorizedFacilitator();

    struct Witness {
        address to;
        address facilitator;
        uint256 validAfter;
    }

    string public constant WITNESS_TYPE_STRING =
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)";
    bytes32 public constant WITNESS_TYPEHASH =
        keccak256("Witness(address to,address facilitator,uint256 validAfter)");

    constructor(address permit2) Permit2ProxyBase(permit2) {}

    function settle(
        IPermit2SignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external singleEntry {
        transfer(permit, amount, owner, witness, signature);
        emit Settled();
    }

    function settleWithPermit(
        EIP2612Permit calldata permit2612,
        IPermit2SignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external singleEntry {
        approveWithPermit(permit.permitted.token, owner, permit2612, amount);
        transfer(permit, amount, owner, witness, signature);
        emit SettledWithPermit();
    }

    function transfer(
        IPermit2SignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) private {
        if (msg.sender != witness.facilitator) revert UnauthorizedFacilitator();
        checkParties(owner, witness.to, witness.validAfter);
        if (amount > permit.permitted.amount) revert AmountExceedsPermitted();
        PERMIT2.permitWitnessTransferFrom(
            permit,
            IPermit2SignatureTransfer.SignatureTransferDetails({to: witness.to, requestedAmount: amount}),
            owner,
            keccak256(abi.encode(WITNESS_TYPEHASH, witness.to, witness.facilitator, witness.validAfter)),
            WITNESS_TYPE_STRING,
            signature
        );
    }
}
