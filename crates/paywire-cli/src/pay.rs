//! `paywire pay URL`: a curl-like paid request.
//!
//! Exit codes: 0 success (2xx); 1 the server answered a non-2xx status;
//! 2 usage or configuration error; 3 payment refused by the policy, the
//! budget or `--max`; 4 the payment was made but not settled (or is
//! pending); 5 network error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use paywire_client::{
    AssetInfo, Budget, BudgetRule, ClientError, DEFAULT_MAX_402_BODY, DEFAULT_MAX_TIMEOUT_SECONDS,
    PaymentOutcome, PaymentStatus, PriceCap, SelectionPolicy, StaticCatalog, X402Client,
};
use paywire_core::{ChainId, Money, Secret};
use reqwest::Method;

use crate::wallet::{self, KeySource, Wallets};

/// Arguments of `paywire pay`.
#[derive(Debug, Args)]
pub struct PayArgs {
    /// The URL to request.
    url: String,
    /// HTTP method.
    #[arg(short = 'X', long = "request", default_value = "GET")]
    method: String,
    /// Extra header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Request body.
    #[arg(short = 'd', long = "data")]
    data: Option<String>,
    #[command(flatten)]
    payer: PayerArgs,
    /// Show what would be paid and why, without signing or paying.
    #[arg(long)]
    dry_run: bool,
}

/// The payer's wallet, budget and policy: what `paywire pay` and
/// `paywire mcp call` pay with.
#[derive(Debug, Args)]
pub struct PayerArgs {
    /// Largest acceptable price per call, in US dollars (e.g. 0.05).
    #[arg(long)]
    max: Option<String>,
    /// Preferred networks, most preferred first (names or CAIP-2; repeatable).
    #[arg(long)]
    prefer: Vec<String>,
    /// Only pay on these networks (repeatable).
    #[arg(long)]
    network: Vec<String>,
    /// Only pay on test networks.
    #[arg(long)]
    testnet_only: bool,
    /// Environment variable holding the EVM payer's hex private key
    /// [default: PAYWIRE_PRIVATE_KEY; one named here must be set].
    #[arg(long, value_name = "VAR")]
    wallet_env: Option<String>,
    /// File holding the EVM payer's hex private key (instead of --wallet-env).
    /// The key is never printed or logged.
    #[arg(long)]
    wallet_file: Option<PathBuf>,
    /// Environment variable holding the Solana payer's keypair, base58 of
    /// its 64 bytes or the `solana-keygen` JSON array
    /// [default: PAYWIRE_SOLANA_KEY; one named here must be set].
    #[arg(long, value_name = "VAR")]
    solana_wallet_env: Option<String>,
    /// File holding the Solana payer's keypair (base58, or a `solana-keygen`
    /// JSON key file) instead of --solana-wallet-env. Never printed or logged.
    #[arg(long)]
    solana_wallet_file: Option<PathBuf>,
    /// Extra asset for value comparison and dollar caps:
    /// `NETWORK:ADDRESS:DECIMALS[:usd]` (repeatable), e.g. a devnet USDC.
    #[arg(long = "asset")]
    assets: Vec<String>,
    /// SQLite file keeping the spend across runs (with --daily-usd / --total-usd).
    #[arg(long)]
    budget: Option<PathBuf>,
    /// Daily spending limit in US dollars (needs --budget).
    #[arg(long, requires = "budget")]
    daily_usd: Option<String>,
    /// Total spending limit in US dollars (needs --budget).
    #[arg(long, requires = "budget")]
    total_usd: Option<String>,
    /// A chain node, `NETWORK=URL` (repeatable). Solana networks: the node
    /// the wallet reads blockhashes and mints from (the public cluster node
    /// by default). eip155 networks, with --budget: asked whether a payment
    /// sent earlier but not settled was spent (without one, such payments
    /// keep counting against the budget).
    #[arg(long = "rpc", value_name = "NETWORK=URL")]
    rpcs: Vec<String>,
    /// Refuse offers whose maxTimeoutSeconds (how long the signed
    /// authorization stays valid) is larger than this.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_MAX_TIMEOUT_SECONDS)]
    max_timeout: u64,
    /// Largest 402 body read, in bytes (a larger one is refused unsigned).
    #[arg(long = "max-402-body", value_name = "BYTES", default_value_t = DEFAULT_MAX_402_BODY)]
    max_402_body: usize,
}

