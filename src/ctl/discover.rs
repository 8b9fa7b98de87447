//! Finding the server, the admin token and the CA to trust.
//!
//! Each of the three is looked up on its own, first match wins: the command-line flag, then the
//! environment (`MAILCTL_SERVER`, `MAILCTL_TOKEN` — the token itself, `MAILCTL_CA`), then the
//! dev node's files when the current directory holds `./dev-data`. The lookup is a pure
//! function of the flags, an environment accessor and a directory, so its precedence is
//! table-tested without touching the process environment.

use std::fmt;
use std::path::{Path, PathBuf};

use super::args::ConnArgs;
use super::CtlError;

/// Environment variable naming the server, `HOST:PORT`.
pub const ENV_SERVER: &str = "MAILCTL_SERVER";
/// Environment variable holding the admin token itself (not a file name).
pub const ENV_TOKEN: &str = "MAILCTL_TOKEN";
/// Environment variable naming the CA certificate file.
pub const ENV_CA: &str = "MAILCTL_CA";
/// The dev node's data directory, relative to where `mailctl` runs.
pub const DEV_DATA: &str = "dev-data";
/// The dev node's admin API.
pub const DEV_SERVER: &str = "127.0.0.1:8080";
/// The admin port when `--server` names a host only: production serves the API on 443.
pub const DEFAULT_PORT: u16 = 443;

/// Where to connect and how to authenticate: the outcome of discovery.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// The admin API's address; its host is also the TLS server name.
    pub server: ServerAddr,
    /// The bearer token.
    pub token: String,
    /// The only CA certificate the client trusts.
    pub ca: PathBuf,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a credential: never in a debug dump.
        f.debug_struct("Target")
            .field("server", &self.server)
            .field("token", &"<redacted>")
            .field("ca", &self.ca)
            .finish()
    }
}

/// `HOST:PORT`, with the host being an IP address or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// IP address (without brackets) or DNS name: what the certificate must name.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl ServerAddr {
    /// Parses `HOST:PORT`, `[IPv6]:PORT`, a bare host (port 443), tolerating an `https://`
    /// prefix and a trailing `/` pasted from a browser.
    pub fn parse(text: &str) -> Result<ServerAddr, String> {
        let s = text.trim();
        let s = s.strip_prefix("https://").unwrap_or(s);
        let s = s.strip_suffix('/').unwrap_or(s);
        let bad =
            |why: &str| format!("invalid server address {text:?}: {why} (expected HOST:PORT)");
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| bad("junk after ']'"))?,
                    ),
                ),
            }
        } else if s.matches(':').count() > 1 {
            // A bare IPv6 address: no port can be told apart from it.
            (s, None)
        } else {
            match s.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        if host.is_empty() || host.contains(['/', ' ', '@']) {
            return Err(bad("no valid host"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
        };
        Ok(ServerAddr {
            host: host.to_owned(),
            port,
        })
    }

    /// `host:port` as it goes into the `Host` header, IPv6 in brackets.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority())
    }
}

/// The process environment, with empty variables treated as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Finds server, token and CA. `env` looks up an environment variable; `cwd` is where
/// `./dev-data` is looked for.
pub fn discover(
    args: &ConnArgs,
    env: impl Fn(&str) -> Option<String>,
    cwd: &Path,
) -> Result<Target, CtlError> {
    let dev = cwd.join(DEV_DATA);
    let dev = dev.is_dir().then_some(dev);

    let server = match (&args.server, env(ENV_SERVER), &dev) {
        (Some(s), _, _) => s.clone(),
        (None, Some(s), _) => s,
        (None, None, Some(_)) => DEV_SERVER.to_owned(),
        (None, None, None) => {
            return Err(CtlError::Usage {
                message: "no server to talk to".into(),
                hint: Some(format!(
                    "pass --server HOST:PORT, set {ENV_SERVER}, or run mailctl in the folder \
                     holding the dev node's ./{DEV_DATA}"
                )),
            })
        }
    };
    let server = ServerAddr::parse(&server).map_err(CtlError::usage)?;

    let token = match (&args.token_file, env(ENV_TOKEN), &dev) {
        (Some(file), _, _) => read_token(file)?,
        (None, Some(t), _) => check_token(t.trim().to_owned(), ENV_TOKEN)?,
        (None, None, Some(dev)) if dev.join("admin.token").exists() => {
            read_token(&dev.join("admin.token"))?
        }
        (None, None, dev) => {
            return Err(CtlError::Usage {
                message: "no admin token".into(),
                hint: Some(format!(
                    "pass --token-file FILE or set {ENV_TOKEN} to the token{}",
                    missing_note(dev.as_deref(), "admin.token")
                )),
            })
        }
    };

    let ca = match (&args.ca_file, env(ENV_CA), &dev) {
        (Some(file), _, _) => file.clone(),
        (None, Some(file), _) => PathBuf::from(file),
        (None, None, Some(dev)) if dev.join("tls/ca.pem").exists() => dev.join("tls/ca.pem"),
        (None, None, dev) => {
            return Err(CtlError::Usage {
                message: "no CA certificate to trust".into(),
                hint: Some(format!(
                    "pass --ca-file FILE or set {ENV_CA} to the cluster's ca.pem (written by \
                     `mailctl cluster init`){}",
                    missing_note(dev.as_deref(), "tls/ca.pem")
                )),
            })
        }
    };

    Ok(Target { server, token, ca })
}

/// Why the dev node's file was not used, when there is a dev node.
fn missing_note(dev: Option<&Path>, file: &str) -> String {
    match dev {
        Some(dev) => format!(
            " ({} does not exist: has the dev node started?)",
            dev.join(file).display()
        ),
        None => String::new(),
    }
}

