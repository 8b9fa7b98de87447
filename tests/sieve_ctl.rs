//! `mailctl sieve …` and `mailctl user set USER forward|vacation …` end to end against a real
//! node on 127.0.86.x: every verb, its JSON, its errors and exit codes, and the generated
//! settings script (compiled here with the same compiler delivery uses, and run on a message).

mod common;

use std::time::Duration;

use common::ctl::{p, Ctl};
use common::{TestCluster, Tuning};
use mailnode::sieve::{self, Action, Envelope, Limits, MessageView, SieveTime};
use serde_json::Value;

const USER: &str = "alice@example.org";

const MAIN: &str = r#"require ["fileinto", "imap4flags"];
if header :contains "subject" "[list]" {
    fileinto "Lists";
} elsif address :is "from" "boss@example.org" {
    addflag "\\Flagged";
}
"#;

/// Runs `script` on a small message to alice and returns the actions.
fn actions(script: &str) -> Vec<Action> {
    let compiled = sieve::compile(script, &Limits::default())
        .unwrap_or_else(|e| panic!("the stored script does not compile: {e}\n{script}"));
    let msg = MessageView::from_raw(
        b"From: bob@other.example\r\nTo: alice@example.org\r\nSubject: hello\r\n\r\nHi\r\n",
    );
    let env = Envelope {
        from: "bob@other.example".into(),
        to: USER.into(),
        ..Default::default()
    };
    let now = SieveTime {
        unix: 1_790_000_000,
        offset_minutes: 0,
    };
    sieve::run(&compiled, &msg, &env, now, &Limits::default())
        .unwrap()
        .actions
}

