//! The end-of-DATA stage of [`UbeSession`]: the virus scan, Postfix maps, scoring rules,
//! GTUBE, DKIM/DMARC and spamd, then the score's decision (reject, tag or accept) and the
//! headers the session prepends. The connection and envelope stages are in the parent module.

use super::{now_ms, received_spf, ContentDecision, Event, Refusal, TxInfo, UbeSession, Verdict};
use crate::antiube::content::ContentReport;
use crate::antiube::dkim::AuthInput;
use crate::antiube::policy::OnError;
use crate::antiube::rdns::Fcrdns;
use crate::antiube::spf::SpfResult;
use crate::antiube::{checks, clamd, spamd};

impl UbeSession {
    /// The end of DATA: every content check, the score and the headers to add. `message` is
    /// the whole message as received (our `Received:` first), or its first bytes when it is
    /// larger than the scanners take; `complete` says which.
    pub async fn content(
        &mut self,
        message: &[u8],
        complete: bool,
        tx: &TxInfo<'_>,
    ) -> ContentDecision {
        let stages = self.stages.clone();
        let s = &stages.policy.settings;
        let mut decision = ContentDecision {
            verdict: Verdict::Accept,
            prepend: Vec::new(),
            remove: Vec::new(),
            tagged: false,
            score: 0.0,
        };
        // Viruses first: they are refused for everyone, allowlisted or authenticated.
        if let Some(c) = &s.clamd {
            let refusal = if !complete || message.len() > c.max_bytes {
                // Not scanned: too large for the scanner (ClamAV would not look at it whole).
                crate::metrics::antiube_check_error("clamd_size");
                None
            } else {
                match clamd::scan(c, message).await {
                    Ok(clamd::ClamdVerdict::Clean) => None,
                    Ok(clamd::ClamdVerdict::Virus(name)) => {
                        let r = Refusal::new(554, (5, 7, 1), format!("virus found: {name}"));
                        Some(("virus", name, "reject", r))
                    }
                    Err(e) if e.not_scanned() => {
                        // clamd's own stream limit: a retry would meet it again.
                        crate::metrics::antiube_check_error("clamd_size");
                        tracing::info!(error = %e, "message not virus-scanned");
                        None
                    }
                    Err(e) => {
                        crate::metrics::antiube_check_error("clamd");
                        tracing::warn!(error = %e, "clamd scan failed");
                        (c.on_error == OnError::Tempfail).then(|| {
                            let r = Refusal::new(
                                451,
                                (4, 7, 1),
                                "virus scanner unavailable, try again later",
                            );
                            ("clamd", e.to_string(), "tempfail", r)
                        })
                    }
                }
            };
            if let Some((policy, rule, action, mut r)) = refusal {
                self.data_event(policy, rule, action, &mut r, tx, 0.0);
                decision.verdict = Verdict::Refuse(r);
                return decision;
            }
        }
        if self.exempt {
            return decision;
        }
        let report: ContentReport = stages.content.scan(message);
        decision.remove = report.ignored.clone();
        for w in &report.warnings {
            tracing::info!(target: "antiube", map = w.map, line = w.line, text = %w.text, "map WARN");
            crate::metrics::antiube_decision(map_policy(w.map), "warn");
        }
        if let Some(v) = &report.mime_violation {
            let mut r = Refusal::new(554, (5, 6, 0), format!("message structure refused: {v}"));
            self.data_event("mime", v.clone(), "reject", &mut r, tx, report.score);
            decision.verdict = Verdict::Refuse(r);
            return decision;
        }
        let mut tests: Vec<(String, f64)> = report
            .hits
            .iter()
            .map(|h| (h.name.clone(), h.score))
            .collect();
        let mut hold = None;
        if let Some(hit) = &report.action {
            let rule = format!("{}:{}", hit.map, hit.line);
            let policy = map_policy(hit.map);
            match hit.action {
                checks::Action::Reject => {
                    let text = if hit.text.is_empty() {
                        "message content rejected".to_string()
                    } else {
                        hit.text.clone()
                    };
                    let mut r = Refusal::new(550, (5, 7, 1), text);
                    self.data_event(policy, rule, "reject", &mut r, tx, report.score);
                    decision.verdict = Verdict::Refuse(r);
                    return decision;
                }
                checks::Action::Discard => {
                    let mut r = Refusal::new(250, (2, 0, 0), "OK");
                    self.data_event(policy, rule, "discard", &mut r, tx, report.score);
                    decision.verdict = Verdict::Discard(hit.text.clone());
                    return decision;
                }
                // HOLD: Mailnode has no hold queue; the message is quarantined in the
                // recipients' Junk folder (tagged whatever its score).
                checks::Action::Hold => hold = Some((policy, rule)),
                _ => {}
            }
        }
        // SPF scores.
        let spf = self.spf.clone();
        if let Some((_, out)) = &spf {
            let sc = match out.result {
                SpfResult::Fail => s.spf.fail_score,
                SpfResult::SoftFail => s.spf.softfail_score,
                SpfResult::Neutral => s.spf.neutral_score,
                SpfResult::PermError => s.spf.permerror_score,
                _ => 0.0,
            };
            if sc != 0.0 {
                tests.push((
                    format!("SPF_{}", out.result.as_str().to_ascii_uppercase()),
                    sc,
                ));
            }
        }
        // Connection scores.
        if let Some(c) = self.conn_checks().await.cloned() {
            if let Some(d) = &c.dnsbl {
                if s.dnsbl.add_to_score {
                    for h in &d.hits {
                        tests.push((format!("DNSBL_{}", h.zone), h.weight));
                    }
                }
            }
            if matches!(c.rdns, Some(Fcrdns::Unconfirmed)) && s.connection.fcrdns_score != 0.0 {
                tests.push(("NO_FCRDNS".into(), s.connection.fcrdns_score));
            }
        }
        // DKIM and DMARC.
        let mut auth_header = None;
        if s.dkim.enabled {
            let spf_result = spf.as_ref().map(|(d, o)| (o.result, d.as_str()));
            let out = stages
                .auth
                .verify(
                    message,
                    AuthInput {
                        ip: self.ip,
                        helo: tx.helo,
                        mail_from: (!tx.sender.is_empty()).then_some(tx.sender),
                        spf: spf_result,
                        hostname: &self.filter.hostname,
                    },
                )
                .await;
            if out.dkim.iter().any(|d| d.result == "fail") && s.dkim.dkim_fail_score != 0.0 {
                tests.push(("DKIM_FAIL".into(), s.dkim.dkim_fail_score));
            }
            if out.dmarc.result == "fail" {
                use crate::antiube::dkim::DmarcPolicy;
                match out.dmarc.policy {
                    DmarcPolicy::Reject if s.dkim.dmarc_reject => {
                        let mut r = Refusal::new(
                            550,
                            (5, 7, 1),
                            format!("DMARC policy of {} rejects this message", out.dmarc.domain),
                        );
                        self.data_event(
                            "dmarc",
                            out.dmarc.domain.clone(),
                            "reject",
                            &mut r,
                            tx,
                            0.0,
                        );
                        decision.verdict = Verdict::Refuse(r);
                        return decision;
                    }
                    DmarcPolicy::Reject | DmarcPolicy::Quarantine => {
                        tests.push(("DMARC_FAIL".into(), s.dkim.dmarc_quarantine_score));
                    }
                    _ => {}
                }
            }
            auth_header = Some(out.authentication_results(&self.filter.hostname));
        }
        // spamd.
        if let Some(sd) = &s.spamd {
            if complete && message.len() <= sd.max_bytes {
                match spamd::check(sd, message).await {
                    Ok(rep) => {
                        if rep.score != 0.0 && sd.weight != 0.0 {
                            tests.push(("SPAMD".into(), rep.score * sd.weight));
                        }
                    }
                    Err(e) if e.not_scanned() => {
                        tracing::info!(error = %e, "message not checked by spamd");
                    }
                    Err(e) => {
                        crate::metrics::antiube_check_error("spamd");
                        tracing::warn!(error = %e, "spamd check failed");
                        if sd.on_error == OnError::Tempfail {
                            let mut r = Refusal::new(
                                451,
                                (4, 7, 1),
                                "content scanner unavailable, try again later",
                            );
                            self.data_event("spamd", e.to_string(), "tempfail", &mut r, tx, 0.0);
                            decision.verdict = Verdict::Refuse(r);
                            return decision;
                        }
                    }
                }
            }
        }
        // Rules weighted 0 are disabled, not hits; the fold starts at +0.0 (an empty f64 `sum`
        // is -0.0, which would print as "-0.00").
        tests.retain(|(_, s)| *s != 0.0);
        let score = tests.iter().fold(0.0, |acc, (_, s)| acc + s);
        let score = (score * 100.0).round() / 100.0;
        decision.score = score;
        let names: Vec<&str> = tests.iter().map(|(n, _)| n.as_str()).collect();
        let rule = names.join(",");
        if let Some(reject) = s.content.reject_score {
            if score >= reject {
                let mut r = Refusal::new(
                    550,
                    (5, 7, 1),
                    format!("message content rejected as spam (score {score:.1} ≥ {reject:.1})"),
                );
                self.data_event("score", rule, "reject", &mut r, tx, score);
                decision.verdict = Verdict::Refuse(r);
                return decision;
            }
        }
        let tag = score >= s.content.tag_score || hold.is_some();
        decision.tagged = tag;
        // The fields we add, in the order they are read top-down.
        let mut h = String::new();
        if let Some(a) = auth_header {
            h.push_str("Authentication-Results: ");
            h.push_str(&a);
            h.push_str("\r\n");
        }
        if let Some((domain, out)) = &spf {
            h.push_str(&received_spf(
                out,
                domain,
                self.ip,
                tx,
                &self.filter.hostname,
            ));
        }
        if tag {
            h.push_str("X-Spam-Flag: YES\r\n");
        }
        h.push_str(&format!("X-Spam-Score: {score:.2}\r\n"));
        h.push_str(&format!(
            "X-Spam-Status: {}, score={score:.1} required={:.1} tests={}\r\n",
            if tag { "Yes" } else { "No" },
            s.content.tag_score,
            if names.is_empty() {
                "none".into()
            } else {
                names.join(",")
            },
        ));
        decision.prepend = h.into_bytes();
        let mut ok = Refusal::new(250, (2, 0, 0), "OK");
        match hold {
            Some((policy, rule)) => self.data_event(policy, rule, "tag", &mut ok, tx, score),
            None => self.data_event(
                "score",
                rule,
                if tag { "tag" } else { "accept" },
                &mut ok,
                tx,
                score,
            ),
        }
        decision
    }

    fn data_event(
        &self,
        policy: &'static str,
        rule: String,
        action: &'static str,
        reply: &mut Refusal,
        tx: &TxInfo<'_>,
        score: f64,
    ) {
        reply.policy = policy;
        self.filter.emit(Event {
            time_ms: now_ms(),
            node: String::new(),
            stage: "data",
            policy,
            rule,
            score,
            client_ip: self.ip,
            helo: tx.helo.to_string(),
            sender: tx.sender.to_string(),
            recipients: tx.recipients.iter().map(|r| r.to_string()).collect(),
            action,
            reply: format!(
                "{} {}.{}.{} {}",
                reply.code, reply.status.0, reply.status.1, reply.status.2, reply.text
            ),
        });
    }
}

fn map_policy(map: &str) -> &'static str {
    match map {
        "header_checks" | "nested_header_checks" => "header_checks",
        "mime_header_checks" => "mime_header_checks",
        _ => "body_checks",
    }
}