fn read_token(path: &Path) -> Result<String, CtlError> {
    let text = std::fs::read_to_string(path).map_err(|e| CtlError::Usage {
        message: format!("cannot read the token file {}: {e}", path.display()),
        hint: Some("pass the file the node wrote its admin token to, with --token-file".into()),
    })?;
    check_token(text.trim().to_owned(), &path.display().to_string())
}

/// A token must be non-empty and fit in an HTTP header.
fn check_token(token: String, source: &str) -> Result<String, CtlError> {
    if token.is_empty() {
        return Err(CtlError::usage(format!(
            "the admin token in {source} is empty"
        )));
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(CtlError::usage(format!(
            "the admin token in {source} holds spaces or non-ASCII characters; is it the right file?"
        )));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn dev_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("dev-data/tls")).unwrap();
        std::fs::write(dir.path().join("dev-data/admin.token"), "devtoken\n").unwrap();
        std::fs::write(dir.path().join("dev-data/tls/ca.pem"), "pem").unwrap();
        dir
    }

    #[test]
    fn dev_data_is_the_last_resort() {
        let dir = dev_dir();
        let t = discover(&ConnArgs::default(), env(&[]), dir.path()).unwrap();
        assert_eq!(t.server, ServerAddr::parse("127.0.0.1:8080").unwrap());
        assert_eq!(t.token, "devtoken");
        assert_eq!(t.ca, dir.path().join("dev-data/tls/ca.pem"));
        assert!(!format!("{t:?}").contains("devtoken"));
    }

    #[test]
    fn environment_beats_dev_data() {
        let dir = dev_dir();
        let vars = [
            (ENV_SERVER, "node-b.example.org:8443"),
            (ENV_TOKEN, "envtoken"),
            (ENV_CA, "/etc/mailnode/ca.pem"),
        ];
        let t = discover(&ConnArgs::default(), env(&vars), dir.path()).unwrap();
        assert_eq!(t.server.host, "node-b.example.org");
        assert_eq!(t.server.port, 8443);
        assert_eq!(t.token, "envtoken");
        assert_eq!(t.ca, PathBuf::from("/etc/mailnode/ca.pem"));
    }

    #[test]
    fn flags_beat_environment_and_each_item_falls_back_on_its_own() {
        let dir = dev_dir();
        let token_file = dir.path().join("tok");
        std::fs::write(&token_file, "  filetoken \n").unwrap();
        let args = ConnArgs {
            server: Some("10.0.0.1:9000".into()),
            token_file: Some(token_file),
            ca_file: None,
        };
        let vars = [(ENV_SERVER, "ignored:1"), (ENV_TOKEN, "ignored")];
        let t = discover(&args, env(&vars), dir.path()).unwrap();
        assert_eq!(t.server.authority(), "10.0.0.1:9000");
        assert_eq!(t.token, "filetoken");
        // No flag and no variable for the CA: the dev node's.
        assert_eq!(t.ca, dir.path().join("dev-data/tls/ca.pem"));
    }

    #[test]
    fn nothing_found_says_what_to_pass() {
        let dir = tempfile::tempdir().unwrap();
        let err = discover(&ConnArgs::default(), env(&[]), dir.path()).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.hint().unwrap().contains("--server"), "{err:?}");

        let vars = [(ENV_SERVER, "h:1"), (ENV_TOKEN, "t")];
        let err = discover(&ConnArgs::default(), env(&vars), dir.path()).unwrap_err();
        assert_eq!(err.to_string(), "no CA certificate to trust");
        assert!(err.hint().unwrap().contains("--ca-file"), "{err:?}");

        let vars = [(ENV_SERVER, "h:1")];
        let err = discover(&ConnArgs::default(), env(&vars), dir.path()).unwrap_err();
        assert!(err.hint().unwrap().contains("--token-file"), "{err:?}");
    }

    #[test]
    fn a_dev_data_folder_without_files_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("dev-data")).unwrap();
        let err = discover(&ConnArgs::default(), env(&[]), dir.path()).unwrap_err();
        assert!(
            err.hint().unwrap().contains("admin.token does not exist"),
            "{err:?}"
        );
    }

    #[test]
    fn bad_tokens_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let args = |f: &Path| ConnArgs {
            server: Some("h:1".into()),
            token_file: Some(f.to_owned()),
            ca_file: Some("ca.pem".into()),
        };
        assert_eq!(
            discover(&args(&empty), env(&[]), dir.path())
                .unwrap_err()
                .exit_code(),
            2
        );
        let missing = dir.path().join("missing");
        assert_eq!(
            discover(&args(&missing), env(&[]), dir.path())
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn server_addresses() {
        let p = |s| ServerAddr::parse(s).map(|a| (a.host, a.port));
        assert_eq!(p("127.0.0.1:8080"), Ok(("127.0.0.1".into(), 8080)));
        assert_eq!(p("mail.example.org"), Ok(("mail.example.org".into(), 443)));
        assert_eq!(
            p("https://mail.example.org:8443/"),
            Ok(("mail.example.org".into(), 8443))
        );
        assert_eq!(p("[::1]:8080"), Ok(("::1".into(), 8080)));
        assert_eq!(p("[::1]"), Ok(("::1".into(), 443)));
        assert_eq!(p("::1"), Ok(("::1".into(), 443)));
        assert!(p("host:0").is_err());
        assert!(p("host:http").is_err());
        assert!(p(":8080").is_err());
        assert!(p("[::1]x").is_err());
        assert_eq!(ServerAddr::parse("[::1]:1").unwrap().authority(), "[::1]:1");
    }
}
