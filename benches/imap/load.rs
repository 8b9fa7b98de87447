//! The load: what the clients of each phase do, the same for both systems.
//!
//! - `deliver`: every user's messages over LMTP (untimed setup).
//! - `warm_up`: one LOGIN + SELECT + LOGOUT per user.
//! - `imap_sessions`: the iteration on a new connection each time — LOGIN, SELECT
//!   INBOX, FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)]), UID FETCH n
//!   BODY.PEEK[], UID STORE n +FLAGS (\Seen), LOGOUT — from N concurrent clients.
//! - `imap_open`: the same commands but LOGIN and LOGOUT on sessions kept open (logged in
//!   before the clock starts), so the figure is the IMAP engine's without the password hash.
//! - `pop3`: every user's maildrop once — USER, PASS, STAT, RETR of every message, QUIT.
//! - `idle_sessions`: N connections each in LOGIN + SELECT INBOX + IDLE, kept until dropped.
//!
//! Each response is checked (tagged OK, the mailbox holds every message delivered, one body
//! literal per body fetch), so a figure never counts failed work. A session that fails is
//! retried on a new connection a few times and counted; one that keeps failing ends the run.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{fail, message, Imap, Lmtp, Pop3, SIZES};
use crate::measure::Latencies;
use crate::procs::{Cpu, CpuClock};

/// Attempts per iteration or session before the benchmark gives up.
const ATTEMPTS: usize = 3;

/// Who the clients log in as.
pub struct Users {
    pub names: Vec<String>,
    pub password: String,
    /// Messages delivered to each user.
    pub per_user: usize,
}

