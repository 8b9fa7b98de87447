//! `mailctl`, the operator CLI: a client of any node's admin API, plus the offline cluster PKI.
//!
//! Its job is to turn a verb (`mailctl user add …`) into one or a few HTTPS requests, print the
//! answer as a table (or the server's JSON with `--json`), and exit with the contract's code:
//! 0 ok, 1 the operation failed, 2 usage, 3 cluster unreachable. The server decides everything;
//! `mailctl` validates only what it can without it (argument syntax, password sources, import
//! file syntax) so that mistakes surface before anything is sent.
//!
//! Code map: [`args`] is the command line; [`discover`] finds server, token and CA; [`client`]
//! speaks HTTP/1.1 over rustls; [`output`] renders tables; [`password`] reads passwords; one
//! file per command group (`cluster`, `domain`, `user`, `import`, `recipients`, `queue`,
//! `store`, `sieve`, `policy`); [`pki`] mints certificates with no server at all.
//!
//! Security note: the HTTPS client trusts only the CA file it was given — never the system
//! roots — so a token is only ever sent to a server holding a certificate from the cluster CA.
//! Passwords never come from argv (visible in `ps` and shell history): a prompt, a file, or
//! stdin. Text from the server is escaped before it reaches the terminal.

pub mod args;
pub mod client;
mod cluster;
pub mod discover;
mod domain;
mod import;
mod input;
pub mod output;
pub mod password;
pub mod pki;
mod policy;
mod queue;
mod recipients;
mod sieve;
mod store;
mod user;

use std::process::ExitCode;

pub use args::Cli;
use args::{ClusterCmd, Command};
use client::Client;

/// Why a `mailctl` run failed. Each variant is one exit code of the contract.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The command line or a local input is wrong (exit 2): unreadable password or token file,
    /// no CA to trust, an import file with nothing importable.
    #[error("{message}")]
    Usage {
        /// What is wrong.
        message: String,
        /// What to do instead, if there is something to say.
        hint: Option<String>,
    },
    /// The server answered, and said no (exit 1).
    #[error("{message}")]
    Server {
        /// The HTTP status, kept for callers that care (404 versus 409).
        status: u16,
        /// The server's `error` field.
        message: String,
        /// The server's `hint` field.
        hint: Option<String>,
    },
    /// A local operation failed, or a bulk operation was only partly applied (exit 1).
    #[error("{0}")]
    Failed(String),
    /// No usable answer from the cluster (exit 3): connection or TLS failure, timeout, or a
    /// node that has no Raft leader to forward to (HTTP 503).
    #[error("{message}")]
    Unreachable {
        /// What happened.
        message: String,
        /// What to check.
        hint: Option<String>,
    },
}

impl CtlError {
    /// A usage error without a hint.
    pub fn usage(message: impl Into<String>) -> CtlError {
        CtlError::Usage {
            message: message.into(),
            hint: None,
        }
    }

    /// The process exit code the contract assigns to this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Server { .. } | CtlError::Failed(_) => 1,
            CtlError::Usage { .. } => 2,
            CtlError::Unreachable { .. } => 3,
        }
    }

    /// The second line of the error report, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            CtlError::Usage { hint, .. }
            | CtlError::Server { hint, .. }
            | CtlError::Unreachable { hint, .. } => hint.as_deref(),
            CtlError::Failed(_) => None,
        }
    }
}

/// What every server command needs: the client and the output mode.
pub(crate) struct Ctx {
    /// The admin API client, already pointed at the discovered server.
    pub client: Client,
    /// `--json`: print the server's answers instead of tables.
    pub json: bool,
}

/// Runs one parsed command line to completion.
pub fn run(cli: Cli) -> Result<(), CtlError> {
    match cli.command {
        // Offline: needs neither a server nor a runtime.
        Command::Cluster(ClusterCmd::Init { out, nodes }) => pki::init(&out, &nodes, cli.json),
        Command::Cluster(ClusterCmd::Issue {
            ca_dir,
            node,
            force,
        }) => pki::issue(&ca_dir, &node, force, cli.json),
        command => {
            let cwd = std::env::current_dir().map_err(|e| {
                CtlError::usage(format!("cannot determine the current directory: {e}"))
            })?;
            let target = discover::discover(&cli.conn, discover::process_env, &cwd)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| CtlError::Failed(format!("cannot start the I/O runtime: {e}")))?;
            let ctx = Ctx {
                client: Client::new(target)?,
                json: cli.json,
            };
            runtime.block_on(dispatch(&ctx, command))
        }
    }
}

async fn dispatch(ctx: &Ctx, command: Command) -> Result<(), CtlError> {
    match command {
        Command::Status => cluster::status(ctx).await,
        Command::Cluster(ClusterCmd::Bootstrap) => cluster::bootstrap(ctx).await,
        // Normally run by `run` before discovery; harmless here too.
        Command::Cluster(ClusterCmd::Init { out, nodes }) => pki::init(&out, &nodes, ctx.json),
        Command::Cluster(ClusterCmd::Issue {
            ca_dir,
            node,
            force,
        }) => pki::issue(&ca_dir, &node, force, ctx.json),
        Command::Node(cmd) => cluster::node(ctx, cmd).await,
        Command::Failover { to } => cluster::failover(ctx, to).await,
        Command::Domain(cmd) => domain::run(ctx, cmd).await,
        Command::User(cmd) => user::run(ctx, cmd).await,
        Command::Alias(cmd) => recipients::alias(ctx, cmd).await,
        Command::List(cmd) => recipients::list(ctx, cmd).await,
        Command::Resolve { address } => recipients::resolve(ctx, &address).await,
        Command::Queue(cmd) => queue::run(ctx, cmd).await,
        Command::Store(cmd) => store::run(ctx, cmd).await,
        Command::Sieve(cmd) => sieve::run(ctx, cmd).await,
        Command::Policy(cmd) => policy::run(ctx, cmd).await,
    }
}

/// Prints `mailctl: <message>` (and the hint on a second line) to stderr and returns the exit
/// code: what the binary does with an error.
pub fn report(err: &CtlError) -> ExitCode {
    output::note(&format!("mailctl: {}", output::clean(&err.to_string())));
    if let Some(hint) = err.hint() {
        output::note(&format!("  {}", output::clean(hint)));
    }
    ExitCode::from(err.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_its_contract_exit_code() {
        assert_eq!(CtlError::usage("x").exit_code(), 2);
        assert_eq!(CtlError::Failed("x".into()).exit_code(), 1);
        let server = CtlError::Server {
            status: 409,
            message: "exists".into(),
            hint: Some("h".into()),
        };
        assert_eq!(server.exit_code(), 1);
        assert_eq!(server.hint(), Some("h"));
        let down = CtlError::Unreachable {
            message: "down".into(),
            hint: None,
        };
        assert_eq!(down.exit_code(), 3);
    }
}
