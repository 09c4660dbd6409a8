//! `paywire mcp`: sell a gateway configuration's routes as paid MCP tools
//! (`serve`), pay for one tool call (`call`), list a server's tools
//! (`tools`).
//!
//! Exit codes of `call` and `tools` (as `paywire pay`): 0 success; 1 the
//! tool answered an error; 2 usage or configuration error; 3 payment
//! refused by the policy, the budget, `--max` or `--dry-run`; 4 the payment
//! was made but not settled (or is pending); 5 connection or protocol error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use paywire_client::{PaymentStatus, X402Client};
use paywire_gateway::mcp::{DEFAULT_MCP_PATH, McpTransport};
use paywire_mcp::client::{ApprovalRequest, McpClientError, PaidCall, PayingMcpClient};
use rmcp::model::{CallToolResult, JsonObject};

use crate::LogFormat;
use crate::pay::{
    EXIT_HTTP, EXIT_NETWORK, EXIT_NOT_SETTLED, EXIT_REFUSED, Failure, PayerArgs, build_client,
    receipt_line, usage,
};

/// `paywire mcp ...`.
#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Sell the priced routes of a gateway configuration as paid MCP tools
    /// (one tool per `[[routes]]` entry, forwarded to the upstream), over
    /// streamable HTTP (until Ctrl-C or SIGTERM) or stdio.
    Serve(ServeArgs),
    /// Call one tool of an MCP server and pay for it if it asks. The
    /// result's text on stdout, a one-line receipt on stderr.
    Call(Box<CallArgs>),
    /// List an MCP server's tools (name and description; `--json` for the
    /// whole listing with input schemas).
    Tools(ToolsArgs),
}

/// Arguments of `paywire mcp serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The gateway's TOML configuration file (`paywire gateway
    /// --print-config-example`); each route may name its tool (`tool = "..."`).
    #[arg(long, short)]
    config: PathBuf,
    /// Serve MCP on stdin/stdout instead of HTTP (logs stay on stderr).
    #[arg(long, conflicts_with_all = ["listen", "path"])]
    stdio: bool,
    /// Listen address for streamable HTTP [default: the configuration's `listen`].
    #[arg(long)]
    listen: Option<String>,
    /// The streamable HTTP endpoint's path.
    #[arg(long, default_value = DEFAULT_MCP_PATH)]
    path: String,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Arguments of `paywire mcp call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The MCP server: `http(s)://host/mcp` (streamable HTTP), or
    /// `stdio:COMMAND ARGS...` to start it as a child process speaking MCP
    /// on its stdin/stdout (split on whitespace, no shell quoting).
    url: String,
    /// The tool to call.
    tool: String,
    /// The tool's arguments, a JSON object.
    #[arg(long, default_value = "{}")]
    args: String,
    #[command(flatten)]
    payer: PayerArgs,
    /// Show what would be paid, without signing or paying (the call's
    /// payment is refused by the approval step).
    #[arg(long)]
    dry_run: bool,
}

/// Arguments of `paywire mcp tools`.
#[derive(Debug, Args)]
pub struct ToolsArgs {
    /// The MCP server, as for `paywire mcp call`.
    url: String,
    /// Print the tools as JSON (with their input schemas).
    #[arg(long)]
    json: bool,
}

/// Runs `paywire mcp ...` and maps the outcome to its exit code.
pub fn run(command: McpCommand) -> ExitCode {
    match command {
        McpCommand::Serve(args) => match serve(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(crate::pay::EXIT_USAGE)
            }
        },
        McpCommand::Call(args) => block_on(call(*args)),
        McpCommand::Tools(args) => block_on(tools(args)),
    }
}

fn block_on(work: impl Future<Output = Result<(), Failure>>) -> ExitCode {
    let runtime = match crate::new_runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(crate::pay::EXIT_USAGE);
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            eprintln!("error: {}", redact_urls(&message));
            ExitCode::from(code)
        }
    }
}

/// `text` with every URL cut to its scheme and host (field lesson 33): the
/// errors of the MCP and HTTP libraries repeat the whole URL, whose path,
/// query or user part may carry an access token.
fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        out.push_str(&rest[..at + 3]);
        let after = &rest[at + 3..];
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | ','))
            .unwrap_or(after.len());
        let url = &after[..end];
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let authority = &url[..authority_end];
        out.push_str(authority.rsplit('@').next().unwrap_or(authority));
        if authority_end < url.len() || authority.contains('@') {
            out.push_str("/...");
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let runtime = crate::new_runtime()?;
    let _telemetry = crate::init_logging(args.log_format, "paywire-mcp", runtime.handle());
    let config = paywire_gateway::GatewayConfig::load(&args.config).map_err(|e| e.to_string())?;
    let transport = if args.stdio {
        McpTransport::Stdio
    } else {
        McpTransport::Http {
            listen: args.listen,
            path: args.path,
        }
    };
    runtime
        .block_on(paywire_gateway::mcp::run(
            config,
            crate::plugins::registry(),
            transport,
        ))
        .map_err(|e| e.to_string())
}

