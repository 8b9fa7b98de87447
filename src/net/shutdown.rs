//! Node-wide graceful shutdown: one [`Shutdown`] handle per node, cheap [`ShutdownSignal`]
//! clones for every session.
//!
//! Its job is to carry one fact — "drain requested, and sessions still running at instant T
//! will be aborted" — from the signal handler to every listener and session. It never closes a
//! connection or sends a goodbye itself: each protocol says its own (SMTP 421, IMAP `* BYE`,
//! POP3 `-ERR`) when it sees the signal, and [`super::serve`] enforces the deadline.
//!
//! Security note: a second signal, or any later [`Shutdown::drain`] with a shorter grace, can
//! only bring the deadline forward, so a client cannot keep the node alive past what the operator
//! asked for.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The grace period [`Shutdown::trigger`] gives sessions to finish: long enough for an SMTP
/// client to complete a DATA transfer in progress, short enough for an orchestrator's stop
/// timeout.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// The node's shutdown switch. Clones control the same switch.
#[derive(Clone, Debug)]
pub struct Shutdown {
    /// `None` while running; `Some(deadline)` once a drain was requested. A `watch` so late
    /// subscribers see the current state and nothing is missed between checks.
    tx: Arc<watch::Sender<Option<Instant>>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A switch in the "running" position.
    pub fn new() -> Self {
        Shutdown {
            tx: Arc::new(watch::channel(None).0),
        }
    }

    /// Requests a drain with [`DEFAULT_GRACE`]: listeners stop accepting, sessions see the
    /// signal, and those still running after the grace period are aborted.
    pub fn trigger(&self) {
        self.drain(DEFAULT_GRACE);
    }

    /// Requests a drain, aborting sessions still running after `grace`. If a drain is already
    /// under way, the earlier of the two deadlines wins (`drain(Duration::ZERO)` forces an
    /// immediate stop, e.g. on a second Ctrl-C).
    pub fn drain(&self, grace: Duration) {
        let now = Instant::now();
        // A grace too large to represent means "no hurry": a year stands in for it.
        let deadline = now
            .checked_add(grace)
            .unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        self.tx.send_if_modified(|current| match *current {
            Some(existing) if existing <= deadline => false,
            _ => {
                *current = Some(deadline);
                true
            }
        });
    }

    /// Whether a drain was requested.
    pub fn is_triggered(&self) -> bool {
        self.tx.borrow().is_some()
    }

    /// A signal for a session or a task to watch.
    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            rx: self.tx.subscribe(),
        }
    }

    /// A raw receiver, for [`super::serve`] to follow deadline changes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<Instant>> {
        self.tx.subscribe()
    }
}

/// What a session holds to learn that the node is draining. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ShutdownSignal {
    rx: watch::Receiver<Option<Instant>>,
}

impl ShutdownSignal {
    /// Whether a drain was requested; for polling between commands.
    pub fn is_triggered(&self) -> bool {
        self.rx.borrow().is_some()
    }

    /// When sessions still running will be aborted, once a drain was requested. A session in the
    /// middle of a long transfer can use it to decide whether finishing is worth trying.
    pub fn deadline(&self) -> Option<Instant> {
        *self.rx.borrow()
    }

    /// Resolves once a drain is requested (at once if it already was). Cancel-safe, so it can sit
    /// in a `tokio::select!` next to a read. If every [`Shutdown`] handle is dropped without a
    /// trigger, it never resolves: dropping the switch is not a request to stop.
    pub async fn triggered(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(Option::is_some).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// SIGTERM and SIGINT handlers. Installing them early (before listeners start) matters: a
/// signal that arrives before they exist kills the process instead of draining it.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Registers the handlers now; signals arriving from here on are kept for [`Signals::recv`].
    pub fn install() -> io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for SIGTERM or SIGINT and returns which one arrived. The binary calls
    /// [`Shutdown::trigger`] after the first and may call `drain(Duration::ZERO)` after a second.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Installs the handlers and waits for SIGTERM or SIGINT (see [`Signals`] to install early).
pub async fn wait_for_signal() -> io::Result<&'static str> {
    Ok(Signals::install()?.recv().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signal_fires_once_triggered_and_deadline_only_moves_earlier() {
        let shutdown = Shutdown::new();
        let signal = shutdown.signal();
        assert!(!signal.is_triggered());
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move { signal.triggered().await }
        });
        shutdown.drain(Duration::from_secs(60));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        let first = signal.deadline().unwrap();
        shutdown.drain(Duration::from_secs(600));
        assert_eq!(signal.deadline(), Some(first));
        shutdown.drain(Duration::ZERO);
        assert!(signal.deadline().unwrap() < first);
        // A late subscriber sees the state at once.
        tokio::time::timeout(Duration::from_secs(5), shutdown.signal().triggered())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn dropping_the_switch_is_not_a_trigger() {
        let signal = Shutdown::new().signal();
        let r = tokio::time::timeout(Duration::from_millis(50), signal.triggered()).await;
        assert!(r.is_err());
    }
}
