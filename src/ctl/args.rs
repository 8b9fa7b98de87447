//! The command line: every verb, flag and its help text, as clap derive types.
//!
//! Parsing only. Values that can be checked without the server (quotas, `key=value` prefs,
//! `NAME=HOST,...` node specs) are checked here, so a typo exits 2 before anything is sent.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::pki::{parse_node_spec, NodeSpec};
use super::user::{parse_pref, parse_quota};

/// The help section grouping the flags every command accepts.
const GLOBAL: &str = "Global options";

const DISCOVERY_HELP: &str = "\
Finding the cluster: --server / --token-file / --ca-file, else the environment
(MAILCTL_SERVER, MAILCTL_TOKEN holding the token itself, MAILCTL_CA), else — when
run in a folder holding ./dev-data — the dev node: 127.0.0.1:8080, the token in
./dev-data/admin.token and the CA in ./dev-data/tls/ca.pem. Each of the three is
looked up on its own. The client trusts only that CA, never the system roots.

Passwords are never taken from the command line: mailctl prompts for them, or
reads the first line of --password-file FILE, or of standard input with
--password-stdin.

Exit codes: 0 ok, 1 the operation failed (the server said no), 2 usage error,
3 cluster unreachable (connection or TLS failure, or no Raft leader).";

/// Operate a Mailnode cluster: membership, domains, users, aliases, lists, the mail queue and
/// the message store.
#[derive(Debug, Parser)]
#[command(name = "mailctl", version, after_long_help = DISCOVERY_HELP)]
pub struct Cli {
    /// Where the admin API is and how to authenticate to it.
    #[command(flatten)]
    pub conn: ConnArgs,

    /// Print the server's JSON answers instead of tables (for scripts).
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Server, token and CA; see the discovery rules in `mailctl --help`.
#[derive(Debug, Clone, Default, Args)]
pub struct ConnArgs {
    /// Admin API of any node [default: $MAILCTL_SERVER, or 127.0.0.1:8080 with ./dev-data].
    #[arg(long, global = true, value_name = "HOST:PORT", help_heading = GLOBAL)]
    pub server: Option<String>,

    /// File holding the admin token [default: the token in $MAILCTL_TOKEN, or
    /// ./dev-data/admin.token].
    #[arg(long, global = true, value_name = "FILE", help_heading = GLOBAL)]
    pub token_file: Option<PathBuf>,

    /// The cluster CA certificate, the only one trusted [default: $MAILCTL_CA, or
    /// ./dev-data/tls/ca.pem].
    #[arg(long, global = true, value_name = "FILE", help_heading = GLOBAL)]
    pub ca_file: Option<PathBuf>,
}

/// The top-level verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show this node's Raft state and the cluster's members.
    Status,
    /// Bootstrap the cluster, or create its certificates (offline).
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Add, remove and list cluster members.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Manage the domains the cluster receives mail for.
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Manage users (mailbox owners who can log in).
    #[command(subcommand)]
    User(UserCmd),
    /// Manage aliases (addresses forwarding elsewhere).
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Manage distribution lists.
    #[command(subcommand)]
    List(ListCmd),
    /// Show where mail for an address is delivered.
    Resolve {
        /// The recipient address.
        address: String,
    },
    /// Inspect and steer the mail queue of the node --server points at.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// Check the message store and show users' usage (on the active mailstore node).
    #[command(subcommand)]
    Store(StoreCmd),
    /// Manage users' Sieve filter scripts (at most one active per user).
    #[command(subcommand)]
    Sieve(SieveCmd),
    /// The cluster-wide anti-UBE policy: settings (TOML) and the maps they name. Every node
    /// enforces the stored policy; a change takes effect without restarts.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Planned switchover of the active mailstore: the holder drains and releases, then the
    /// target (or any other eligible node) takes over without waiting for the lease to expire.
    Failover {
        /// The node to take over (id or name); default: any other eligible node.
        #[arg(long, value_name = "NODE")]
        to: Option<String>,
    },
}