/// Evaluates `$future` (a new future each time) until it succeeds, at most [`ATTEMPTS`] times;
/// counts the retries in `$retries`; panics with the last error.
macro_rules! retrying {
    ($what:expr, $retries:expr, $future:expr) => {{
        let mut n = 0;
        loop {
            n += 1;
            match $future.await {
                Ok(v) => break v,
                Err(e) => {
                    assert!(n < ATTEMPTS, "{} failed {n} times, last: {e}", $what);
                    $retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }};
}

/// Delivers message `j` for `j` in `0..per_user` to every user over `connections` LMTP
/// connections; returns the time taken and the octets delivered.
pub async fn deliver(addr: SocketAddr, users: &Arc<Users>, connections: usize) -> (Duration, u64) {
    let total = users.names.len() * users.per_user;
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections.max(1) {
        let (users, next) = (users.clone(), next.clone());
        tasks.spawn(async move {
            let retries = AtomicUsize::new(0);
            let mut octets = 0u64;
            let mut conn: Option<Lmtp> = None;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let user = &users.names[n % users.names.len()];
                let j = n / users.names.len();
                let msg = message(user, j);
                assert_eq!(msg.len() - 3, SIZES[j % SIZES.len()], "message size");
                octets += (msg.len() - 3) as u64;
                let what = format!("delivering message {j} to {user}");
                retrying!(what, retries, deliver_one(&mut conn, addr, user, &msg));
            }
            if let Some(c) = conn {
                c.quit().await;
            }
            octets
        });
    }
    let mut octets = 0;
    while let Some(done) = tasks.join_next().await {
        octets += done.expect("a delivery client panicked");
    }
    (start.elapsed(), octets)
}

/// One message on the connection in `conn` (opened if there is none, dropped on error).
async fn deliver_one(
    conn: &mut Option<Lmtp>,
    addr: SocketAddr,
    user: &str,
    msg: &[u8],
) -> std::io::Result<()> {
    let c = match conn.as_mut() {
        Some(c) => c,
        None => conn.insert(Lmtp::connect(addr).await?),
    };
    let r = c.deliver(user, msg).await;
    if r.is_err() {
        *conn = None;
    }
    r
}

/// LOGIN + SELECT INBOX + LOGOUT once per user, `concurrency` at a time: the mailboxes are
/// opened once (as every active user's are on a running server) before memory is measured.
pub async fn warm_up(addr: SocketAddr, users: &Arc<Users>, concurrency: usize) {
    let retries = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..users.names.len() {
        if tasks.len() >= concurrency.max(1) {
            tasks
                .join_next()
                .await
                .expect("task")
                .expect("warm-up panicked");
        }
        let (users, retries) = (users.clone(), retries.clone());
        tasks.spawn(async move {
            let user = &users.names[i];
            retrying!(
                format!("warming up {user}"),
                retries,
                warm_one(addr, &users, user)
            );
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("warm-up panicked");
    }
}

async fn warm_one(addr: SocketAddr, users: &Users, user: &str) -> std::io::Result<()> {
    let mut c = Imap::connect(addr).await?;
    c.login(user, &users.password).await?;
    select(&mut c, users.per_user).await?;
    c.command("LOGOUT").await.map(|_| ())
}

/// SELECT INBOX; the mailbox must hold every delivered message.
async fn select(c: &mut Imap, per_user: usize) -> std::io::Result<()> {
    let r = c.command("SELECT INBOX").await?;
    if r.exists != Some(per_user as u32) {
        return Err(fail(format!(
            "SELECT INBOX: {:?} messages, expected {per_user}",
            r.exists
        )));
    }
    Ok(())
}

/// FETCH of every message's UID, flags and three header fields; returns the UIDs in order.
/// Responses without the header fields (flag changes by other sessions) are not counted.
async fn fetch_headers(c: &mut Imap, per_user: usize) -> std::io::Result<Vec<u32>> {
    let r = c
        .command("FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])")
        .await?;
    let uids: Vec<Option<u32>> = r
        .fetches
        .iter()
        .filter(|f| f.literals.len() == 1)
        .map(|f| f.uid)
        .collect();
    match uids.iter().copied().collect::<Option<Vec<u32>>>() {
        Some(uids) if uids.len() == per_user => Ok(uids),
        _ => Err(fail(format!(
            "FETCH 1:* headers: {} responses with the header fields ({} with a UID), expected {per_user}",
            uids.len(),
            uids.iter().flatten().count()
        ))),
    }
}

/// UID FETCH of one whole message; returns its size.
async fn fetch_body(c: &mut Imap, uid: u32) -> std::io::Result<usize> {
    let r = c.command(&format!("UID FETCH {uid} BODY.PEEK[]")).await?;
    match r.literals.as_slice() {
        [n] if *n >= SIZES[0] => Ok(*n),
        other => Err(fail(format!(
            "UID FETCH {uid} BODY.PEEK[]: literals {other:?}"
        ))),
    }
}

/// What an IMAP phase measured.
pub struct ImapPhase {
    pub clients: usize,
    /// Iterations (each: the phase's commands once).
    pub iterations: usize,
    /// Commands per iteration.
    pub commands: usize,
    /// Per iteration, from its first byte to its last response; `wall` is the phase's.
    pub iteration: Latencies,
    /// Per iteration: connect + greeting + LOGIN (none for sessions kept open).
    pub login: Option<Latencies>,
    /// Per command, every command but LOGIN.
    pub command: Latencies,
    /// Message octets fetched with UID FETCH BODY.PEEK[].
    pub body_octets: u64,
    pub retries: usize,
    /// While the clock ran.
    pub cpu: Cpu,
}

impl ImapPhase {
    pub fn iterations_per_sec(&self) -> f64 {
        self.iteration.per_sec()
    }
    pub fn commands_per_sec(&self) -> f64 {
        (self.iterations * self.commands) as f64 / self.iteration.wall.as_secs_f64()
    }
}

/// Samples of one iteration, or of one client's iterations.
#[derive(Default)]
struct Samples {
    iteration: Vec<Duration>,
    login: Vec<Duration>,
    command: Vec<Duration>,
    body_octets: u64,
}

impl Samples {
    fn merge(&mut self, o: Samples) {
        self.iteration.extend(o.iteration);
        self.login.extend(o.login);
        self.command.extend(o.command);
        self.body_octets += o.body_octets;
    }
}

/// A stopwatch for the commands of one iteration.
struct Laps {
    t: Instant,
}

impl Laps {
    fn start() -> Laps {
        Laps { t: Instant::now() }
    }
    fn lap(&mut self, s: &mut Samples) {
        s.command.push(self.t.elapsed());
        self.t = Instant::now();
    }
}

/// SELECT, FETCH headers, UID FETCH of message `index`'s body, UID STORE `store` on it.
async fn mailbox_commands(
    c: &mut Imap,
    per_user: usize,
    index: usize,
    store: &str,
    s: &mut Samples,
) -> std::io::Result<()> {
    let mut laps = Laps::start();
    select(c, per_user).await?;
    laps.lap(s);
    let uids = fetch_headers(c, per_user).await?;
    laps.lap(s);
    let uid = uids[index];
    s.body_octets += fetch_body(c, uid).await? as u64;
    laps.lap(s);
    c.command(&format!("UID STORE {uid} {store}")).await?;
    laps.lap(s);
    Ok(())
}

/// One iteration of the session on a new connection.
async fn session_iteration(
    addr: SocketAddr,
    users: &Users,
    user: &str,
    index: usize,
) -> std::io::Result<Samples> {
    let mut s = Samples::default();
    let t0 = Instant::now();
    let mut c = Imap::connect(addr).await?;
    c.login(user, &users.password).await?;
    s.login.push(t0.elapsed());
    mailbox_commands(&mut c, users.per_user, index, "+FLAGS (\\Seen)", &mut s).await?;
    let mut laps = Laps::start();
    c.command("LOGOUT").await?;
    laps.lap(&mut s);
    s.iteration.push(t0.elapsed());
    Ok(s)
}

/// The iteration `iterations` times from `clients` concurrent clients, a new
/// connection each time. Iteration `g = offset + k` logs in as user `g mod U` and touches its
/// message `(g / U) mod M`, so no two iterations of a run set `\Seen` on the same message
/// while `offset + iterations <= U × M`.
pub async fn imap_sessions(
    addr: SocketAddr,
    roots: &[u32],
    users: &Arc<Users>,
    clients: usize,
    iterations: usize,
    offset: usize,
) -> ImapPhase {
    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let clock = CpuClock::start(roots);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let (users, next, retries) = (users.clone(), next.clone(), retries.clone());
        tasks.spawn(async move {
            let mut s = Samples::default();
            let u = users.names.len();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= iterations {
                    break;
                }
                let g = offset + k;
                let user = &users.names[g % u];
                let index = (g / u) % users.per_user;
                let one = retrying!(
                    format!("IMAP iteration {k} as {user}"),
                    retries,
                    session_iteration(addr, &users, user, index)
                );
                s.merge(one);
            }
            s
        });
    }
    let mut all = Samples::default();
    while let Some(done) = tasks.join_next().await {
        all.merge(done.expect("an IMAP client panicked"));
    }
    let wall = start.elapsed();
    let cpu = clock.stop();
    ImapPhase {
        clients,
        iterations,
        commands: 6,
        iteration: Latencies::new(all.iteration, wall),
        login: Some(Latencies::new(all.login, wall)),
        command: Latencies::new(all.command, wall),
        body_octets: all.body_octets,
        retries: retries.load(Ordering::Relaxed),
        cpu,
    }
}

async fn logged_in(addr: SocketAddr, users: &Users, user: &str) -> std::io::Result<Imap> {
    let mut c = Imap::connect(addr).await?;
    c.login(user, &users.password).await?;
    Ok(c)
}

/// One iteration on the open session in `session` (logged in again if an error dropped it).
async fn open_iteration(
    session: &mut Option<Imap>,
    addr: SocketAddr,
    users: &Users,
    user: &str,
    index: usize,
    store: &str,
) -> std::io::Result<Samples> {
    let c = match session.as_mut() {
        Some(c) => c,
        None => session.insert(logged_in(addr, users, user).await?),
    };
    let mut s = Samples::default();
    let t0 = Instant::now();
    let r = mailbox_commands(c, users.per_user, index, store, &mut s).await;
    s.iteration.push(t0.elapsed());
    match r {
        Ok(()) => Ok(s),
        Err(e) => {
            *session = None;
            Err(e)
        }
    }
}

/// SELECT INBOX, FETCH headers, UID FETCH body, UID STORE on sessions logged in before the
/// clock starts (client `c` as user `c mod U`), `iterations` in all. Client-local iteration
/// `i` touches message `i mod M` and sets `\Flagged` on even passes over the mailbox, clears it
/// on odd ones, so a STORE changes a flag unless two clients of one user cross.
pub async fn imap_open(
    addr: SocketAddr,
    roots: &[u32],
    users: &Arc<Users>,
    clients: usize,
    iterations: usize,
) -> ImapPhase {
    let clients = clients.max(1);
    let retries = Arc::new(AtomicUsize::new(0));
    // Every client logs in (untimed); the clock starts once all have.
    let ready = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (users, next, retries, ready) =
            (users.clone(), next.clone(), retries.clone(), ready.clone());
        tasks.spawn(async move {
            let user = users.names[c % users.names.len()].clone();
            let mut session = Some(retrying!(
                format!("logging in as {user}"),
                retries,
                logged_in(addr, &users, &user)
            ));
            ready.wait().await;
            let mut s = Samples::default();
            let mut i = 0usize;
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= iterations {
                    break;
                }
                let index = i % users.per_user;
                let store = if (i / users.per_user) % 2 == 0 {
                    "+FLAGS (\\Flagged)"
                } else {
                    "-FLAGS (\\Flagged)"
                };
                i += 1;
                let one = retrying!(
                    format!("IMAP iteration {k} as {user} on an open session"),
                    retries,
                    open_iteration(&mut session, addr, &users, &user, index, store)
                );
                s.merge(one);
            }
            if let Some(mut c) = session {
                let _ = c.command("LOGOUT").await;
            }
            s
        });
    }
    ready.wait().await;
    let clock = CpuClock::start(roots);
    let start = Instant::now();
    let mut all = Samples::default();
    while let Some(done) = tasks.join_next().await {
        all.merge(done.expect("an IMAP client panicked"));
    }
    let wall = start.elapsed();
    let cpu = clock.stop();
    ImapPhase {
        clients,
        iterations,
        commands: 4,
        iteration: Latencies::new(all.iteration, wall),
        login: None,
        command: Latencies::new(all.command, wall),
        body_octets: all.body_octets,
        retries: retries.load(Ordering::Relaxed),
        cpu,
    }
}

