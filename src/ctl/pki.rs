//! `mailctl cluster init` and `mailctl cluster issue`: the cluster's certificates, made offline
//! on the operator's machine with [`crate::tls`]'s CA functions. No server is involved.
//!
//! Everything is generated in memory and checked before the first file is written, so a typo in
//! the third `--node` leaves no half-made CA behind that a second run would refuse to replace.
//!
//! Security note: an existing CA key is never overwritten (that would orphan every node
//! certificate it signed), and a node's key only with `--force`. Keys are written mode 0600.

use std::collections::BTreeSet;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::tls::{generate_ca, issue_node_cert, BundlePaths, CertBundle, TlsError};

use super::output;
use super::CtlError;

/// The CA's bundle name inside the PKI directory: `ca.pem` / `ca.key`.
const CA_NAME: &str = "ca";
/// The CA certificate's common name.
const CA_COMMON_NAME: &str = "Mailnode cluster CA";

/// A `--node NAME=HOST[,HOST...]` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// The node's name: its certificate's common name, first SAN, and file stem.
    pub name: String,
    /// Further SANs: IP addresses and DNS names other nodes and clients reach it by.
    pub hosts: Vec<String>,
}

/// Parses `NAME=HOST[,HOST...]` (or a bare `NAME`). The name becomes a file name, so it is
/// restricted to letters, digits, `-`, `_` and `.`, and cannot be `ca`.
pub fn parse_node_spec(s: &str) -> Result<NodeSpec, String> {
    let (name, hosts) = match s.split_once('=') {
        Some((name, hosts)) => (name.trim(), hosts),
        None => (s.trim(), ""),
    };
    if name.is_empty()
        || name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "invalid node name {name:?}: use letters, digits, '-', '_' and '.' (it names the \
             node's certificate files)"
        ));
    }
    if name.eq_ignore_ascii_case(CA_NAME) {
        return Err("a node cannot be called \"ca\": that name is the CA's files".into());
    }
    let mut list: Vec<String> = Vec::new();
    for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        if !list.iter().any(|h| h == host) {
            list.push(host.to_owned());
        }
    }
    Ok(NodeSpec {
        name: name.to_owned(),
        hosts: list,
    })
}

/// One certificate written: which node, its SANs, and where.
struct Written {
    /// Node name, or `None` for the CA.
    node: Option<String>,
    /// SANs (nodes only).
    names: Vec<String>,
    /// The certificate and key files.
    paths: BundlePaths,
}

/// `mailctl cluster init --out DIR --node …`.
pub fn init(out: &Path, nodes: &[NodeSpec], json: bool) -> Result<(), CtlError> {
    let mut seen = BTreeSet::new();
    for n in nodes {
        if !seen.insert(n.name.to_ascii_lowercase()) {
            return Err(CtlError::usage(format!("node {} is given twice", n.name)));
        }
    }
    let ca_paths = BundlePaths::new(out, CA_NAME);
    for existing in [&ca_paths.key, &ca_paths.cert] {
        if existing.exists() {
            return Err(CtlError::Usage {
                message: format!(
                    "{} already exists: refusing to replace the cluster CA",
                    existing.display()
                ),
                hint: Some(format!(
                    "to add a node to this cluster, run `mailctl cluster issue --ca-dir {} --node \
                     NAME=HOST`; to start over, move {} away first",
                    out.display(),
                    out.display()
                )),
            });
        }
    }

    // Everything in memory first: a bad name fails before any file exists.
    let ca = generate_ca(CA_COMMON_NAME).map_err(tls_error)?;
    let issued = nodes
        .iter()
        .map(|n| {
            Ok((
                n,
                issue_node_cert(&ca.cert_pem, &ca.key_pem, &n.name, &n.hosts).map_err(tls_error)?,
            ))
        })
        .collect::<Result<Vec<_>, CtlError>>()?;

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(out)
        .map_err(|e| CtlError::Failed(format!("cannot create {}: {e}", out.display())))?;
    let mut written = vec![Written {
        node: None,
        names: Vec::new(),
        paths: ca.write_bundle(out, CA_NAME).map_err(tls_error)?,
    }];
    for (spec, bundle) in issued {
        written.push(write_node(out, spec, &bundle)?);
    }
    print(&written, json)
}

