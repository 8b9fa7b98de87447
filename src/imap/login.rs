//! Login: LOGIN and AUTHENTICATE PLAIN (with SASL-IR), through the directory
//! (`auth::authenticate`, which also rehashes imported password hashes).
//!
//! Security note: both login commands are refused before TLS unless the listener allows
//! plaintext logins; failures are slowed (a growing delay before the `NO`) and limited per
//! client address and per user name by the shared `LoginLimiter`, and per session by
//! `max_auth_failures`. Passwords are never logged.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::smtp::sasl;

use super::io::{Input, Io};
use super::response::status_line;
use super::session::{Flow, Session};

impl Session<'_> {
    pub(crate) async fn login<S>(
        &mut self,
        io: &mut Io<S>,
        tag: &str,
        user: &str,
        password: &str,
    ) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        if !self.login_allowed() {
            status_line(
                &mut io.out,
                tag,
                "NO",
                "[PRIVACYREQUIRED] use STARTTLS first",
            );
            return Ok(self.after_error(io));
        }
        let ip = self.ctx.peer.ip();
        if self.sh.limiter.is_blocked(ip, user) {
            status_line(
                &mut io.out,
                tag,
                "NO",
                "[UNAVAILABLE] too many failed logins, try again later",
            );
            return Ok(Flow::Close);
        }
        match crate::auth::authenticate(&self.sh.cluster, user, password).await {
            Ok(login) => {
                if let Err(e) = self.sh.store.ensure_default_mailboxes(&login.address).await {
                    tracing::warn!(user = %login.address, error = %e, "cannot create default mailboxes");
                    status_line(
                        &mut io.out,
                        tag,
                        "NO",
                        "[UNAVAILABLE] mailbox unavailable, try again later",
                    );
                    return Ok(Flow::Continue);
                }
                tracing::info!(user = %login.address, "IMAP login");
                self.user = Some(login.address);
                io.conn.set_idle_timeout(self.sh.cfg.idle_timeout());
                let caps = self.capabilities(&io.conn);
                status_line(
                    &mut io.out,
                    tag,
                    "OK",
                    &format!("[CAPABILITY {caps}] logged in"),
                );
                Ok(Flow::Continue)
            }
            Err(e) => {
                let delay = self.sh.limiter.record_failure(ip, user);
                crate::metrics::login_failed("imap");
                tracing::info!(user = %user.chars().take(64).collect::<String>(), error = %e, "IMAP login failed");
                io.flush().await?;
                tokio::time::sleep(delay).await;
                status_line(
                    &mut io.out,
                    tag,
                    "NO",
                    "[AUTHENTICATIONFAILED] authentication failed",
                );
                self.auth_failures += 1;
                if self.auth_failures >= self.sh.cfg.max_auth_failures {
                    io.out
                        .extend_from_slice(b"* BYE too many failed logins\r\n");
                    return Ok(Flow::Close);
                }
                Ok(Flow::Continue)
            }
        }
    }

    pub(crate) async fn authenticate<S>(
        &mut self,
        io: &mut Io<S>,
        tag: &str,
        mechanism: &str,
        initial: Option<Vec<u8>>,
    ) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        if mechanism != "PLAIN" {
            status_line(&mut io.out, tag, "NO", "[CANNOT] unsupported mechanism");
            return Ok(self.after_error(io));
        }
        if !self.login_allowed() {
            status_line(
                &mut io.out,
                tag,
                "NO",
                "[PRIVACYREQUIRED] use STARTTLS first",
            );
            return Ok(self.after_error(io));
        }
        let response = match initial {
            Some(ir) => ir,
            None => {
                io.out.extend_from_slice(b"+ \r\n");
                match io
                    .read_line(self.sh.cfg.max_line_length, Some(&self.ctx.shutdown))
                    .await?
                {
                    Input::Line(l) => {
                        let l = l
                            .strip_suffix(b"\r\n")
                            .or_else(|| l.strip_suffix(b"\n"))
                            .unwrap_or(&l)
                            .to_vec();
                        l
                    }
                    Input::TooLong => {
                        status_line(&mut io.out, tag, "BAD", "response too long");
                        return Ok(self.after_error(io));
                    }
                    _ => return Ok(Flow::Close),
                }
            }
        };
        let creds = sasl::decode_response(&response).and_then(|msg| sasl::decode_plain(&msg));
        match creds {
            Ok((user, password)) => self.login(io, tag, &user, &password).await,
            Err(sasl::SaslError::Cancelled) => {
                status_line(&mut io.out, tag, "BAD", "authentication cancelled");
                Ok(self.after_error(io))
            }
            Err(e) => {
                status_line(&mut io.out, tag, "BAD", &e.to_string());
                Ok(self.after_error(io))
            }
        }
    }
}
