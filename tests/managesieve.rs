//! ManageSieve (RFC 5804) end to end on a real node (network 127.0.84.0/24), plaintext login
//! off as in production: raw bytes for the protocol (greeting capabilities, refusals before
//! TLS with ENCRYPT-NEEDED, STARTTLS and the re-issued capabilities, AUTHENTICATE PLAIN with an
//! initial response and with a literal continuation, LOGIN, a wrong password, bad commands,
//! a script with a syntax error refused with its line and column and not stored, an
//! over-size literal refused with QUOTA/MAXSIZE and skipped whole, HAVESPACE, SETACTIVE,
//! LISTSCRIPTS, GETSCRIPT, RENAMESCRIPT, DELETESCRIPT of the active script (ACTIVE) and of a
//! missing one (NONEXISTENT), QUOTA/MAXSCRIPTS, UNAUTHENTICATE, NOOP tags, LOGOUT), then the
//! Debian client `sieve-connect` (STARTTLS verified against the test CA) uploads, lists,
//! activates, downloads, deactivates and deletes a script. SIGTERM gives a session its `BYE`.
//!
//! Every wait is bounded; the node is killed when the test ends.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::line::{bounded, Lines, Tls};
use common::{configure_store_node, TestCluster, Tuning};

const NET: u8 = 84;
const ALICE: &str = "alice@example.org";
const ALICE_PW: &str = "alice pass";

crate::line_client!(
    /// A raw ManageSieve client: lines in, bytes out, every read bounded.
    Client
);

impl Client {
    /// Connects and reads the greeting (capabilities and OK).
    async fn connect(addr: &str) -> (Client, Vec<String>) {
        let mut c = Client(Lines::connect(addr).await);
        let (caps, ok) = c.response().await;
        assert!(ok.starts_with("OK"), "greeting: {caps:?} {ok}");
        (c, caps)
    }

    /// STARTTLS, the handshake, and the capabilities the server must send again.
    async fn starttls(mut self, tls: &Tls) -> (Client, Vec<String>) {
        let r = self.cmd("STARTTLS").await;
        assert!(r.starts_with("OK"), "{r}");
        let mut c = Client(self.0.upgrade(tls).await);
        let (caps, ok) = c.response().await;
        assert!(ok.starts_with("OK"), "after STARTTLS: {caps:?} {ok}");
        (c, caps)
    }

    /// Lines up to and including the final OK/NO/BYE; literals are read whole.
    async fn response(&mut self) -> (Vec<String>, String) {
        let mut lines = Vec::new();
        loop {
            let l = self.line().await;
            if l.is_empty() || l.starts_with("OK") || l.starts_with("NO") || l.starts_with("BYE") {
                return (lines, l);
            }
            if let Some(n) = l.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                let n: usize = n.parse().unwrap();
                let data = self.octets(n).await;
                let rest = self.line().await;
                assert_eq!(rest, "", "text after a literal");
                lines.push(String::from_utf8(data).unwrap());
                continue;
            }
            lines.push(l);
        }
    }

    /// Sends a command and returns its final line.
    async fn cmd(&mut self, line: &str) -> String {
        self.send(line).await;
        self.response().await.1
    }

    async fn put(&mut self, name: &str, script: &str) -> String {
        self.send_raw(
            format!("PUTSCRIPT \"{name}\" {{{}+}}\r\n{script}\r\n", script.len()).as_bytes(),
        )
        .await;
        self.response().await.1
    }

    async fn login(&mut self, user: &str, pass: &str) -> String {
        self.cmd(&format!("AUTHENTICATE \"PLAIN\" \"{}\"", plain(user, pass)))
            .await
    }
}

