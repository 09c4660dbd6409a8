//! The RPC layer fails over to the next endpoint when one is unreachable and
//! answers batches in request order.

use std::time::Duration;

use paywire_evm::rpc::RpcClient;
use paywire_testkit::Devnet;
use serde_json::json;

#[tokio::test]
async fn falls_over_to_a_live_endpoint_and_sticks_to_it() {
    let devnet = Devnet::start().await.unwrap();
    // A port nobody listens on: bind, then drop.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let rpc = RpcClient::new(
        vec![dead, devnet.rpc_url().to_owned()],
        Duration::from_secs(2),
    )
    .unwrap();
    assert_eq!(rpc.chain_id().await.unwrap(), 31337);
    assert_eq!(
        rpc.chain_id().await.unwrap(),
        31337,
        "keeps working after fail-over"
    );

    let answers = rpc
        .batch(vec![
            ("eth_chainId", json!([])),
            ("eth_no_such_method", json!([])),
            ("net_version", json!([])),
        ])
        .await
        .unwrap();
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[0].as_ref().unwrap(), &json!("0x7a69"));
    assert!(
        answers[1].is_err(),
        "a failing call does not poison the batch"
    );
    assert_eq!(answers[2].as_ref().unwrap(), &json!("31337"));
}

#[tokio::test]
async fn all_endpoints_down_is_a_transport_error() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let rpc = RpcClient::new(vec![dead], Duration::from_millis(500)).unwrap();
    assert!(matches!(
        rpc.chain_id().await,
        Err(paywire_evm::rpc::RpcError::Transport(_))
    ));
    assert!(RpcClient::new(vec![], Duration::from_secs(1)).is_err());
}

#[tokio::test]
async fn https_endpoints_are_supported() {
    // A listener that accepts and says nothing: with TLS compiled into the
    // HTTP client the RPC layer uses, the client starts a TLS handshake; a
    // client without TLS gives up on the https scheme without connecting.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = tokio::spawn(async move { listener.accept().await.is_ok() });
    let rpc = RpcClient::new(
        vec![format!("https://{address}")],
        Duration::from_millis(500),
    )
    .unwrap();
    assert!(matches!(
        rpc.chain_id().await,
        Err(paywire_evm::rpc::RpcError::Transport(_))
    ));
    let connected = tokio::time::timeout(Duration::from_secs(2), accepted).await;
    assert!(
        matches!(connected, Ok(Ok(true))),
        "the https endpoint was never contacted: TLS support is missing"
    );
}
