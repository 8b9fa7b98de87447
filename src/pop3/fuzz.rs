//! The POP3 command parser, the SASL responses a POP3 login decodes, and the RETR/TOP encoder
//! under the mutation fuzzer of `imap::fuzz` (same seed, same reporting): every line gives a
//! command or a typed error, never a panic, and the encoder's output is well-formed
//! multi-line data whatever the stored bytes and however they are cut into chunks.

use crate::imap::fuzz::{run, run_params, Mutator, Rng, ITERATIONS};
use crate::smtp::sasl;

use super::command::{self, Command};
use super::transfer::Stuffer;

/// Every command the parser knows, with and without arguments.
fn corpus() -> Vec<Vec<u8>> {
    [
        "USER alice@example.org",
        "PASS secret with spaces",
        "AUTH",
        "AUTH PLAIN",
        "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
        "AUTH PLAIN =",
        "STLS",
        "CAPA",
        "QUIT",
        "STAT",
        "LIST",
        "LIST 1",
        "RETR 7",
        "DELE 2",
        "NOOP",
        "RSET",
        "TOP 1 0",
        "TOP 3 4294967295",
        "UIDL",
        "UIDL 12",
        "APOP alice 0123456789abcdef",
        "uidl 1",
    ]
    .iter()
    .map(|c| c.as_bytes().to_vec())
    .collect()
}

const TOKENS: &[&[u8]] = &[
    b" ",
    b"  ",
    b"\t",
    b"\r",
    b"\n",
    b"\0",
    b"\x7f",
    b"\xff",
    b"\xc3\xbc",
    b"0",
    b"-1",
    b"+1",
    b"4294967295",
    b"4294967296",
    b"18446744073709551616",
    b"PLAIN",
    b"=",
    b"*",
    b"USER",
    b"PASS",
    b"TOP",
    b"RETR",
    b"LIST",
    b"UIDL",
    b"AUTH",
    b"AGFsaWNlAHNlY3JldA==",
];

#[test]
fn pop3_command_parser_survives_mutated_lines() {
    let corpus = corpus();
    for c in &corpus {
        let parsed = command::parse(c);
        assert!(
            parsed.is_ok() || c.starts_with(b"APOP"),
            "corpus entry {:?}: {parsed:?}",
            String::from_utf8_lossy(c)
        );
    }
    let (seed, iterations) = run_params(ITERATIONS);
    let mut m = Mutator::new(seed ^ 0x9093, &corpus, TOKENS, 1024);
    run("POP3 commands", seed, iterations, &mut m, |line| {
        match command::parse(line) {
            Ok(cmd) => {
                let text = format!("{cmd:?}");
                // Nothing a client sends reaches a reply or a log as a line break.
                assert!(!text.contains('\r') && !text.contains('\n'), "{text}");
                if let Command::Auth {
                    initial: Some(ir), ..
                } = &cmd
                {
                    if let Ok(msg) = sasl::decode_response(ir.as_bytes()) {
                        let _ = sasl::decode_plain(&msg);
                    }
                }
            }
            Err(e) => {
                let text = e.to_string();
                assert!(!text.is_empty() && !text.contains(['\r', '\n']), "{text:?}");
            }
        }
        // The continuation lines of AUTH are decoded without a command around them.
        if let Ok(msg) = sasl::decode_response(line) {
            let _ = sasl::decode_plain(&msg);
        }
    });
}

/// Un-stuffs POP3 multi-line data, checking its form on the way: CRLF line ends only, no
/// lone `.` line before the end, ends with `.` CRLF.
fn unstuff(data: &[u8]) -> Vec<u8> {
    let body = data
        .strip_suffix(b".\r\n")
        .expect("multi-line data ends with .CRLF");
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|&b| b == b'\n') {
        assert!(line.ends_with(b"\r\n"), "a line without CRLF: {line:?}");
        assert!(line != b".\r\n", "a lone '.' line before the end");
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

/// What RETR must send for `msg`: every line end made CRLF, the last line terminated.
fn crlf_lines(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 16);
    for line in msg.split_inclusive(|&b| b == b'\n') {
        let text = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
    }
    if !out.is_empty() && !msg.ends_with(b"\n") && msg.ends_with(b"\r") {
        // A final lone CR is the line's end ("…\r" goes out as "…\r\n").
        out.truncate(out.len() - 3);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[test]
fn retr_and_top_encoding_survives_mutated_messages() {
    let corpus: Vec<Vec<u8>> = [
        &b"From: a@example.org\r\nSubject: hi\r\n\r\nline one\r\n.dot\r\n..two\r\n.\r\nend\r\n"[..],
        b"Subject: bare lf\n\nbody\n.\nlast",
        b"no header at all",
        b"",
        b".",
        b"A: b\r\n\r\n\r\n\r\n.\r\n",
        b"x\ry\r\n\r\nz\r",
    ]
    .iter()
    .map(|m| m.to_vec())
    .collect();
    let (seed, iterations) = run_params(ITERATIONS / 4);
    let mut m = Mutator::new(seed ^ 0x7e7, &corpus, TOKENS, 4096);
    let mut cuts = Rng::new(seed ^ 0xc075);
    run("POP3 RETR/TOP encoding", seed, iterations, &mut m, |msg| {
        let chunk = 1 + cuts.below(msg.len().max(1));
        let encode = |top: Option<u64>, chunk: usize| {
            let mut s = match top {
                Some(n) => Stuffer::top(n),
                None => Stuffer::retr(),
            };
            let mut out = Vec::new();
            for piece in msg.chunks(chunk.max(1)) {
                if !s.push(piece, &mut out) {
                    break;
                }
            }
            s.finish(&mut out);
            out
        };
        let whole = encode(None, msg.len());
        assert_eq!(encode(None, chunk), whole, "chunking changed RETR's output");
        assert_eq!(unstuff(&whole), crlf_lines(msg), "RETR changed the message");
        let lines = cuts.below(4) as u64;
        let top = encode(Some(lines), msg.len());
        assert_eq!(
            encode(Some(lines), chunk),
            top,
            "chunking changed TOP's output"
        );
        let top_text = unstuff(&top);
        assert!(
            crlf_lines(msg).starts_with(&top_text),
            "TOP is not a prefix of the message"
        );
    });
}