fn plain(user: &str, pass: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"))
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn configure(c: &TestCluster) {
    let ip = &c.nodes[0].ip;
    let mailstore = format!("managesieve_listen = \"{ip}:4190\"\nallow_plaintext_login = false\n");
    let sections = "[managesieve]
max_errors = 30
auth_failure_delay_ms = 50
auth_failure_delay_max_ms = 100
";
    configure_store_node(c, "", &mailstore, sections);
}

const GOOD: &str = "require [\"fileinto\"];\r\nif header :contains \"subject\" \"spam\" {\r\n  fileinto \"Junk\";\r\n}\r\n";
const BROKEN: &str =
    "require \"fileinto\";\r\nif header :contains \"subject\" {\r\n  keep;\r\n}\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managesieve_end_to_end() {
    let mut c = TestCluster::new(NET, 1, Tuning::default());
    configure(&c);
    c.node(1).start();
    let api = c.api(1);
    api.wait_ready(Duration::from_secs(20)).await;
    let ip = c.nodes[0].ip.clone();
    let addr = format!("{ip}:4190");
    let ca = c.pki.join("ca.pem");
    let tls = Tls::new(&ca, &ip);
    api.add_users("example.org", &[(ALICE, ALICE_PW)]).await;

    Box::pin(raw_protocol(&addr, &tls)).await;
    Box::pin(sieve_connect_flow(&ip, &ca, c.tmp.path())).await;

    // The sessions above are in the metrics: connections, commands by name, errors, logins.
    let (status, body) = api.call("GET", "/metrics", None).await;
    assert_eq!(status, 200, "/metrics {body}");
    let text = body.as_str().expect("text exposition");
    for series in [
        r#"mailnode_listener_connections_total{listener="managesieve"}"#,
        r#"mailnode_managesieve_commands_total{command="PUTSCRIPT"}"#,
        r#"mailnode_managesieve_commands_total{command="other"}"#,
        r#"mailnode_managesieve_command_duration_seconds_count{command="LISTSCRIPTS"}"#,
        "mailnode_managesieve_errors_total ",
        r#"mailnode_login_failures_total{protocol="managesieve"} 1"#,
    ] {
        assert!(text.contains(series), "{series} not in /metrics");
    }

    // SIGTERM: an authenticated session gets its BYE.
    let (client, _) = Client::connect(&addr).await;
    let (mut s, _) = client.starttls(&tls).await;
    assert!(s.login(ALICE, ALICE_PW).await.starts_with("OK"));
    c.node(1).signal(nix::sys::signal::Signal::SIGTERM);
    let bye = s.line().await;
    assert_eq!(bye, "BYE \"server shutting down\"");
    assert_eq!(s.line().await, "", "expected EOF after BYE");
}

