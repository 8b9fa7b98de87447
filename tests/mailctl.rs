//! `mailctl` end to end against a real node: the directory verbs, their errors and exit codes,
//! bulk import from CSV and LDIF, and the transparent rehash of imported password hashes.

mod common;

use std::time::Duration;

use base64::Engine;
use common::ctl::{p, stderr, Ctl};
use common::{TestCluster, Tuning};
use sha1::Digest;

fn ssha(password: &str, salt: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(password.as_bytes());
    h.update(salt);
    let mut raw = h.finalize().to_vec();
    raw.extend_from_slice(salt);
    format!(
        "{{SSHA}}{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

async fn one_node(net: u8) -> TestCluster {
    let mut c = TestCluster::new(net, 1, Tuning::default());
    c.node(1).start();
    c.api(1).wait_ready(Duration::from_secs(20)).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_verbs_their_errors_and_exit_codes() {
    let c = one_node(31).await;
    let ctl = Ctl::new(&c, 1);
    let pw = ctl.file("pw.txt", "correct horse\n");

    ctl.expect(0, &["domain", "add", "example.org"]);
    let dup = ctl.run(&["domain", "add", "example.org"]);
    assert_eq!(
        dup.status.code(),
        Some(1),
        "duplicate domain: {}",
        stderr(&dup)
    );
    assert!(stderr(&dup).contains("example.org"));

    ctl.expect(
        0,
        &[
            "user",
            "add",
            "alice@example.org",
            "--name",
            "Alice",
            "--quota",
            "2G",
            "--password-file",
            p(&pw),
        ],
    );
    let out = ctl.run_stdin(
        &["user", "add", "bob@example.org", "--password-stdin"],
        "bob's password\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Bad input: each a clear error, nothing half-applied.
    for (args, what) in [
        (
            vec![
                "user",
                "add",
                "alice@example.org",
                "--password-file",
                p(&pw),
            ],
            "taken",
        ),
        (
            vec!["user", "add", "not-an-address", "--password-file", p(&pw)],
            "@",
        ),
        (
            vec![
                "user",
                "add",
                "carol@unknown.example",
                "--password-file",
                p(&pw),
            ],
            "unknown.example",
        ),
    ] {
        let out = ctl.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).to_lowercase().contains(what),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // Passwords are never arguments; usage errors exit 2.
    assert_eq!(
        ctl.run(&["user", "add", "dave@example.org", "--password", "x"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(ctl.run(&["user", "add"]).status.code(), Some(2));
    let empty = ctl.file("empty.txt", "");
    assert_eq!(
        ctl.run(&[
            "user",
            "add",
            "dave@example.org",
            "--password-file",
            p(&empty)
        ])
        .status
        .code(),
        Some(2)
    );
    let users = ctl.json(&["user", "list"]);
    assert_eq!(users.as_array().unwrap().len(), 2, "{users}");

    let alice = ctl.json(&["user", "show", "alice@example.org"]);
    assert_eq!(alice["display_name"], "Alice");
    assert_eq!(alice["quota_bytes"], 2u64 << 30);
    assert!(
        alice.get("password_hash").is_none(),
        "hashes never leave the server: {alice}"
    );
    ctl.expect(
        0,
        &[
            "user",
            "check-password",
            "alice@example.org",
            "--password-file",
            p(&pw),
        ],
    );
    let wrong = ctl.file("wrong.txt", "nope\n");
    ctl.expect(
        1,
        &[
            "user",
            "check-password",
            "alice@example.org",
            "--password-file",
            p(&wrong),
        ],
    );
    ctl.expect(
        0,
        &[
            "user",
            "passwd",
            "alice@example.org",
            "--password-file",
            p(&wrong),
        ],
    );
    ctl.expect(
        0,
        &[
            "user",
            "check-password",
            "alice@example.org",
            "--password-file",
            p(&wrong),
        ],
    );
    ctl.expect(
        0,
        &[
            "user",
            "set",
            "alice@example.org",
            "--pref",
            "signature=-- Alice",
            "--disable",
        ],
    );
    let alice = ctl.json(&["user", "show", "alice@example.org"]);
    assert_eq!(alice["prefs"]["signature"], "-- Alice");
    assert_eq!(alice["enabled"], false);
    ctl.expect(
        1,
        &[
            "user",
            "check-password",
            "alice@example.org",
            "--password-file",
            p(&wrong),
        ],
    );
    ctl.expect(0, &["user", "set", "alice@example.org", "--enable"]);

    // Aliases, lists, loops and resolution.
    ctl.expect(
        0,
        &[
            "alias",
            "add",
            "sales@example.org",
            "alice@example.org",
            "partner@remote.example",
        ],
    );
    ctl.expect(
        0,
        &[
            "list",
            "add",
            "team@example.org",
            "alice@example.org",
            "bob@example.org",
            "sales@example.org",
        ],
    );
    ctl.expect(0, &["alias", "add", "a@example.org", "team@example.org"]);
    let looped = ctl.run(&[
        "list",
        "members",
        "team@example.org",
        "--add",
        "a@example.org",
    ]);
    assert_eq!(looped.status.code(), Some(1), "an alias loop was accepted");
    assert!(stderr(&looped).contains("loop"), "{}", stderr(&looped));
    let r = ctl.json(&["resolve", "a@example.org"]);
    let mut mailboxes: Vec<String> = r["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    mailboxes.sort();
    assert_eq!(mailboxes, ["alice@example.org", "bob@example.org"], "{r}");
    assert_eq!(r["forwards"][0], "partner@remote.example", "{r}");
    ctl.expect(1, &["resolve", "nobody@example.org"]);

    // Removing what something still points at is refused; in order, it works.
    ctl.expect(1, &["user", "remove", "bob@example.org"]);
    ctl.expect(1, &["domain", "remove", "example.org"]);
    ctl.expect(0, &["alias", "remove", "a@example.org"]);
    ctl.expect(0, &["list", "remove", "team@example.org"]);
    ctl.expect(0, &["user", "remove", "bob@example.org"]);

    // Status and membership.
    let table = ctl.ok(&["status"]);
    assert!(table.contains("n1"), "{table}");
    let st = ctl.json(&["status"]);
    assert_eq!(st["leader"], 1);
    let last = ctl.run(&["node", "remove", "1"]);
    assert_eq!(last.status.code(), Some(1));
    assert!(stderr(&last).contains("last voter"), "{}", stderr(&last));

    // A wrong token fails; an unreachable cluster exits 3.
    let bad_token = ctl.file("bad.token", "not-the-token\n");
    let wrong = Ctl {
        token: bad_token,
        ..Ctl::new(&c, 1)
    };
    let out = wrong.run(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("token"), "{}", stderr(&out));
    let unreachable = Ctl {
        server: "127.0.31.9:8080".to_string(),
        ..Ctl::new(&c, 1)
    };
    let out = unreachable.run(&["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_keeps_good_lines_and_reports_bad_ones_and_legacy_hashes_are_rehashed_at_login() {
    let c = one_node(32).await;
    let ctl = Ctl::new(&c, 1);
    ctl.expect(0, &["domain", "add", "example.org"]);
    ctl.expect(
        0,
        &[
            "user",
            "add",
            "taken@example.org",
            "--password-file",
            p(&ctl.file("pw", "x\n")),
        ],
    );

    let csv = ctl.file(
        "users.csv",
        "address,display_name,password,quota,aliases\n\
         u1@example.org,User One,pw1,1G,one@example.org\n\
         not an address,Broken,pw,,\n\
         taken@example.org,Duplicate,pw,,\n\
         u2@example.org,User Two,pw2,,\n",
    );
    let out = ctl.run(&["user", "import", p(&csv)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("users.csv:3"),
        "the unreadable line is named: {err}"
    );
    assert!(
        err.contains("users.csv:4"),
        "the refused duplicate is named: {err}"
    );
    for u in ["u1@example.org", "u2@example.org"] {
        ctl.expect(0, &["user", "show", u]);
    }
    assert_eq!(
        ctl.json(&["resolve", "one@example.org"])["mailboxes"][0],
        "u1@example.org"
    );
    assert_eq!(
        ctl.json(&["user", "show", "taken@example.org"])["display_name"],
        "",
        "the duplicate line changed nothing"
    );

    // LDIF from an old directory: folded lines, base64 values, an {SSHA} hash, a new domain.
    let hash = ssha("secret", b"saltsalt");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&hash);
    let ldif = format!(
        "# export\n\
         dn: ou=people,dc=legacy,dc=example\n\
         objectClass: organizationalUnit\n\
         ou: people\n\
         \n\
         dn: uid=legacy,ou=people,dc=legacy,dc=example\n\
         objectClass: inetOrgPerson\n\
         mail: legacy@legacy.example\n\
         displayName: Legacy\n  User\n\
         userPassword:: {b64}\n\
         mailAlternateAddress: old@legacy.example\n\
         \n\
         dn: uid=nomail,ou=people,dc=legacy,dc=example\n\
         changetype: delete\n"
    );
    let file = ctl.file("old.ldif", &ldif);
    let out = ctl.run(&["user", "import", p(&file), "--create-domains"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the delete record is an error: {}",
        stderr(&out)
    );
    let user = ctl.json(&["user", "show", "legacy@legacy.example"]);
    assert_eq!(user["display_name"], "Legacy User", "{user}");
    assert_eq!(user["password_scheme"], "Ssha", "{user}");

    // A wrong password does not upgrade anything; the right one logs in and rehashes.
    ctl.expect(
        1,
        &[
            "user",
            "check-password",
            "legacy@legacy.example",
            "--password-file",
            p(&ctl.file("w", "wrong\n")),
        ],
    );
    assert_eq!(
        ctl.json(&["user", "show", "legacy@legacy.example"])["password_scheme"],
        "Ssha"
    );
    let right = ctl.file("right", "secret\n");
    ctl.expect(
        0,
        &[
            "user",
            "check-password",
            "legacy@legacy.example",
            "--password-file",
            p(&right),
        ],
    );
    assert_eq!(
        ctl.json(&["user", "show", "legacy@legacy.example"])["password_scheme"],
        "Argon2id"
    );
    ctl.expect(
        0,
        &[
            "user",
            "check-password",
            "legacy@legacy.example",
            "--password-file",
            p(&right),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_init_certificates_form_a_cluster_with_node_add() {
    let mut c = TestCluster::new(33, 2, Tuning::default());
    // Replace the harness's PKI with the one `mailctl cluster init` makes.
    std::fs::remove_dir_all(&c.pki).unwrap();
    let ctl = Ctl::new(&c, 1);
    ctl.expect(
        0,
        &[
            "cluster",
            "init",
            "--out",
            p(&c.pki),
            "--node",
            "n1=127.0.33.1",
            "--node",
            "n2=127.0.33.2",
        ],
    );
    // Never overwrites a CA.
    ctl.expect(
        2,
        &[
            "cluster",
            "init",
            "--out",
            p(&c.pki),
            "--node",
            "n3=127.0.33.3",
        ],
    );
    c.node(1).start();
    c.node(2).start();
    c.api(1).wait_ready(Duration::from_secs(20)).await;

    ctl.expect(
        0,
        &[
            "node",
            "add",
            "2",
            "--name",
            "n2",
            "--raft",
            "127.0.33.2:7400",
            "--api",
            "127.0.33.2:8080",
        ],
    );
    let nodes = ctl.json(&["node", "list"]);
    assert_eq!(nodes.as_array().unwrap().len(), 2, "{nodes}");
    assert!(
        nodes.as_array().unwrap().iter().all(|n| n["voter"] == true),
        "{nodes}"
    );
    // A write through node 2 is read on node 1.
    let ctl2 = Ctl::new(&c, 2);
    ctl2.expect(0, &["domain", "add", "joined.example"]);
    let domains = ctl.json(&["domain", "list"]);
    assert_eq!(domains[0]["name"], "joined.example", "{domains}");
}
