//! `mailnode`: the daemon. Parses arguments, sets up logging, loads and validates the
//! configuration (exit 64 when it is wrong), runs the node until SIGTERM/SIGINT, drains, exits 0.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mailnode::config::{Config, LogFormat, EXIT_CONFIG};
use mailnode::net::Signals;
use mailnode::node::Node;

/// Mailnode: a highly available mail appliance.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Run a one-node cluster with embedded defaults, data under ./dev-data (or --dev-dir).
    #[arg(long, conflicts_with = "config")]
    dev: bool,
    /// Data directory of --dev.
    #[arg(long, default_value = "dev-data", requires = "dev")]
    dev_dir: PathBuf,
    /// The node's configuration file.
    #[arg(long, short, required_unless_present = "dev")]
    config: Option<PathBuf>,
    /// Only check the configuration file, then exit (0 when valid, 64 when not).
    #[arg(long, requires = "config")]
    check: bool,
    /// Log format, overriding `[log] format`: `text` or `json` (one JSON object per line).
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
}

fn init_logging(format: LogFormat, level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(level.unwrap_or("info,openraft=warn,sled=warn"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut cfg = if args.dev {
        let dir = if args.dev_dir.is_absolute() {
            args.dev_dir.clone()
        } else {
            std::env::current_dir()
                .map(|d| d.join(&args.dev_dir))
                .unwrap_or(args.dev_dir.clone())
        };
        Config::dev(&dir)
    } else {
        let path = args
            .config
            .as_deref()
            .expect("clap requires --config without --dev");
        match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("mailnode: invalid configuration: {e}");
                return ExitCode::from(EXIT_CONFIG as u8);
            }
        }
    };
    if args.check {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    // For measuring what instrumentation costs (docs/METRICS.md): the benchmarks start nodes
    // from generated configuration files, so a switch in the environment reaches them.
    if let Ok(v) = std::env::var("MAILNODE_METRICS") {
        cfg.metrics.enabled = !matches!(v.as_str(), "0" | "off" | "false");
    }
    let format = match args.log_format.as_deref() {
        Some("json") => LogFormat::Json,
        Some(_) => LogFormat::Text,
        None => cfg.log.format,
    };
    init_logging(format, cfg.log.level.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mailnode: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cfg, args.dev))
}

async fn run(cfg: Config, dev: bool) -> ExitCode {
    let data_dir = cfg.node.data_dir.clone();
    // Before anything listens: a SIGTERM during start-up must drain, not kill.
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mailnode: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let node = match Node::start(cfg, dev).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("mailnode: {e}");
            return ExitCode::FAILURE;
        }
    };
    if dev {
        print_dev_endpoints(&node, &data_dir);
    }
    tracing::info!(http = %node.http_addr, raft = %node.raft_addr, "node running");
    let sig = signals.recv().await;
    tracing::info!(signal = sig, "shutting down");
    node.stop().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// The dev node's endpoints on stdout. Written as one block, and a closed or full stdout is
/// ignored: a daemon must not die because whoever started it stopped reading.
fn print_dev_endpoints(node: &Node, data_dir: &std::path::Path) {
    use std::io::Write;
    let text = format!(
        "mailnode dev node is running (data in {data})\n\
         \x20 admin API   https://{http}/api/   (CA: {ca})\n\
         \x20 health      https://{http}/healthz  https://{http}/readyz\n\
         \x20 raft RPC    {raft} (mutual TLS)\n\
         \x20 SMTP MX     127.0.0.1:2525   submission 127.0.0.1:2587 (STARTTLS), 127.0.0.1:2465 (TLS)\n\
         \x20 LMTP        127.0.0.1:2424   message store in {store}\n\
         \x20 IMAP        127.0.0.1:2143 (STARTTLS)   IMAPS 127.0.0.1:2993 (TLS)\n\
         \x20 POP3        127.0.0.1:2110 (STLS)   POP3S 127.0.0.1:2995 (TLS)\n\
         \x20 admin token {token}  (in {token_file})\n\
         try: mailctl status   (from the folder that holds dev-data)\n",
        data = data_dir.display(),
        http = node.http_addr,
        ca = node.ca_file.display(),
        raft = node.raft_addr,
        store = data_dir.join("mailstore").display(),
        token = node.token,
        token_file = data_dir.join("admin.token").display(),
    );
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