/// Where the EVM key is read from without `--wallet-env`.
const EVM_KEY_ENV: &str = "PAYWIRE_PRIVATE_KEY";
/// Where the Solana key is read from without `--solana-wallet-env`.
const SOLANA_KEY_ENV: &str = "PAYWIRE_SOLANA_KEY";
/// Where a bank-rail bundle credential (`pwb1.<bundle>.<secret>@<authority>`)
/// is read from; never printed or logged.
pub(crate) const BUNDLE_CREDENTIAL_ENV: &str = "PAYWIRE_BUNDLE_CREDENTIAL";

pub(crate) const EXIT_HTTP: u8 = 1;
pub(crate) const EXIT_USAGE: u8 = 2;
pub(crate) const EXIT_REFUSED: u8 = 3;
pub(crate) const EXIT_NOT_SETTLED: u8 = 4;
pub(crate) const EXIT_NETWORK: u8 = 5;

pub(crate) struct Failure(pub(crate) u8, pub(crate) String);

pub(crate) fn usage(message: impl Into<String>) -> Failure {
    Failure(EXIT_USAGE, message.into())
}

fn micro_usd(text: &str) -> Result<u128, Failure> {
    let money = Money::parse(text.trim_start_matches('$')).map_err(|e| usage(e.to_string()))?;
    money
        .to_atomic(6)
        .map_err(|e| usage(e.to_string()))?
        .to_u128()
        .ok_or_else(|| usage("amount too large"))
}

pub(crate) fn parse_asset(text: &str) -> Result<(ChainId, String, AssetInfo), Failure> {
    match text.strip_suffix(":usd") {
        Some(body) => parse_asset_parts(body, true),
        None => parse_asset_parts(text, false),
    }
}

fn parse_asset_parts(
    text: &str,
    usd_stable: bool,
) -> Result<(ChainId, String, AssetInfo), Failure> {
    let bad = || {
        usage(format!(
            "--asset {text:?}: expected NETWORK:ADDRESS:DECIMALS[:usd]"
        ))
    };
    let (rest, decimals) = text.rsplit_once(':').ok_or_else(bad)?;
    let (network, address) = rest.rsplit_once(':').ok_or_else(bad)?;
    let network = crate::plugins::networks()
        .resolve(network)
        .map_err(|e| usage(e.to_string()))?;
    let decimals: u8 = decimals.parse().map_err(|_| bad())?;
    Ok((
        network,
        address.to_owned(),
        AssetInfo {
            symbol: if usd_stable {
                "USD".into()
            } else {
                "TOKEN".into()
            },
            decimals,
            usd_stable,
        },
    ))
}

/// The `--rpc NETWORK=URL` options, resolved. The URL (which may carry a
/// provider API key) never appears in an error.
fn rpc_urls(rpcs: &[String]) -> Result<Vec<(ChainId, Secret)>, Failure> {
    rpcs.iter()
        .map(|option| {
            let (network, url) = option
                .split_once('=')
                .ok_or_else(|| usage("--rpc expects NETWORK=URL"))?;
            let network = crate::plugins::networks()
                .resolve(network)
                .map_err(|e| usage(e.to_string()))?;
            Ok((network, Secret::new(url)))
        })
        .collect()
}