async fn raw_protocol(addr: &str, tls: &Tls) {
    // The greeting: capabilities without SASL mechanisms before TLS, STARTTLS offered.
    let (mut p, caps) = Client::connect(addr).await;
    for want in [
        "\"IMPLEMENTATION\" \"Mailnode\"",
        "\"SASL\" \"\"",
        "\"STARTTLS\"",
        "\"VERSION\" \"1.0\"",
        "\"MAXREDIRECTS\" \"4\"",
    ] {
        assert!(caps.iter().any(|c| c == want), "{want} not in {caps:?}");
    }
    let sieve = caps.iter().find(|c| c.starts_with("\"SIEVE\"")).unwrap();
    for ext in [
        "fileinto",
        "vacation",
        "variables",
        "imap4flags",
        "envelope",
    ] {
        assert!(sieve.split([' ', '"']).any(|e| e == ext), "{ext}: {sieve}");
    }
    assert!(!caps.iter().any(|c| c.contains("NOTIFY")), "{caps:?}");

    // Before TLS and before login.
    let r = p.login(ALICE, ALICE_PW).await;
    assert!(r.starts_with("NO (ENCRYPT-NEEDED)"), "{r}");
    let r = p.cmd("LISTSCRIPTS").await;
    assert!(
        r.starts_with("NO") && r.contains("AUTHENTICATE first"),
        "{r}"
    );
    let r = p.cmd("PUTSCRIPT \"x\" \"keep;\"").await;
    assert!(r.starts_with("NO"), "{r}");
    let r = p.cmd("FROB").await;
    assert!(r.starts_with("NO") && r.contains("unknown command"), "{r}");
    let r = p.cmd("GETSCRIPT \"unterminated").await;
    assert!(r.starts_with("NO") && r.contains("unterminated"), "{r}");
    p.send_raw(b"GETSCRIPT {2+}\r\n\xff\xfe\r\n").await;
    let (_, r) = p.response().await;
    assert!(r.starts_with("NO") && r.contains("UTF-8"), "{r}");
    let r = p.cmd("DELETESCRIPT \"a\0b\"").await;
    assert!(r.starts_with("NO") && r.contains("NUL"), "{r}");
    let r = p.cmd("NOOP \"t1\"").await;
    assert_eq!(r, "OK (TAG \"t1\") \"Done\"");

    // STARTTLS: the capabilities again, now with SASL mechanisms and without STARTTLS.
    let (mut p, caps) = p.starttls(tls).await;
    assert!(
        caps.iter().any(|c| c == "\"SASL\" \"PLAIN LOGIN\""),
        "{caps:?}"
    );
    assert!(!caps.iter().any(|c| c == "\"STARTTLS\""), "{caps:?}");
    let r = p.cmd("STARTTLS").await;
    assert!(r.starts_with("NO"), "{r}");

    // A wrong password, then PLAIN with a literal continuation.
    let r = p.login(ALICE, "wrong").await;
    assert!(r.starts_with("NO"), "{r}");
    p.send("AUTHENTICATE \"PLAIN\"").await;
    assert_eq!(p.line().await, "\"\"", "empty PLAIN challenge");
    let ir = plain(ALICE, ALICE_PW);
    p.send_raw(format!("{{{}+}}\r\n{ir}\r\n", ir.len()).as_bytes())
        .await;
    let (_, r) = p.response().await;
    assert!(r.starts_with("OK"), "{r}");
    let r = p.cmd("AUTHENTICATE \"PLAIN\"").await;
    assert!(r.starts_with("NO"), "{r}");
    let (lines, r) = {
        p.send("CAPABILITY").await;
        p.response().await
    };
    assert!(r.starts_with("OK"), "{r}");
    assert!(
        lines.iter().any(|c| c == &format!("\"OWNER\" \"{ALICE}\"")),
        "{lines:?}"
    );

    // A script that does not compile: NO with its line and column, and it is not stored.
    let r = p.put("broken", BROKEN).await;
    assert!(r.starts_with("NO \"line 2, column"), "{r}");
    let r = p
        .cmd(&format!("CHECKSCRIPT {{{}+}}\r\n{BROKEN}", BROKEN.len()))
        .await;
    assert!(r.starts_with("NO \"line 2, column"), "{r}");
    let r = p.cmd("CHECKSCRIPT \"keep;\"").await;
    assert_eq!(r, "OK");
    let r = p
        .cmd("PUTSCRIPT \"x\" \"require \\\"nosuchext\\\";\"")
        .await;
    assert!(r.starts_with("NO \"line 1, column"), "{r}");
    p.send("LISTSCRIPTS").await;
    let (lines, r) = p.response().await;
    assert_eq!((lines.len(), r.as_str()), (0, "OK"), "{lines:?}");

    // An over-size literal: refused, skipped whole (its content is never read as commands).
    let huge = "DELETESCRIPT \"good\"\r\n".repeat(4000);
    let r = p.put("huge", &huge).await;
    assert!(r.starts_with("NO (QUOTA/MAXSIZE)"), "{r}");
    assert_eq!(p.cmd("NOOP").await, "OK \"Done\"");
    let r = p.cmd("HAVESPACE \"huge\" 1000000").await;
    assert!(r.starts_with("NO (QUOTA/MAXSIZE)"), "{r}");
    assert_eq!(p.cmd("HAVESPACE \"good\" 1000").await, "OK");

    // Store, activate, list, get, rename, delete.
    assert_eq!(p.put("good", GOOD).await, "OK");
    assert_eq!(p.put("other", "keep;\r\n").await, "OK");
    let r = p.cmd("SETACTIVE \"nope\"").await;
    assert!(r.starts_with("NO (NONEXISTENT)"), "{r}");
    assert_eq!(p.cmd("SETACTIVE \"good\"").await, "OK");
    p.send("LISTSCRIPTS").await;
    let (mut lines, r) = p.response().await;
    lines.sort();
    assert_eq!(r, "OK");
    assert_eq!(lines, ["\"good\" ACTIVE", "\"other\""]);
    p.send("GETSCRIPT \"good\"").await;
    let (lines, r) = p.response().await;
    assert_eq!(r, "OK");
    assert_eq!(lines, [GOOD]);
    let r = p.cmd("GETSCRIPT \"nope\"").await;
    assert!(r.starts_with("NO (NONEXISTENT)"), "{r}");
    let r = p.cmd("DELETESCRIPT \"good\"").await;
    assert!(r.starts_with("NO (ACTIVE)"), "{r}");
    let r = p.cmd("DELETESCRIPT \"nope\"").await;
    assert!(r.starts_with("NO (NONEXISTENT)"), "{r}");
    let r = p.cmd("RENAMESCRIPT \"good\" \"other\"").await;
    assert!(r.starts_with("NO (ALREADYEXISTS)"), "{r}");
    let r = p.cmd("RENAMESCRIPT \"good\" \"bad\u{7}name\"").await;
    assert!(r.starts_with("NO"), "{r}");
    assert_eq!(p.cmd("RENAMESCRIPT \"good\" \"renamed\"").await, "OK");
    p.send("LISTSCRIPTS").await;
    let (mut lines, _) = p.response().await;
    lines.sort();
    assert_eq!(lines, ["\"other\"", "\"renamed\" ACTIVE"]);
    assert_eq!(p.cmd("SETACTIVE \"\"").await, "OK");
    assert_eq!(p.cmd("DELETESCRIPT \"renamed\"").await, "OK");

    // The script limit: QUOTA/MAXSCRIPTS for a new name, replacing is still fine.
    for i in 1..mailnode::directory::MAX_SIEVE_SCRIPTS {
        assert_eq!(p.put(&format!("s{i}"), "keep;").await, "OK", "script {i}");
    }
    let r = p.put("one-too-many", "keep;").await;
    assert!(r.starts_with("NO (QUOTA/MAXSCRIPTS)"), "{r}");
    let r = p.cmd("HAVESPACE \"one-too-many\" 10").await;
    assert!(r.starts_with("NO (QUOTA/MAXSCRIPTS)"), "{r}");
    assert_eq!(p.put("s1", "discard;").await, "OK");
    for i in 1..mailnode::directory::MAX_SIEVE_SCRIPTS {
        assert_eq!(p.cmd(&format!("DELETESCRIPT \"s{i}\"")).await, "OK");
    }
    assert_eq!(p.cmd("DELETESCRIPT \"other\"").await, "OK");

    // UNAUTHENTICATE, then LOGIN with its two challenges.
    assert_eq!(p.cmd("UNAUTHENTICATE").await, "OK \"Unauthenticated\"");
    let r = p.cmd("LISTSCRIPTS").await;
    assert!(r.starts_with("NO"), "{r}");
    p.send("AUTHENTICATE \"LOGIN\"").await;
    assert_eq!(p.line().await, format!("\"{}\"", b64("Username:")));
    p.send(&format!("\"{}\"", b64(ALICE))).await;
    assert_eq!(p.line().await, format!("\"{}\"", b64("Password:")));
    p.send(&format!("\"{}\"", b64(ALICE_PW))).await;
    let (_, r) = p.response().await;
    assert!(r.starts_with("OK"), "{r}");
    // A cancelled exchange.
    assert_eq!(p.cmd("UNAUTHENTICATE").await, "OK \"Unauthenticated\"");
    p.send("AUTHENTICATE \"PLAIN\"").await;
    assert_eq!(p.line().await, "\"\"");
    p.send("\"*\"").await;
    let (_, r) = p.response().await;
    assert!(r.starts_with("NO") && r.contains("cancelled"), "{r}");
    let r = p.cmd("LOGOUT").await;
    assert!(r.starts_with("OK"), "{r}");
    assert_eq!(p.line().await, "", "expected EOF after LOGOUT");

    // Too many errors end the session with BYE.
    let (mut p, _) = Client::connect(addr).await;
    let mut last = String::new();
    for _ in 0..40 {
        last = p.cmd("FROB").await;
        if last.starts_with("BYE") || last.is_empty() {
            break;
        }
    }
    assert!(last.starts_with("BYE"), "{last}");
}

