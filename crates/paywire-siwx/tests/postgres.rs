//! The PostgreSQL stores, shared by two connections (two server instances).

use std::sync::Arc;

use paywire_siwx::postgres::PostgresStore;
use paywire_siwx::{AccessPolicy, EntitlementStore, NonceState, NonceStore};

const X: &str = "0x857b06519E91e3A54538791bDbb0E22373e36b66";
const Y: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const NET: &str = "eip155:8453";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonces_and_entitlements_are_shared_and_single_use() {
    let Some(cluster) = paywire_testkit::postgres::PgCluster::start_or_skip()
        .await
        .expect("postgres")
    else {
        return;
    };
    let a = PostgresStore::connect(cluster.url()).await.expect("a");
    let b = Arc::new(PostgresStore::connect(cluster.url()).await.expect("b"));

    // A nonce issued by one instance is consumed once, by any instance.
    a.issue_nonce("n1", "https://api/x", 0, 1_000)
        .await
        .expect("issue");
    assert!(
        a.issue_nonce("n1", "https://api/x", 0, 1_000)
            .await
            .is_err(),
        "unique"
    );
    assert_eq!(
        b.check_nonce("n1", "https://api/x", 10)
            .await
            .expect("check"),
        NonceState::Valid
    );
    assert_eq!(
        b.check_nonce("n1", "https://api/y", 10)
            .await
            .expect("check"),
        NonceState::WrongResource
    );
    assert_eq!(
        b.check_nonce("n2", "https://api/x", 10)
            .await
            .expect("check"),
        NonceState::Unknown
    );
    assert_eq!(
        b.check_nonce("n1", "https://api/x", 1_000)
            .await
            .expect("check"),
        NonceState::Expired
    );
    let racers: Vec<_> = (0..6)
        .map(|_| {
            let b = Arc::clone(&b);
            tokio::spawn(async move { b.consume_nonce("n1", "https://api/x", 10).await })
        })
        .collect();
    let mut valid = 0;
    for racer in racers {
        if racer.await.expect("task").expect("consume") == NonceState::Valid {
            valid += 1;
        }
    }
    assert_eq!(valid, 1, "exactly one concurrent consumer wins");
    assert_eq!(
        a.consume_nonce("n1", "https://api/x", 10)
            .await
            .expect("consume"),
        NonceState::Used
    );
    assert_eq!(a.purge_nonces(2_000).await.expect("purge"), 1);

    // Entitlements: X's pass is X's only, ends on time; uses are counted once.
    let pass = AccessPolicy::Pass { duration_ms: 100 }.entitlement(X, NET, "api", 1_000);
    a.grant(&pass).await.expect("grant");
    assert!(
        b.check(&X.to_lowercase(), NET, "api", 1_050)
            .await
            .expect("check")
            .is_some()
    );
    assert!(
        b.check(Y, NET, "api", 1_050)
            .await
            .expect("check")
            .is_none(),
        "not Y's"
    );
    assert!(
        b.check(X, "eip155:1", "api", 1_050)
            .await
            .expect("check")
            .is_none(),
        "not another network"
    );
    assert!(
        b.check(X, NET, "api", 1_100)
            .await
            .expect("check")
            .is_none(),
        "expired"
    );
    a.grant(&AccessPolicy::Uses(2).entitlement(Y, NET, "api", 0))
        .await
        .expect("grant");
    assert_eq!(
        b.check(Y, NET, "api", 5)
            .await
            .expect("check")
            .and_then(|e| e.remaining_uses),
        Some(1)
    );
    assert_eq!(
        a.check(Y, NET, "api", 5)
            .await
            .expect("check")
            .and_then(|e| e.remaining_uses),
        Some(0)
    );
    assert!(
        b.check(Y, NET, "api", 5).await.expect("check").is_none(),
        "uses spent"
    );
    a.grant(&AccessPolicy::PayOnce.entitlement(Y, NET, "api", 0))
        .await
        .expect("grant");
    assert!(b.check(Y, NET, "api", 5).await.expect("check").is_some());
    assert_eq!(a.revoke(Y, NET, "api").await.expect("revoke"), 2);
    assert!(
        b.check(Y, NET, "api", 5).await.expect("check").is_none(),
        "revoked"
    );

    b.revoke_session("token-1", 5_000)
        .await
        .expect("revoke session");
    assert!(a.is_session_revoked("token-1").await.expect("revoked?"));
    assert!(!a.is_session_revoked("token-2").await.expect("revoked?"));
}
