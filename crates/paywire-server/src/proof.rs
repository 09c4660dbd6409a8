//! Proof values: the protected handler can only be run with an
//! [`crate::gate::Access`], and an `Access` can only be built from a valid
//! verification (settled after the handler), a successful settlement, or an
//! explicit grant.

use paywire_core::{SettleResponse, VerifyResponse};

/// A payment the facilitator judged valid (`isValid` literally true).
#[derive(Debug)]
pub(crate) struct Verified {
    response: VerifyResponse,
}

impl Verified {
    /// `Ok` only when the facilitator said `isValid: true`.
    pub(crate) fn check(response: VerifyResponse) -> Result<Self, Box<VerifyResponse>> {
        if response.is_valid {
            Ok(Self { response })
        } else {
            Err(Box::new(response))
        }
    }

    /// The payer reported by the facilitator.
    pub(crate) fn payer(&self) -> Option<&str> {
        self.response.payer.as_deref()
    }
}

/// A settlement with `success` literally true, or a pending one the route
/// explicitly agreed to serve.
#[derive(Debug)]
pub(crate) struct Settled {
    receipt: SettleResponse,
}

impl Settled {
    /// `Ok` only when `success` is true.
    pub(crate) fn check(response: SettleResponse) -> Result<Self, Box<SettleResponse>> {
        if response.success {
            Ok(Self { receipt: response })
        } else {
            Err(Box::new(response))
        }
    }

    /// `Ok` only when the settlement is pending (broadcast, unconfirmed).
    pub(crate) fn accept_pending(response: SettleResponse) -> Result<Self, Box<SettleResponse>> {
        if response.is_pending() {
            Ok(Self { receipt: response })
        } else {
            Err(Box::new(response))
        }
    }

    pub(crate) fn receipt(&self) -> &SettleResponse {
        &self.receipt
    }

    /// The receipt, to be given with the reply.
    pub(crate) fn into_receipt(self) -> SettleResponse {
        self.receipt
    }
}
