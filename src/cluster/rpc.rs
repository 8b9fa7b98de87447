//! Raft RPC between nodes: length-prefixed JSON frames over mutual TLS.
//!
//! Every frame is a big-endian `u32` length followed by that many bytes of JSON. A connection
//! carries one request at a time; the client keeps it open and reconnects after any error.
//! Security: the listener requires a client certificate issued by the cluster CA (enforced by
//! the rustls configuration handed to it), so only cluster members can vote, append or forward
//! writes. Frames over [`MAX_FRAME`] are refused before any allocation of that size.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::types::{NodeInfo, Request, Response, TypeConfig};

/// Largest frame accepted: snapshot chunks and bulk imports stay well below it.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// A request for the leader, sent by a follower on behalf of its caller.
#[derive(Debug, Serialize, Deserialize)]
pub enum Forward {
    Write(Request),
    /// Returns the leader's read index for a linearizable read.
    ReadIndex,
    AddNode {
        id: u64,
        node: NodeInfo,
    },
    RemoveNode {
        id: u64,
    },
    /// Replication progress as the leader sees it.
    Progress,
}

/// The leader's answer to a [`Forward`].
#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardReply {
    Written(Response),
    ReadIndex(Option<u64>),
    Done,
    Progress(Vec<(u64, Option<u64>)>),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    Forward(Forward),
    /// Asks the node for its configured id and name (before it is added to the membership).
    Identify,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    /// `Err` carries an operator-readable reason and whether a retry elsewhere may help.
    Forward(Result<ForwardReply, ForwardError>),
    Identity {
        id: u64,
        name: String,
    },
}

/// Why the leader could not carry out a forwarded request.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    #[error("node {0} is no longer the leader")]
    NotLeader(u64),
    #[error("{0}")]
    Failed(String),
    /// The leader appended the change but could not commit it in time: it may still be
    /// committed (or dropped) once the leader reaches a majority again.
    #[error("{0}")]
    Unknown(String),
}

pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> std::io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "frame too large",
        ));
    }
    write_raw_frame(w, &body).await
}

async fn write_raw_frame<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf).await?;
    w.flush().await
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> std::io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the limit"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// How this node dials its peers.
#[derive(Clone)]
pub struct Dialer {
    pub tls: Arc<rustls::ClientConfig>,
    /// Local address to dial from (the Raft listener's IP), so peers and firewalls see the
    /// cluster interface rather than whatever the routing table picks.
    pub source_ip: Option<IpAddr>,
    pub connect_timeout: Duration,
}

impl Dialer {
    pub async fn connect(&self, addr: &str) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
        let (host, _) = addr.rsplit_once(':').ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("address {addr} has no port"),
            )
        })?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let sock_addr: SocketAddr =
            tokio::net::lookup_host(addr).await?.next().ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{addr} does not resolve"),
                )
            })?;
        let socket = if sock_addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = self.source_ip {
            if ip.is_ipv4() == sock_addr.is_ipv4() {
                socket.bind(SocketAddr::new(ip, 0))?;
            }
        }
        let fut = async {
            let tcp = socket.connect(sock_addr).await?;
            tcp.set_nodelay(true)?;
            let name = rustls_pki_types::ServerName::try_from(host)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
        };
        tokio::time::timeout(self.connect_timeout, fut)
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to {addr} timed out"),
                )
            })?
    }
}

/// One peer connection, reused across requests.
pub struct PeerClient {
    pub target: u64,
    pub addr: String,
    dialer: Dialer,
    conn: Option<TlsStream<tokio::net::TcpStream>>,
}

impl PeerClient {
    pub fn new(target: u64, addr: String, dialer: Dialer) -> Self {
        PeerClient {
            target,
            addr,
            dialer,
            conn: None,
        }
    }

