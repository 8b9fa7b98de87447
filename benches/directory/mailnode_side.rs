//! The mailnode side: a three-node cluster of real `mailnode` processes on 127.0.200.1–3 (the
//! test harness's), loaded with `mailctl user import`, written and read through the HTTPS
//! admin API over kept-alive connections; and the in-process lookup path the mail services use.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use crate::common::{TestCluster, Tuning, TOKEN};
use crate::data::{BenchUser, DOMAIN};
use crate::measure::{status_kib, ImportTime, Latencies};
use mailnode::directory::import::{import_command, parse_ldif};
use mailnode::directory::{Directory, Outcome};

/// The bench cluster's 127.0.N.0/24.
const NET: u8 = 200;
/// How long any wait for the cluster may take before the benchmark gives up.
const PATIENCE: Duration = Duration::from_secs(600);

pub struct MailnodeSide {
    /// The node processes; dropping it kills them.
    cluster: TestCluster,
    /// The Raft leader once the cluster has formed.
    leader: u64,
}

impl MailnodeSide {
    /// Starts three nodes with the harness's defaults (fsync on every Raft log append) and
    /// waits until all three are voters the leader replicates to.
    pub async fn start() -> MailnodeSide {
        let mut cluster = TestCluster::new(NET, 3, Tuning::default());
        cluster.form().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(leader) = cluster.leader().await {
                if let Some((200, s)) = cluster
                    .api(leader)
                    .try_call("GET", "/api/status", None)
                    .await
                {
                    let nodes = s["nodes"].as_array().cloned().unwrap_or_default();
                    if nodes.len() == 3
                        && nodes
                            .iter()
                            .all(|n| n["voter"] == true && n["matched"].is_u64())
                    {
                        return MailnodeSide { cluster, leader };
                    }
                }
            }
            assert!(Instant::now() < deadline, "the cluster did not form");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The Raft leader's node id.
    pub fn leader(&self) -> u64 {
        self.leader
    }

    /// The node processes.
    pub fn pids(&self) -> Vec<u32> {
        self.cluster
            .nodes
            .iter()
            .map(|n| n.child.as_ref().expect("node running").id())
            .collect()
    }

    fn follower(&self) -> u64 {
        (1..=3).find(|&i| i != self.leader).unwrap()
    }

    /// `mailctl user import FILE --create-domains` against the leader, until the command has
    /// returned and every node has applied the whole log the leader holds then (`batch`:
    /// records per request, else mailctl's default). The time
    /// includes mailctl's parsing of the file. Checks afterwards (untimed) that each node lists
    /// `expect` users in the domain.
    pub async fn import(&self, ldif: &Path, expect: usize, batch: Option<usize>) -> ImportTime {
        let leader = &self.cluster.nodes[(self.leader - 1) as usize];
        let token = self.cluster.tmp.path().join("admin.token");
        let ca = self.cluster.pki.join("ca.pem");
        let start = Instant::now();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailctl"))
            .arg("--server")
            .arg(leader.api_addr())
            .arg("--token-file")
            .arg(&token)
            .arg("--ca-file")
            .arg(&ca)
            .args(["user", "import"])
            .arg(ldif)
            .arg("--create-domains")
            .args(batch.map(|b| format!("--batch={b}")))
            .output()
            .await
            .expect("run mailctl");
        assert!(
            out.status.success(),
            "mailctl user import failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let command = start.elapsed();
        let (_, status) = self
            .cluster
            .api(self.leader)
            .call("GET", "/api/status", None)
            .await;
        let target = status["last_log_index"]
            .as_u64()
            .expect("leader's last log index");
        for id in 1..=3 {
            let api = self.cluster.api(id);
            let deadline = Instant::now() + PATIENCE;
            loop {
                if let Some((200, s)) = api.try_call("GET", "/api/status", None).await {
                    if s["applied"].as_u64().is_some_and(|a| a >= target) {
                        break;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "node {id} never applied index {target}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let complete = start.elapsed();
        println!(
            "  mailctl user import --create-domains{}: {}",
            batch.map_or(String::new(), |b| format!(" --batch={b}")),
            String::from_utf8_lossy(&out.stdout).trim()
        );
        for id in 1..=3 {
            let (s, v) = self
                .cluster
                .api(id)
                .call("GET", &format!("/api/users?domain={DOMAIN}"), None)
                .await;
            let n = v.as_array().map_or(0, Vec::len);
            assert!(
                s == 200 && n == expect,
                "node {id} lists {n} users, not {expect}"
            );
        }
        ImportTime { command, complete }
    }

    /// Adds `users` one request at a time from `clients` concurrent connections to the leader
    /// (`POST /api/users` with the `{SSHA}` hash: no server-side hashing, like an LDAP add).
    pub async fn writes(&self, users: Arc<Vec<BenchUser>>, clients: usize) -> Latencies {
        let addr = self.cluster.nodes[(self.leader - 1) as usize].api_addr();
        let mut conns = Vec::new();
        for _ in 0..clients {
            conns.push(Conn::open(&addr, &self.cluster.pki.join("ca.pem")).await);
        }
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        // A JoinSet aborts the writers if this phase is dropped (Ctrl-C, a panic elsewhere).
        let mut tasks = tokio::task::JoinSet::new();
        for mut conn in conns {
            let (users, next) = (users.clone(), next.clone());
            tasks.spawn(async move {
                let mut samples = Vec::new();
                while let Some(u) = users.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let body = json!({
                        "address": u.address,
                        "display_name": u.cn,
                        "password_hash": u.password_hash,
                    });
                    let t = Instant::now();
                    let (status, answer) = conn.request("POST", "/api/users", Some(&body)).await;
                    samples.push(t.elapsed());
                    assert_eq!(status, 201, "adding {}: {answer}", u.address);
                }
                samples
            });
        }
        let mut samples = Vec::new();
        while let Some(done) = tasks.join_next().await {
            samples.extend(done.expect("a writer panicked"));
        }
        Latencies::new(samples, start.elapsed())
    }

    /// `GET /api/users/{address}` for each user in `order`, over one kept-alive connection to
    /// a follower (reads are served from the node's local copy).
    pub async fn lookups(&self, users: &[BenchUser], order: &[usize]) -> Latencies {
        let addr = self.cluster.nodes[(self.follower() - 1) as usize].api_addr();
        let mut conn = Conn::open(&addr, &self.cluster.pki.join("ca.pem")).await;
        let mut samples = Vec::with_capacity(order.len());
        let start = Instant::now();
        for &i in order {
            let path = format!("/api/users/{}", users[i].address);
            let t = Instant::now();
            let (status, answer) = conn.request("GET", &path, None).await;
            samples.push(t.elapsed());
            assert_eq!(status, 200, "{path}: {answer}");
        }
        Latencies::new(samples, start.elapsed())
    }
}

/// One HTTPS connection to the admin API, kept alive across requests (the harness's `Api`
/// opens one per request, which would time TCP and TLS handshakes rather than the directory).
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    addr: String,
}

impl Conn {
    async fn open(addr: &str, ca: &Path) -> Conn {
        let tls = mailnode::tls::client_config_trusting(ca).expect("cluster CA");
        let tcp = TcpStream::connect(addr)
            .await
            .expect("connect to the admin API");
        tcp.set_nodelay(true).expect("TCP_NODELAY");
        let host = addr.rsplit_once(':').expect("host:port").0.to_string();
        let name = rustls_pki_types::ServerName::try_from(host).expect("server name");
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .expect("TLS handshake with the admin API");
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("HTTP handshake");
        tokio::spawn(conn);
        Conn {
            sender,
            addr: addr.to_string(),
        }
    }

    async fn request(&mut self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.addr)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let exchange = async {
            self.sender.ready().await.expect("connection usable");
            let resp = self.sender.send_request(req).await.expect("response");
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.expect("body").to_bytes();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        };
        tokio::time::timeout(Duration::from_secs(30), exchange)
            .await
            .unwrap_or_else(|_| panic!("{method} {path} got no answer within 30 s"))
    }
}

/// The in-process path: a [`Directory`] built from the same LDIF text with the same
/// `ImportUsers` command the server applies; then `Directory::user` + `Directory::resolve` per
/// address. Returns the build time, the per-lookup latencies (each sample brackets one
/// `user` + `resolve` pair with a clock read) and the time for the same loop without clock
/// reads. Prints how much this process's resident memory grew meanwhile: an upper bound on
/// the size of the in-memory directory every node holds (the parsed records count too).
pub fn local_lookups(
    ldif: &str,
    users: &[BenchUser],
    order: &[usize],
) -> (Duration, Latencies, Duration) {
    let rss_before = status_kib("self", "VmRSS");
    let start = Instant::now();
    let records: Vec<_> = parse_ldif(ldif)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("the benchmark's LDIF parses");
    let cmd = import_command(records, true, |_| {
        unreachable!("the benchmark's passwords are hashes")
    });
    let mut dir = Directory::new();
    let applied = dir.apply(&cmd).expect("import applies");
    let built = start.elapsed();
    let rss_growth = status_kib("self", "VmRSS").saturating_sub(rss_before);
    println!(
        "  resident memory grew by {} while parsing the file and building the directory",
        crate::measure::fmt_kib(rss_growth)
    );
    match applied.outcome {
        Outcome::Import { errors, .. } => assert!(errors.is_empty(), "import refused {errors:?}"),
        other => panic!("unexpected outcome {other:?}"),
    }

    let lookup = |u: &BenchUser| {
        let user = dir.user(&u.address).expect("user present");
        let resolution = dir.resolve(&u.address).expect("address resolves");
        std::hint::black_box((user, resolution));
    };
    let mut samples = Vec::with_capacity(order.len());
    let loop_start = Instant::now();
    for &i in order {
        let t = Instant::now();
        lookup(&users[i]);
        samples.push(t.elapsed());
    }
    let timed = Latencies::new(samples, loop_start.elapsed());
    let untimed_start = Instant::now();
    for &i in order {
        lookup(&users[i]);
    }
    (built, timed, untimed_start.elapsed())
}
