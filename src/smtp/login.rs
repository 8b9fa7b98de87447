//! The AUTH command inside a session (RFC 4954): when it is allowed, the PLAIN and LOGIN
//! exchanges, and the brute-force defence (a growing delay per failure, a per-session limit
//! and the shared per-address [`super::AuthLimiter`]).
//!
//! It never verifies a password itself (the policy does) and never logs one.
//!
//! Security note: AUTH is refused before TLS unless the dev switch allows plaintext; a client
//! address over its failure limit is disconnected before its credentials are even read, so
//! reconnecting does not buy more guesses.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

use super::command::Mechanism;
use super::io::{strip_line_end, Input, Io};
use super::policy::{AuthFailure, MailPolicy};
use super::reply::{bad_sequence, Enhanced, Reply};
use super::sasl::{self, SaslError};
use super::session::{Flow, Session, Sink};
use super::Mode;

/// The outcome of one challenge/response step.
enum Step {
    Data(Vec<u8>),
    Failed(Reply),
    End(Flow),
}

impl From<&SaslError> for Reply {
    fn from(e: &SaslError) -> Reply {
        match e {
            SaslError::Cancelled => Reply::new(501, Enhanced(5, 7, 0), e.to_string()),
            SaslError::BadBase64 | SaslError::Malformed => {
                Reply::new(501, Enhanced(5, 5, 2), e.to_string())
            }
        }
    }
}

impl<P: MailPolicy, K: Sink> Session<'_, P, K> {
    /// Why AUTH may not start now, if it may not.
    fn auth_refusal(&self) -> Option<Reply> {
        if self.shared.mode != Mode::Submission {
            return Some(Reply::new(
                502,
                Enhanced(5, 5, 1),
                "AUTH not available on this port",
            ));
        }
        if !self.auth_offered() {
            return Some(Reply::new(
                530,
                Enhanced(5, 7, 0),
                "must issue a STARTTLS command first",
            ));
        }
        if self.helo.is_none() {
            return Some(bad_sequence("send EHLO first"));
        }
        if self.auth_user.is_some() {
            return Some(bad_sequence("already authenticated"));
        }
        if self.tx.is_some() {
            return Some(bad_sequence("AUTH not permitted during a mail transaction"));
        }
        None
    }

    pub(crate) async fn auth<S>(
        &mut self,
        io: &mut Io<S>,
        mechanism: Mechanism,
        initial: Option<String>,
    ) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        if let Some(reply) = self.auth_refusal() {
            self.send(io, reply);
            return Ok(Flow::Continue);
        }
        let ip = self.ctx.peer.ip();
        if self.shared.limiter.is_blocked(ip) {
            crate::metrics::smtp_auth("blocked");
            tracing::info!("AUTH from an address over its failure limit");
            io.reply(&too_many_failures());
            return Ok(Flow::Close);
        }
        let initial = initial.map(|ir| sasl::decode_response(ir.as_bytes()));
        let credentials = match mechanism {
            Mechanism::Plain => {
                let msg = match initial {
                    Some(ir) => ir,
                    None => match self.challenge(io, "").await? {
                        Step::Data(d) => Ok(d),
                        Step::Failed(r) => return self.auth_failed_step(io, r),
                        Step::End(flow) => return Ok(flow),
                    },
                };
                msg.and_then(|m| sasl::decode_plain(&m))
            }
            Mechanism::Login => {
                let user = match initial {
                    Some(ir) => ir,
                    None => match self.challenge(io, sasl::LOGIN_USERNAME).await? {
                        Step::Data(d) => Ok(d),
                        Step::Failed(r) => return self.auth_failed_step(io, r),
                        Step::End(flow) => return Ok(flow),
                    },
                };
                let user = match user.and_then(|u| sasl::decode_text(&u)) {
                    Ok(u) => u,
                    Err(e) => return self.auth_failed_step(io, Reply::from(&e)),
                };
                match self.challenge(io, sasl::LOGIN_PASSWORD).await? {
                    Step::Data(p) => sasl::decode_text(&p).map(|p| (user, p)),
                    Step::Failed(r) => return self.auth_failed_step(io, r),
                    Step::End(flow) => return Ok(flow),
                }
            }
        };
        let (user, password) = match credentials {
            Ok(c) => c,
            Err(e) => return self.auth_failed_step(io, Reply::from(&e)),
        };
        match self.shared.policy.authenticate(&user, &password).await {
            Ok(canonical) => {
                crate::metrics::smtp_auth("success");
                tracing::info!(user = %canonical, "authenticated");
                self.auth_user = Some(canonical);
                if let Some(ube) = &mut self.ube {
                    ube.authenticated();
                }
                io.reply(&Reply::new(
                    235,
                    Enhanced(2, 7, 0),
                    "authentication successful",
                ));
                Ok(Flow::Continue)
            }
            Err(AuthFailure::Temporary(why)) => {
                crate::metrics::smtp_auth("tempfail");
                tracing::warn!(%why, "authentication could not be checked");
                io.reply(&Reply::from(&AuthFailure::Temporary(why)));
                Ok(Flow::Continue)
            }
            Err(AuthFailure::Invalid) => {
                crate::metrics::smtp_auth("failure");
                self.auth_failures += 1;
                let delay = self.shared.limiter.record_failure(ip);
                tracing::info!(user = %user, failures = self.auth_failures, "authentication failed");
                // The growing delay is what makes guessing slow; the session waits it out
                // before answering, and the client cannot pipeline past it.
                tokio::time::sleep(delay).await;
                if self.auth_failures >= self.shared.cfg.max_auth_failures
                    || self.shared.limiter.is_blocked(ip)
                {
                    io.reply(&too_many_failures());
                    return Ok(Flow::Close);
                }
                io.reply(&Reply::from(&AuthFailure::Invalid));
                Ok(Flow::Continue)
            }
        }
    }

    /// A malformed or cancelled exchange: answered, counted as a client error.
    fn auth_failed_step<S>(&mut self, io: &mut Io<S>, reply: Reply) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.send(io, reply);
        Ok(Flow::Continue)
    }

    /// Sends a 334 challenge and reads the client's response line.
    async fn challenge<S>(&mut self, io: &mut Io<S>, text: &str) -> io::Result<Step>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        io.reply(&Reply::bare(334, text));
        let max_line = self.shared.cfg.max_line_length;
        Ok(
            match io.read_line(max_line, Some(&self.ctx.shutdown)).await? {
                Input::Line(line) => match strip_line_end(&line) {
                    (text, true) => match sasl::decode_response(text) {
                        Ok(data) => Step::Data(data),
                        Err(e) => Step::Failed(Reply::from(&e)),
                    },
                    (_, false) => Step::Failed(Reply::new(
                        500,
                        Enhanced(5, 5, 2),
                        "bare LF received; lines must end with CRLF",
                    )),
                },
                Input::TooLong => Step::Failed(Reply::new(500, Enhanced(5, 5, 2), "line too long")),
                Input::Eof => Step::End(Flow::Close),
                Input::Timeout => {
                    io.reply(&self.idle_reply());
                    Step::End(Flow::Close)
                }
                Input::Shutdown => {
                    io.reply(&self.shutdown_reply());
                    Step::End(Flow::Close)
                }
            },
        )
    }
}

fn too_many_failures() -> Reply {
    Reply::new(
        421,
        Enhanced(4, 7, 0),
        "too many authentication failures, closing connection",
    )
}