/// `mailctl cluster issue --ca-dir DIR --node …`.
pub fn issue(ca_dir: &Path, node: &NodeSpec, force: bool, json: bool) -> Result<(), CtlError> {
    let ca_paths = BundlePaths::new(ca_dir, CA_NAME);
    let ca = CertBundle::read(&ca_paths).map_err(|e| CtlError::Usage {
        message: e.to_string(),
        hint: Some(format!(
            "--ca-dir must be the directory `mailctl cluster init --out` wrote ({} and {})",
            ca_paths.cert.display(),
            ca_paths.key.display()
        )),
    })?;
    let node_paths = BundlePaths::new(ca_dir, &node.name);
    if !force && (node_paths.cert.exists() || node_paths.key.exists()) {
        return Err(CtlError::Usage {
            message: format!(
                "{} already has a certificate in {}",
                node.name,
                ca_dir.display()
            ),
            hint: Some("pass --force to replace it (renewal)".into()),
        });
    }
    let bundle =
        issue_node_cert(&ca.cert_pem, &ca.key_pem, &node.name, &node.hosts).map_err(tls_error)?;
    let written = write_node(ca_dir, node, &bundle)?;
    print(&[written], json)
}

fn write_node(dir: &Path, spec: &NodeSpec, bundle: &CertBundle) -> Result<Written, CtlError> {
    let mut names = vec![spec.name.clone()];
    names.extend(spec.hosts.iter().filter(|h| **h != spec.name).cloned());
    Ok(Written {
        node: Some(spec.name.clone()),
        names,
        paths: bundle.write_bundle(dir, &spec.name).map_err(tls_error)?,
    })
}

/// Bad names are the operator's typo (exit 2); anything else is a failed operation.
fn tls_error(e: TlsError) -> CtlError {
    match e {
        TlsError::InvalidName { .. } => CtlError::usage(e.to_string()),
        other => CtlError::Failed(other.to_string()),
    }
}

fn print(written: &[Written], json: bool) -> Result<(), CtlError> {
    let path = |p: &PathBuf| p.display().to_string();
    if json {
        let items: Vec<Value> = written
            .iter()
            .map(|w| {
                json!({
                    "node": w.node,
                    "names": w.names,
                    "cert": path(&w.paths.cert),
                    "key": path(&w.paths.key),
                })
            })
            .collect();
        return output::stdout(&output::pretty(&Value::Array(items)));
    }
    let mut out = String::new();
    for w in written {
        match &w.node {
            None => out.push_str(&format!(
                "wrote {}  cluster CA certificate: give it to every node and to mailctl (--ca-file)\n\
                 wrote {}  CA private key: keep it offline; `mailctl cluster issue` needs it\n",
                path(&w.paths.cert),
                path(&w.paths.key),
            )),
            Some(node) => out.push_str(&format!(
                "wrote {} and {}  node {node}, valid for {}\n",
                path(&w.paths.cert),
                path(&w.paths.key),
                w.names.join(", "),
            )),
        }
    }
    output::stdout(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> NodeSpec {
        parse_node_spec(s).unwrap()
    }

    #[test]
    fn node_specs() {
        assert_eq!(
            spec("a=10.0.0.1, mail-a.example.org,10.0.0.1"),
            NodeSpec {
                name: "a".into(),
                hosts: vec!["10.0.0.1".into(), "mail-a.example.org".into()],
            }
        );
        assert_eq!(spec("b").hosts, Vec::<String>::new());
        for bad in ["=10.0.0.1", "../x=1.2.3.4", ".hidden", "ca=1.2.3.4", "a b"] {
            assert!(parse_node_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn init_then_issue_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pki");
        init(
            &out,
            &[spec("a=127.0.0.1"), spec("b=10.0.0.2,b.example.org")],
            false,
        )
        .unwrap();
        for f in ["ca.pem", "ca.key", "a.pem", "a.key", "b.pem", "b.key"] {
            assert!(out.join(f).exists(), "{f}");
        }
        // The certificates work together: a's certificate serves, trusted through ca.pem.
        crate::tls::server_config(&out.join("a.pem"), &out.join("a.key")).unwrap();
        crate::tls::client_config_trusting(&out.join("ca.pem")).unwrap();

        let again = init(&out, &[spec("c=10.0.0.3")], false).unwrap_err();
        assert!(again.to_string().contains("refusing to replace"), "{again}");
        assert!(!out.join("c.pem").exists());

        issue(&out, &spec("c=10.0.0.3"), false, false).unwrap();
        assert!(out.join("c.key").exists());
        let err = issue(&out, &spec("c=10.0.0.3"), false, false).unwrap_err();
        assert!(err.hint().unwrap().contains("--force"), "{err:?}");
        issue(&out, &spec("c=10.0.0.3"), true, false).unwrap();

        let missing = issue(&dir.path().join("nowhere"), &spec("d"), false, false).unwrap_err();
        assert_eq!(missing.exit_code(), 2);
    }

    #[test]
    fn a_bad_host_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pki");
        let err = init(&out, &[spec("a=10.0.0.1"), spec("b=not a host!")], false).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err:?}");
        assert!(!out.join("ca.key").exists());
        let dup = init(&out, &[spec("a"), spec("A=1.2.3.4")], false).unwrap_err();
        assert_eq!(dup.exit_code(), 2);
    }
}