/// `mailctl cluster …`
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Make the node --server points at the first member and leader of a new cluster.
    Bootstrap,
    /// Create the cluster CA and one certificate per node, offline (no server needed).
    ///
    /// Writes DIR/ca.pem, DIR/ca.key and DIR/NAME.pem + DIR/NAME.key per node. Refuses to run
    /// if DIR already holds a CA. Example:
    /// mailctl cluster init --out pki --node a=10.0.0.1,mail-a.example.org --node b=10.0.0.2
    Init {
        /// Directory to write into (created, mode 0700, if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// A node: its name, then the IP addresses and DNS names its certificate must hold.
        #[arg(long = "node", value_name = "NAME=HOST[,HOST...]", required = true,
              value_parser = parse_node_spec)]
        nodes: Vec<NodeSpec>,
    },
    /// Issue one more node certificate from an existing CA (offline).
    Issue {
        /// Directory holding ca.pem and ca.key; the node's files are written there too.
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// The node: its name, then the IP addresses and DNS names its certificate must hold.
        #[arg(long, value_name = "NAME=HOST[,HOST...]", value_parser = parse_node_spec)]
        node: NodeSpec,
        /// Replace the node's existing certificate and key (renewal).
        #[arg(long)]
        force: bool,
    },
}

/// `mailctl node …`
#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// List cluster members.
    #[command(visible_alias = "ls")]
    List,
    /// Add a node: first as a learner; it becomes a voter once it has caught up.
    Add {
        /// The new node's Raft id (unique, never reused).
        id: u64,
        /// The node's name (as in its certificate).
        #[arg(long)]
        name: String,
        /// Its Raft RPC address.
        #[arg(long, value_name = "HOST:PORT")]
        raft: String,
        /// Its admin API address.
        #[arg(long, value_name = "HOST:PORT")]
        api: String,
    },
    /// Remove a node from the cluster.
    #[command(visible_alias = "rm")]
    Remove {
        /// The node's Raft id.
        id: u64,
    },
    /// Keep a node out of the mailstore holder role (maintenance); a holder hands over.
    Drain {
        /// The node (id or name).
        node: String,
    },
    /// Let a drained node hold the mailstore again.
    Undrain {
        /// The node (id or name).
        node: String,
    },
}

/// `mailctl domain …`
#[derive(Debug, Subcommand)]
pub enum DomainCmd {
    /// List domains.
    #[command(visible_alias = "ls")]
    List,
    /// Add a domain.
    Add {
        /// The domain name, e.g. example.org.
        name: String,
    },
    /// Remove a domain (the server refuses while it still has users, aliases or lists).
    #[command(visible_alias = "rm")]
    Remove {
        /// The domain name.
        name: String,
    },
    /// Show, set or clear where mail to unknown addresses of a domain goes.
    CatchAll {
        /// The domain name.
        domain: String,
        /// The address receiving it; omit (without --clear) to show the current one.
        target: Option<String>,
        /// Remove the catch-all: mail to unknown addresses is refused again.
        #[arg(long, conflicts_with = "target")]
        clear: bool,
    },
}