/// What a POP3 phase measured.
pub struct Pop3Phase {
    pub clients: usize,
    pub sessions: usize,
    pub messages: usize,
    pub octets: u64,
    /// Per session, connect to QUIT's answer; `wall` is the phase's.
    pub session: Latencies,
    pub retries: usize,
    pub cpu: Cpu,
}

impl Pop3Phase {
    pub fn messages_per_sec(&self) -> f64 {
        self.messages as f64 / self.session.wall.as_secs_f64()
    }
}

/// One POP3 session: USER, PASS, STAT, RETR of every message, QUIT; checks that the maildrop
/// holds every delivered message and that RETR returned the octets STAT announced.
async fn pop3_session(
    addr: SocketAddr,
    users: &Users,
    user: &str,
) -> std::io::Result<(usize, u64, Duration)> {
    let t0 = Instant::now();
    let mut c = Pop3::connect(addr).await?;
    c.command(&format!("USER {user}")).await?;
    c.command(&format!("PASS {}", users.password)).await?;
    let (n, size) = c.stat().await?;
    if n != users.per_user {
        return Err(fail(format!(
            "STAT: {n} messages, expected {}",
            users.per_user
        )));
    }
    let mut got = 0;
    for i in 1..=n {
        got += c.retr(i).await?;
    }
    if got != size {
        return Err(fail(format!(
            "RETR of every message gave {got} octets, STAT said {size}"
        )));
    }
    c.command("QUIT").await?;
    Ok((n, got, t0.elapsed()))
}

