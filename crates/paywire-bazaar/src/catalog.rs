//! The facilitator's catalog of discovered resources, and the wire shapes
//! of `GET /discovery/resources` and `GET /discovery/search`.

use std::collections::HashMap;
use std::sync::Mutex;

use paywire_core::{BoxFuture, PaymentRequirements};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "postgres")]
pub use postgres::PostgresCatalog;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteCatalog;

/// One cataloged resource, as the discovery endpoints return it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredResource {
    /// The resource URL (for a dynamic route, origin + route template).
    pub resource: String,
    /// `http` or `mcp`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Protocol version of the resource.
    pub x402_version: u32,
    /// How it can be paid, one entry per scheme/network/asset seen.
    pub accepts: Vec<PaymentRequirements>,
    /// Unix seconds of the latest payment that refreshed the entry.
    pub last_updated: u64,
    /// The `bazaar` declaration (`info`, `schema`, `routeTemplate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Value>,
    /// Service metadata (description, mimeType, serviceName, tags, iconUrl),
    /// already sanitized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

impl DiscoveredResource {
    /// The MCP tool name, for an MCP resource.
    pub fn tool_name(&self) -> Option<&str> {
        self.extensions
            .as_ref()?
            .pointer("/bazaar/info/input/toolName")?
            .as_str()
    }

    /// The catalog key: the URL, plus the tool name for MCP (one MCP server
    /// URL serves many tools).
    pub fn key(&self) -> String {
        match self.tool_name() {
            Some(tool) => format!("{}#{tool}", self.resource),
            None => self.resource.clone(),
        }
    }

    /// Folds a newer sighting of the same resource into this one: newer
    /// metadata and declaration, and its payment options replacing those of
    /// the same scheme, network and asset (prices change) or added.
    pub fn merge(&mut self, newer: DiscoveredResource) {
        const MAX_ACCEPTS: usize = 16;
        for option in newer.accepts {
            let same = |o: &PaymentRequirements| {
                o.scheme == option.scheme && o.network == option.network && o.asset == option.asset
            };
            match self.accepts.iter().position(same) {
                Some(index) => self.accepts[index] = option,
                None if self.accepts.len() < MAX_ACCEPTS => self.accepts.push(option),
                None => {}
            }
        }
        self.kind = newer.kind;
        self.x402_version = newer.x402_version;
        self.last_updated = self.last_updated.max(newer.last_updated);
        self.extensions = newer.extensions;
        self.metadata = newer.metadata;
    }

    fn text_for_search(&self) -> String {
        let mut text = self.resource.to_lowercase();
        let mut add = |value: Option<&Value>| match value {
            Some(Value::String(s)) => {
                text.push(' ');
                text.push_str(&s.to_lowercase());
            }
            Some(Value::Array(items)) => {
                for item in items.iter().filter_map(Value::as_str) {
                    text.push(' ');
                    text.push_str(&item.to_lowercase());
                }
            }
            _ => {}
        };
        if let Some(metadata) = &self.metadata {
            add(metadata.get("description"));
            add(metadata.get("serviceName"));
            add(metadata.get("tags"));
        }
        if let Some(extensions) = &self.extensions {
            add(extensions.pointer("/bazaar/info/input/toolName"));
            add(extensions.pointer("/bazaar/info/input/description"));
        }
        text
    }
}

/// Filters of both discovery endpoints; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceFilter {
    /// Resource type (`http`, `mcp`).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// A payment recipient among the resource's options (case-insensitive).
    pub pay_to: Option<String>,
    /// A scheme among the resource's options.
    pub scheme: Option<String>,
    /// A CAIP-2 network among the resource's options.
    pub network: Option<String>,
    /// An extension key the resource carries (e.g. `bazaar`).
    pub extensions: Option<String>,
}

impl ResourceFilter {
    /// Whether `entry` passes every set filter.
    pub fn matches(&self, entry: &DiscoveredResource) -> bool {
        let any_option =
            |check: &dyn Fn(&PaymentRequirements) -> bool| entry.accepts.iter().any(check);
        self.kind.as_ref().is_none_or(|k| *k == entry.kind)
            && self
                .pay_to
                .as_ref()
                .is_none_or(|p| any_option(&|o| o.pay_to.eq_ignore_ascii_case(p)))
            && self
                .scheme
                .as_ref()
                .is_none_or(|s| any_option(&|o| o.scheme == *s))
            && self
                .network
                .as_ref()
                .is_none_or(|n| any_option(&|o| o.network.as_str() == n))
            && self.extensions.as_ref().is_none_or(|key| {
                entry
                    .extensions
                    .as_ref()
                    .and_then(Value::as_object)
                    .is_some_and(|e| e.contains_key(key))
            })
    }
}