/// Where a password comes from; a prompt when neither flag is given.
#[derive(Debug, Clone, Default, Args)]
pub struct PasswordArgs {
    /// Read the password from the first line of FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "password_stdin")]
    pub password_file: Option<PathBuf>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `mailctl user …`
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// List users, of one domain or all.
    #[command(visible_alias = "ls")]
    List {
        /// Only this domain's users.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Show one user.
    Show {
        /// The user's address.
        address: String,
    },
    /// Add a user; prompts for the password unless one of the password flags is given.
    Add {
        /// The user's address (and login name).
        address: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Mailbox quota: bytes, or with a K/M/G/T suffix (2G, 500M); 0 is unlimited.
        #[arg(long, value_parser = parse_quota)]
        quota: Option<u64>,
        /// Mailstore group holding the mailbox.
        #[arg(long, value_name = "GROUP")]
        mail_host: Option<String>,
        /// Create the user disabled (cannot log in nor receive mail).
        #[arg(long)]
        disabled: bool,
        /// The password.
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Remove a user.
    #[command(visible_alias = "rm")]
    Remove {
        /// The user's address.
        address: String,
    },
    /// Set a user's password (prompted twice unless a password flag is given).
    Passwd {
        /// The user's address.
        address: String,
        /// The new password.
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Change a user's attributes and preferences, or their forward and vacation settings
    /// (`mailctl user set USER forward|vacation --help`).
    Set {
        /// The user's address.
        address: String,
        /// Forwarding or vacation, kept in a generated Sieve script.
        #[command(subcommand)]
        setting: Option<Box<UserSetting>>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Mailbox quota: bytes, or with a K/M/G/T suffix (2G, 500M); 0 is unlimited.
        #[arg(long, value_parser = parse_quota)]
        quota: Option<u64>,
        /// Mailstore group holding the mailbox.
        #[arg(long, value_name = "GROUP")]
        mail_host: Option<String>,
        /// Enable the user.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Disable the user: no login, no mail delivery.
        #[arg(long)]
        disable: bool,
        /// Set a webmail preference (repeatable).
        #[arg(long = "pref", value_name = "KEY=VALUE", value_parser = parse_pref)]
        prefs: Vec<(String, String)>,
        /// Remove a webmail preference (repeatable).
        #[arg(long = "unset-pref", value_name = "KEY")]
        unset_prefs: Vec<String>,
    },
    /// Check a user's password (prompted unless a password flag is given); exits 1 when wrong.
    CheckPassword {
        /// The user's address.
        address: String,
        /// The password to check.
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Import users from a CSV or LDIF file, in batches; good records are kept even when
    /// others fail.
    Import {
        /// The file to import.
        file: PathBuf,
        /// Its format [default: from the extension, .csv or .ldif].
        #[arg(long, value_enum)]
        format: Option<ImportFormat>,
        /// Create the domains the users are in when they do not exist yet.
        #[arg(long)]
        create_domains: bool,
        /// Records per request (the server accepts at most 10000). Each request is one Raft
        /// entry: 1000 keeps the nodes' peak memory low at the same import speed.
        #[arg(
            long,
            default_value_t = 1000,
            value_parser = clap::value_parser!(u64).range(1..=10_000)
        )]
        batch: u64,
    },
}

/// `mailctl user set USER forward|vacation …`: settings that generate the user's Sieve script
/// `mailnode-settings` (on the server) and make it the active one.
#[derive(Debug, Subcommand)]
pub enum UserSetting {
    /// Forward the user's mail to other addresses (at most 4), keeping a copy by default.
    ///
    /// Example: mailctl user set alice@example.org forward alice@home.example,bob@example.org
    Forward {
        /// Addresses, comma-separated.
        #[arg(
            value_name = "ADDR[,ADDR...]",
            value_delimiter = ',',
            required_unless_present = "off"
        )]
        addresses: Vec<String>,
        /// Also deliver to the user's INBOX (the default).
        #[arg(long, conflicts_with = "no_keep")]
        keep: bool,
        /// Do not keep a copy: the mail only leaves.
        #[arg(long)]
        no_keep: bool,
        /// Stop forwarding.
        #[arg(long, conflicts_with_all = ["addresses", "keep", "no_keep"])]
        off: bool,
        /// Make the settings script active even if the user runs another script (which is kept,
        /// inactive).
        #[arg(long)]
        replace_active: bool,
    },
    /// Answer the user's mail automatically (RFC 5230: never to lists, bulk or automatic mail,
    /// and each sender once per --days).
    ///
    /// Example: mailctl user set alice@example.org vacation --subject "Away" --message-file away.txt --until 2026-12-31
    Vacation {
        /// Subject of the replies.
        #[arg(long, required_unless_present = "off")]
        subject: Option<String>,
        /// Text of the replies.
        #[arg(long, conflicts_with = "message_file", required_unless_present_any = ["off", "message_file"])]
        message: Option<String>,
        /// Read the text of the replies from FILE (`-`: standard input).
        #[arg(long, value_name = "FILE")]
        message_file: Option<PathBuf>,
        /// Days before the same sender is answered again (1 to 365) [default: the server's].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=365))]
        days: Option<u64>,
        /// From address of the replies [default: the recipient address].
        #[arg(long, value_name = "ADDR")]
        from: Option<String>,
        /// The user's other addresses (aliases), comma-separated: mail to them is answered too.
        #[arg(long, value_name = "ADDR[,ADDR...]", value_delimiter = ',')]
        addresses: Vec<String>,
        /// Last day to answer, YYYY-MM-DD (inclusive) [default: until turned off].
        #[arg(long, value_name = "DATE")]
        until: Option<String>,
        /// Stop answering.
        #[arg(long, conflicts_with_all = ["subject", "message", "message_file", "days", "from", "addresses", "until"])]
        off: bool,
        /// Make the settings script active even if the user runs another script (which is kept,
        /// inactive).
        #[arg(long)]
        replace_active: bool,
    },
}