/// Connects to `url`: streamable HTTP, or a child process for `stdio:...`.
async fn connect(url: &str, x402: Arc<X402Client>) -> Result<PayingMcpClient, Failure> {
    // The URL is not repeated: it may carry an access token.
    let connection = |e: McpClientError| Failure(EXIT_NETWORK, e.to_string());
    if let Some(command_line) = url.strip_prefix("stdio:") {
        let mut words = command_line.split_whitespace();
        let program = words.next().ok_or_else(|| {
            usage("stdio: needs a command, e.g. stdio:paywire mcp serve --stdio -c gateway.toml")
        })?;
        let mut command = tokio::process::Command::new(program);
        command.args(words);
        return PayingMcpClient::connect_stdio(command, x402)
            .await
            .map_err(connection);
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return PayingMcpClient::connect_http(url, x402)
            .await
            .map_err(connection);
    }
    Err(usage(format!(
        "{url:?}: expected an http(s):// MCP endpoint or stdio:COMMAND"
    )))
}

fn parse_arguments(text: &str) -> Result<JsonObject, Failure> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(object)) => Ok(object),
        Ok(_) => Err(usage("--args must be a JSON object")),
        Err(error) => Err(usage(format!("--args is not JSON: {error}"))),
    }
}

async fn call(args: CallArgs) -> Result<(), Failure> {
    let arguments = parse_arguments(&args.args)?;
    let x402 = Arc::new(build_client(&args.payer).await?);
    let mut client = connect(&args.url, x402).await?;
    if args.dry_run {
        client = client.approval(|request: &ApprovalRequest| {
            let chosen = &request.requirements;
            eprintln!(
                "paywire: would pay {} (atomic) of {} on {} to {}",
                chosen.amount, chosen.asset, chosen.network, chosen.pay_to
            );
            false
        });
    }
    let outcome = client.call_tool(&args.tool, arguments).await;
    let _ = client.close().await;
    let paid = match outcome {
        Ok(paid) => paid,
        Err(McpClientError::Refused(_)) if args.dry_run => return Ok(()),
        Err(error) => return Err(call_failure(error)),
    };
    report(&paid)
}

/// Prints a call's result and receipt; its exit status.
fn report(paid: &PaidCall) -> Result<(), Failure> {
    print_result(&paid.result);
    if let Some(outcome) = &paid.outcome {
        eprintln!("{}", receipt_line(outcome));
        if outcome.status != PaymentStatus::Paid {
            return Err(Failure(EXIT_NOT_SETTLED, "payment not settled".into()));
        }
    }
    if paid.result.is_error == Some(true) {
        return Err(Failure(EXIT_HTTP, "the tool answered an error".into()));
    }
    Ok(())
}

/// The result's text blocks on stdout (other blocks as JSON), one per line.
fn print_result(result: &CallToolResult) {
    use std::io::Write;
    let mut stdout = std::io::stdout();
    for block in &result.content {
        let line = match block.as_text() {
            Some(text) => text.text.clone(),
            None => serde_json::to_string(block).unwrap_or_default(),
        };
        let _ = writeln!(stdout, "{line}");
    }
    let _ = stdout.flush();
}

/// The exit code of a failed call.
fn call_failure(error: McpClientError) -> Failure {
    let code = match &error {
        McpClientError::Refused(_) => EXIT_REFUSED,
        McpClientError::Payment(inner) => match inner {
            paywire_client::ClientError::NoAcceptableOption(_)
            | paywire_client::ClientError::Budget(_)
            | paywire_client::ClientError::Vetoed(_) => EXIT_REFUSED,
            paywire_client::ClientError::Transport(_) => EXIT_NETWORK,
            _ => EXIT_HTTP,
        },
        _ => EXIT_NETWORK,
    };
    Failure(code, error.to_string())
}

async fn tools(args: ToolsArgs) -> Result<(), Failure> {
    // Listing pays nothing: a client without wallets.
    let x402 = Arc::new(X402Client::builder().build());
    let client = connect(&args.url, x402).await?;
    let listed = client.list_tools().await;
    let _ = client.close().await;
    let tools = listed.map_err(|e| Failure(EXIT_NETWORK, e.to_string()))?;
    if args.json {
        let text = serde_json::to_string_pretty(&tools).map_err(|e| usage(e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    for tool in tools {
        println!(
            "{:<32} {}",
            tool.name,
            tool.description.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redact_urls;

    #[test]
    fn urls_in_errors_keep_only_scheme_and_host() {
        let text = "error sending request for url (https://user:pw@api.example.com:8443/mcp?token=s3cret): refused";
        let redacted = redact_urls(text);
        assert_eq!(
            redacted,
            "error sending request for url (https://api.example.com:8443/...): refused"
        );
        assert!(!redacted.contains("s3cret") && !redacted.contains("pw"));
        assert_eq!(redact_urls("no url here"), "no url here");
        assert_eq!(
            redact_urls("http://127.0.0.1:9 down"),
            "http://127.0.0.1:9 down"
        );
    }
}