/// The payer's wallets: an EVM key, a Solana key, or both; at least one.
fn wallets(args: &PayerArgs, policy: &SelectionPolicy) -> Result<Wallets, Failure> {
    let evm = KeySource {
        file: args.wallet_file.as_deref(),
        env: args.wallet_env.as_deref().unwrap_or(EVM_KEY_ENV),
        env_required: args.wallet_env.is_some(),
    };
    let solana = KeySource {
        file: args.solana_wallet_file.as_deref(),
        env: args.solana_wallet_env.as_deref().unwrap_or(SOLANA_KEY_ENV),
        env_required: args.solana_wallet_env.is_some(),
    };
    let (evm_key, solana_key) = (evm.read().map_err(usage)?, solana.read().map_err(usage)?);
    let credential = KeySource {
        file: None,
        env: BUNDLE_CREDENTIAL_ENV,
        env_required: false,
    }
    .read()
    .map_err(usage)?;
    if evm_key.is_none() && solana_key.is_none() && credential.is_none() {
        return Err(usage(format!(
            "no payer key: set {} to an EVM hex private key, {} to a Solana keypair \
             or {BUNDLE_CREDENTIAL_ENV} to a bundle credential \
             (or use --wallet-file / --solana-wallet-file)",
            evm.env, solana.env
        )));
    }
    // The wallet of the most preferred family signs in first: one sign-in
    // is tried per challenge.
    let solana_first = policy
        .prefer_networks
        .first()
        .or(policy.allow_networks.first())
        .is_some_and(wallet::is_solana);
    let mut wallets =
        wallet::build(evm_key, solana_key, &rpc_urls(&args.rpcs)?, solana_first).map_err(usage)?;
    if let Some(credential) = credential {
        wallets.extend(wallet::credit_wallet(credential).map_err(usage)?);
    }
    Ok(wallets)
}

/// The selection policy of the options.
fn policy(args: &PayerArgs) -> Result<SelectionPolicy, Failure> {
    let networks = crate::plugins::networks();
    let mut policy = SelectionPolicy {
        networks: networks.clone(),
        ..SelectionPolicy::default()
    };
    for name in &args.prefer {
        policy
            .prefer_networks
            .push(networks.pattern(name).map_err(|e| usage(e.to_string()))?);
    }
    for name in &args.network {
        policy
            .allow_networks
            .push(networks.pattern(name).map_err(|e| usage(e.to_string()))?);
    }
    if args.testnet_only {
        policy.network_class = Some(paywire_core::NetworkClass::Testnet);
    }
    policy.max_timeout_seconds = args.max_timeout;
    if let Some(max) = &args.max {
        let money = Money::parse(&format!("${}", max.trim_start_matches('$')))
            .map_err(|e| usage(e.to_string()))?;
        policy.max_per_call.push(PriceCap::Usd(money));
    }
    Ok(policy)
}

/// Every asset the registered plugins know (Circle's USDC on Base and on
/// Solana, …) plus the `--asset` options, for dollar caps and comparing
/// offers by value.
fn catalog(args: &PayerArgs) -> Result<StaticCatalog, Failure> {
    let mut catalog = crate::plugins::known_assets();
    for asset in &args.assets {
        let (network, address, info) = parse_asset(asset)?;
        catalog = catalog.with(network, address, info);
    }
    Ok(catalog)
}

/// The paying client of the payer options: wallets, policy, catalog and
/// budget (with its spend probe).
pub(crate) async fn build_client(args: &PayerArgs) -> Result<X402Client, Failure> {
    let policy = policy(args)?;
    let wallets = wallets(args, &policy)?;
    let mut builder = X402Client::builder()
        .sign_in(Arc::new(wallets.sign_in))
        .catalog(Arc::new(catalog(args)?))
        .catalog(Arc::new(paywire_bank::client::CreditCatalog))
        .policy(policy)
        .max_402_body(args.max_402_body);
    for registration in wallets.schemes {
        builder = builder.wallet(registration.networks, registration.handler);
    }
    if let Some(path) = &args.budget {
        let rule = BudgetRule {
            per_day: args.daily_usd.as_deref().map(micro_usd).transpose()?,
            total: args.total_usd.as_deref().map(micro_usd).transpose()?,
            ..BudgetRule::usd()
        };
        let budget = Budget::open(path, vec![rule])
            .await
            .map_err(|e| usage(e.to_string()))?;
        builder = builder.budget(Arc::new(budget));
        if let Some(probe) = wallets.spend_probe {
            builder = builder.spend_probe(probe);
        }
    }
    Ok(builder.build())
}