/// `mailctl sieve …`: a user's Sieve scripts, as ManageSieve shows them to the user.
#[derive(Debug, Subcommand)]
pub enum SieveCmd {
    /// List a user's scripts, the active one marked.
    #[command(visible_alias = "ls")]
    List {
        /// The user's address.
        user: String,
    },
    /// Print a script's source (with --json: name, active, size and source).
    Get {
        /// The user's address.
        user: String,
        /// The script's name.
        name: String,
    },
    /// Store a script (compiled first: an error names its line and column; nothing is stored).
    Put {
        /// The user's address.
        user: String,
        /// The script's name.
        name: String,
        /// File holding the script; `-` reads standard input.
        file: PathBuf,
        /// Also make it the user's active script.
        #[arg(long)]
        activate: bool,
    },
    /// Make a script the one run at delivery.
    Activate {
        /// The user's address.
        user: String,
        /// The script's name.
        name: String,
    },
    /// Run no script at delivery for this user (scripts are kept).
    Deactivate {
        /// The user's address.
        user: String,
    },
    /// Rename a script (the active script stays active).
    Rename {
        /// The user's address.
        user: String,
        /// Its current name.
        from: String,
        /// Its new name.
        to: String,
    },
    /// Delete a script (refused for the active one: deactivate it first).
    #[command(visible_alias = "rm")]
    Delete {
        /// The user's address.
        user: String,
        /// The script's name.
        name: String,
    },
}

/// `mailctl policy …`: the anti-UBE policy document, replicated to every node.
#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Show the version, the settings and the maps (with --json: the server's answer).
    Show,
    /// Replace the settings with FILE's TOML; the maps are kept. Compiled first: an error
    /// names the line, nothing is stored and the policy in force stays.
    Set {
        /// File holding the settings; `-` reads standard input.
        file: PathBuf,
        /// Refuse unless the stored version is this one (as `policy show` printed it), so a
        /// change someone made meanwhile is not overwritten.
        #[arg(long, value_name = "VERSION")]
        expect_version: Option<u64>,
    },
    /// Compile settings (and maps) on the server without storing anything; stored maps fill
    /// in those not given with --map. Exits 1 with `NAME:LINE: message` on a bad document.
    Check {
        /// File holding the settings; `-` reads standard input.
        file: PathBuf,
        /// A map to check with them, replacing a stored map of that name (repeatable).
        #[arg(long = "map", value_name = "NAME=FILE", value_parser = parse_map_arg)]
        maps: Vec<(String, PathBuf)>,
    },
    /// Manage the maps (Postfix regexp/pcre tables) the settings refer to.
    #[command(subcommand)]
    Map(PolicyMapCmd),
}

/// `mailctl policy map …`
#[derive(Debug, Subcommand)]
pub enum PolicyMapCmd {
    /// List the maps with their size.
    #[command(visible_alias = "ls")]
    List,
    /// Print a map's text.
    Show {
        /// The map's name.
        name: String,
    },
    /// Create or replace a map (compiled with the settings first: an error names the map and
    /// the line, and the policy in force stays).
    Put {
        /// The map's name (letters, digits, '.', '_', '-').
        name: String,
        /// File holding the map; `-` reads standard input.
        file: PathBuf,
        /// Refuse unless the stored version is this one.
        #[arg(long, value_name = "VERSION")]
        expect_version: Option<u64>,
    },
    /// Delete a map (refused while the settings name it).
    #[command(name = "rm", visible_alias = "delete")]
    Rm {
        /// The map's name.
        name: String,
        /// Refuse unless the stored version is this one.
        #[arg(long, value_name = "VERSION")]
        expect_version: Option<u64>,
    },
}

/// `NAME=FILE` of `mailctl policy check --map`.
fn parse_map_arg(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => {
            Ok((name.to_owned(), PathBuf::from(file)))
        }
        _ => Err(format!(
            "{s:?}: write NAME=FILE, e.g. spam_headers=headers.pcre"
        )),
    }
}

/// The import file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// Comma-separated values with a header line.
    Csv,
    /// LDAP Data Interchange Format, e.g. an `slapcat` export of the old directory.
    Ldif,
}