/// `pagination` of the list endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pagination {
    /// Page size used.
    pub limit: usize,
    /// Entries skipped.
    pub offset: usize,
    /// Entries matching the filters.
    pub total: usize,
}

/// Answer of `GET /discovery/resources`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPage {
    /// Always 2.
    pub x402_version: u32,
    /// The page, most recently updated first.
    pub items: Vec<DiscoveredResource>,
    /// Where the page is.
    pub pagination: Pagination,
}

/// `pagination` of the search endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchPagination {
    /// Results in this page.
    pub limit: usize,
    /// Continuation cursor, `null` on the last page.
    pub cursor: Option<String>,
}

/// Answer of `GET /discovery/search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchPage {
    /// Always 2.
    pub x402_version: u32,
    /// Matches, best first.
    pub resources: Vec<DiscoveredResource>,
    /// Whether more matches exist beyond this page.
    #[serde(default)]
    pub partial_results: bool,
    /// Continuation.
    #[serde(default)]
    pub pagination: Option<SearchPagination>,
}

/// Largest page either endpoint returns.
pub const MAX_PAGE: usize = 100;
/// Page size when the request names none.
pub const DEFAULT_PAGE: usize = 20;

/// A catalog store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("catalog store: {0}")]
pub struct CatalogError(pub String);

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl From<paywire_store::StoreError> for CatalogError {
    fn from(error: paywire_store::StoreError) -> Self {
        // StoreError's text never carries a database password.
        Self(error.to_string())
    }
}

/// A boxed catalog operation.
pub type CatalogFuture<'a, T> = BoxFuture<'a, Result<T, CatalogError>>;

/// Where discovered resources are kept.
pub trait Catalog: Send + Sync {
    /// Every entry, most recently updated first.
    fn all(&self) -> CatalogFuture<'_, Vec<DiscoveredResource>>;

    /// Inserts `entry`, or merges it into the entry with the same key
    /// (atomically: concurrent upserts of one key lose nothing).
    fn upsert(&self, entry: DiscoveredResource) -> CatalogFuture<'_, ()>;

    /// One page of the entries matching `filter`.
    fn list<'a>(
        &'a self,
        filter: &'a ResourceFilter,
        limit: Option<usize>,
        offset: usize,
    ) -> CatalogFuture<'a, ListPage> {
        Box::pin(async move { Ok(list_page(self.all().await?, filter, limit, offset)) })
    }

    /// Entries matching `filter` and any word of `query` (in the URL,
    /// description, service name, tags or tool), ranked by how many words
    /// they match, then by freshness. `cursor` is the opaque continuation a
    /// previous page returned.
    fn search<'a>(
        &'a self,
        query: &'a str,
        filter: &'a ResourceFilter,
        limit: Option<usize>,
        cursor: Option<&'a str>,
    ) -> CatalogFuture<'a, SearchPage> {
        Box::pin(async move { Ok(search_page(self.all().await?, query, filter, limit, cursor)) })
    }
}

fn list_page(
    entries: Vec<DiscoveredResource>,
    filter: &ResourceFilter,
    limit: Option<usize>,
    offset: usize,
) -> ListPage {
    let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let matching: Vec<DiscoveredResource> =
        entries.into_iter().filter(|e| filter.matches(e)).collect();
    let total = matching.len();
    ListPage {
        x402_version: 2,
        items: matching.into_iter().skip(offset).take(limit).collect(),
        pagination: Pagination {
            limit,
            offset,
            total,
        },
    }
}

fn search_page(
    entries: Vec<DiscoveredResource>,
    query: &str,
    filter: &ResourceFilter,
    limit: Option<usize>,
    cursor: Option<&str>,
) -> SearchPage {
    let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let start = cursor.and_then(|c| c.parse::<usize>().ok()).unwrap_or(0);
    let words: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 1)
        .map(str::to_lowercase)
        .collect();
    let mut scored: Vec<(usize, DiscoveredResource)> = entries
        .into_iter()
        .filter(|e| filter.matches(e))
        .filter_map(|entry| {
            let text = entry.text_for_search();
            let score = words.iter().filter(|w| text.contains(w.as_str())).count();
            (score > 0).then_some((score, entry))
        })
        .collect();
    // A stable sort keeps the freshness order of `all` among equal scores.
    scored.sort_by_key(|(score, _)| std::cmp::Reverse(*score));
    let more = scored.len() > start + limit;
    let resources: Vec<DiscoveredResource> = scored
        .into_iter()
        .skip(start)
        .take(limit)
        .map(|(_, entry)| entry)
        .collect();
    SearchPage {
        x402_version: 2,
        pagination: Some(SearchPagination {
            limit: resources.len(),
            cursor: more.then(|| (start + limit).to_string()),
        }),
        resources,
        partial_results: more,
    }
}

