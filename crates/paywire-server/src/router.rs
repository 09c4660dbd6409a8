//! Several facilitators in preference order, with failover.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paywire_core::{
    BoxFuture, Facilitator, FacilitatorError, FacilitatorRequest, PaymentRequirements,
    SettleResponse, SupportedKind, SupportedResponse, VerifyResponse,
};

use crate::http_facilitator::request_not_sent;

enum Cached {
    Ok(Instant, Arc<SupportedResponse>),
    Failed(Instant, FacilitatorError),
}

struct Member {
    facilitator: Arc<dyn Facilitator>,
    cache: Mutex<Option<Cached>>,
}

/// Routes each (scheme, network) to the facilitators whose `/supported`
/// lists it, in preference order.
///
/// - `/supported` answers are cached for `ttl` (failures for `failure_ttl`)
///   and refreshed on expiry;
/// - `verify` fails over to the next facilitator on transport errors, 5xx
///   and undecodable answers;
/// - `settle` fails over only when the request certainly never reached the
///   facilitator ([`request_not_sent`]); any other error is returned, since
///   the first facilitator may have settled.
pub struct FacilitatorRouter {
    members: Vec<Member>,
    ttl: Duration,
    failure_ttl: Duration,
}

impl std::fmt::Debug for FacilitatorRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FacilitatorRouter")
            .field("members", &self.members.len())
            .field("ttl", &self.ttl)
            .field("failure_ttl", &self.failure_ttl)
            .finish()
    }
}

fn retryable(error: &FacilitatorError) -> bool {
    match error {
        FacilitatorError::Transport(_) | FacilitatorError::Decode(_) => true,
        FacilitatorError::Http { status, .. } => *status >= 500,
        // A refusal, or an error this version does not know: not worth another facilitator.
        _ => false,
    }
}

impl FacilitatorRouter {
    /// Routes over `facilitators`, most preferred first.
    pub fn new(facilitators: Vec<Arc<dyn Facilitator>>) -> Self {
        Self {
            members: facilitators
                .into_iter()
                .map(|facilitator| Member {
                    facilitator,
                    cache: Mutex::new(None),
                })
                .collect(),
            ttl: Duration::from_secs(300),
            failure_ttl: Duration::from_secs(5),
        }
    }

    /// How long a `/supported` answer is trusted (default 5 min).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a failed `/supported` is remembered (default 5 s).
    pub fn with_failure_ttl(mut self, ttl: Duration) -> Self {
        self.failure_ttl = ttl;
        self
    }

    fn cached(&self, member: &Member) -> Option<Result<Arc<SupportedResponse>, FacilitatorError>> {
        let guard = member.cache.lock().ok()?;
        match guard.as_ref()? {
            Cached::Ok(at, supported) if at.elapsed() < self.ttl => Some(Ok(Arc::clone(supported))),
            Cached::Failed(at, error) if at.elapsed() < self.failure_ttl => {
                Some(Err(error.clone()))
            }
            _ => None,
        }
    }

    async fn supported_of(
        &self,
        member: &Member,
    ) -> Result<Arc<SupportedResponse>, FacilitatorError> {
        if let Some(cached) = self.cached(member) {
            return cached;
        }
        let fresh = member.facilitator.supported().await.map(Arc::new);
        if let Ok(mut guard) = member.cache.lock() {
            *guard = Some(match &fresh {
                Ok(supported) => Cached::Ok(Instant::now(), Arc::clone(supported)),
                Err(error) => Cached::Failed(Instant::now(), error.clone()),
            });
        }
        fresh
    }

    fn forget(member: &Member) {
        if let Ok(mut guard) = member.cache.lock() {
            *guard = None;
        }
    }

    /// Facilitators listing the requirements' (scheme, network), in
    /// preference order; or the error explaining why there are none. When
    /// the requirements carry data from a facilitator's `/supported` kind
    /// (a Solana fee payer), only the facilitators whose kind agrees are
    /// asked: the others would refuse a payment made out to another sponsor.
    async fn candidates(
        &self,
        requirements: &PaymentRequirements,
    ) -> Result<Vec<&Member>, FacilitatorError> {
        let (scheme, network) = (&requirements.scheme, &requirements.network);
        let (mut agreeing, mut listing) = (Vec::new(), Vec::new());
        let mut last_error = None;
        for member in &self.members {
            match self.supported_of(member).await {
                Ok(supported) => {
                    if let Some(kind) = supported.kind(scheme, network) {
                        listing.push(member);
                        if kind_agrees(kind, requirements) {
                            agreeing.push(member);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "facilitator /supported failed");
                    last_error = Some(error);
                }
            }
        }
        let found = if agreeing.is_empty() {
            listing
        } else {
            agreeing
        };
        if found.is_empty() {
            return Err(last_error.unwrap_or_else(|| {
                FacilitatorError::BadRequest(format!(
                    "no facilitator supports scheme {scheme:?} on {network}"
                ))
            }));
        }
        Ok(found)
    }
}

/// Whether every `extra` value of the facilitator's `kind` that the
/// requirements repeat is the same there (no `extra` agrees with anything).
fn kind_agrees(kind: &SupportedKind, requirements: &PaymentRequirements) -> bool {
    let (Some(offered), Some(required)) = (&kind.extra, &requirements.extra) else {
        return true;
    };
    offered
        .iter()
        .all(|(key, value)| required.get(key).is_none_or(|required| required == value))
}

impl Facilitator for FacilitatorRouter {
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async move {
            let requirements = &request.payment_requirements;
            let candidates = self.candidates(requirements).await?;
            let mut last = None;
            for member in candidates {
                match member.facilitator.verify(request).await {
                    Err(error) if retryable(&error) => {
                        tracing::warn!(%error, "verify failed; trying the next facilitator");
                        Self::forget(member);
                        last = Some(error);
                    }
                    other => return other,
                }
            }
            Err(last.unwrap_or_else(|| FacilitatorError::Transport("no facilitator".into())))
        })
    }

    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(async move {
            let requirements = &request.payment_requirements;
            let candidates = self.candidates(requirements).await?;
            let mut last = None;
            for member in candidates {
                match member.facilitator.settle(request).await {
                    Err(error) if request_not_sent(&error) => {
                        tracing::warn!(%error, "settle not sent; trying the next facilitator");
                        Self::forget(member);
                        last = Some(error);
                    }
                    other => return other,
                }
            }
            Err(last.unwrap_or_else(|| FacilitatorError::Transport("no facilitator".into())))
        })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async move {
            let mut merged = SupportedResponse::default();
            let mut any = false;
            let mut last = None;
            for member in &self.members {
                match self.supported_of(member).await {
                    Ok(supported) => {
                        any = true;
                        for kind in &supported.kinds {
                            if !merged.kinds.contains(kind) {
                                merged.kinds.push(kind.clone());
                            }
                        }
                        for extension in &supported.extensions {
                            if !merged.extensions.contains(extension) {
                                merged.extensions.push(extension.clone());
                            }
                        }
                        for (pattern, signers) in &supported.signers {
                            let entry = merged.signers.entry(pattern.clone()).or_default();
                            for signer in signers {
                                if !entry.contains(signer) {
                                    entry.push(signer.clone());
                                }
                            }
                        }
                    }
                    Err(error) => last = Some(error),
                }
            }
            if any {
                Ok(merged)
            } else {
                Err(last.unwrap_or_else(|| FacilitatorError::Transport("no facilitator".into())))
            }
        })
    }
}