/// `mailctl alias …`
#[derive(Debug, Subcommand)]
pub enum AliasCmd {
    /// List aliases, of one domain or all.
    #[command(visible_alias = "ls")]
    List {
        /// Only this domain's aliases.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Add an alias forwarding to one or more addresses.
    Add {
        /// The alias address.
        address: String,
        /// Where its mail goes.
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// Remove an alias.
    #[command(visible_alias = "rm")]
    Remove {
        /// The alias address.
        address: String,
    },
}

/// `mailctl list …`
#[derive(Debug, Subcommand)]
pub enum ListCmd {
    /// List the distribution lists, of one domain or all.
    #[command(visible_alias = "ls")]
    List {
        /// Only this domain's lists.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Create a list, optionally with its first members.
    Add {
        /// The list address.
        address: String,
        /// Initial members.
        members: Vec<String>,
    },
    /// Remove a list.
    #[command(visible_alias = "rm")]
    Remove {
        /// The list address.
        address: String,
    },
    /// Show a list's members, or change them with --add / --remove.
    Members {
        /// The list address.
        address: String,
        /// Members to add.
        #[arg(long, value_name = "MEMBER", num_args = 1..)]
        add: Vec<String>,
        /// Members to remove.
        #[arg(long, value_name = "MEMBER", num_args = 1..)]
        remove: Vec<String>,
    },
}

/// `mailctl queue …` (each node has its own queue: these act on the --server node's).
#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// List queued messages, oldest first, a page at a time.
    #[command(visible_alias = "ls")]
    List {
        /// Messages per page (1 to 10000).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        limit: u64,
        /// Start after this queue id (the id the previous page ended with).
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one message: envelope, each recipient's state, and its headers.
    Show {
        /// The queue id (from `mailctl queue list`).
        id: String,
    },
    /// Retry one message, or every message, now (held messages stay held).
    Flush {
        /// The queue id; omit to flush the whole queue.
        id: Option<String>,
    },
    /// Delete a message without notifying its sender.
    #[command(visible_alias = "rm")]
    Delete {
        /// The queue id.
        id: String,
    },
    /// Hold a message: no delivery attempt until it is released (survives restarts).
    Hold {
        /// The queue id.
        id: String,
    },
    /// Release a held message and try it now.
    Release {
        /// The queue id.
        id: String,
    },
}

/// `mailctl store …`
#[derive(Debug, Subcommand)]
pub enum StoreCmd {
    /// Verify every mailbox against its message files; exits 1 when damage remains.
    Check {
        /// Repair what can be repaired (rebuild indexes from the message files).
        #[arg(long)]
        repair: bool,
        /// Check only this user's mailboxes.
        #[arg(long, value_name = "ADDR")]
        user: Option<String>,
    },
    /// Show a user's messages, bytes and quota, per mailbox.
    Usage {
        /// The user's address.
        address: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli =
            Cli::try_parse_from(["mailctl", "user", "list", "--json", "--server", "h:1"]).unwrap();
        assert!(cli.json);
        assert_eq!(cli.conn.server.as_deref(), Some("h:1"));
    }

    #[test]
    fn passwords_are_not_accepted_as_arguments() {
        assert!(
            Cli::try_parse_from(["mailctl", "user", "add", "a@b.c", "--password", "x"]).is_err()
        );
        assert!(Cli::try_parse_from([
            "mailctl",
            "user",
            "add",
            "a@b.c",
            "--password-file",
            "f",
            "--password-stdin"
        ])
        .is_err());
    }

    #[test]
    fn list_members_takes_several_additions_and_removals() {
        let cli = Cli::try_parse_from([
            "mailctl", "list", "members", "l@x.org", "--add", "a@x.org", "b@x.org", "--remove",
            "c@x.org",
        ])
        .unwrap();
        match cli.command {
            Command::List(ListCmd::Members { add, remove, .. }) => {
                assert_eq!(add, ["a@x.org", "b@x.org"]);
                assert_eq!(remove, ["c@x.org"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn queue_and_store_verbs_parse() {
        let cli = Cli::try_parse_from(["mailctl", "queue", "flush"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Queue(QueueCmd::Flush { id: None })
        ));
        let cli = Cli::try_parse_from(["mailctl", "store", "check", "--repair", "--user", "a@b.c"])
            .unwrap();
        match cli.command {
            Command::Store(StoreCmd::Check { repair, user }) => {
                assert!(repair);
                assert_eq!(user.as_deref(), Some("a@b.c"));
            }
            other => panic!("{other:?}"),
        }
        for args in [
            &["mailctl", "queue", "show"][..],
            &["mailctl", "queue", "hold"],
            &["mailctl", "store", "usage"],
        ] {
            assert_eq!(Cli::try_parse_from(args).unwrap_err().exit_code(), 2);
        }
    }

    #[test]
    fn user_settings_and_sieve_verbs_parse() {
        let cli = Cli::try_parse_from([
            "mailctl",
            "user",
            "set",
            "a@b.c",
            "forward",
            "x@y.z,w@y.z",
            "--no-keep",
        ])
        .unwrap();
        match cli.command {
            Command::User(UserCmd::Set {
                setting: Some(setting),
                ..
            }) => {
                let UserSetting::Forward {
                    addresses, no_keep, ..
                } = *setting
                else {
                    panic!("{setting:?}")
                };
                assert_eq!(addresses, ["x@y.z", "w@y.z"]);
                assert!(no_keep);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Cli::try_parse_from(["mailctl", "user", "set", "a@b.c", "forward", "--off"]).is_ok()
        );
        assert!(Cli::try_parse_from([
            "mailctl",
            "user",
            "set",
            "a@b.c",
            "vacation",
            "--subject",
            "S",
            "--message-file",
            "-",
            "--days",
            "3",
            "--until",
            "2026-12-31"
        ])
        .is_ok());
        assert!(Cli::try_parse_from([
            "mailctl",
            "sieve",
            "put",
            "a@b.c",
            "main",
            "-",
            "--activate"
        ])
        .is_ok());
        for args in [
            &["mailctl", "user", "set", "a@b.c", "forward"][..],
            &[
                "mailctl", "user", "set", "a@b.c", "forward", "x@y.z", "--off",
            ],
            &[
                "mailctl",
                "user",
                "set",
                "a@b.c",
                "forward",
                "x@y.z",
                "--keep",
                "--no-keep",
            ],
            &[
                "mailctl",
                "user",
                "set",
                "a@b.c",
                "vacation",
                "--subject",
                "S",
            ],
            &[
                "mailctl", "user", "set", "a@b.c", "vacation", "--off", "--days", "3",
            ],
            &[
                "mailctl",
                "user",
                "set",
                "a@b.c",
                "vacation",
                "--subject",
                "S",
                "--message",
                "M",
                "--days",
                "0",
            ],
            &["mailctl", "sieve", "put", "a@b.c", "main"],
            &["mailctl", "sieve", "deactivate"],
        ] {
            assert_eq!(
                Cli::try_parse_from(args).unwrap_err().exit_code(),
                2,
                "{args:?}"
            );
        }
    }

    #[test]
    fn policy_verbs_parse() {
        let cli = Cli::try_parse_from([
            "mailctl",
            "policy",
            "check",
            "p.toml",
            "--map",
            "hc=h.pcre",
            "--map",
            "bc=b",
        ])
        .unwrap();
        match cli.command {
            Command::Policy(PolicyCmd::Check { file, maps }) => {
                assert_eq!(file, PathBuf::from("p.toml"));
                assert_eq!(
                    maps,
                    [
                        ("hc".to_owned(), PathBuf::from("h.pcre")),
                        ("bc".to_owned(), PathBuf::from("b"))
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from([
            "mailctl",
            "policy",
            "map",
            "put",
            "hc",
            "-",
            "--expect-version",
            "7",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Policy(PolicyCmd::Map(PolicyMapCmd::Put {
                expect_version: Some(7),
                ..
            }))
        ));
        for ok in [
            &["mailctl", "policy", "show", "--json"][..],
            &["mailctl", "policy", "map", "ls"],
            &["mailctl", "policy", "map", "rm", "hc"],
            &["mailctl", "policy", "map", "delete", "hc"],
        ] {
            assert!(Cli::try_parse_from(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            &["mailctl", "policy", "check", "p.toml", "--map", "hc"][..],
            &["mailctl", "policy", "check", "p.toml", "--map", "=f"],
            &["mailctl", "policy", "set"],
            &["mailctl", "policy", "set", "f", "--expect-version", "x"],
            &["mailctl", "policy", "map", "put", "hc"],
        ] {
            assert_eq!(
                Cli::try_parse_from(bad).unwrap_err().exit_code(),
                2,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let e =
            Cli::try_parse_from(["mailctl", "user", "set", "a@b.c", "--quota", "2X"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        for batch in ["0", "10001"] {
            let e = Cli::try_parse_from(["mailctl", "user", "import", "f.csv", "--batch", batch])
                .unwrap_err();
            assert_eq!(e.exit_code(), 2);
        }
    }
}