/// Runs sieve-connect with alice's password on file descriptor 0.
fn sieve_connect(ip: &str, ca: &Path, args: &[&str]) -> (bool, String) {
    let mut child = Command::new("sieve-connect")
        .args([
            "--server",
            ip,
            "--port",
            "4190",
            "--user",
            ALICE,
            "--passwordfd",
            "0",
        ])
        .arg("--tlscafile")
        .arg(ca)
        .args(["--authmech", "PLAIN"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sieve-connect must be installed (Debian package sieve-connect)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{ALICE_PW}\n").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn sieve_connect_run(ip: &str, ca: &Path, args: &[&str]) -> String {
    let (ip, ca) = (ip.to_string(), ca.to_path_buf());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (ok, text) = bounded(
        "sieve-connect",
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            sieve_connect(&ip, &ca, &args)
        }),
    )
    .await
    .unwrap();
    assert!(ok, "sieve-connect failed:\n{text}");
    text
}

async fn sieve_connect_flow(ip: &str, ca: &Path, tmp: &Path) {
    let local = tmp.join("vacation.sieve");
    std::fs::write(&local, GOOD).unwrap();
    let local_s = local.to_str().unwrap();
    sieve_connect_run(
        ip,
        ca,
        &[
            "--upload",
            "--localsieve",
            local_s,
            "--remotesieve",
            "vacation",
        ],
    )
    .await;
    let list = sieve_connect_run(ip, ca, &["--list"]).await;
    assert_eq!(listed(&list), [("vacation".to_string(), false)], "{list}");
    sieve_connect_run(ip, ca, &["--activate", "--remotesieve", "vacation"]).await;
    let list = sieve_connect_run(ip, ca, &["--list"]).await;
    assert_eq!(listed(&list), [("vacation".to_string(), true)], "{list}");
    let back = tmp.join("back.sieve");
    sieve_connect_run(
        ip,
        ca,
        &[
            "--download",
            "--remotesieve",
            "vacation",
            "--localsieve",
            back.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(std::fs::read_to_string(&back).unwrap(), GOOD);
    // A script that does not compile is refused with its position, and not stored.
    let broken = tmp.join("broken.sieve");
    std::fs::write(&broken, BROKEN).unwrap();
    let (ok, text) = {
        let (ip, ca, b) = (ip.to_string(), ca.to_path_buf(), broken.clone());
        bounded(
            "sieve-connect",
            tokio::task::spawn_blocking(move || {
                sieve_connect(
                    &ip,
                    &ca,
                    &[
                        "--upload",
                        "--localsieve",
                        b.to_str().unwrap(),
                        "--remotesieve",
                        "broken",
                    ],
                )
            }),
        )
        .await
        .unwrap()
    };
    assert!(!ok && text.contains("line 2, column"), "{text}");
    sieve_connect_run(ip, ca, &["--deactivate"]).await;
    sieve_connect_run(ip, ca, &["--delete", "--remotesieve", "vacation"]).await;
    let list = sieve_connect_run(ip, ca, &["--list"]).await;
    assert_eq!(listed(&list), [], "{list}");
}

/// The scripts in sieve-connect's `--list` output (`"name"` or `"name" ACTIVE` lines).
fn listed(out: &str) -> Vec<(String, bool)> {
    out.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix('"')?;
            let (name, after) = rest.split_once('"')?;
            Some((name.to_string(), after.trim() == "ACTIVE"))
        })
        .collect()
}