/// Every user's maildrop once, from `min(clients, U)` concurrent clients. No two sessions of
/// one maildrop overlap (mailnode allows one POP3 session per maildrop at a time).
pub async fn pop3(
    addr: SocketAddr,
    roots: &[u32],
    users: &Arc<Users>,
    clients: usize,
) -> Pop3Phase {
    let clients = clients.clamp(1, users.names.len());
    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let clock = CpuClock::start(roots);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (users, next, retries) = (users.clone(), next.clone(), retries.clone());
        tasks.spawn(async move {
            let mut samples = Vec::new();
            let (mut messages, mut octets) = (0usize, 0u64);
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= users.names.len() {
                    break;
                }
                let user = &users.names[k];
                let (n, o, took) = retrying!(
                    format!("POP3 session of {user}"),
                    retries,
                    pop3_session(addr, &users, user)
                );
                messages += n;
                octets += o;
                samples.push(took);
            }
            (samples, messages, octets)
        });
    }
    let (mut samples, mut messages, mut octets) = (Vec::new(), 0, 0);
    while let Some(done) = tasks.join_next().await {
        let (s, m, o) = done.expect("a POP3 client panicked");
        samples.extend(s);
        messages += m;
        octets += o;
    }
    let wall = start.elapsed();
    let cpu = clock.stop();
    Pop3Phase {
        clients,
        sessions: samples.len(),
        messages,
        octets,
        session: Latencies::new(samples, wall),
        retries: retries.load(Ordering::Relaxed),
        cpu,
    }
}

