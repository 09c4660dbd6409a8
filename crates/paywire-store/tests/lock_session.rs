//! `LockSession`: many advisory locks on one connection, against throwaway
//! clusters (paywire-testkit).

use std::error::Error;
use std::task::Poll;
use std::time::Duration;

use paywire_store::StoreError;
use paywire_store::postgres::{LockKey, PgConfig, PgOptions, PgPool, SessionLock};
use paywire_testkit::postgres::PgCluster;

type TestResult = Result<(), Box<dyn Error>>;

const NS: i32 = 7002;

/// The backends holding advisory locks of [`NS`], and how many locks.
async fn holders(observer: &PgPool) -> Result<(i64, i64), StoreError> {
    let row = observer
        .query_one(
            "SELECT count(DISTINCT pid), count(*) FROM pg_locks \
             WHERE locktype = 'advisory' AND classid::bigint = $1",
            &[&i64::from(NS)],
        )
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// The backend holding lock `(NS, id)`, if any.
async fn holder(observer: &PgPool, id: i32) -> Result<Option<i32>, StoreError> {
    Ok(observer
        .query_opt(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' \
             AND classid::bigint = $1 AND objid::bigint = $2",
            &[&i64::from(NS), &i64::from(id)],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?)
}

/// Waits (at most 5 s) until `pool` can take `key`, then lets it go.
async fn becomes_free(pool: &PgPool, key: &LockKey) -> Result<bool, StoreError> {
    for _ in 0..250 {
        if let Some(lock) = pool.try_lock(key).await? {
            lock.release().await?;
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(false)
}

#[tokio::test]
async fn three_hundred_locks_share_one_connection() -> TestResult {
    let Some(cluster) = PgCluster::start_or_skip().await? else {
        return Ok(());
    };
    let config = PgConfig::from_url(cluster.url())?.with_options(
        PgOptions::default()
            .with_max_size(2)
            .with_application_name("paywire-store-session"),
    );
    let pool = PgPool::open(config).await?;
    let observer = PgPool::connect(cluster.url()).await?;
    let session = pool.lock_session();
    let mut held = Vec::new();
    for n in 0..300 {
        let lock = session
            .try_lock(&LockKey::new(NS, n))
            .await?
            .ok_or("a free key was not taken")?;
        held.push(lock);
    }
    assert!(held.iter().all(SessionLock::is_held));
    assert_eq!(holders(&observer).await?, (1, 300), "not one session");
    let open: i64 = observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'paywire-store-session'",
            &[],
        )
        .await?
        .try_get(0)?;
    assert_eq!(open, 1, "{open} connections for 300 locks");
    // The session's connection is not one of the pool's: queries still get
    // both of theirs.
    let (a, b) = (pool.get().await?, pool.get().await?);
    drop((a, b));
    // The locks exclude other sessions; dropping them releases every one.
    let other = PgPool::connect(cluster.url()).await?;
    assert!(other.try_lock(&LockKey::new(NS, 7)).await?.is_none());
    drop(held);
    assert!(becomes_free(&other, &LockKey::new(NS, 7)).await?);
    for _ in 0..250 {
        if holders(&observer).await? == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(holders(&observer).await?, (0, 0), "locks left after drop");
    Ok(())
}

#[tokio::test]
async fn two_guards_of_one_session_exclude_each_other() -> TestResult {
    let Some(cluster) = PgCluster::start_or_skip().await? else {
        return Ok(());
    };
    let pool = PgPool::connect(cluster.url()).await?;
    let session = pool.lock_session();
    let key = LockKey::text(NS, "payment");
    let first = session.try_lock(&key).await?.ok_or("not taken")?;
    // PostgreSQL would grant the same session the key again; the session
    // does not, through any clone.
    assert!(session.try_lock(&key).await?.is_none(), "re-entered");
    assert!(
        session.clone().try_lock(&key).await?.is_none(),
        "re-entered"
    );
    let waited = session.lock(&key, Duration::from_millis(200)).await;
    assert!(
        matches!(waited, Err(StoreError::LockTimeout(_))),
        "{waited:?}"
    );
    let waiter = tokio::spawn({
        let (session, key) = (session.clone(), key.clone());
        async move { session.lock(&key, Duration::from_secs(10)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "the second guard did not wait");
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(5), waiter).await???;
    assert!(second.is_held());
    // Exactly one lock was held on the server: releasing the second guard
    // frees the key for everyone.
    second.release().await?;
    let other = PgPool::connect(cluster.url()).await?;
    assert!(other.try_lock(&key).await?.is_some(), "a lock count leaked");
    Ok(())
}

#[tokio::test]
async fn sessions_of_two_pools_exclude_each_other() -> TestResult {
    let Some(cluster) = PgCluster::start_or_skip().await? else {
        return Ok(());
    };
    let a = PgPool::connect(cluster.url()).await?.lock_session();
    let b_pool = PgPool::connect(cluster.url()).await?;
    let b = b_pool.lock_session();
    let key = LockKey::text(NS, "payment");
    let held = a.lock(&key, Duration::from_secs(5)).await?;
    assert!(b.try_lock(&key).await?.is_none());
    assert!(b.try_lock(&LockKey::text(NS, "other")).await?.is_some());
    // The same lock an earlier release takes by hand.
    let by_hand: bool = b_pool
        .query_one(
            "SELECT pg_try_advisory_lock($1, hashtext('payment'))",
            &[&NS],
        )
        .await?
        .try_get(0)?;
    assert!(!by_hand);
    let waiter = tokio::spawn({
        let (b, key) = (b.clone(), key.clone());
        async move { b.lock(&key, Duration::from_secs(10)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "the lock was not exclusive");
    drop(held);
    let taken = tokio::time::timeout(Duration::from_secs(5), waiter).await???;
    assert!(taken.is_held());
    Ok(())
}

#[tokio::test]
async fn a_killed_session_loses_its_guards_and_a_new_one_takes_over() -> TestResult {
    let Some(cluster) = PgCluster::start_or_skip().await? else {
        return Ok(());
    };
    let pool = PgPool::connect(cluster.url()).await?;
    let observer = PgPool::connect(cluster.url()).await?;
    let session = pool.lock_session();
    let one = session.try_lock(&LockKey::new(NS, 1)).await?.ok_or("1")?;
    let two = session.try_lock(&LockKey::new(NS, 2)).await?.ok_or("2")?;
    let old = holder(&observer, 1).await?.ok_or("no holder")?;
    assert!(session.is_connected());
    observer
        .execute("SELECT pg_terminate_backend($1)", &[&old])
        .await?;
    for _ in 0..250 {
        if !one.is_held() && !two.is_held() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !one.is_held() && !two.is_held(),
        "locks of a dead session count as held"
    );
    // New locks (the same keys too) go to a new connection.
    let again = tokio::time::timeout(
        Duration::from_secs(5),
        session.lock(&LockKey::new(NS, 1), Duration::from_secs(5)),
    )
    .await??;
    assert!(again.is_held());
    let new = holder(&observer, 1).await?.ok_or("no holder")?;
    assert_ne!(new, old, "the dead session was reused");
    // Dropping the dead guards touches nothing on the new session.
    drop((one, two));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(again.is_held());
    assert_eq!(holder(&observer, 1).await?, Some(new));
    Ok(())
}

#[tokio::test]
async fn an_abandoned_lock_attempt_leaves_no_lock_behind() -> TestResult {
    let Some(cluster) = PgCluster::start_or_skip().await? else {
        return Ok(());
    };
    let session = PgPool::connect(cluster.url()).await?.lock_session();
    let other = PgPool::connect(cluster.url()).await?;
    let key = LockKey::new(NS, 9);
    // Warm up: the connection and the prepared statement exist.
    drop(session.try_lock(&key).await?);
    // Give up at every point of the round trip, from before the query is
    // sent to after the answer arrived.
    for micros in 0..60 {
        let attempt = session.try_lock(&key);
        let _ = tokio::time::timeout(Duration::from_micros(micros * 20), attempt).await;
        // Whatever happened, the key must come free for another session.
        assert!(
            becomes_free(&other, &key).await?,
            "a lock abandoned after {} µs stayed held",
            micros * 20
        );
    }
    Ok(())
}

/// A `release()` given up on mid-unlock (a timeout or `select!` around it)
/// must not leave the key held: neither by the session's connection on the
/// server (other processes would wait forever) nor in the session's own
/// bookkeeping (this process could never take the key again).
#[tokio::test]
async fn an_abandoned_release_leaves_no_lock_behind() -> TestResult {
    let Some(cluster) = PgCluster::start_or_skip().await? else {
        return Ok(());
    };
    let session = PgPool::connect(cluster.url()).await?.lock_session();
    let other = PgPool::connect(cluster.url()).await?;
    let key = LockKey::new(NS, 11);
    // Give up at every point of the round trip, from the first poll (the
    // unlock not yet sent) to after the answer arrived.
    for micros in 0..40 {
        let lock = session.try_lock(&key).await?.ok_or("not taken")?;
        if micros == 0 {
            // Polled exactly once (the unlock's prepare is sent), then dropped.
            let mut release = Box::pin(lock.release());
            let first =
                std::future::poll_fn(|context| Poll::Ready(release.as_mut().poll(context))).await;
            assert!(first.is_pending(), "release finished within its first poll");
        } else {
            let _ = tokio::time::timeout(Duration::from_micros(micros * 25), lock.release()).await;
        }
        assert!(
            becomes_free(&other, &key).await?,
            "a release abandoned after {} µs left the lock held on the server",
            micros * 25
        );
        let again = tokio::time::timeout(
            Duration::from_secs(5),
            session.lock(&key, Duration::from_secs(5)),
        )
        .await
        .map_err(|_| "timed out")?;
        assert!(
            again.is_ok(),
            "a release abandoned after {} µs left the key held in its session: {again:?}",
            micros * 25
        );
        if let Ok(again) = again {
            again.release().await?;
        }
    }
    Ok(())
}
