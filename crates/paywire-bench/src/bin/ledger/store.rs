//! The two throwaway ledgers of a run (one left empty, one filled), on
//! SQLite files or PostgreSQL databases, behind one interface.

use std::path::{Path, PathBuf};

use paywire_facilitator::Ledger;
use paywire_testkit::postgres::PgCluster;
use serde_json::Value;

use super::fill::{Generator, SettledRow};
use super::{postgres, sqlite};

/// Which store the ledgers live in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// The empty and the full ledger of a run.
pub struct Ledgers {
    kind: StoreKind,
    /// Where the facilitator finds each (a file path or a URL).
    pub empty: String,
    pub full: String,
    /// Kept alive for the run; stopped and deleted on drop.
    _cluster: Option<PgCluster>,
}

impl Ledgers {
    /// Two SQLite files in `dir`.
    pub fn sqlite(dir: &Path) -> Self {
        let path = |name: &str| dir.join(name).display().to_string();
        Self {
            kind: StoreKind::Sqlite,
            empty: path("empty.sqlite"),
            full: path("full.sqlite"),
            _cluster: None,
        }
    }

    /// Two databases: the given URLs, else a throwaway cluster's.
    pub async fn postgres(urls: Option<(String, String)>) -> Result<Self, String> {
        let (empty, full, cluster) = if let Some((empty, full)) = urls {
            (empty, full, None)
        } else {
            let cluster = PgCluster::start().await.map_err(|e| e.to_string())?;
            let empty = cluster
                .create_database("ledger_empty")
                .await
                .map_err(|e| e.to_string())?;
            let full = cluster
                .create_database("ledger_full")
                .await
                .map_err(|e| e.to_string())?;
            (empty, full, Some(cluster))
        };
        Ok(Self {
            kind: StoreKind::Postgres,
            empty,
            full,
            _cluster: cluster,
        })
    }

    /// The facilitator's own ledger handle on `store` (migrating it).
    pub async fn open(&self, store: &str) -> Result<Ledger, String> {
        match self.kind {
            StoreKind::Sqlite => Ledger::open(Path::new(store)).await,
            StoreKind::Postgres => Ledger::connect_postgres(store).await,
        }
        .map_err(|e| e.to_string())
    }

    /// The settled rows of `store`: all, or `sample` at random keys.
    pub async fn settled_rows(
        &self,
        store: &str,
        sample: Option<usize>,
    ) -> Result<Vec<SettledRow>, String> {
        match self.kind {
            StoreKind::Sqlite => sqlite::settled_rows(Path::new(store), sample),
            StoreKind::Postgres => postgres::settled_rows(store, sample).await,
        }
    }

    /// Fills `store` with the generator's rows (`batch` per transaction),
    /// then does what the store's own maintenance would do after such a
    /// load (PostgreSQL: VACUUM ANALYZE; SQLite has no automatic ANALYZE,
    /// and the facilitator runs none).
    pub async fn fill(
        &self,
        store: &str,
        generator: &mut Generator<'_>,
        batch: usize,
    ) -> Result<u64, String> {
        match self.kind {
            StoreKind::Sqlite => {
                let path = PathBuf::from(store);
                tokio::task::block_in_place(|| sqlite::bulk_insert(&path, generator, batch))
            }
            StoreKind::Postgres => {
                let inserted = postgres::bulk_insert(store, generator, batch).await?;
                postgres::vacuum_analyze(store).await?;
                Ok(inserted)
            }
        }
    }

    /// On-disk size of `store`.
    pub async fn size(&self, store: &str) -> Result<Value, String> {
        match self.kind {
            StoreKind::Sqlite => sqlite::size(Path::new(store)),
            StoreKind::Postgres => postgres::size(store).await,
        }
    }

    /// Rows per table of `store`.
    pub async fn counts(&self, store: &str) -> Result<Value, String> {
        match self.kind {
            StoreKind::Sqlite => sqlite::counts(Path::new(store)),
            StoreKind::Postgres => postgres::counts(store).await,
        }
    }
}
