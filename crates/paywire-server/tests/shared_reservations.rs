//! Two "instances" (two `PaymentLayer`s with their own connections) share one
//! reservation store, a SQLite file or a PostgreSQL database: concurrent copies
//! of one payment, split across both, run the handler exactly once.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy_primitives::{Address, B256};
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use common::*;
use paywire_core::codec::encode_header;
use paywire_core::{
    AtomicAmount, BoxFuture, ChainIdPattern, Facilitator, FacilitatorError, FacilitatorRequest,
    JsonObject, PaymentPayload, SettleResponse, SupportedResponse, VerifyResponse,
};
use paywire_evm::EvmNetworks;
use paywire_evm::exact::ExactEvmServer;
use paywire_server::{
    PayTo, PayloadFingerprint, PaymentLayer, PaymentOption, PostgresReservationStore,
    ReservationKey, ReservationStore, ReserveOutcome, Route, SqliteReservationStore, money,
};
use paywire_store::{rusqlite, tokio_postgres};
use serde_json::{Value, json};

/// Valid and settled, instantly.
#[derive(Default)]
struct Approve {
    settles: AtomicUsize,
}

impl Facilitator for Approve {
    fn verify<'a>(
        &'a self,
        _: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async {
            Ok(VerifyResponse::valid(
                "0x0000000000000000000000000000000000000001",
            ))
        })
    }

    fn settle<'a>(
        &'a self,
        _: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        self.settles.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            serde_json::from_value(
                json!({"success": true, "transaction": "0xabc", "network": "eip155:31337"}),
            )
            .map_err(|e| FacilitatorError::Decode(e.to_string()))
        })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async { Ok(SupportedResponse::default()) })
    }
}

fn instance(
    facilitator: Arc<Approve>,
    store: Arc<dyn ReservationStore>,
    runs: Arc<AtomicUsize>,
) -> Router {
    let usdc = Address::repeat_byte(0x11);
    let mut table = EvmNetworks::empty();
    table.insert(anvil_network(usdc));
    let layer = PaymentLayer::builder(facilitator)
        .scheme(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmServer::new(table)),
        )
        .public_origin(ORIGIN)
        .reservations(store)
        .route(
            Route::new("GET /cheap")
                .expect("route")
                .accept(PaymentOption::exact(
                    chain(),
                    money("$0.01").expect("price"),
                    PayTo::address(Address::repeat_byte(0x22).to_string()),
                )),
        )
        .build()
        .expect("layer");
    Router::new()
        .route(
            "/cheap",
            get(|State(runs): State<Arc<AtomicUsize>>| async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                CONTENT
            }),
        )
        .layer(layer)
        .with_state(runs)
}

