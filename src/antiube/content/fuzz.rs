//! The content scanner under the mutation fuzzer of `imap::fuzz` (same seed, same reporting):
//! every mutated message gives a report, never a panic, and the report is consistent (ranges
//! inside the scanned bytes and ordered, score the sum of the hits, limits honoured).

use base64::Engine as _;

use crate::antiube::policy::PolicyDoc;
use crate::imap::fuzz::{run, run_params, Mutator, ITERATIONS};

use super::{ContentScanner, GTUBE, MAX_WARNINGS};

const SETTINGS: &str = r#"
[content]
header_checks = "pcre:hc"
mime_header_checks = "regexp:mh"
body_checks = "regexp:bc"
max_mime_depth = 8
max_mime_parts = 40
scan_limit_bytes = 4096
[[content.rules]]
name = "SUBJ"
target = "header"
header = "Subject"
pattern = "viagra|=\\?"
score = 1.5
[[content.rules]]
name = "ANY_HEADER"
target = "header"
pattern = "^x-[a-z]+: .*\\d"
score = 0.5
[[content.rules]]
name = "BODY"
target = "body"
pattern = "buy\\s+now|caf\u00e9"
score = 2.0
[[content.rules]]
name = "URI"
target = "uri"
pattern = "^https?://[^/]*example"
score = 1.0
"#;

const HC: &str = "/^Subject: .*reject/ REJECT no\n/^Subject: .*hold/ HOLD\n/^X-W: (.*)/ WARN $1\n\
                  /^X-I:/ IGNORE\n/^X-P:/ PREPEND X: y\n/^Subject:.*\\n/ WARN folded\n";
const MH: &str = "/^Content-Type: .*html/ WARN html\n/^Content-Disposition: .*exe/ REJECT exe\n";
const BC: &str = "/^discard/ DISCARD\n/^ignore/ IGNORE\n/^--/ WARN boundary\n/http/ WARN link\n";

fn seeds() -> Vec<Vec<u8>> {
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let gtube = std::str::from_utf8(GTUBE).unwrap_or_default();
    vec![
        format!(
            "From: a@example.org\r\nSubject: =?utf-8?B?dmlhZ3Jh?= hold\r\n folded\r\nX-W: w1\r\nX-I: i\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\npreamble\r\n\
             --outer\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
             caf=E9 buy now http://a.example/x=\r\n.\r\n\
             --outer\r\nContent-Type: message/rfc822\r\n\r\nSubject: nested reject\r\nX-W: nested\r\n\
             Content-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/html\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--inner--\r\n\
             --outer\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=a.exe\r\n\
             Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAA\r\n--outer--\r\nepilogue\r\n",
            b64(format!("<p>Buy <b>n</b>ow</p><a href=\"https://www.example.com/?a&amp;b\">x</a>{gtube}").as_bytes())
        )
        .into_bytes(),
        // Broken boundaries: unterminated, reused, prefix of another, junk after.
        b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=ab\r\n\r\n\
          --ab\r\n\r\ntext\r\n--a\r\nContent-Type: multipart/related; boundary=a\r\n\r\n--a junk\r\n--a--\r\n--ab--\r\n"
            .to_vec(),
        // Bad encodings and charsets, bare LF, no blank line after headers.
        b"Subject: =?bogus?Q?=ZZ?= =?utf-8?B?####?= =?x?\nContent-Type: text/html; charset=\"shift_jis\nContent-Transfer-Encoding: base64\n!!!!@@@@====\n<a href='http://x.example\n&#xFFFFFFFF; &#0; &bogus &#x110000;<script>"
            .to_vec(),
        // Digest, deep nesting, headers without values.
        b"Content-Type: multipart/digest; boundary=\"d\"\r\n\r\n--d\r\n\r\nSubject: in digest reject\r\n\r\nbody\r\n\
          --d\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n:\r\nX:\r\n\r\n--z--\r\n"
            .to_vec(),
        b"Subject: plain\r\n\r\ndiscard\r\nignore\r\nwww.example.org/path http://example.net ftp://f.example\r\n".to_vec(),
    ]
}

const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r\n\r\n",
    b"\r\n ",
    b"--",
    b"--outer",
    b"--outer--",
    b"--a",
    b"--inner\r\n",
    b"Content-Type: multipart/mixed; boundary=outer\r\n",
    b"Content-Type: message/rfc822\r\n\r\n",
    b"Content-Type: text/html\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"; charset=utf-16",
    b"; boundary=\"",
    b"=?utf-8?q?",
    b"?=",
    b"=",
    b"=\r\n",
    b"=F",
    b"<",
    b">",
    b"<a href=",
    b"<!--",
    b"&",
    b"&#x",
    b";",
    b"\"",
    b"\\",
    b"(",
    b"\0",
    b"\xff",
    b"\xc3",
    b"http://",
    b"www.",
];

#[test]
fn content_scanner_survives_mutated_messages() {
    let policy = PolicyDoc {
        settings: SETTINGS.into(),
        maps: [("hc", HC), ("mh", MH), ("bc", BC)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
    .compile()
    .expect("fuzz policy compiles");
    let scanner = ContentScanner::new(&policy).expect("fuzz scanner compiles");
    let corpus = seeds();
    for seed in &corpus {
        let r = scanner.scan(seed);
        assert!(
            r.mime_violation.is_none()
                || seed.starts_with(b"Content-Type: multipart/mixed; boundary=a"),
            "{r:?}"
        );
    }
    let (seed, iterations) = run_params(ITERATIONS / 10);
    let mut m = Mutator::new(seed ^ 0xc0de, &corpus, TOKENS, 6000);
    run("content scanner", seed, iterations, &mut m, |msg| {
        let r = scanner.scan(msg);
        let scanned = msg.len().min(4096);
        assert_eq!(r.truncated, msg.len() > 4096);
        let mut last = 0;
        for range in &r.ignored {
            assert!(
                range.start >= last && range.start < range.end && range.end <= scanned,
                "{r:?}"
            );
            last = range.end;
        }
        for hit in r.warnings.iter().chain(&r.action) {
            assert!(
                hit.range.start < hit.range.end && hit.range.end <= scanned,
                "{hit:?}"
            );
        }
        assert!(r.warnings.len() <= MAX_WARNINGS);
        assert!(r.parts <= 41 && r.depth <= 8, "{r:?}");
        let sum: f64 = r.hits.iter().map(|h| h.score).sum();
        assert_eq!(r.score, sum);
        assert_eq!(r.gtube, r.hits.iter().any(|h| h.name == "GTUBE"));
    });
}
