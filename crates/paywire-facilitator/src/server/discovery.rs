//! The bazaar: cataloging the declarations of settled payments (confirmed
//! against their origin) and serving `GET /discovery/resources` and
//! `GET /discovery/search`.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use paywire_bazaar::{Catalog, CatalogStatus, DiscoveredResource, ResourceFilter, Unconfirmed};
use paywire_core::FacilitatorRequest;
use tracing::Instrument;

use super::AppState;
use crate::error::ApiError;

/// The `/settle` answer, with the bazaar's `EXTENSION-RESPONSES` when the
/// payment's declaration was cataloged (or refused).
pub(super) fn settle_response(
    response: paywire_core::SettleResponse,
    cataloged: Option<CatalogStatus>,
) -> Response {
    let mut answer = Json(response).into_response();
    if let Some(status) = cataloged
        && let Ok(value) =
            HeaderValue::from_str(&paywire_bazaar::extension_responses_header(&status))
    {
        answer
            .headers_mut()
            .insert(paywire_bazaar::EXTENSION_RESPONSES_HEADER, value);
    }
    answer
}

/// Catalogs the `bazaar` declaration a settled payment carries, when the
/// catalog is enabled: `None` when there is nothing to say.
///
/// The declaration is listed only once its origin confirms it. With a fresh
/// remembered answer of the origin the verdict is immediate; otherwise the
/// origin is asked in the background (so `/settle` does not wait for it) and
/// the answer says `processing`.
pub(super) async fn catalog_payment(
    state: &AppState,
    request: &FacilitatorRequest,
) -> Option<CatalogStatus> {
    let catalog = state.catalog.clone()?;
    let confirmer = state.catalog_confirmer.clone()?;
    let (payload, paid) = (&request.payment_payload, &request.payment_requirements);
    if let Err(reason) = paywire_bazaar::extract(payload, paid, unix_now())? {
        tracing::info!(%reason, "bazaar declaration refused");
        state.metrics.bazaar("rejected");
        return Some(CatalogStatus::Rejected(reason.0));
    }
    let probe = match confirmer.probe(payload, paid) {
        Ok(probe) => probe,
        Err(reason) => return Some(list_confirmed(state, catalog.as_ref(), Err(reason)).await),
    };
    if let Some(verdict) = confirmer.cached(&probe, unix_now()) {
        return Some(list_confirmed(state, catalog.as_ref(), verdict).await);
    }
    let state = state.clone();
    tokio::spawn(
        async move {
            let verdict = confirmer.confirm(&probe, unix_now()).await;
            list_confirmed(&state, catalog.as_ref(), verdict).await;
        }
        .in_current_span(),
    );
    Some(CatalogStatus::Processing)
}

/// Lists what the origin confirmed, or counts why it did not.
async fn list_confirmed(
    state: &AppState,
    catalog: &dyn Catalog,
    verdict: Result<DiscoveredResource, Unconfirmed>,
) -> CatalogStatus {
    let entry = match verdict {
        Ok(entry) => entry,
        Err(reason) => {
            tracing::info!(%reason, "bazaar declaration not confirmed by its origin");
            state.metrics.bazaar("unconfirmed");
            return CatalogStatus::Rejected(format!("not confirmed by the origin: {reason}"));
        }
    };
    let resource = entry.resource.clone();
    match catalog.upsert(entry).await {
        Ok(()) => {
            tracing::info!(%resource, "resource cataloged");
            state.metrics.bazaar("cataloged");
            CatalogStatus::Success
        }
        Err(error) => {
            tracing::error!(%error, "bazaar catalog write failed");
            state.metrics.bazaar("error");
            CatalogStatus::Rejected("catalog unavailable".into())
        }
    }
}

/// Query of `GET /discovery/resources`.
#[derive(Debug, serde::Deserialize)]
pub(super) struct ListQuery {
    #[serde(flatten)]
    filter: ResourceFilter,
    limit: Option<usize>,
    #[serde(default)]
    offset: usize,
}

/// Query of `GET /discovery/search`.
#[derive(Debug, serde::Deserialize)]
pub(super) struct SearchQuery {
    query: Option<String>,
    #[serde(flatten)]
    filter: ResourceFilter,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn discovery_disabled() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "discovery_disabled",
        "this facilitator does not keep a bazaar catalog",
    )
}

fn bad_query(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", error.to_string())
}

fn catalog_unavailable(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(%error, "bazaar catalog read failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "catalog_unavailable",
        "the bazaar catalog cannot be read right now",
    )
}

fn check_limit(limit: Option<usize>) -> Result<(), ApiError> {
    match limit {
        Some(0) => Err(bad_query("limit must be between 1 and 100")),
        Some(n) if n > paywire_bazaar::MAX_PAGE => {
            Err(bad_query("limit must be between 1 and 100"))
        }
        _ => Ok(()),
    }
}

/// `GET /discovery/resources`.
pub(super) async fn resources(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let catalog = state.catalog.clone().ok_or_else(discovery_disabled)?;
    let Query(query) = query.map_err(|e| bad_query(e.body_text()))?;
    check_limit(query.limit)?;
    let page = catalog
        .list(&query.filter, query.limit, query.offset)
        .await
        .map_err(catalog_unavailable)?;
    Ok(Json(page).into_response())
}

/// `GET /discovery/search`.
pub(super) async fn search(
    State(state): State<AppState>,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let catalog = state.catalog.clone().ok_or_else(discovery_disabled)?;
    let Query(query) = query.map_err(|e| bad_query(e.body_text()))?;
    check_limit(query.limit)?;
    let text = query
        .query
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| bad_query("query is required"))?;
    if text.len() > 512 {
        return Err(bad_query("query is longer than 512 bytes"));
    }
    let page = catalog
        .search(&text, &query.filter, query.limit, query.cursor.as_deref())
        .await
        .map_err(catalog_unavailable)?;
    Ok(Json(page).into_response())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
