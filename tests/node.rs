//! The `mailnode` binary's start-up contract: bad configuration, a busy data directory, busy
//! ports, and the `--dev` node with its embedded defaults.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Api, TestCluster, Tuning};
use serde_json::json;

fn mailnode() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mailnode"))
}

#[test]
fn a_config_typo_exits_64_naming_the_key() {
    let c = TestCluster::new(21, 1, Tuning::default());
    let cfg = &c.nodes[0].config;
    let text = std::fs::read_to_string(cfg)
        .unwrap()
        .replace("admin_token_file", "admin_tokn_file");
    std::fs::write(cfg, text).unwrap();
    let out = mailnode().arg("--config").arg(cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin_tokn_file"), "{err}");

    // A semantic error names its key too, and nothing was bound or created.
    let text = std::fs::read_to_string(cfg)
        .unwrap()
        .replace("admin_tokn_file", "admin_token_file")
        .replace("write_timeout_ms = 3000", "write_timeout_ms = 10");
    std::fs::write(cfg, text).unwrap();
    let out = mailnode().arg("--config").arg(cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster.write_timeout_ms"));
    assert!(
        !c.nodes[0].data_dir().exists(),
        "an invalid config must not touch the data directory"
    );

    let out = mailnode()
        .arg("--config")
        .arg("/nonexistent/mailnode.toml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = mailnode().arg("--bogus-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_data_directory_is_refused() {
    let mut c = TestCluster::new(22, 1, Tuning::default());
    c.node(1).start();
    c.api(1).wait_ready(Duration::from_secs(20)).await;
    let out = mailnode()
        .arg("--config")
        .arg(&c.nodes[0].config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another mailnode process"), "{err}");
    // The first node is unharmed.
    c.api(1).wait_ready(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_is_a_clear_error() {
    let c = TestCluster::new(23, 1, Tuning::default());
    let _squatter = std::net::TcpListener::bind("127.0.23.1:8080").unwrap();
    let out = mailnode()
        .arg("--config")
        .arg(&c.nodes[0].config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on 127.0.23.1:8080"), "{err}");
}

/// `mailnode --dev` uses the dev port map (8080/7400 on 127.0.0.1): this is the only test that
/// binds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_starts_with_embedded_defaults_and_reuses_its_data() {
    let cwd = tempfile::tempdir().unwrap();
    let start = || {
        let mut child = mailnode()
            .arg("--dev")
            .current_dir(cwd.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut printed = String::new();
        while !printed.contains("admin token") {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                panic!("the dev node exited early (is another dev node using 127.0.0.1:8080/7400?): {printed}{err}");
            }
            printed.push_str(&line);
        }
        (child, printed)
    };
    let (mut child, printed) = start();
    let token = std::fs::read_to_string(cwd.path().join("dev-data/admin.token"))
        .unwrap()
        .trim()
        .to_string();
    assert!(printed.contains(&token), "the token is printed: {printed}");
    assert!(printed.contains("https://127.0.0.1:8080"), "{printed}");
    let api =
        Api::new("127.0.0.1:8080", &cwd.path().join("dev-data/tls/ca.pem")).with_token(&token);
    api.wait_ready(Duration::from_secs(20)).await;
    assert_eq!(
        api.call("POST", "/api/domains", Some(json!({"name": "dev.example"})))
            .await
            .0,
        200
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    if !status.success() {
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        panic!("the dev node exited with {status:?} after SIGTERM:\n{err}");
    }

    // Second start: same token, same certificate, same directory.
    let (mut child, _) = start();
    let token2 = std::fs::read_to_string(cwd.path().join("dev-data/admin.token"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(token, token2);
    let api =
        Api::new("127.0.0.1:8080", &cwd.path().join("dev-data/tls/ca.pem")).with_token(&token);
    api.wait_ready(Duration::from_secs(20)).await;
    let (s, v) = api.call("GET", "/api/domains", None).await;
    assert_eq!(s, 200);
    assert_eq!(v[0]["name"], "dev.example", "{v}");
    let _ = child.kill();
    let _ = child.wait();
}
