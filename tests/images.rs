//! The shipped configurations parse with the real loader: the commented production default of
//! the node image and the systemd install (`images/mailnode.toml`), and the local cluster's
//! node template (`cluster/node.toml.in`, as `cluster/up.sh` fills it in). A key that the
//! loader does not know, or a value it refuses, fails here rather than on an operator's node.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use mailnode::config::Config;

fn repo(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_image_default_config_loads_and_serves_the_mailstore_on_its_vip() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/mailnode.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let fo = c.failover.as_ref().expect("[failover]");
    let vip = fo.vip.as_ref().expect("[failover.vip]");
    assert_eq!(vip.interface, "eth0");
    assert!(fo.volume.device.is_some(), "[failover.volume] device");
    assert_eq!(fo.volume.fstype, "xfs");
    let store = c.mailstore.as_ref().expect("[mailstore]");
    // Every mailstore listener and the queues' LMTP target are on the VIP, so they move with it.
    let on_vip = |a: Option<SocketAddr>| a.map(|a| a.ip());
    for (key, addr) in [
        ("mailstore.lmtp_listen", Some(store.lmtp_listen)),
        ("mailstore.imap_listen", store.imap_listen),
        ("mailstore.imaps_listen", store.imaps_listen),
        ("mailstore.pop3_listen", store.pop3_listen),
        ("mailstore.pop3s_listen", store.pop3s_listen),
        ("mailstore.managesieve_listen", store.managesieve_listen),
        ("mail.lmtp_addr", c.mail.lmtp_addr),
    ] {
        assert_eq!(on_vip(addr), Some(vip.address), "{key}");
    }
    assert_eq!(c.mail.lmtp_addr, Some(store.lmtp_listen));
    // Production defaults: no plaintext logins, no store created on an unmounted root, not a
    // bootstrapping node unless the operator says so.
    assert!(!store.allow_plaintext_login);
    assert!(!store.create_if_missing);
    assert!(!c.cluster.bootstrap);
    assert_eq!(store.root, Path::new("/srv/mailstore"));
}

/// The first `@NAME@` placeholder left in `text`, if any.
fn placeholder(text: &str) -> Option<&str> {
    text.match_indices('@').find_map(|(i, _)| {
        let rest = &text[i + 1..];
        let end = rest.find(|c: char| !(c.is_ascii_uppercase() || c == '_'))?;
        (end > 0 && rest[end..].starts_with('@')).then(|| &text[i..i + end + 2])
    })
}

#[test]
fn the_cluster_node_template_loads_for_each_node_with_and_without_a_fence_agent() {
    let template = repo("cluster/node.toml.in");
    assert_eq!(
        placeholder(&template),
        Some("@ID@"),
        "the check sees placeholders"
    );
    for (id, fence) in [
        (
            1,
            r#"fence_command = ["/usr/local/sbin/fence-docker", "{name}"]"#,
        ),
        (2, ""),
    ] {
        let text = template
            .replace("@ID@", &id.to_string())
            .replace("@NAME@", &format!("n{id}"))
            .replace("@IP@", &format!("10.97.0.1{id}"))
            .replace("@VIP@", "10.97.0.100")
            .replace("@BOOTSTRAP@", if id == 1 { "true" } else { "false" })
            .replace("@DEVICE@", "/dev/loop7")
            .replace("@FENCE@", fence);
        assert!(
            placeholder(&text).is_none(),
            "{:?} is left",
            placeholder(&text)
        );
        let c = Config::parse(&text, "cluster/node.toml.in").unwrap_or_else(|e| panic!("{e}"));
        let fo = c.failover.expect("[failover]");
        assert_eq!(fo.fence_command.is_empty(), fence.is_empty());
        let vip: IpAddr = "10.97.0.100".parse().unwrap();
        assert_eq!(fo.vip.expect("[failover.vip]").address, vip);
        assert_eq!(fo.volume.device.as_deref(), Some(Path::new("/dev/loop7")));
        assert_eq!(c.cluster.bootstrap, id == 1);
    }
}

#[test]
fn the_systemd_unit_and_the_image_run_the_default_config_with_the_needed_capabilities() {
    let unit = repo("images/mailnode.service");
    let line = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in images/mailnode.service"))
            .to_string()
    };
    assert_eq!(
        line("ExecStart="),
        "/usr/local/bin/mailnode --config /etc/mailnode/mailnode.toml"
    );
    let caps = line("CapabilityBoundingSet=");
    for cap in [
        "CAP_SYS_ADMIN",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_NET_BIND_SERVICE",
    ] {
        assert!(caps.split_whitespace().any(|c| c == cap), "{cap}: {caps}");
    }
    // An invalid configuration exits 64: systemd must not restart it in a loop.
    assert_eq!(line("RestartPreventExitStatus="), "64");
    let dockerfile = repo("images/Dockerfile");
    assert!(dockerfile.contains("COPY mailnode.toml /etc/mailnode/mailnode.toml"));
    assert!(dockerfile
        .contains(r#"CMD ["/usr/local/bin/mailnode", "--config", "/etc/mailnode/mailnode.toml"]"#));
}