pub(crate) fn sort_fresh_first(entries: &mut [DiscoveredResource]) {
    entries.sort_by(|a, b| {
        b.last_updated
            .cmp(&a.last_updated)
            .then_with(|| a.resource.cmp(&b.resource))
    });
}

/// A catalog in memory (lost on restart).
#[derive(Debug, Default)]
pub struct MemoryCatalog {
    entries: Mutex<HashMap<String, DiscoveredResource>>,
}

impl MemoryCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, DiscoveredResource>> {
        match self.entries.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl Catalog for MemoryCatalog {
    fn all(&self) -> CatalogFuture<'_, Vec<DiscoveredResource>> {
        let mut entries: Vec<DiscoveredResource> = self.lock().values().cloned().collect();
        sort_fresh_first(&mut entries);
        Box::pin(std::future::ready(Ok(entries)))
    }

    fn upsert(&self, entry: DiscoveredResource) -> CatalogFuture<'_, ()> {
        let mut entries = self.lock();
        match entries.get_mut(&entry.key()) {
            Some(existing) => existing.merge(entry),
            None => {
                entries.insert(entry.key(), entry);
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

/// A stored entry, from its JSON.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn decode(text: &str) -> Result<DiscoveredResource, CatalogError> {
    serde_json::from_str(text).map_err(|e| CatalogError(format!("stored entry: {e}")))
}

/// The row to store for `entry` merged into the stored `existing` one, if
/// any: (entry JSON, last update).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn merged_row(
    existing: Option<&str>,
    entry: DiscoveredResource,
) -> Result<(String, i64), CatalogError> {
    let merged = match existing {
        Some(text) => {
            let mut stored = decode(text)?;
            stored.merge(entry);
            stored
        }
        None => entry,
    };
    let text = serde_json::to_string(&merged).map_err(|e| CatalogError(e.to_string()))?;
    Ok((text, i64::try_from(merged.last_updated).unwrap_or(i64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(
        url: &str,
        network: &str,
        amount: &str,
        updated: u64,
        description: &str,
    ) -> DiscoveredResource {
        DiscoveredResource {
            resource: url.into(),
            kind: "http".into(),
            x402_version: 2,
            accepts: vec![
                serde_json::from_value(json!({
                    "scheme": "exact", "network": network, "amount": amount,
                    "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
                    "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 60
                }))
                .unwrap(),
            ],
            last_updated: updated,
            extensions: Some(
                json!({"bazaar": {"info": {"input": {"type": "http", "method": "GET"}}}}),
            ),
            metadata: Some(json!({"description": description, "tags": ["data"]})),
        }
    }

    async fn total(catalog: &dyn Catalog, filter: ResourceFilter) -> usize {
        catalog
            .list(&filter, None, 0)
            .await
            .unwrap()
            .pagination
            .total
    }

    async fn exercise(catalog: &dyn Catalog) {
        catalog
            .upsert(entry(
                "https://a.example/weather",
                "eip155:8453",
                "10000",
                5,
                "Weather forecast",
            ))
            .await
            .unwrap();
        catalog
            .upsert(entry(
                "https://b.example/stocks",
                "eip155:8453",
                "20000",
                6,
                "Stock quotes",
            ))
            .await
            .unwrap();
        catalog
            .upsert(entry(
                "https://c.example/news",
                "eip155:84532",
                "5000",
                7,
                "World news and weather",
            ))
            .await
            .unwrap();
        // The same resource paid again, on another network and at a new price.
        catalog
            .upsert(entry(
                "https://a.example/weather",
                "eip155:84532",
                "9000",
                8,
                "Weather forecast, hourly",
            ))
            .await
            .unwrap();
        catalog
            .upsert(entry(
                "https://a.example/weather",
                "eip155:8453",
                "12000",
                9,
                "Weather forecast, hourly",
            ))
            .await
            .unwrap();

        let page = catalog
            .list(&ResourceFilter::default(), None, 0)
            .await
            .unwrap();
        assert_eq!(
            page.pagination,
            Pagination {
                limit: 20,
                offset: 0,
                total: 3
            }
        );
        let urls: Vec<&str> = page.items.iter().map(|e| e.resource.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://a.example/weather",
                "https://c.example/news",
                "https://b.example/stocks"
            ]
        );
        let weather = &page.items[0];
        let amounts: Vec<(&str, String)> = weather
            .accepts
            .iter()
            .map(|o| (o.network.as_str(), o.amount.to_string()))
            .collect();
        assert_eq!(
            amounts,
            [
                ("eip155:8453", "12000".to_owned()),
                ("eip155:84532", "9000".to_owned())
            ]
        );

        let testnet = ResourceFilter {
            network: Some("eip155:84532".into()),
            ..Default::default()
        };
        assert_eq!(total(catalog, testnet).await, 2);
        let page = catalog
            .list(&ResourceFilter::default(), Some(1), 1)
            .await
            .unwrap();
        assert_eq!(page.items[0].resource, "https://c.example/news");
        assert_eq!(page.pagination.limit, 1);
        assert_eq!(
            catalog
                .list(&ResourceFilter::default(), Some(1000), 0)
                .await
                .unwrap()
                .pagination
                .limit,
            MAX_PAGE
        );
        let mcp = ResourceFilter {
            kind: Some("mcp".into()),
            ..Default::default()
        };
        assert_eq!(total(catalog, mcp).await, 0);
        let with_siwx = ResourceFilter {
            extensions: Some("sign-in-with-x".into()),
            ..Default::default()
        };
        assert_eq!(total(catalog, with_siwx).await, 0);
        let pay_to = ResourceFilter {
            pay_to: Some("0x209693bc6afc0c5328ba36faf03c514ef312287c".into()),
            ..Default::default()
        };
        assert_eq!(total(catalog, pay_to).await, 3);

        let found = catalog
            .search("hourly weather", &ResourceFilter::default(), None, None)
            .await
            .unwrap();
        let urls: Vec<&str> = found
            .resources
            .iter()
            .map(|e| e.resource.as_str())
            .collect();
        assert_eq!(
            urls,
            ["https://a.example/weather", "https://c.example/news"]
        );
        let first = catalog
            .search("weather", &ResourceFilter::default(), Some(1), None)
            .await
            .unwrap();
        assert!(first.partial_results);
        let cursor = first.pagination.unwrap().cursor.unwrap();
        let second = catalog
            .search(
                "weather",
                &ResourceFilter::default(),
                Some(1),
                Some(&cursor),
            )
            .await
            .unwrap();
        assert_eq!(second.resources[0].resource, "https://c.example/news");
        assert!(!second.partial_results);
        assert_eq!(second.pagination.unwrap().cursor, None);
        assert!(
            catalog
                .search("zzz", &ResourceFilter::default(), None, None)
                .await
                .unwrap()
                .resources
                .is_empty()
        );
    }

    #[tokio::test]
    async fn memory_catalog() {
        exercise(&MemoryCatalog::new()).await;
    }

    #[tokio::test]
    async fn postgres_catalog_is_shared_between_instances() {
        let Some(cluster) = paywire_testkit::postgres::PgCluster::start_or_skip()
            .await
            .unwrap()
        else {
            return;
        };
        let first = PostgresCatalog::connect(cluster.url()).await.unwrap();
        exercise(&first).await;
        let second = PostgresCatalog::connect(cluster.url()).await.unwrap();
        assert_eq!(
            second
                .list(&ResourceFilter::default(), None, 0)
                .await
                .unwrap()
                .pagination
                .total,
            3
        );
        // Two instances merging options of one new resource at once lose neither.
        let a = entry("https://d.example/x", "eip155:8453", "1", 20, "d");
        let b = entry("https://d.example/x", "eip155:84532", "2", 21, "d");
        let (ra, rb) = tokio::join!(first.upsert(a), second.upsert(b));
        ra.unwrap();
        rb.unwrap();
        let page = first
            .list(&ResourceFilter::default(), Some(1), 0)
            .await
            .unwrap();
        assert_eq!(page.items[0].resource, "https://d.example/x");
        assert_eq!(
            page.items[0].accepts.len(),
            2,
            "{:?}",
            page.items[0].accepts
        );
    }

    #[tokio::test]
    async fn sqlite_catalog_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bazaar.sqlite");
        exercise(&SqliteCatalog::open(&path).await.unwrap()).await;
        let reopened = SqliteCatalog::open(&path).await.unwrap();
        assert_eq!(
            reopened
                .list(&ResourceFilter::default(), None, 0)
                .await
                .unwrap()
                .pagination
                .total,
            3
        );
    }

    #[tokio::test]
    async fn mcp_tools_of_one_server_are_separate_entries() {
        let catalog = MemoryCatalog::new();
        for tool in ["quote", "analyse"] {
            let mut e = entry(
                "https://mcp.example/mcp",
                "eip155:8453",
                "1000",
                1,
                "Finance tools",
            );
            e.kind = "mcp".into();
            e.extensions = Some(
                json!({"bazaar": {"info": {"input": {"type": "mcp", "toolName": tool, "inputSchema": {}}}}}),
            );
            catalog.upsert(e).await.unwrap();
        }
        assert_eq!(
            catalog
                .list(&ResourceFilter::default(), None, 0)
                .await
                .unwrap()
                .pagination
                .total,
            2
        );
        let found = catalog
            .search("analyse", &ResourceFilter::default(), None, None)
            .await
            .unwrap();
        assert_eq!(found.resources.len(), 1);
        assert_eq!(found.resources[0].tool_name(), Some("analyse"));
    }
}