async fn idle_one(addr: SocketAddr, users: &Users, user: &str) -> std::io::Result<Imap> {
    let mut c = logged_in(addr, users, user).await?;
    select(&mut c, users.per_user).await?;
    c.idle().await?;
    Ok(c)
}

/// Opens `n` sessions, `concurrency` at a time, each LOGIN (as user `i mod U`) + SELECT INBOX
/// + IDLE, and keeps them until the result is dropped.
pub async fn idle_sessions(
    addr: SocketAddr,
    users: &Arc<Users>,
    n: usize,
    concurrency: usize,
) -> Vec<Imap> {
    let retries = Arc::new(AtomicUsize::new(0));
    let mut open = Vec::with_capacity(n);
    let mut tasks = tokio::task::JoinSet::new();
    let step = (n / 5).max(1000);
    let mut next_report = step;
    for i in 0..n {
        while tasks.len() >= concurrency.max(1) {
            open.push(
                tasks
                    .join_next()
                    .await
                    .expect("a running task")
                    .expect("an idle session panicked"),
            );
            if open.len() >= next_report {
                println!("    … {} sessions in IDLE", open.len());
                next_report += step;
            }
        }
        let (users, retries) = (users.clone(), retries.clone());
        tasks.spawn(async move {
            let user = &users.names[i % users.names.len()];
            retrying!(
                format!("idle session {i} as {user}"),
                retries,
                idle_one(addr, &users, user)
            )
        });
    }
    while let Some(done) = tasks.join_next().await {
        open.push(done.expect("an idle session panicked"));
    }
    let r = retries.load(Ordering::Relaxed);
    if r > 0 {
        println!("    ({r} idle-session attempts retried)");
    }
    open
}
