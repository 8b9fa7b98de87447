//! The `mailctl` binary as tests run it: against one node of a [`TestCluster`] with explicit
//! `--server`, `--token-file` and `--ca-file` (never from the environment: `MAILCTL_SERVER`
//! and `MAILCTL_TOKEN` are removed), in the cluster's temporary folder, stdin closed unless a
//! test feeds it, stdout and stderr captured.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

use super::TestCluster;

/// Where `mailctl` is pointed; the fields are public so a test can point it elsewhere (a
/// wrong token, an unreachable server).
pub struct Ctl {
    pub server: String,
    pub token: PathBuf,
    pub ca: PathBuf,
    /// The working directory, where [`Ctl::file`] writes.
    pub dir: PathBuf,
}

impl Ctl {
    /// `mailctl` for node `id` (1-based) with the cluster's admin token and CA.
    pub fn new(c: &TestCluster, id: u64) -> Ctl {
        Ctl {
            server: c.nodes[(id - 1) as usize].api_addr(),
            token: c.tmp.path().join("admin.token"),
            ca: c.pki.join("ca.pem"),
            dir: c.tmp.path().to_path_buf(),
        }
    }

    /// The command, not started: stdin closed, stdout and stderr piped.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailctl"));
        cmd.arg("--server")
            .arg(&self.server)
            .arg("--token-file")
            .arg(&self.token)
            .arg("--ca-file")
            .arg(&self.ca)
            .args(args)
            .current_dir(&self.dir)
            .env_remove("MAILCTL_SERVER")
            .env_remove("MAILCTL_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Starts it (for concurrent runs; collect with `wait_with_output` and [`check`]).
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args).spawn().unwrap()
    }

    /// Runs it to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs it with `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self.cmd(args).stdin(Stdio::piped()).spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs and expects exit code `code`; returns (stdout, stderr).
    pub fn expect(&self, code: i32, args: &[&str]) -> (String, String) {
        check(code, args, self.run(args))
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.expect(0, args).0
    }

    /// Runs with `--json` and expects success; returns the parsed stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("mailctl {a:?}: {e}: {out}"))
    }

    /// Writes `text` to `name` in the working directory; returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// Asserts that `out` (of `mailctl args`) exited with `code`; returns (stdout, stderr).
pub fn check(code: i32, args: &[&str], out: Output) -> (String, String) {
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(
        out.status.code(),
        Some(code),
        "mailctl {args:?}: stdout {o} stderr {e}"
    );
    (o, e)
}

/// The stderr of a run, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A path as a command-line argument (test paths are UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}