/// Opens a new connection to the shared store (a new "instance").
type Open = Box<dyn Fn() -> BoxFuture<'static, Arc<dyn ReservationStore>> + Send + Sync>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_sqlite_file() {
    let dir = std::env::temp_dir().join(format!(
        "paywire-server-sqlite-{}-{}",
        std::process::id(),
        B256::random()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("reservations.sqlite");
    let open: Open = Box::new(move || {
        let path = path.clone();
        Box::pin(async move {
            Arc::new(SqliteReservationStore::open(&path).expect("open"))
                as Arc<dyn ReservationStore>
        })
    });
    two_instances_run_one_payment_once(open).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_postgres_database() {
    let Some(cluster) = paywire_testkit::postgres::PgCluster::start_or_skip()
        .await
        .expect("postgres")
    else {
        return;
    };
    let url = cluster.url().to_owned();
    let open: Open = Box::new(move || {
        let url = url.clone();
        Box::pin(async move {
            Arc::new(
                PostgresReservationStore::connect(&url)
                    .await
                    .expect("connect"),
            ) as Arc<dyn ReservationStore>
        })
    });
    two_instances_run_one_payment_once(open).await;
    drop(cluster);
}

async fn two_instances_run_one_payment_once(open: Open) {
    let facilitator = Arc::new(Approve::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let a = serve(instance(
        Arc::clone(&facilitator),
        open().await,
        Arc::clone(&runs),
    ))
    .await;
    let b = serve(instance(
        Arc::clone(&facilitator),
        open().await,
        Arc::clone(&runs),
    ))
    .await;
    let required = required_of(
        &client()
            .get(format!("{a}/cheap"))
            .send()
            .await
            .expect("402"),
    );
    let mut authorization = JsonObject::new();
    authorization.insert("from".into(), json!(Address::random().to_string()));
    authorization.insert("nonce".into(), json!(B256::random().to_string()));
    let mut payload = JsonObject::new();
    payload.insert("authorization".into(), Value::Object(authorization));
    payload.insert("signature".into(), json!("0x00"));
    let payment = encode_header(&PaymentPayload {
        x402_version: 2,
        payload,
        extensions: None,
        resource: Some(required.resource.clone()),
        accepted: required.accepts[0].clone(),
    });

    let mut tasks = Vec::new();
    for i in 0..20 {
        let url = format!("{}/cheap", if i % 2 == 0 { &a } else { &b });
        let payment = payment.clone();
        tasks.push(tokio::spawn(async move {
            let response = client()
                .get(url)
                .header("PAYMENT-SIGNATURE", payment)
                .send()
                .await
                .expect("request");
            let status = response.status().as_u16();
            (status, response.text().await.expect("body"))
        }));
    }
    let mut served = 0;
    for task in tasks {
        let (status, body) = task.await.expect("task");
        match status {
            200 => {
                assert_eq!(body, CONTENT);
                served += 1;
            }
            402 => assert!(!body.contains(CONTENT)),
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert_eq!(served, 1);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(facilitator.settles.load(Ordering::SeqCst), 1);

    // A restarted instance still knows the payment was used.
    let restarted = serve(instance(
        Arc::clone(&facilitator),
        open().await,
        Arc::clone(&runs),
    ))
    .await;
    let again = client()
        .get(format!("{restarted}/cheap"))
        .header("PAYMENT-SIGNATURE", &payment)
        .send()
        .await
        .expect("request");
    assert_eq!(again.status().as_u16(), 402);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_semantics() {
    let Some(cluster) = paywire_testkit::postgres::PgCluster::start_or_skip()
        .await
        .expect("postgres")
    else {
        return;
    };
    let store = PostgresReservationStore::connect_with(
        cluster.url(),
        Duration::from_millis(300),
        Duration::from_secs(60),
    )
    .await
    .expect("connect");
    let other = PostgresReservationStore::connect(cluster.url())
        .await
        .expect("second connection");
    let key = ReservationKey(B256::random().0);
    let fp = PayloadFingerprint(B256::random().0);
    assert_eq!(
        store.reserve(&key, &fp).await.expect("reserve"),
        ReserveOutcome::Reserved
    );
    assert_eq!(
        other.reserve(&key, &fp).await.expect("reserve"),
        ReserveOutcome::InUse
    );
    store.release(&key).await.expect("release");
    assert_eq!(
        store.reserve(&key, &fp).await.expect("reserve"),
        ReserveOutcome::Reserved,
        "released, so free again (this time with the short lifetime)"
    );
    // An abandoned reservation expires.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        store.reserve(&key, &fp).await.expect("reserve"),
        ReserveOutcome::Reserved
    );
    store.consume(&key).await.expect("consume");
    assert_eq!(
        other.reserve(&key, &fp).await.expect("reserve"),
        ReserveOutcome::Consumed
    );
    // Releasing a consumed key does not free it.
    other.release(&key).await.expect("release");
    assert_eq!(
        store.reserve(&key, &fp).await.expect("reserve"),
        ReserveOutcome::Consumed
    );
}

fn temp_sqlite(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "paywire-server-{name}-{}-{}",
        std::process::id(),
        B256::random()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("reservations.sqlite");
    (dir, path)
}

/// An unknown settlement outcome outlives the connection (a restart): only
/// the same payload resumes it, one connection at a time.
async fn unknown_outcome_survives_a_reopen(open: Open) {
    let key = ReservationKey(B256::random().0);
    let fp = PayloadFingerprint(B256::random().0);
    let other_fp = PayloadFingerprint(B256::random().0);
    {
        let before = open().await;
        assert_eq!(
            before.reserve(&key, &fp).await.expect("reserve"),
            ReserveOutcome::Reserved
        );
        before.mark_unknown(&key, &fp).await.expect("mark");
    }
    let (a, b) = (open().await, open().await);
    assert!(a.is_unknown(&key, &fp).await.expect("read"));
    assert!(!a.is_unknown(&key, &other_fp).await.expect("read"));
    assert_eq!(
        b.reserve(&key, &other_fp).await.expect("reserve"),
        ReserveOutcome::Consumed,
        "another payload for the authorization"
    );
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = Arc::clone(if i % 2 == 0 { &a } else { &b });
        tasks.push(tokio::spawn(async move {
            store.reserve(&key, &fp).await.expect("reserve")
        }));
    }
    let mut resumed = 0;
    for task in tasks {
        match task.await.expect("task") {
            ReserveOutcome::Resumed => resumed += 1,
            other => assert_eq!(other, ReserveOutcome::InUse),
        }
    }
    assert_eq!(resumed, 1, "one resume at a time");
    // Still unknown after that attempt: resumable again; then settled.
    a.mark_unknown(&key, &fp).await.expect("mark");
    assert_eq!(
        b.reserve(&key, &fp).await.expect("reserve"),
        ReserveOutcome::Resumed
    );
    b.consume(&key).await.expect("consume");
    a.mark_unknown(&key, &fp).await.expect("mark");
    assert_eq!(
        open().await.reserve(&key, &fp).await.expect("reserve"),
        ReserveOutcome::Consumed,
        "settled stays settled"
    );
    // Resumed, then proven never charged: free for any payload.
    let freed = ReservationKey(B256::random().0);
    a.mark_unknown(&freed, &fp).await.expect("mark");
    assert_eq!(
        a.reserve(&freed, &fp).await.expect("reserve"),
        ReserveOutcome::Resumed
    );
    a.release(&freed).await.expect("release");
    assert_eq!(
        b.reserve(&freed, &other_fp).await.expect("reserve"),
        ReserveOutcome::Reserved
    );
}

/// The charge of a usage-based settlement with an unknown outcome outlives
/// the connection and is read by another one: the retry asks for the same
/// amount on any instance. A payload recorded without a charge reads none;
/// another payload never reads this one's.
async fn unknown_charge_survives_a_reopen(open: &Open) {
    let (key, bare) = (
        ReservationKey(B256::random().0),
        ReservationKey(B256::random().0),
    );
    let fp = PayloadFingerprint(B256::random().0);
    let other_fp = PayloadFingerprint(B256::random().0);
    let charge = AtomicAmount::from(987_654_321_u64);
    {
        let before = open().await;
        assert_eq!(
            before.reserve(&key, &fp).await.expect("reserve"),
            ReserveOutcome::Reserved
        );
        before
            .mark_unknown_with_charge(&key, &fp, Some(charge))
            .await
            .expect("mark");
        before.mark_unknown(&bare, &fp).await.expect("mark");
    }
    let (a, b) = (open().await, open().await);
    assert_eq!(
        a.unknown_charge(&key, &fp).await.expect("read"),
        Some(charge)
    );
    assert_eq!(a.unknown_charge(&key, &other_fp).await.expect("read"), None);
    assert_eq!(a.unknown_charge(&bare, &fp).await.expect("read"), None);
    assert_eq!(
        b.reserve(&key, &fp).await.expect("reserve"),
        ReserveOutcome::Resumed
    );
    // The resumed attempt is let go before choosing its charge: kept.
    b.mark_unknown(&key, &fp).await.expect("mark");
    assert_eq!(
        a.unknown_charge(&key, &fp).await.expect("read"),
        Some(charge)
    );
    b.consume(&key).await.expect("consume");
    assert_eq!(a.unknown_charge(&key, &fp).await.expect("read"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_unknown_outcomes_across_a_reopen() {
    let (dir, path) = temp_sqlite("unknown");
    let open: Open = Box::new(move || {
        let path = path.clone();
        Box::pin(async move {
            Arc::new(SqliteReservationStore::open(&path).expect("open"))
                as Arc<dyn ReservationStore>
        })
    });
    unknown_charge_survives_a_reopen(&open).await;
    unknown_outcome_survives_a_reopen(open).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_unknown_outcomes_across_a_reopen() {
    let Some(cluster) = paywire_testkit::postgres::PgCluster::start_or_skip()
        .await
        .expect("postgres")
    else {
        return;
    };
    let url = cluster.url().to_owned();
    let open: Open = Box::new(move || {
        let url = url.clone();
        Box::pin(async move {
            Arc::new(
                PostgresReservationStore::connect(&url)
                    .await
                    .expect("connect"),
            ) as Arc<dyn ReservationStore>
        })
    });
    unknown_charge_survives_a_reopen(&open).await;
    unknown_outcome_survives_a_reopen(open).await;
    drop(cluster);
}

/// A table created by the previous version (three columns) is migrated in
/// place: its rows keep their meaning, unknown outcomes work.
#[tokio::test]
async fn sqlite_migrates_a_table_of_the_previous_version() {
    let (dir, path) = temp_sqlite("migrate");
    let (used, held) = (ReservationKey([1; 32]), ReservationKey([2; 32]));
    let far = 4_102_444_800_000_i64; // 2100-01-01, in ms
    {
        let old = rusqlite::Connection::open(&path).expect("open");
        old.execute_batch(
            "CREATE TABLE x402_reservations (
                 key BLOB PRIMARY KEY NOT NULL,
                 state INTEGER NOT NULL,
                 expires_ms INTEGER NOT NULL
             ) WITHOUT ROWID;",
        )
        .expect("old schema");
        old.execute(
            "INSERT INTO x402_reservations VALUES (?1, 1, ?3), (?2, 0, ?3)",
            rusqlite::params![&used.0[..], &held.0[..], far],
        )
        .expect("old rows");
    }
    let store = SqliteReservationStore::open(&path).expect("migrated");
    let fp = PayloadFingerprint([3; 32]);
    assert_eq!(
        store.reserve(&used, &fp).await.expect("reserve"),
        ReserveOutcome::Consumed
    );
    assert_eq!(
        store.reserve(&held, &fp).await.expect("reserve"),
        ReserveOutcome::InUse
    );
    let key = ReservationKey([4; 32]);
    store.mark_unknown(&key, &fp).await.expect("mark");
    drop(store);
    let reopened = SqliteReservationStore::open(&path).expect("reopen");
    assert_eq!(
        reopened.reserve(&key, &fp).await.expect("reserve"),
        ReserveOutcome::Resumed
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrates_a_table_of_the_previous_version() {
    let Some(cluster) = paywire_testkit::postgres::PgCluster::start_or_skip()
        .await
        .expect("postgres")
    else {
        return;
    };
    let (client, connection) = tokio_postgres::connect(cluster.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let used = ReservationKey(B256::random().0);
    client
        .batch_execute(
            "CREATE TABLE x402_reservations (
                 key BYTEA PRIMARY KEY,
                 state SMALLINT NOT NULL,
                 expires_ms BIGINT NOT NULL
             );",
        )
        .await
        .expect("old schema");
    client
        .execute(
            "INSERT INTO x402_reservations VALUES ($1, 1, 4102444800000)",
            &[&&used.0[..]],
        )
        .await
        .expect("old row");
    let store = PostgresReservationStore::connect(cluster.url())
        .await
        .expect("migrated");
    let fp = PayloadFingerprint(B256::random().0);
    assert_eq!(
        store.reserve(&used, &fp).await.expect("reserve"),
        ReserveOutcome::Consumed
    );
    let key = ReservationKey(B256::random().0);
    store.mark_unknown(&key, &fp).await.expect("mark");
    let again = PostgresReservationStore::connect(cluster.url())
        .await
        .expect("reconnect");
    assert_eq!(
        again.reserve(&key, &fp).await.expect("reserve"),
        ReserveOutcome::Resumed
    );
    drop(cluster);
}

/// A file written by the release before the store moved onto paywire-store
/// (five columns, no bookkeeping table) is adopted: nothing is added twice
/// (SQLite would refuse a duplicate column), every row keeps its meaning.
#[tokio::test]
async fn sqlite_adopts_a_file_of_the_wave_one_release() {
    let (dir, path) = temp_sqlite("wave1");
    let (used, unknown) = (ReservationKey([1; 32]), ReservationKey([2; 32]));
    let fp = PayloadFingerprint([3; 32]);
    let far = 4_102_444_800_000_i64; // 2100-01-01, in ms
    {
        let old = rusqlite::Connection::open(&path).expect("open");
        old.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE x402_reservations (
                 key BLOB PRIMARY KEY NOT NULL,
                 state INTEGER NOT NULL,
                 expires_ms INTEGER NOT NULL,
                 fingerprint BLOB,
                 held_until_ms INTEGER
             ) WITHOUT ROWID;",
        )
        .expect("wave-1 schema");
        old.execute(
            "INSERT INTO x402_reservations VALUES (?1, 1, ?3, NULL, NULL), (?2, 2, ?3, ?4, NULL)",
            rusqlite::params![&used.0[..], &unknown.0[..], far, &fp.0[..]],
        )
        .expect("wave-1 rows");
    }
    let store = SqliteReservationStore::open(&path).expect("adopted");
    assert_eq!(
        store.reserve(&used, &fp).await.expect("reserve"),
        ReserveOutcome::Consumed
    );
    assert!(store.is_unknown(&unknown, &fp).await.expect("read"));
    assert_eq!(
        store.unknown_charge(&unknown, &fp).await.expect("read"),
        None,
        "rows written before charges were recorded have none"
    );
    assert_eq!(
        store.reserve(&unknown, &fp).await.expect("reserve"),
        ReserveOutcome::Resumed
    );
    drop(store);
    let version: i64 = rusqlite::Connection::open(&path)
        .expect("open")
        .query_row(
            "SELECT version FROM paywire_schema_versions WHERE component = 'reservations'",
            [],
            |row| row.get(0),
        )
        .expect("recorded");
    assert_eq!(version, 3);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file migrated by a newer release is refused, not written to.
#[tokio::test]
async fn sqlite_refuses_a_newer_schema() {
    let (dir, path) = temp_sqlite("newer");
    drop(SqliteReservationStore::open(&path).expect("open"));
    rusqlite::Connection::open(&path)
        .expect("open")
        .execute(
            "UPDATE paywire_schema_versions SET version = 99 WHERE component = 'reservations'",
            [],
        )
        .expect("bump");
    let error = SqliteReservationStore::open(&path).expect_err("newer schema");
    assert!(
        error.0.contains("reservations") && error.0.contains("99"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The store's SQLite work runs off the async runtime: on a single-threaded
/// runtime, a timer keeps ticking while `reserve` waits for another
/// process's write lock. Run inline, the wait would stop the only thread
/// and the timer with it.
#[test]
fn sqlite_waits_for_a_lock_off_the_runtime() {
    let (dir, path) = temp_sqlite("offruntime");
    let store = SqliteReservationStore::open(&path).expect("open");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    // Another process holds the write lock for a while.
    let locker = rusqlite::Connection::open(&path).expect("open");
    locker.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let (locked_for, tick) = (Duration::from_millis(800), Duration::from_millis(20));
    let unlock = std::thread::spawn(move || {
        std::thread::sleep(locked_for);
        locker.execute_batch("COMMIT").expect("unlock");
    });
    let ticks = runtime.block_on(async {
        let key = ReservationKey([9; 32]);
        let reserve = store.reserve(&key, &PayloadFingerprint([1; 32]));
        let mut interval = tokio::time::interval(tick);
        let mut ticks = 0_u32;
        tokio::pin!(reserve);
        loop {
            tokio::select! {
                outcome = &mut reserve => {
                    assert_eq!(outcome.expect("reserve"), ReserveOutcome::Reserved);
                    break ticks;
                }
                _ = interval.tick() => ticks += 1,
            }
        }
    });
    unlock.join().expect("unlocker");
    // About 40 ticks fit in the lock's 800 ms; inline there would be one.
    assert!(ticks >= 10, "the runtime stalled: {ticks} ticks");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn reserve_eventually(
    store: &PostgresReservationStore,
    key: &ReservationKey,
    fp: &PayloadFingerprint,
) -> (ReserveOutcome, u32) {
    let mut failures = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match store.reserve(key, fp).await {
            Ok(outcome) => return (outcome, failures),
            Err(error) => {
                failures += 1;
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no recovery within 10 s: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// `pg_ctl restart` cuts every connection: the same store (not rebuilt)
/// serves again right after, and what it recorded before is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_recovers_from_a_database_restart() {
    let Some(cluster) = paywire_testkit::postgres::PgCluster::start_or_skip()
        .await
        .expect("postgres")
    else {
        return;
    };
    let store = PostgresReservationStore::connect(cluster.url())
        .await
        .expect("connect");
    let (before, fp) = (
        ReservationKey(B256::random().0),
        PayloadFingerprint([5; 32]),
    );
    // Several operations at once, so the pool holds several connections the
    // restart will cut.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (store, key) = (store.clone(), ReservationKey(B256::random().0));
        tasks.push(tokio::spawn(async move {
            store.reserve(&key, &fp).await.expect("reserve")
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task"), ReserveOutcome::Reserved);
    }
    store.reserve(&before, &fp).await.expect("reserve");
    store.consume(&before).await.expect("consume");

    cluster.restart().await.expect("pg_ctl restart");

    let after = ReservationKey(B256::random().0);
    let (outcome, failures) = reserve_eventually(&store, &after, &fp).await;
    assert_eq!(outcome, ReserveOutcome::Reserved);
    assert_eq!(failures, 0, "the first operation after the restart failed");
    assert_eq!(
        store.reserve(&before, &fp).await.expect("reserve"),
        ReserveOutcome::Consumed,
        "settled before the restart, still settled"
    );
    drop(cluster);
}

/// `sslmode=verify-full` with the kit's CA: the store's sessions are
/// encrypted (the server says so in `pg_stat_ssl`), on a server that refuses
/// plaintext clients anyway. A CA that did not sign the server's certificate
/// is refused, and neither the error nor Debug shows the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_connects_over_verified_tls() {
    use paywire_testkit::postgres::{PgCluster, PgClusterOptions};
    let Some(cluster) = PgCluster::start_with_or_skip(PgClusterOptions::hostssl_only())
        .await
        .expect("postgres")
    else {
        return;
    };
    let url = |ca: &std::path::Path| {
        format!(
            "postgres://postgres:s3cret-pw@127.0.0.1:{}/x402?sslmode=verify-full&sslrootcert={}",
            cluster.port(),
            ca.display()
        )
    };
    let store = PostgresReservationStore::connect(&url(cluster.ca_file().expect("CA")))
        .await
        .expect("connect over TLS");
    let key = ReservationKey(B256::random().0);
    assert_eq!(
        store
            .reserve(&key, &PayloadFingerprint([1; 32]))
            .await
            .expect("reserve"),
        ReserveOutcome::Reserved
    );
    let encrypted: bool = store
        .pool()
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(encrypted, "the session is not encrypted");
    let debug = format!("{store:?}");
    assert!(!debug.contains("s3cret-pw"), "{debug}");

    let untrusted = url(cluster.untrusted_ca_file().expect("other CA"));
    let error = PostgresReservationStore::connect(&untrusted)
        .await
        .expect_err("an unverifiable certificate");
    assert!(!error.to_string().contains("s3cret-pw"), "{error}");
    assert!(!format!("{error:?}").contains("s3cret-pw"), "{error:?}");
}

/// A database of the release before paywire-store (five columns, no
/// bookkeeping row) is adopted with its rows; a database whose recorded
/// schema is newer than this build is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_adopts_wave_one_and_refuses_a_newer_schema() {
    let Some(cluster) = paywire_testkit::postgres::PgCluster::start_or_skip()
        .await
        .expect("postgres")
    else {
        return;
    };
    let (client, connection) = tokio_postgres::connect(cluster.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let (unknown, fp) = (
        ReservationKey(B256::random().0),
        PayloadFingerprint([6; 32]),
    );
    client
        .batch_execute(
            "CREATE TABLE x402_reservations (
                 key BYTEA PRIMARY KEY,
                 state SMALLINT NOT NULL,
                 expires_ms BIGINT NOT NULL,
                 fingerprint BYTEA,
                 held_until_ms BIGINT
             );",
        )
        .await
        .expect("wave-1 schema");
    client
        .execute(
            "INSERT INTO x402_reservations VALUES ($1, 2, 4102444800000, $2, NULL)",
            &[&&unknown.0[..], &&fp.0[..]],
        )
        .await
        .expect("wave-1 row");
    let store = PostgresReservationStore::connect(cluster.url())
        .await
        .expect("adopted");
    assert!(store.is_unknown(&unknown, &fp).await.expect("read"));
    assert_eq!(
        store.unknown_charge(&unknown, &fp).await.expect("read"),
        None,
        "rows written before charges were recorded have none"
    );
    assert_eq!(
        store.reserve(&unknown, &fp).await.expect("reserve"),
        ReserveOutcome::Resumed
    );
    let version: i64 = client
        .query_one(
            "SELECT version FROM paywire_schema_versions WHERE component = 'reservations'",
            &[],
        )
        .await
        .expect("recorded")
        .get(0);
    assert_eq!(version, 2);

    client
        .execute(
            "UPDATE paywire_schema_versions SET version = 7 WHERE component = 'reservations'",
            &[],
        )
        .await
        .expect("bump");
    let error = PostgresReservationStore::connect(cluster.url())
        .await
        .expect_err("newer schema");
    assert!(
        error.0.contains("reservations") && error.0.contains('7'),
        "{error}"
    );
}

/// What became of a payment (here: an unknown settlement outcome) is
/// recorded even when the database restarts at that moment: the store waits
/// for it to come back instead of failing, which would leave a paid payment
/// held and then refused to the payer's retry. Without that wait, the writes
/// that fall into the restart fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_records_outcomes_through_a_database_restart() {
    let Some(cluster) = paywire_testkit::postgres::PgCluster::start_or_skip()
        .await
        .expect("postgres")
    else {
        return;
    };
    let store = PostgresReservationStore::connect(cluster.url())
        .await
        .expect("connect");
    let fp = PayloadFingerprint([8; 32]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let (mut recorded, mut failed) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let key = ReservationKey(B256::random().0);
                match store.mark_unknown(&key, &fp).await {
                    Ok(()) => recorded.push(key),
                    Err(error) => failed.push(error),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (recorded, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.restart().await.expect("pg_ctl restart");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (recorded, failed) = writer.await.expect("writer");
    assert!(failed.is_empty(), "writes failed: {failed:?}");
    assert!(recorded.len() > 10, "{} writes", recorded.len());
    for key in &recorded {
        assert!(store.is_unknown(key, &fp).await.expect("read"), "lost");
    }
}