fn build_request(http: &reqwest::Client, args: &PayArgs) -> Result<reqwest::Request, Failure> {
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| usage(format!("invalid method {:?}", args.method)))?;
    let mut request = http.request(method, &args.url);
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| usage(format!("header {header:?} is not `Name: value`")))?;
        request = request.header(name.trim(), value.trim());
    }
    if let Some(data) = &args.data {
        request = request.body(data.clone());
    }
    request.build().map_err(|e| usage(e.to_string()))
}

/// The one-line receipt printed on stderr.
pub(crate) fn receipt_line(outcome: &PaymentOutcome) -> String {
    let req = &outcome.requirements;
    let tx = outcome
        .receipt
        .as_ref()
        .map(|r| r.transaction.as_str())
        .filter(|t| !t.is_empty())
        .unwrap_or("-");
    let status = match outcome.status {
        PaymentStatus::Paid => "paid",
        PaymentStatus::Pending => "pending",
        PaymentStatus::NotPaid => "not paid",
    };
    // A usage-based (`upto`) receipt names what was charged, at most the
    // authorized maximum in the requirements.
    let charged = outcome
        .receipt
        .as_ref()
        .and_then(|r| r.amount)
        .filter(|amount| *amount != req.amount)
        .map_or_else(
            || req.amount.to_string(),
            |amount| format!("{amount} (at most {})", req.amount),
        );
    format!(
        "paywire: {status} {charged} (atomic) of {} on {} to {} tx {tx}",
        req.asset, req.network, req.pay_to
    )
}

async fn dry_run(
    client: &X402Client,
    http: &reqwest::Client,
    request: reqwest::Request,
) -> Result<(), Failure> {
    let response = http
        .execute(request)
        .await
        .map_err(|e| Failure(EXIT_NETWORK, e.to_string()))?;
    if response.status() != reqwest::StatusCode::PAYMENT_REQUIRED {
        eprintln!("paywire: no payment asked (HTTP {})", response.status());
        return Ok(());
    }
    let required = client
        .read_payment_required(response)
        .await
        .map_err(|e| Failure(EXIT_HTTP, e.to_string()))?;
    client.reconcile().await;
    let selection = client.select(&required).await;
    eprintln!("{}", selection.explain());
    match selection.chosen() {
        Some(chosen) => {
            eprintln!(
                "paywire: would pay {} (atomic) of {} on {} to {}",
                chosen.amount, chosen.asset, chosen.network, chosen.pay_to
            );
            Ok(())
        }
        None => Err(Failure(EXIT_REFUSED, "no acceptable payment option".into())),
    }
}

async fn pay(args: PayArgs) -> Result<(), Failure> {
    let client = build_client(&args.payer).await?;
    let http = reqwest::Client::new();
    let request = build_request(&http, &args)?;
    if args.dry_run {
        return dry_run(&client, &http, request).await;
    }
    let response = client.send(&http, request).await.map_err(|e| match e {
        ClientError::NoAcceptableOption(_) | ClientError::Budget(_) | ClientError::Vetoed(_) => {
            Failure(EXIT_REFUSED, e.to_string())
        }
        ClientError::Transport(_) => Failure(EXIT_NETWORK, e.to_string()),
        ClientError::PaymentRequiredTooLarge { .. } => Failure(EXIT_HTTP, e.to_string()),
        other => Failure(EXIT_USAGE, other.to_string()),
    })?;
    let status = response.status();
    let outcome = response.extensions().get::<PaymentOutcome>().cloned();
    let body = response
        .bytes()
        .await
        .map_err(|e| Failure(EXIT_NETWORK, e.to_string()))?;
    use std::io::Write;
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(&body);
    let _ = stdout.flush();
    if let Some(outcome) = &outcome {
        eprintln!("{}", receipt_line(outcome));
        if outcome.status != PaymentStatus::Paid {
            return Err(Failure(
                EXIT_NOT_SETTLED,
                format!("HTTP {status}: payment not settled"),
            ));
        }
    }
    if !status.is_success() {
        return Err(Failure(EXIT_HTTP, format!("HTTP {status}")));
    }
    Ok(())
}

/// Runs `paywire pay` and maps the outcome to the documented exit codes.
pub fn run(args: PayArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match runtime.block_on(pay(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}
