//! The peer: OpenLDAP `slapd` from Debian as a provider/consumer pair, each an instance of its
//! own from a slapd.conf-style file in a temporary folder — mdb databases (which sync on
//! every commit: no `dbnosync`), the `syncprov` overlay on the provider, `syncrepl
//! refreshAndPersist` on the consumer, and an equality index on `mail` on both, as a mail
//! directory would have. Provider on 127.0.200.11:3890, consumer on 127.0.200.12:3890.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3::{Ldap, LdapConnAsync, Scope, SearchEntry};

use crate::data::{BenchUser, BASE_DN};
use crate::measure::{ImportTime, Latencies};

const SLAPD: &str = "/usr/sbin/slapd";
const MODULES: &str = "/usr/lib/ldap";
const SCHEMAS: &str = "/etc/ldap/schema";
const ROOT_DN: &str = "cn=admin,dc=bench,dc=example";
const ROOT_PW: &str = "bench-secret";
const PROVIDER: &str = "ldap://127.0.200.11:3890/";
const CONSUMER: &str = "ldap://127.0.200.12:3890/";
/// How long any wait for slapd may take before the benchmark gives up.
const PATIENCE: Duration = Duration::from_secs(600);

/// Why the slapd side cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    let needed = [
        SLAPD.to_string(),
        format!("{MODULES}/back_mdb.la"),
        format!("{MODULES}/syncprov.la"),
        format!("{SCHEMAS}/inetorgperson.schema"),
    ];
    if let Some(f) = needed.iter().find(|f| !Path::new(f).exists()) {
        return Some(format!("{f} is missing"));
    }
    let ldapadd = Command::new("ldapadd").arg("-VV").output();
    if ldapadd.is_err() {
        return Some("ldapadd (ldap-utils) is missing".into());
    }
    None
}

/// `slapd -VV`'s first line.
pub fn version() -> String {
    Command::new(SLAPD)
        .arg("-VV")
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stderr).into_owned();
            text.lines().next().unwrap_or_default().trim().to_string()
        })
        .unwrap_or_default()
}

/// One slapd process; dropping it stops it (SIGTERM, then SIGKILL after 5 s).
struct Slapd {
    child: Child,
    url: &'static str,
    log: PathBuf,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct SlapdPair {
    // Fields drop in order: both servers stop before their folder is removed.
    provider: Slapd,
    consumer: Slapd,
    dir: tempfile::TempDir,
}

/// The parts of slapd.conf both servers share.
fn common_conf(dir: &Path, name: &str, modules: &str) -> String {
    let d = dir.display();
    format!(
        "include {SCHEMAS}/core.schema\n\
         include {SCHEMAS}/cosine.schema\n\
         include {SCHEMAS}/inetorgperson.schema\n\
         modulepath {MODULES}\n\
         {modules}\
         pidfile {d}/{name}.pid\n\
         argsfile {d}/{name}.args\n\
         sizelimit unlimited\n\
         database mdb\n\
         maxsize 4294967296\n\
         suffix \"{BASE_DN}\"\n\
         rootdn \"{ROOT_DN}\"\n\
         rootpw {ROOT_PW}\n\
         directory {d}/{name}-db\n\
         index objectClass eq\n\
         index mail eq\n\
         index entryCSN,entryUUID eq\n"
    )
}

impl SlapdPair {
    pub async fn start() -> SlapdPair {
        let dir = tempfile::tempdir().expect("temporary folder");
        let provider_conf = common_conf(
            dir.path(),
            "provider",
            "moduleload back_mdb\nmoduleload syncprov\n",
        )
            + "overlay syncprov\nsyncprov-checkpoint 100 10\nsyncprov-sessionlog 1000\n";
        let consumer_conf = common_conf(dir.path(), "consumer", "moduleload back_mdb\n")
            + &format!(
                "syncrepl rid=001 provider={PROVIDER} type=refreshAndPersist \
                 searchbase=\"{BASE_DN}\" bindmethod=simple binddn=\"{ROOT_DN}\" \
                 credentials={ROOT_PW} retry=\"1 +\"\n"
            );
        let provider = spawn(dir.path(), "provider", &provider_conf, PROVIDER).await;
        let consumer = spawn(dir.path(), "consumer", &consumer_conf, CONSUMER).await;
        std::fs::write(dir.path().join("root.pw"), ROOT_PW).expect("password file");
        SlapdPair {
            provider,
            consumer,
            dir,
        }
    }

    /// The provider's and the consumer's process ids.
    pub fn pids(&self) -> Vec<u32> {
        vec![self.provider.child.id(), self.consumer.child.id()]
    }

