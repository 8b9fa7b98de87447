//! `mailctl policy …` end to end against a real 3-node cluster on 127.0.90.x: settings and
//! maps stored and shown, bad documents refused with `name:line` while the policy in force
//! stays, a referenced map that cannot be deleted, compare-and-set conflicts, concurrent edits
//! of different maps that both survive, and the same version on every node.

mod common;

use std::time::{Duration, Instant};

use common::ctl::{check, p, Ctl};
use common::{TestCluster, Tuning};
use serde_json::Value;

/// `mailctl --json policy show`.
fn show(ctl: &Ctl) -> Value {
    ctl.json(&["policy", "show"])
}

fn version(show: &Value) -> u64 {
    show["version"].as_u64().unwrap()
}

const SETTINGS: &str = r#"[content]
tag_score = 4.0
header_checks = "pcre:spam_headers"
"#;

const HEADERS: &str = "# SecuritySage-style header checks\n\
/^Subject: .*viagra/i REJECT no thanks\n\
/^X-Mailer: bulk/ WARN bulk mailer\n";

const BODY: &str = "/click here now/ REJECT\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_through_mailctl_on_a_three_node_cluster() {
    let tuning = Tuning {
        snapshot_every: 20,
        keep_after_snapshot: 0,
        ..Tuning::default()
    };
    let mut c = TestCluster::new(90, 3, tuning);
    c.form().await;
    for i in 1..=3 {
        c.api(i).wait_ready(Duration::from_secs(20)).await;
    }
    let ctl = Ctl::new(&c, 1);

    // Nothing stored yet: version 0, the defaults.
    let empty = show(&ctl);
    assert_eq!(empty["version"], 0, "{empty}");
    let table = ctl.ok(&["policy", "show"]);
    assert!(table.contains("built-in defaults"), "{table}");

    // Settings that name a map that is not stored yet are refused, nothing stored.
    let settings = ctl.file("policy.toml", SETTINGS);
    let (_, err) = ctl.expect(1, &["policy", "set", p(&settings)]);
    assert!(
        err.contains("policy:0:") && err.contains("spam_headers"),
        "{err}"
    );
    assert_eq!(show(&ctl), empty);

    // check: against stored maps (none) it fails; with --map it compiles; nothing stored.
    let headers = ctl.file("headers.pcre", HEADERS);
    ctl.expect(1, &["policy", "check", p(&settings)]);
    let out = ctl.ok(&[
        "policy",
        "check",
        p(&settings),
        "--map",
        &format!("spam_headers={}", p(&headers)),
    ]);
    assert!(out.contains("compiles"), "{out}");
    assert_eq!(show(&ctl), empty);

    // The map first, then the settings that use it.
    let out = ctl.ok(&["policy", "map", "put", "spam_headers", p(&headers)]);
    assert!(out.contains("map spam_headers stored"), "{out}");
    let out = ctl.ok(&["policy", "set", p(&settings)]);
    assert!(out.contains("settings stored"), "{out}");
    let shown = show(&ctl);
    let v1 = version(&shown);
    assert!(v1 > 0, "{shown}");
    assert_eq!(shown["settings"], SETTINGS);
    assert_eq!(
        shown["maps"],
        serde_json::json!({"spam_headers": {"lines": 3, "bytes": HEADERS.len()}})
    );
    let table = ctl.ok(&["policy", "show"]);
    assert!(table.contains(&format!("version  {v1}")), "{table}");
    assert!(table.contains("spam_headers"), "{table}");
    assert!(
        table.contains("header_checks = \"pcre:spam_headers\""),
        "{table}"
    );
    let list = ctl.ok(&["policy", "map", "list"]);
    assert!(list.starts_with("MAP"), "{list}");
    assert_eq!(ctl.ok(&["policy", "map", "show", "spam_headers"]), HEADERS);
    let map = ctl.json(&["policy", "map", "show", "spam_headers"]);
    assert_eq!(
        (map["version"].as_u64(), map["lines"].as_u64()),
        (Some(v1), Some(3))
    );

    // The same settings again change nothing.
    let out = ctl.ok(&["policy", "set", p(&settings)]);
    assert!(out.contains("nothing changed"), "{out}");
    assert_eq!(version(&show(&ctl)), v1);

    // A bad map is refused with name:line; the old one stays in force.
    let bad = ctl.file("bad.pcre", "/^Subject: ok/ WARN\n/^From: x/ FROBNICATE\n");
    let (_, err) = ctl.expect(1, &["policy", "map", "put", "spam_headers", p(&bad)]);
    assert!(err.contains("spam_headers:2:"), "{err}");
    assert!(err.contains("unchanged"), "{err}");
    assert_eq!(show(&ctl), shown);
    // So is a bad settings file, with its line.
    let bad_settings = ctl.file("bad.toml", "[content]\ntag_score = 4.0\nfrobnicate = 1\n");
    let (_, err) = ctl.expect(1, &["policy", "set", p(&bad_settings)]);
    // `policy:LINE:` with a line; which line is antiube::policy's business (its own tests).
    let line = err
        .strip_prefix("mailctl: policy:")
        .and_then(|rest| rest.split_once(':'))
        .and_then(|(n, _)| n.parse::<usize>().ok());
    assert!(
        line.is_some_and(|n| n > 0) && err.contains("frobnicate"),
        "{err}"
    );
    let (_, err) = ctl.expect(
        1,
        &[
            "policy",
            "check",
            p(&settings),
            "--map",
            &format!("spam_headers={}", p(&bad)),
        ],
    );
    assert!(err.contains("spam_headers:2:"), "{err}");
    assert_eq!(show(&ctl), shown);

    // A referenced map cannot be deleted; an unknown one is not found.
    let (_, err) = ctl.expect(1, &["policy", "map", "rm", "spam_headers"]);
    assert!(
        err.contains("in use") && err.contains("header_checks"),
        "{err}"
    );
    let (_, err) = ctl.expect(1, &["policy", "map", "rm", "nope"]);
    assert!(err.contains("no policy map"), "{err}");
    assert_eq!(show(&ctl), shown);

    // Compare-and-set: a change based on an old version is refused.
    let body = ctl.file("body.re", BODY);
    ctl.ok(&[
        "policy",
        "map",
        "put",
        "body",
        p(&body),
        "--expect-version",
        &v1.to_string(),
    ]);
    let v2 = version(&show(&ctl));
    assert!(v2 > v1);
    let (_, err) = ctl.expect(
        1,
        &[
            "policy",
            "set",
            p(&settings),
            "--expect-version",
            &v1.to_string(),
        ],
    );
    assert!(err.contains("changed since it was read"), "{err}");
    assert!(err.contains("mailctl policy show"), "{err}");
    let (_, err) = ctl.expect(
        1,
        &[
            "policy",
            "map",
            "rm",
            "body",
            "--expect-version",
            &v1.to_string(),
        ],
    );
    assert!(err.contains("changed since it was read"), "{err}");
    assert_eq!(version(&show(&ctl)), v2);

    // Two operators editing different maps at once, through different nodes: both changes
    // survive (the server redoes a read-modify-write that lost the race).
    let ctl2 = Ctl::new(&c, 2);
    let ctl3 = Ctl::new(&c, 3);
    let a = ctl.file("a.re", "/aaa/ WARN\n");
    let b = ctl.file("b.re", "/bbb/ WARN\n");
    let args_a = ["policy", "map", "put", "map_a", p(&a)];
    let args_b = ["policy", "map", "put", "map_b", p(&b)];
    let ja = ctl2.spawn(&args_a);
    let jb = ctl3.spawn(&args_b);
    check(0, &args_a, ja.wait_with_output().unwrap());
    check(0, &args_b, jb.wait_with_output().unwrap());
    let shown = show(&ctl);
    let maps = shown["maps"].as_object().unwrap();
    assert!(
        ["spam_headers", "body", "map_a", "map_b"]
            .iter()
            .all(|m| maps.contains_key(*m)),
        "{shown}"
    );
    // An unreferenced map can be deleted.
    ctl2.ok(&["policy", "map", "rm", "map_b"]);

    // Every node shows the same document at the same version.
    let want = show(&ctl2);
    assert!(version(&want) > v2, "{want}");
    for node in [&ctl, &ctl2, &ctl3] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = show(node);
            if got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} shows {got}, expected {want}",
                node.server
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(!want["maps"].as_object().unwrap().contains_key("map_b"));

    // Node 3 down while the policy changes past a snapshot and a log purge: restarted, it
    // loads its own records, installs the leader's snapshot (policy records included) and
    // shows the same document.
    let status = c.node(3).terminate(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    for i in 0..30 {
        let (s, v) = c
            .api(1)
            .call(
                "PUT",
                "/api/policy/maps/churn",
                Some(serde_json::json!({"text": format!("/churn{i}/ WARN\n")})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let leader = c.leader().await.unwrap();
    c.api(leader)
        .wait_for("/api/status", Duration::from_secs(10), |_, v| {
            v["purged"].as_u64().is_some_and(|p| p > version(&want))
        })
        .await;
    let want = show(&ctl);
    c.node(3).start();
    c.api(3).wait_ready(Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = show(&ctl3);
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 shows {got}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let st3 = c.api(3).call("GET", "/api/status", None).await.1;
    assert!(
        st3["snapshot"].as_u64().is_some(),
        "node 3 should hold a snapshot: {st3}"
    );
    assert_eq!(
        ctl3.ok(&["policy", "map", "show", "churn"]),
        "/churn29/ WARN\n"
    );
}