fn script(ctl: &Ctl, name: &str) -> Value {
    ctl.json(&["sieve", "get", USER, name])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sieve_scripts_and_generated_settings_through_mailctl() {
    let mut c = TestCluster::new(86, 1, Tuning::default());
    c.node(1).start();
    c.api(1).wait_ready(Duration::from_secs(20)).await;
    let ctl = Ctl::new(&c, 1);
    let pw = ctl.file("pw.txt", "a password\n");
    ctl.ok(&["domain", "add", "example.org"]);
    ctl.ok(&["user", "add", USER, "--password-file", p(&pw)]);

    // put (file and stdin), list, get.
    let main = ctl.file("main.sieve", MAIN);
    let out = ctl.ok(&["sieve", "put", USER, "main", p(&main)]);
    assert!(out.contains("stored"), "{out}");
    let out = ctl.run_stdin(
        &["sieve", "put", USER, "spare", "-", "--activate"],
        "keep;\n",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = ctl.json(&["sieve", "list", USER]);
    assert_eq!(
        list,
        serde_json::json!([
            {"name": "main", "active": false, "size": MAIN.len()},
            {"name": "spare", "active": true, "size": 6}
        ])
    );
    let table = ctl.ok(&["sieve", "list", USER]);
    assert!(table.starts_with("NAME   ACTIVE  SIZE\n"), "{table}");
    assert!(table.contains("spare  yes"), "{table}");
    // `get` prints the source verbatim into a pipe, so it can be edited and put back.
    assert_eq!(ctl.ok(&["sieve", "get", USER, "main"]), MAIN);
    assert_eq!(script(&ctl, "main")["source"], MAIN);

    // A script that does not compile: exit 1, line and column named, nothing stored.
    let bad = ctl.file(
        "bad.sieve",
        "require \"fileinto\";\nif true {\n  fileinto ;\n}\n",
    );
    let (_, err) = ctl.expect(1, &["sieve", "put", USER, "broken", p(&bad)]);
    assert!(err.contains("line 3, column"), "{err}");
    let (_, err) = ctl.expect(
        1,
        &[
            "sieve",
            "put",
            USER,
            "main",
            p(&ctl.file("ext.sieve", "require \"no-such\";\n")),
        ],
    );
    assert!(err.contains("line 1, column"), "{err}");
    assert_eq!(
        ctl.ok(&["sieve", "get", USER, "main"]),
        MAIN,
        "the old text stays"
    );
    assert_eq!(
        ctl.json(&["sieve", "list", USER]).as_array().unwrap().len(),
        2
    );

    // Unknown user and unknown script: exit 1 with the name; usage errors exit 2.
    let (_, err) = ctl.expect(1, &["sieve", "list", "nobody@example.org"]);
    assert!(err.contains("no user nobody@example.org"), "{err}");
    let (_, err) = ctl.expect(1, &["sieve", "put", "nobody@example.org", "x", p(&main)]);
    assert!(err.contains("nobody@example.org"), "{err}");
    for args in [
        &["sieve", "get", USER, "missing"][..],
        &["sieve", "activate", USER, "missing"],
        &["sieve", "rename", USER, "missing", "other"],
        &["sieve", "delete", USER, "missing"],
    ] {
        let (_, err) = ctl.expect(1, args);
        assert!(
            err.contains("no Sieve script named \"missing\""),
            "{args:?}: {err}"
        );
    }
    ctl.expect(2, &["sieve", "put", USER, "x", "/nonexistent/file.sieve"]);
    ctl.expect(2, &["sieve", "put", USER]);

    // activate, rename (stays active), delete the active one (refused), deactivate, delete.
    ctl.ok(&["sieve", "activate", USER, "main"]);
    ctl.ok(&["sieve", "rename", USER, "main", "filters"]);
    assert_eq!(script(&ctl, "filters")["active"], true);
    let (_, err) = ctl.expect(1, &["sieve", "rename", USER, "filters", "spare"]);
    assert!(err.contains("spare"), "{err}");
    let (_, err) = ctl.expect(1, &["sieve", "delete", USER, "filters"]);
    assert!(err.contains("active script"), "{err}");
    assert!(
        err.contains("mailctl sieve deactivate"),
        "the hint says what to do: {err}"
    );
    ctl.ok(&["sieve", "deactivate", USER]);
    assert!(ctl
        .json(&["sieve", "list", USER])
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["active"] == false));
    ctl.ok(&["sieve", "delete", USER, "spare"]);
    assert_eq!(
        ctl.json(&["sieve", "delete", USER, "filters"]),
        serde_json::json!({"ok": true})
    );
    assert_eq!(ctl.json(&["sieve", "list", USER]), serde_json::json!([]));

    // Forwarding generates the settings script, active, that redirects.
    let out = ctl.ok(&[
        "user",
        "set",
        USER,
        "forward",
        "Bob@Other.example,carol@other.example",
        "--no-keep",
    ]);
    assert!(out.contains("forwarding of alice@example.org on"), "{out}");
    let s = script(&ctl, "mailnode-settings");
    assert_eq!(s["active"], true, "{s}");
    let redirect = |a: &str| Action::Redirect {
        address: a.into(),
        copy: false,
    };
    assert_eq!(
        actions(s["source"].as_str().unwrap()),
        [
            redirect("bob@other.example"),
            redirect("carol@other.example")
        ]
    );

    // Vacation with hostile text, read from a file; forwarding stays.
    let subject = "Away \"now\" \\ ${x}\nsecond line";
    let message =
        "I am away.\n.\nA line with only a dot is above; ${var} and \"quotes\" and \\.\n..\n";
    let msg_file = ctl.file("away.txt", message);
    let v = ctl.json(&[
        "user",
        "set",
        USER,
        "vacation",
        "--subject",
        subject,
        "--message-file",
        p(&msg_file),
        "--days",
        "5",
        "--addresses",
        "alice.smith@example.org",
        "--until",
        "2030-01-31",
    ]);
    assert_eq!(v["vacation"]["message"], message, "{v}");
    assert_eq!(v["forward"]["keep"], false, "{v}");
    let got = actions(
        script(&ctl, "mailnode-settings")["source"]
            .as_str()
            .unwrap(),
    );
    match &got[..] {
        [Action::Vacation {
            reason,
            subject: Some(subj),
            days: Some(5),
            addresses,
            ..
        }, Action::Redirect { .. }, Action::Redirect { .. }] => {
            assert_eq!(reason, &message.replace('\n', "\r\n"));
            assert_eq!(subj, "Away \"now\" \\ ${x} second line");
            assert_eq!(addresses, &["alice.smith@example.org"]);
        }
        other => panic!("{other:?}"),
    }
    let shown = ctl.ok(&["user", "show", USER]);
    assert!(
        shown.contains("forward   to bob@other.example, carol@other.example (no copy kept)"),
        "{shown}"
    );
    assert!(shown.contains("until 2030-01-31, every 5 days"), "{shown}");
    assert!(
        shown.contains("active script \"mailnode-settings\""),
        "{shown}"
    );

    // Bad settings: exit 1 with the value named (server) or 2 (command line).
    let (_, err) = ctl.expect(1, &["user", "set", USER, "forward", "not an address"]);
    assert!(err.contains("not an address"), "{err}");
    let (_, err) = ctl.expect(
        1,
        &[
            "user",
            "set",
            USER,
            "vacation",
            "--subject",
            "S",
            "--message",
            "M",
            "--until",
            "2030-02-30",
        ],
    );
    assert!(err.contains("not a date"), "{err}");
    ctl.expect(2, &["user", "set", USER, "vacation", "--subject", "S"]);
    ctl.expect(
        1,
        &["user", "set", "nobody@example.org", "forward", "a@b.org"],
    );

    // Another active script: settings refuse to replace it unless asked.
    ctl.ok(&["sieve", "put", USER, "mine", p(&main), "--activate"]);
    let (_, err) = ctl.expect(1, &["user", "set", USER, "forward", "--off"]);
    assert!(
        err.contains("\"mine\"") && err.contains("--replace-active"),
        "{err}"
    );
    ctl.ok(&["user", "set", USER, "forward", "--off", "--replace-active"]);
    let s = script(&ctl, "mailnode-settings");
    assert_eq!(s["active"], true);
    assert!(matches!(
        actions(s["source"].as_str().unwrap())[..],
        [Action::Vacation { .. }, Action::Keep { .. }]
    ));
    assert_eq!(
        script(&ctl, "mine")["active"],
        false,
        "the other script is kept"
    );

    // Everything off: the settings script is deactivated and removed.
    let out = ctl.ok(&["user", "set", USER, "vacation", "--off"]);
    assert!(
        out.contains("vacation replies of alice@example.org off"),
        "{out}"
    );
    let names: Vec<Value> = ctl
        .json(&["sieve", "list", USER])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(names, ["mine"]);
    let settings = ctl.json(&["user", "set", USER, "forward", "--off"]);
    assert_eq!(settings["present"], false, "{settings}");
    assert!(settings.get("forward").is_none(), "{settings}");

    c.node(1).terminate(Duration::from_secs(10));
}
