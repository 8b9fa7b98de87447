//! The ManageSieve framer and parser under the mutation fuzzer of `imap::fuzz` (same seed,
//! same reporting): whatever the bytes and however they are cut into reads, the framer
//! consumes them in bounded steps, every command gives a value or a typed error, and nothing a
//! client sends reaches a reply or a log as a line break.

use crate::imap::fuzz::{run, run_params, Mutator, Rng, ITERATIONS};

use super::command::{self, parse_response, Frame, FrameLimits, Framer};

fn corpus() -> Vec<Vec<u8>> {
    [
        "CAPABILITY\r\n",
        "STARTTLS\r\n",
        "LOGOUT\r\n",
        "NOOP\r\n",
        "NOOP \"tag\"\r\n",
        "UNAUTHENTICATE\r\n",
        "AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHNlY3JldA==\"\r\n",
        "AUTHENTICATE \"LOGIN\"\r\n\"YWxpY2U=\"\r\n\"c2VjcmV0\"\r\n",
        "AUTHENTICATE \"PLAIN\" {24+}\r\nAGFsaWNlAHNlY3JldA==\r\n",
        "HAVESPACE \"s\" 100\r\n",
        "PUTSCRIPT \"s\" {26+}\r\nrequire \"fileinto\";\r\nkeep;\r\n",
        "PUTSCRIPT {1}\r\ns {5}\r\nkeep;\r\n",
        "CHECKSCRIPT \"if true { stop; }\"\r\n",
        "LISTSCRIPTS\r\n",
        "SETACTIVE \"s\"\r\n",
        "SETACTIVE \"\"\r\n",
        "GETSCRIPT \"s\"\r\n",
        "DELETESCRIPT \"a \\\"b\\\"\"\r\n",
        "RENAMESCRIPT \"a\" \"b\"\r\n",
        "\"*\"\r\n",
    ]
    .iter()
    .map(|c| c.as_bytes().to_vec())
    .collect()
}

const TOKENS: &[&[u8]] = &[
    b" ",
    b"\"",
    b"\\",
    b"\\\"",
    b"{",
    b"}",
    b"+}",
    b"{0}\r\n",
    b"{5+}\r\n",
    b"{99999999999}\r\n",
    b"{18446744073709551616+}\r\n",
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b"\xff",
    b"\xc3\xa9",
    b"0",
    b"18446744073709551616",
    b"PUTSCRIPT",
    b"AUTHENTICATE",
    b"\"\"",
];

const LIMITS: FrameLimits = FrameLimits {
    max_line: 128,
    max_literal: 256,
    max_literals: 4,
};

#[test]
fn managesieve_framer_and_parser_survive_mutated_input() {
    let corpus = corpus();
    let (seed, iterations) = run_params(ITERATIONS / 2);
    let mut m = Mutator::new(seed ^ 0x51e7e, &corpus, TOKENS, 2048);
    let mut cuts = Rng::new(seed ^ 0x4190);
    run("ManageSieve commands", seed, iterations, &mut m, |input| {
        let chunk = 1 + cuts.below(input.len().max(1));
        let mut framer = Framer::new(LIMITS);
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        loop {
            match framer.next(&buf) {
                Frame::Command(n) => {
                    assert!(n > 0 && n <= buf.len());
                    let cmd = &buf[..n];
                    match command::parse(cmd) {
                        Ok(c) => {
                            let text = format!("{c:?}");
                            assert!(!text.contains(['\r', '\n']), "{text}");
                        }
                        Err(e) => {
                            let text = e.to_string();
                            assert!(!text.is_empty() && !text.contains(['\r', '\n']), "{text:?}");
                        }
                    }
                    let _ = parse_response(cmd);
                    buf.drain(..n);
                }
                Frame::Discard(n, _) => {
                    assert!(n > 0 && n <= buf.len(), "discard {n} of {}", buf.len());
                    buf.drain(..n);
                }
                Frame::Need => {
                    if fed == input.len() {
                        break;
                    }
                    let end = (fed + chunk).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
            }
            // What the session buffers stays bounded by the limits, whatever the input.
            let bound = LIMITS.max_literals * (LIMITS.max_line + LIMITS.max_literal as usize)
                + LIMITS.max_line
                + chunk;
            assert!(buf.len() <= bound, "buffer {} over {bound}", buf.len());
        }
    });
}
