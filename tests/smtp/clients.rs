//! Real clients against the servers: Python's smtplib (MX with a refused recipient, STARTTLS
//! and AUTH on submission, implicit TLS with LOGIN) and swaks (PIPELINING on the MX, TLS and
//! AUTH on submission, LMTP per-recipient replies, a wrong password).

use std::process::Output;

use mailnode::smtp::Mode;
use tokio::process::Command;

use super::harness::*;

async fn run(program: &str, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(program);
    cmd.args(args).kill_on_drop(true);
    let Output {
        status,
        stdout,
        stderr,
    } = bounded(program, cmd.output())
        .await
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    (status.success(), text)
}

async fn python(script: &str, server: &Server) -> (bool, String) {
    let port = server.addr.port().to_string();
    let ca = server.ca.to_string_lossy().into_owned();
    run("python3", &["-c", script, &port, &ca]).await
}

const SMTPLIB_MX: &str = r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='py.test', timeout=10)
s.ehlo()
assert s.has_extn('pipelining') and s.has_extn('8bitmime') and s.has_extn('chunking')
assert int(s.esmtp_features['size']) == 52428800
refused = s.sendmail('sender@remote.test', ['alice@example.org', 'nobody@example.org'],
                     b'Subject: from smtplib\r\n\r\n.leading dot\r\nbody\r\n')
print('refused', refused)
s.quit()
"#;

#[tokio::test]
async fn smtplib_sends_to_the_mx() {
    let s = start(Mode::Mx, Transport::StartTls, config()).await;
    let (ok, out) = python(SMTPLIB_MX, &s).await;
    assert!(ok, "{out}");
    assert!(out.contains("'nobody@example.org': (550, b'5.1.1"), "{out}");
    let accepted = s.queue.accepted.lock().unwrap();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].envelope.recipients.len(), 1);
    assert!(accepted[0]
        .content
        .ends_with("Subject: from smtplib\r\n\r\n.leading dot\r\nbody\r\n"));
}

const SMTPLIB_SUBMISSION: &str = r#"
import smtplib, ssl, sys
from email.message import EmailMessage
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='py.test', timeout=10)
s.ehlo()
assert not s.has_extn('auth')
s.starttls(context=ctx)
s.ehlo()
assert 'PLAIN' in s.esmtp_features['auth']
try:
    s.login('alice@example.org', 'wrong')
except smtplib.SMTPAuthenticationError as e:
    print('login refused', e.smtp_code)
s.login('alice@example.org', 'secret')
m = EmailMessage()
m['From'] = 'Alice <alice@example.org>'
m['To'] = 'someone@remote.test'
m['Subject'] = 'submitted'
m.set_content('hello')
s.send_message(m)
m.replace_header('From', 'carol@example.org')
try:
    s.send_message(m, from_addr='alice@example.org')
except smtplib.SMTPDataError as e:
    print('forged From refused', e.smtp_code)
s.quit()
"#;

#[tokio::test]
async fn smtplib_submits_over_starttls_with_auth() {
    let s = start(Mode::Submission, Transport::StartTls, config()).await;
    let (ok, out) = python(SMTPLIB_SUBMISSION, &s).await;
    assert!(ok, "{out}");
    assert!(out.contains("login refused 535"), "{out}");
    assert!(out.contains("forged From refused 553"), "{out}");
    assert_eq!(s.queue.count(), 1);
    let last = s.queue.last();
    assert!(
        last.contains("Subject: submitted") && last.contains("Message-ID: <"),
        "{last}"
    );
}

const SMTPLIB_IMPLICIT: &str = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = smtplib.SMTP_SSL('127.0.0.1', int(sys.argv[1]), local_hostname='py.test', context=ctx, timeout=10)
s.ehlo()
s.esmtp_features['auth'] = 'LOGIN'
s.login('carol@example.org', 'secret')
s.sendmail('carol@example.org', ['alice@example.org'],
           b'From: carol@example.org\r\nSubject: implicit\r\n\r\nx\r\n')
s.quit()
print('sent')
"#;

#[tokio::test]
async fn smtplib_submits_over_implicit_tls_with_login() {
    let s = start(Mode::Submission, Transport::Implicit, config()).await;
    let (ok, out) = python(SMTPLIB_IMPLICIT, &s).await;
    assert!(ok && out.contains("sent"), "{out}");
    let accepted = s.queue.accepted.lock().unwrap();
    assert_eq!(
        accepted[0].envelope.auth_user.as_deref(),
        Some("carol@example.org")
    );
}

fn swaks_base(s: &Server) -> Vec<String> {
    [
        "--server",
        "127.0.0.1",
        "--port",
        &s.addr.port().to_string(),
        "--helo",
        "swaks.test",
        "--timeout",
        "10",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

async fn swaks(s: &Server, extra: &[&str]) -> (bool, String) {
    let mut args = swaks_base(s);
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("swaks", &args).await
}

#[tokio::test]
async fn swaks_pipelines_to_the_mx() {
    let s = start(Mode::Mx, Transport::Plain, config()).await;
    let (ok, out) = swaks(
        &s,
        &[
            "--pipeline",
            "--from",
            "x@remote.test",
            "--to",
            "alice@example.org",
        ],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("250 2.0.0 OK queued as Q1"), "{out}");
    let (ok, out) = swaks(&s, &["--from", "x@remote.test", "--to", "x@elsewhere.test"]).await;
    assert!(!ok && out.contains("554 5.7.1"), "{out}");
}

#[tokio::test]
async fn swaks_submits_with_starttls_and_auth() {
    let s = start(Mode::Submission, Transport::StartTls, config()).await;
    for mech in ["PLAIN", "LOGIN"] {
        let (ok, out) = swaks(
            &s,
            &[
                "-tls",
                "--auth",
                mech,
                "--auth-user",
                "alice@example.org",
                "--auth-password",
                PASSWORD,
                "--from",
                "alice@example.org",
                "--header",
                "From: alice@example.org",
                "--to",
                "someone@remote.test",
            ],
        )
        .await;
        assert!(ok, "{mech}: {out}");
        assert!(
            out.contains("235 2.7.0") && out.contains("250 2.0.0 OK queued"),
            "{out}"
        );
    }
    let (ok, out) = swaks(
        &s,
        &[
            "-tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice@example.org",
            "--auth-password",
            "wrong",
            "--to",
            "someone@remote.test",
        ],
    )
    .await;
    assert!(!ok && out.contains("535 5.7.8"), "{out}");
    assert_eq!(s.queue.count(), 2);
}

#[tokio::test]
async fn swaks_speaks_lmtp() {
    let s = start(Mode::Lmtp, Transport::Plain, config()).await;
    let (_, out) = swaks(
        &s,
        &[
            "--protocol",
            "LMTP",
            "--from",
            "x@remote.test",
            "--to",
            "alice@example.org,full@example.org",
        ],
    )
    .await;
    assert!(
        out.contains("250 2.1.5 <alice@example.org> delivered"),
        "{out}"
    );
    assert!(out.contains("452 4.2.2 <full@example.org>"), "{out}");
    assert_eq!(s.store.delivered.lock().unwrap().len(), 1);
}
