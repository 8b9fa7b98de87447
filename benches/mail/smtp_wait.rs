//! Waiting for an SMTP server's greeting (both sides of the mail benchmarks).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;

/// Whether `addr` answers with an SMTP/LMTP `220` greeting.
pub async fn greets(addr: SocketAddr) -> bool {
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut line = String::new();
        tokio::io::BufReader::new(tcp)
            .read_line(&mut line)
            .await
            .ok()?;
        Some(line.starts_with("220"))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Waits until `addr` greets, or panics.
pub async fn wait_for_smtp(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    while !greets(addr).await {
        assert!(Instant::now() < deadline, "no SMTP greeting from {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
