//! Browsing a facilitator's catalog (feature `client`).

use std::time::Duration;

use crate::catalog::{ListPage, ResourceFilter, SearchPage};

/// A discovery request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The facilitator could not be reached or timed out.
    #[error("discovery request failed: {0}")]
    Transport(String),
    /// The facilitator answered with an error status.
    #[error("discovery endpoint answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The start of the answer.
        body: String,
    },
    /// The answer was not the expected JSON.
    #[error("discovery answer unreadable: {0}")]
    Decode(String),
}

/// A client of `GET /discovery/resources` and `GET /discovery/search`.
#[derive(Debug, Clone)]
pub struct DiscoveryClient {
    base: String,
    http: reqwest::Client,
}

impl DiscoveryClient {
    /// A client of the facilitator at `base_url` (10 s timeout).
    pub fn new(base_url: impl Into<String>) -> Result<Self, DiscoveryError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| DiscoveryError::Transport(e.to_string()))?;
        Ok(Self::with_client(base_url, http))
    }

    /// A client using a preconfigured `reqwest::Client`.
    pub fn with_client(base_url: impl Into<String>, http: reqwest::Client) -> Self {
        Self {
            base: base_url.into().trim_end_matches('/').to_owned(),
            http,
        }
    }

    fn filter_query(filter: &ResourceFilter) -> Vec<(&'static str, String)> {
        [
            ("type", &filter.kind),
            ("payTo", &filter.pay_to),
            ("scheme", &filter.scheme),
            ("network", &filter.network),
            ("extensions", &filter.extensions),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.clone().map(|v| (key, v)))
        .collect()
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: Vec<(&'static str, String)>,
    ) -> Result<T, DiscoveryError> {
        let url = url::Url::parse_with_params(&format!("{}{path}", self.base), &query)
            .map_err(|e| DiscoveryError::Transport(format!("facilitator url: {e}")))?;
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| DiscoveryError::Transport(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| DiscoveryError::Transport(e.to_string()))?;
        if !status.is_success() {
            return Err(DiscoveryError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| DiscoveryError::Decode(e.to_string()))
    }

    /// One page of the catalog.
    pub async fn list(
        &self,
        filter: &ResourceFilter,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<ListPage, DiscoveryError> {
        let mut query = Self::filter_query(filter);
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        query.push(("offset", offset.to_string()));
        self.get("/discovery/resources", query).await
    }

    /// Resources matching `text`.
    pub async fn search(
        &self,
        text: &str,
        filter: &ResourceFilter,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<SearchPage, DiscoveryError> {
        let mut query = Self::filter_query(filter);
        query.push(("query", text.to_owned()));
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_owned()));
        }
        self.get("/discovery/search", query).await
    }
}