    /// Opens the connection unless one is open and still usable; nothing is sent.
    pub async fn connect(&mut self) -> Result<(), CallError> {
        if self.conn.as_ref().is_some_and(|c| !idle_and_open(c)) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let conn = self
                .dialer
                .connect(&self.addr)
                .await
                .map_err(CallError::Unreachable)?;
            self.conn = Some(conn);
        }
        Ok(())
    }

    /// Sends one request and waits for its answer. Connection errors are `Unreachable`
    /// (openraft backs off); errors on an established connection are `Network`.
    ///
    /// Cancel-safe: the connection is taken out while a request is in flight, so a caller that
    /// stops waiting (a timeout, a leader change) drops it rather than leaving an answer on it
    /// that the next request would read as its own.
    pub async fn call(
        &mut self,
        req: &RpcRequest,
        ttl: Duration,
    ) -> Result<RpcResponse, CallError> {
        let body =
            serde_json::to_vec(req).map_err(|e| CallError::Network(std::io::Error::other(e)))?;
        if body.len() > MAX_FRAME {
            return Err(CallError::TooLarge);
        }
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => self
                .dialer
                .connect(&self.addr)
                .await
                .map_err(CallError::Unreachable)?,
        };
        let result = tokio::time::timeout(ttl, async {
            write_raw_frame(&mut conn, &body).await?;
            read_frame::<_, RpcResponse>(&mut conn)
                .await?
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "peer closed the connection",
                    )
                })
        })
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request timed out",
            ))
        });
        match result {
            Ok(resp) => {
                self.conn = Some(conn);
                Ok(resp)
            }
            Err(e) => Err(CallError::Network(e)),
        }
    }
}

/// Whether a kept connection can carry a request: nothing arrived on it since its last answer.
/// A peer that restarted or shut down has sent its TLS close_notify and FIN (readable), and a
/// request sent on it would fail with an ambiguous outcome although it was never read.
fn idle_and_open(conn: &TlsStream<tokio::net::TcpStream>) -> bool {
    use futures_util::FutureExt;
    let mut byte = [0u8; 1];
    // One poll: Pending means nothing to read, the connection is idle and open.
    conn.get_ref().0.peek(&mut byte).now_or_never().is_none()
}

#[derive(Debug)]
pub enum CallError {
    Unreachable(std::io::Error),
    Network(std::io::Error),
    /// The request does not fit in one frame; nothing was sent.
    TooLarge,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "unreachable: {e}"),
            CallError::Network(e) => write!(f, "network error: {e}"),
            CallError::TooLarge => write!(f, "request larger than {MAX_FRAME} bytes"),
        }
    }
}

impl<E: std::error::Error> From<CallError> for RPCError<u64, NodeInfo, E> {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
            CallError::TooLarge => RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(1)),
        }
    }
}

fn unexpected<E: std::error::Error>(what: &str) -> RPCError<u64, NodeInfo, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("unexpected answer to {what}"),
    )))
}

/// Builds a [`PeerClient`] per replication target.
pub struct Network {
    pub dialer: Dialer,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> PeerClient {
        PeerClient::new(target, node.raft_addr.clone(), self.dialer.clone())
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        match self
            .call(&RpcRequest::AppendEntries(rpc), option.hard_ttl())
            .await?
        {
            RpcResponse::AppendEntries(r) => r.map_err(|e| RemoteError::new(self.target, e).into()),
            _ => Err(unexpected("append_entries")),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, NodeInfo, RaftError<u64, InstallSnapshotError>>,
    > {
        match self
            .call(&RpcRequest::InstallSnapshot(rpc), option.hard_ttl())
            .await?
        {
            RpcResponse::InstallSnapshot(r) => {
                r.map_err(|e| RemoteError::new(self.target, e).into())
            }
            _ => Err(unexpected("install_snapshot")),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        match self.call(&RpcRequest::Vote(rpc), option.hard_ttl()).await? {
            RpcResponse::Vote(r) => r.map_err(|e| RemoteError::new(self.target, e).into()),
            _ => Err(unexpected("vote")),
        }
    }
}
