//! The optional watchdog (`failover.watchdog_device`, e.g. `/dev/watchdog`): the last line of
//! defence when a holder cannot let go of the volume.
//!
//! Armed when this node has confirmed the lease and before it touches the volume; disarmed
//! (magic close: `V`, then close) only after the volume was released. While armed, a thread of
//! its own writes to the device every quarter of the timeout, but only while the store's
//! [`WriteFence`] is open — that is, while lease renewals keep committing. So the machine is
//! reset by the watchdog `watchdog_timeout_s` after the last committed renewal when:
//!
//! - the release (services stop, VIP, unmount) hangs or fails, leaving the volume mounted;
//! - the process is paused (SIGSTOP, a hung VM) or killed while holding: the device is then
//!   closed without the magic character, which a Linux watchdog driver does not take as a stop.
//!
//! Meanwhile the leader has granted the lease elsewhere (after `lease_ms`), so the timeout
//! bounds how long an old holder can keep the device mounted. Do not configure a watchdog in a
//! container sharing the host's device.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::WriteFence;

/// The watchdog device and whether this node armed it.
pub(super) struct Watchdog {
    path: PathBuf,
    timeout: Duration,
    armed: Mutex<Option<Armed>>,
}

struct Armed {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<std::io::Result<File>>,
}

impl Watchdog {
    pub(super) fn new(path: PathBuf, timeout: Duration) -> Watchdog {
        Watchdog {
            path,
            timeout,
            armed: Mutex::new(None),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the device (which starts its timer), sets its timeout, and pets it while `fence`
    /// is open. Idempotent.
    pub(super) fn arm(&self, fence: Arc<WriteFence>) -> std::io::Result<()> {
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        if armed.is_some() {
            return Ok(());
        }
        let mut file = std::fs::OpenOptions::new().write(true).open(&self.path)?;
        let timeout = self.device_timeout();
        // Pet once now: the timer runs from the open.
        file.write_all(b"\0")?;
        let period = (timeout / 4).max(Duration::from_millis(100));
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mailnode-watchdog".into())
            .spawn(move || {
                loop {
                    match stopped.recv_timeout(period) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        // Stopped (or the holder is gone): hand the file back for the close.
                        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(file),
                    }
                    if fence.is_open() {
                        file.write_all(b"\0")?;
                    }
                }
            })?;
        tracing::info!(device = %self.path.display(), timeout_s = timeout.as_secs(), "mailstore: watchdog armed");
        *armed = Some(Armed { stop, thread });
        Ok(())
    }

    /// Stops petting and disarms the device with the magic close. Call only once the volume
    /// is released. Idempotent.
    pub(super) fn disarm(&self) -> std::io::Result<()> {
        let Some(armed) = self.armed.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        let _ = armed.stop.send(());
        let mut file = armed
            .thread
            .join()
            .map_err(|_| std::io::Error::other("the watchdog thread panicked"))??;
        file.write_all(b"V")?;
        drop(file);
        tracing::info!(device = %self.path.display(), "mailstore: watchdog disarmed");
        Ok(())
    }

    /// The timeout in force: the device's own, from sysfs, when it can be read (setting it
    /// takes an ioctl, and this crate has no unsafe code: the operator sets it through the
    /// driver, e.g. softdog's `soft_margin` or iTCO_wdt's `heartbeat`), else the configured one.
    fn device_timeout(&self) -> Duration {
        let name = match self.path.file_name().and_then(|n| n.to_str()) {
            Some("watchdog") => "watchdog0",
            Some(n) => n,
            None => return self.timeout,
        };
        let sysfs = Path::new("/sys/class/watchdog").join(name).join("timeout");
        let Some(secs) = std::fs::read_to_string(&sysfs)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .filter(|s| *s > 0)
        else {
            return self.timeout;
        };
        let device = Duration::from_secs(secs);
        if device != self.timeout {
            tracing::warn!(
                device = %self.path.display(),
                device_timeout_s = secs,
                configured_s = self.timeout.as_secs(),
                "the watchdog's own timeout differs from failover.watchdog_timeout_s; the device's applies"
            );
        }
        device
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn size(p: &Path) -> u64 {
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
    }

    /// No watchdog device exists on the build machine (a Firecracker VM without the softdog
    /// module), so this drives the protocol against a regular file: pets while the fence is
    /// open, none once it closes, the magic `V` at disarm.
    #[test]
    fn pets_only_while_the_fence_is_open_and_disarms_with_the_magic_close() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("watchdog");
        std::fs::write(&dev, b"").unwrap();
        let wd = Watchdog::new(dev.clone(), Duration::from_millis(400));
        let fence = Arc::new(WriteFence::new());
        fence.open_until(Instant::now() + Duration::from_secs(60));
        wd.arm(fence.clone()).unwrap();
        wd.arm(fence.clone()).unwrap();
        // A file has no sysfs timeout: the configured 400 ms applies, a pet every 100 ms.
        std::thread::sleep(Duration::from_millis(900));
        let petted = size(&dev);
        assert!(petted >= 3, "{petted} pets");
        fence.close();
        std::thread::sleep(Duration::from_millis(300));
        let after_close = size(&dev);
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(size(&dev), after_close, "petted after the fence closed");
        wd.disarm().unwrap();
        wd.disarm().unwrap();
        let bytes = std::fs::read(&dev).unwrap();
        assert_eq!(bytes.last(), Some(&b'V'));
        assert_eq!(bytes.len() as u64, after_close + 1);
    }

    #[test]
    fn a_missing_device_is_an_error() {
        let wd = Watchdog::new("/nonexistent/watchdog".into(), Duration::from_secs(10));
        let err = wd.arm(Arc::new(WriteFence::new())).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