    /// `ldapadd -f FILE` into the provider, until the consumer holds the last entry of the
    /// file and all `expect` user entries.
    pub async fn import(&self, ldif: &Path, last_dn: &str, expect: usize) -> ImportTime {
        let start = Instant::now();
        let out = tokio::process::Command::new("ldapadd")
            .args(["-x", "-D", ROOT_DN, "-y"])
            .arg(self.dir.path().join("root.pw"))
            .args(["-H", self.provider.url, "-f"])
            .arg(ldif)
            .stdout(Stdio::null())
            .output()
            .await
            .expect("run ldapadd");
        assert!(
            out.status.success(),
            "ldapadd failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let command = start.elapsed();
        let mut consumer = connect(self.consumer.url).await;
        let deadline = Instant::now() + PATIENCE;
        loop {
            let found = consumer
                .search(last_dn, Scope::Base, "(objectClass=*)", vec!["1.1"])
                .await
                .expect("search the consumer");
            if found.1.rc == 0 && found.0.len() == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the consumer never received {last_dn}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut complete = start.elapsed();
        // Replication applies in change order, so the last entry implies the others; check.
        loop {
            let n = count_users(&mut consumer).await;
            if n == expect {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the consumer holds {n} of {expect} entries"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            complete = start.elapsed();
        }
        let _ = consumer.unbind().await;
        ImportTime { command, complete }
    }

    /// LDAP adds of `users` into the provider from `clients` concurrent connections, one
    /// operation at a time per connection.
    pub async fn writes(&self, users: Arc<Vec<BenchUser>>, clients: usize) -> Latencies {
        let mut conns = Vec::new();
        for _ in 0..clients {
            conns.push(connect(self.provider.url).await);
        }
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        // A JoinSet aborts the writers if this phase is dropped (Ctrl-C, a panic elsewhere).
        let mut tasks = tokio::task::JoinSet::new();
        for mut ldap in conns {
            let (users, next) = (users.clone(), next.clone());
            tasks.spawn(async move {
                let mut samples = Vec::new();
                while let Some(u) = users.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let dn = u.dn();
                    let attrs = vec![
                        ("objectClass", HashSet::from(["inetOrgPerson"])),
                        ("uid", HashSet::from([u.uid.as_str()])),
                        ("cn", HashSet::from([u.cn.as_str()])),
                        ("sn", HashSet::from([u.uid.as_str()])),
                        ("mail", HashSet::from([u.address.as_str()])),
                        ("userPassword", HashSet::from([u.password_hash.as_str()])),
                    ];
                    let t = Instant::now();
                    let result = ldap.add(&dn, attrs).await;
                    samples.push(t.elapsed());
                    result
                        .and_then(|r| r.success())
                        .unwrap_or_else(|e| panic!("adding {dn}: {e}"));
                }
                let _ = ldap.unbind().await;
                samples
            });
        }
        let mut samples = Vec::new();
        while let Some(done) = tasks.join_next().await {
            samples.extend(done.expect("a writer panicked"));
        }
        Latencies::new(samples, start.elapsed())
    }

    /// A search by `(mail=ADDRESS)` under the base for each user in `order`, over one
    /// connection to the consumer, asking for the attributes mailnode's answer carries.
    pub async fn lookups(&self, users: &[BenchUser], order: &[usize]) -> Latencies {
        let mut ldap = connect(self.consumer.url).await;
        let mut samples = Vec::with_capacity(order.len());
        let start = Instant::now();
        for &i in order {
            let filter = format!("(mail={})", users[i].address);
            let t = Instant::now();
            let result = ldap
                .search(
                    BASE_DN,
                    Scope::Subtree,
                    &filter,
                    vec!["cn", "mail", "userPassword"],
                )
                .await;
            samples.push(t.elapsed());
            let (entries, _) = result
                .and_then(|r| r.success())
                .unwrap_or_else(|e| panic!("searching {filter}: {e}"));
            assert_eq!(entries.len(), 1, "{filter} found {} entries", entries.len());
            std::hint::black_box(SearchEntry::construct(entries.into_iter().next().unwrap()));
        }
        let _ = ldap.unbind().await;
        Latencies::new(samples, start.elapsed())
    }
}

/// Writes `conf`, starts `slapd -f conf -h url -d 0` (`-d` keeps it in the foreground, so the
/// child is the server) and waits until a bind succeeds.
async fn spawn(dir: &Path, name: &str, conf: &str, url: &'static str) -> Slapd {
    std::fs::create_dir_all(dir.join(format!("{name}-db"))).expect("database folder");
    let conf_path = dir.join(format!("{name}.conf"));
    std::fs::write(&conf_path, conf).expect("slapd.conf");
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(SLAPD)
        .arg("-f")
        .arg(&conf_path)
        .args(["-h", url, "-d", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("slapd log"))
        .spawn()
        .expect("start slapd");
    let mut slapd = Slapd { child, url, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = slapd.child.try_wait() {
            panic!(
                "slapd {name} exited ({status}): {}",
                std::fs::read_to_string(&slapd.log).unwrap_or_default()
            );
        }
        if let Ok((conn, mut ldap)) = LdapConnAsync::new(url).await {
            ldap3::drive!(conn);
            if ldap
                .simple_bind(ROOT_DN, ROOT_PW)
                .await
                .is_ok_and(|r| r.rc == 0)
            {
                let _ = ldap.unbind().await;
                return slapd;
            }
        }
        assert!(
            Instant::now() < deadline,
            "slapd {name} did not start on {url}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A connection bound as the root DN.
async fn connect(url: &str) -> Ldap {
    let (conn, mut ldap) = LdapConnAsync::new(url).await.expect("connect to slapd");
    ldap3::drive!(conn);
    ldap.simple_bind(ROOT_DN, ROOT_PW)
        .await
        .and_then(|r| r.success())
        .expect("bind to slapd");
    ldap
}

/// How many `inetOrgPerson` entries the server holds.
async fn count_users(ldap: &mut Ldap) -> usize {
    let (entries, _) = ldap
        .search(
            BASE_DN,
            Scope::Subtree,
            "(objectClass=inetOrgPerson)",
            vec!["1.1"],
        )
        .await
        .and_then(|r| r.success())
        .expect("count entries");
    entries.len()
}
