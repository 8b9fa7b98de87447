#!/usr/bin/env python3
"""Fault tests of the local three-node cluster (run by cluster/nemesis.sh, which builds the
image and starts a fresh cluster first).

While a load generator sends mail through SMTP to all three nodes and readers follow it over
IMAP on the virtual IP, the nemesis injects, one after another:
  a  kill -9 of the holder (docker kill -s KILL), then starts it again;
  b  SIGSTOP of the holder's mailnode process for longer than the lease, then SIGCONT;
  e  planned switchovers back and forth (mailctl failover --to), 20 by default;
  f  a rolling restart of the three nodes (docker restart: SIGTERM, drain, hand over);
  c  the holder cut off from the other two nodes (iptables in its network namespace);
  d  the Raft leader cut off while it is not the holder.
Checked all along, from the host, every 50 ms: the volume is mounted in at most one node
(/proc/<pid>/mounts of each container's init process) and the VIP is on at most one node
(/proc/<pid>/net/fib_trie of its network namespace); the directory accepts writes through the
nodes of the majority. At the end (all nodes back, queues drained): every message that got a
250 is in its recipients' mailboxes exactly once and readable over IMAP on the VIP.

Prints a summary table and exits 1 on any violation, 2 when the cluster could not be driven.
Standard library only.
"""

import argparse
import http.client
import imaplib
import json
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time

NODES = ["n1", "n2", "n3"]
USERS = ["alice", "bob", "carol", "dave"]
DOMAIN = "example.org"
PASSWORD = "nemesis-password-1"
MOUNT_POINT = "/srv/mailstore"
LEASE_S = 3.0
# A directory write must be done this long after it was first sent: write_timeout_ms (5 s) of
# the node it went to, plus retries after an ambiguous answer.
WRITE_BOUND = 10.0
T0 = time.monotonic()


def now():
    return time.monotonic() - T0


def log(msg):
    print(f"[{now():7.2f}] {msg}", flush=True)


class Failed(Exception):
    """The cluster did not do what a scenario waits for within its bound."""


# --- the cluster, as the host sees it -------------------------------------------------------

class Cluster:
    def __init__(self, state, net):
        self.ip = {n: f"{net}.1{n[1:]}" for n in NODES}
        self.vip = f"{net}.100"
        with open(os.path.join(state, "admin.token")) as f:
            self.token = f.read().strip()
        self.ctx = ssl.create_default_context(cafile=os.path.join(state, "pki", "ca.pem"))

    def api(self, node, method, path, body=None, timeout=5.0):
        """(status, JSON) from a node's admin API; (None, None) when it does not answer."""
        conn = http.client.HTTPSConnection(self.ip[node], 443, context=self.ctx, timeout=timeout)
        try:
            payload = json.dumps(body) if body is not None else None
            conn.request(method, path, body=payload, headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            try:
                return r.status, json.loads(data) if data else None
            except ValueError:
                return r.status, data.decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            return None, None
        finally:
            conn.close()

    def status(self, node, timeout=3.0):
        st, v = self.api(node, "GET", "/api/status", timeout=timeout)
        return v if st == 200 and isinstance(v, dict) else None

    def active_holder(self, ask):
        """The active holder's name as the first answering node of `ask` reports it."""
        for n in ask:
            st = self.status(n)
            if st is None:
                continue
            m = st.get("mailstore") or {}
            h, e = m.get("holder"), m.get("epoch")
            if h is not None and m.get("active_epoch") == e:
                return f"n{h}"
            return None
        return None

    def leader(self, ask):
        for n in ask:
            st = self.status(n)
            if st and st.get("leader") is not None and st.get("state") == "Leader":
                return f"n{st['leader']}"
        for n in ask:
            st = self.status(n)
            if st and st.get("leader") is not None:
                return f"n{st['leader']}"
        return None

    def mailctl(self, via, *args, timeout=60):
        cmd = ["docker", "exec", f"mailnode-{via}", "mailctl", "--server", f"{self.ip[via]}:443",
               "--token-file", "/etc/mailnode/admin.token", "--ca-file", "/etc/mailnode/tls/ca.pem",
               *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def docker(*args, timeout=60, check=True):
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise Failed(f"docker {' '.join(args)}: {r.stderr.strip()}")
    return r


def container_pids():
    """Init pid (host view) of each running node container; 0 when not running."""
    r = subprocess.run(["docker", "inspect", "-f", "{{.Name}} {{.State.Pid}}",
                        *[f"mailnode-{n}" for n in NODES]], capture_output=True, text=True,
                       timeout=10)
    pids = {}
    for line in r.stdout.splitlines():
        name, pid = line.split()
        pids[name.lstrip("/").removeprefix("mailnode-")] = int(pid)
    return pids


def running(node):
    r = docker("inspect", "-f", "{{.State.Running}}", f"mailnode-{node}", check=False)
    return r.stdout.strip() == "true"


def mailnode_pid(node):
    """The mailnode process (tini's child) of a node's container, host pid."""
    init = container_pids().get(node, 0)
    if not init:
        raise Failed(f"{node} is not running")
    with open(f"/proc/{init}/task/{init}/children") as f:
        for child in f.read().split():
            with open(f"/proc/{child}/comm") as c:
                if c.read().strip() == "mailnode":
                    return int(child)
    raise Failed(f"no mailnode process in {node}")


def iptables_cut(node, peers, cut):
    """Drops (cut=True) or restores traffic between `node` and the `peers` IPs, with the
    host's iptables inside the node's network namespace."""
    pid = container_pids().get(node, 0)
    if not pid:
        return False
    op = "-I" if cut else "-D"
    for ip in peers:
        for chain, flag in (("INPUT", "-s"), ("OUTPUT", "-d")):
            r = subprocess.run(["nsenter", "-t", str(pid), "-n", "iptables", op, chain, flag, ip,
                                "-j", "DROP"], capture_output=True, text=True, timeout=10)
            if r.returncode != 0 and cut:
                raise Failed(f"iptables in {node}: {r.stderr.strip()}")
    return True


# --- shared run state -----------------------------------------------------------------------

class Run:
    def __init__(self):
        self.lock = threading.Lock()
        self.scenario = "setup"
        self.faulted = set()           # nodes the nemesis is acting on (not used for writes)
        self.stop_load = threading.Event()
        self.stop_all = threading.Event()
        self.acked = {}                # tag -> [recipients that got the 250]
        self.attempts = 0
        self.violations = []           # (time, scenario, text)
        self.stats = {}                # scenario -> dict of counters

    def set_scenario(self, name):
        with self.lock:
            self.scenario = name
            self.stats.setdefault(name, {"acked": 0, "writes_ok": 0, "writes_failed": 0,
                                         "writes_retried": 0,
                                         "double_mount": 0, "double_vip": 0, "samples": 0,
                                         "imap_gap": 0.0, "notes": []})

    def stat(self, key, inc=1):
        with self.lock:
            self.stats[self.scenario][key] += inc

    def note(self, text):
        with self.lock:
            self.stats[self.scenario]["notes"].append(text)
        log(text)

    def violation(self, text, scenario=None):
        with self.lock:
            self.violations.append((now(), scenario or self.scenario, text))
        log(f"VIOLATION: {text}")

    def healthy(self):
        with self.lock:
            return [n for n in NODES if n not in self.faulted]

    def acked_count(self):
        with self.lock:
            return len(self.acked)


# --- samplers -------------------------------------------------------------------------------

class Sampler(threading.Thread):
    """Who has the volume mounted and who has the VIP, every `period` seconds, read from the
    containers' /proc entries on the host (no exec into the containers)."""

    def __init__(self, run, cluster, period):
        super().__init__(daemon=True)
        self.run_, self.cluster, self.period = run, cluster, period
        self.pids = container_pids()
        self.samples = 0
        self.max_gap = 0.0
        self.seen_holder_mount = 0
        self.last = (None, None)
        self.episodes = {}

    def refresh_pids(self):
        while not self.run_.stop_all.is_set():
            try:
                self.pids = container_pids()
            except (OSError, subprocess.SubprocessError, ValueError):
                pass
            time.sleep(0.2)

    @staticmethod
    def mounted(pid):
        try:
            with open(f"/proc/{pid}/mounts") as f:
                return any(line.split()[1] == MOUNT_POINT for line in f if line.strip())
        except (OSError, IndexError):
            return False

    def has_vip(self, pid):
        try:
            with open(f"/proc/{pid}/net/fib_trie") as f:
                lines = f.read().splitlines()
        except OSError:
            return False
        want = f"|-- {self.cluster.vip}"
        return any(lines[i].strip() == want and "host LOCAL" in lines[i + 1]
                   for i in range(len(lines) - 1))

    def run(self):
        threading.Thread(target=self.refresh_pids, daemon=True).start()
        prev = time.monotonic()
        while not self.run_.stop_all.is_set():
            t = time.monotonic()
            self.max_gap = max(self.max_gap, t - prev)
            prev = t
            pids = dict(self.pids)
            mounts = tuple(n for n in NODES if pids.get(n) and self.mounted(pids[n]))
            vips = tuple(n for n in NODES if pids.get(n) and self.has_vip(pids[n]))
            self.samples += 1
            self.run_.stat("samples")
            if len(mounts) == 1:
                self.seen_holder_mount += 1
            # One violation per episode (its first sample), its length when it ends.
            for kind, who, what in (("double_mount", mounts, "volume mounted"),
                                    ("double_vip", vips, f"VIP {self.cluster.vip}")):
                if len(who) > 1:
                    self.run_.stat(kind)
                    if kind not in self.episodes:
                        self.episodes[kind] = t
                        self.run_.violation(f"{what} on {', '.join(who)} at once")
                elif kind in self.episodes:
                    self.run_.note(f"{what} on two nodes for {t - self.episodes.pop(kind):.2f} s")
            if (mounts, vips) != self.last:
                log(f"sampler: volume mounted on [{' '.join(mounts)}], VIP on [{' '.join(vips)}]")
                self.last = (mounts, vips)
            time.sleep(max(0.0, self.period - (time.monotonic() - t)))


# --- load -----------------------------------------------------------------------------------

def sender(run, cluster, node, interval):
    """Sends mail through `node`'s MX; records each message's recipients once it got a 250."""
    seq = 0
    while not run.stop_load.is_set():
        try:
            s = smtplib.SMTP(cluster.ip[node], 25, timeout=5)
            try:
                for _ in range(20):
                    if run.stop_load.is_set():
                        break
                    seq += 1
                    tag = f"{node}-{seq}"
                    rcpts = [f"{USERS[seq % len(USERS)]}@{DOMAIN}"]
                    if seq % 7 == 0:   # some messages to two mailboxes (one file, hard-linked)
                        rcpts.append(f"{USERS[(seq + 1) % len(USERS)]}@{DOMAIN}")
                    msg = (f"From: load@remote.example\r\nTo: {', '.join(rcpts)}\r\n"
                           f"Subject: nemesis {tag}\r\nMessage-ID: <{tag}@nemesis.test>\r\n"
                           f"X-Test-Id: {tag}\r\n\r\nbody of {tag}\r\n")
                    with run.lock:
                        run.attempts += 1
                    refused = s.sendmail("load@remote.example", rcpts, msg)
                    ok = [r for r in rcpts if r not in refused]
                    if ok:
                        with run.lock:
                            run.acked[tag] = ok
                        run.stat("acked")
                    time.sleep(interval)
            finally:
                try:
                    s.quit()
                except (OSError, smtplib.SMTPException):
                    pass
        except (OSError, smtplib.SMTPException):
            time.sleep(0.3)


class VipIMAP(imaplib.IMAP4):
    """IMAP4 with a short connect timeout: while no node holds the VIP, a SYN waits for an ARP
    answer that never comes, and the probe should retry soon after the VIP appears, not a whole
    read timeout later."""

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout=0.25)
        sock.settimeout(timeout)
        return sock


def imap_login(cluster, user, timeout=3.0):
    """A logged-in IMAP session on the VIP (STARTTLS, the cluster CA) and the greeting's host."""
    m = VipIMAP(cluster.vip, 143, timeout=timeout)
    try:
        greeting = m.welcome.decode("utf-8", "replace")
        m.starttls(ssl_context=cluster.ctx)
        m.login(f"{user}@{DOMAIN}", PASSWORD)
    except Exception:
        try:
            m.shutdown()
        except OSError:
            pass
        raise
    host = re.search(r"\] (\S+) IMAP4rev1", greeting)
    return m, (host.group(1).split(".")[0] if host else "?")


FETCH_RE = re.compile(rb"UID (\d+)")
TAG_RE = re.compile(rb"X-Test-Id: (\S+)", re.I)


def fetch_tags(m, first_uid, parts="BODY.PEEK[HEADER.FIELDS (X-TEST-ID)]"):
    """[(uid, tag, raw)] of messages with UID >= first_uid."""
    typ, data = m.uid("FETCH", f"{first_uid}:*", f"(UID {parts})")
    if typ != "OK":
        raise imaplib.IMAP4.error(f"FETCH: {typ} {data}")
    out = []
    for item in data:
        if isinstance(item, tuple):
            uid = FETCH_RE.search(item[0])
            tag = TAG_RE.search(item[1])
            if uid and int(uid.group(1)) >= first_uid:
                out.append((int(uid.group(1)), tag.group(1).decode() if tag else None, item[1]))
    return out


def reader(run, cluster, user):
    """Follows one mailbox over IMAP on the VIP: new messages, duplicates, UIDVALIDITY, and
    how long the VIP could not be read after a failure."""
    m, last_uid, validity, seen, down_since = None, 0, None, {}, None
    while not run.stop_all.is_set():
        try:
            if m is None:
                m, _host = imap_login(cluster, user)
                typ, _ = m.select("INBOX")
                if typ != "OK":
                    raise imaplib.IMAP4.error("SELECT failed")
                v = m.untagged_responses.get("UIDVALIDITY", [None])[-1]
                if validity is not None and v != validity:
                    run.violation(f"{user}: UIDVALIDITY changed from {validity} to {v}")
                validity = v
                if down_since is not None:
                    gap = now() - down_since
                    with run.lock:
                        st = run.stats[run.scenario]
                        st["imap_gap"] = max(st["imap_gap"], gap)
                    down_since = None
            for uid, tag, _ in fetch_tags(m, last_uid + 1):
                if tag is not None and tag in seen and seen[tag] != uid:
                    run.violation(f"{user}: message {tag} delivered twice (UIDs {seen[tag]}, {uid})")
                if tag is not None:
                    seen[tag] = uid
                last_uid = max(last_uid, uid)
            time.sleep(0.5)
        except (OSError, imaplib.IMAP4.error, imaplib.IMAP4.abort, ssl.SSLError, EOFError):
            if down_since is None:
                down_since = now()
            if m is not None:
                try:
                    m.shutdown()
                except OSError:
                    pass
            m = None
            time.sleep(0.1)


def dir_writer(run, cluster):
    """A directory write every second through a node of the majority (not one the nemesis is
    acting on); every one must succeed."""
    i = 0
    while not run.stop_all.is_set():
        healthy = run.healthy()
        if len(healthy) < 2:
            time.sleep(0.2)
            continue
        node = healthy[i % len(healthy)]
        i += 1
        name = f"w{i}.nemesis.test"
        t = time.monotonic()
        scenario = run.scenario
        # As the API asks of a client whose write met a leader change (HTTP 504, "may or may
        # not have been applied: check with a read, then retry"): retry; "already exists"
        # (409) on a retry means an earlier attempt was applied, any other 409 is a failure.
        # It must be done within WRITE_BOUND.
        tries, first_error = 0, None
        while True:
            tries += 1
            st, body = cluster.api(node, "POST", "/api/domains", {"name": name}, timeout=20)
            if st == 200 or (st == 409 and tries > 1 and "already exists" in str(body)):
                break
            first_error = first_error or f"HTTP {st} {body}"
            if node not in run.healthy() or time.monotonic() - t > WRITE_BOUND:
                break
            time.sleep(0.2)
        dt = time.monotonic() - t
        if st == 200 or (st == 409 and tries > 1 and "already exists" in str(body)):
            run.stat("writes_ok")
            if tries > 1:
                run.stat("writes_retried")
                run.note(f"directory write through {node} needed {tries} attempts ({dt:.1f} s); "
                         f"the first answered {first_error}")
        elif node in run.healthy():
            with run.lock:
                run.stats[scenario]["writes_failed"] += 1
            run.violation(f"directory write through {node} not done within {dt:.1f} s "
                          f"({tries} attempts) while a majority was up: HTTP {st} {body}",
                          scenario)
        time.sleep(max(0.0, 1.0 - dt))


# --- the nemesis ----------------------------------------------------------------------------

class Nemesis:
    def __init__(self, run, cluster, args):
        self.run, self.c, self.args = run, cluster, args
        self.figures = []   # (scenario, what, seconds)

    def wait(self, what, pred, timeout, every=0.1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = pred()
            if v:
                return v
            time.sleep(every)
        raise Failed(f"{what}: not within {timeout:.0f} s")

    def holder(self, not_=None, timeout=30):
        def pred():
            h = self.c.active_holder(self.run.healthy())
            return h if h and h != not_ else None
        return self.wait(f"an active holder other than {not_}" if not_ else "an active holder",
                         pred, timeout)

    def more_acked(self, n, timeout=60):
        target = self.run.acked_count() + n
        self.wait(f"{n} more acknowledged messages", lambda: self.run.acked_count() >= target,
                  timeout)

    def first_login(self, t0, exclude=None, expect=None, timeout=30):
        """Seconds from t0 to the first IMAP LOGIN on the VIP served by a node other than
        `exclude` (or by `expect`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                m, host = imap_login(self.c, USERS[0], timeout=1.0)
                try:
                    m.logout()
                except (OSError, imaplib.IMAP4.error, imaplib.IMAP4.abort):
                    pass
                if (expect is None or host == expect) and host != exclude:
                    return time.monotonic() - t0, host
            except (OSError, imaplib.IMAP4.error, imaplib.IMAP4.abort, ssl.SSLError, EOFError):
                pass
            time.sleep(0.05)
        raise Failed(f"no IMAP login on the VIP ({'from ' + expect if expect else 'not ' + str(exclude)}) within {timeout} s")

    def rejoined(self, node, timeout=90):
        """Waits until `node` answers, follows a leader and has caught up with it."""
        def pred():
            st = self.c.status(node)
            if not st or st.get("leader") is None:
                return False
            lead = f"n{st['leader']}"
            lst = st if lead == node else self.c.status(lead)
            if not lst:
                return False
            return (st.get("applied") or 0) + 10 >= (lst.get("committed") or 0)
        self.wait(f"{node} to rejoin the cluster", pred, timeout, every=0.25)

    def restore(self):
        """After a failed scenario: every container running, no cuts, a holder."""
        for n in NODES:
            if running(n):
                iptables_cut(n, [ip for m, ip in self.c.ip.items() if m != n] + [self.c.vip], False)
            else:
                docker("start", f"mailnode-{n}", check=False)
        for n in NODES:
            try:
                pid = mailnode_pid(n)
                os.kill(pid, signal.SIGCONT)
            except (Failed, OSError):
                pass
        with self.run.lock:
            self.run.faulted.clear()
        for n in NODES:
            self.rejoined(n)
        self.holder()

    def ensure_whole(self):
        """After a scenario: all three nodes must be running and caught up. A node found down
        was powered off by a fence agent without the nemesis asking for it: a violation."""
        for n in NODES:
            if not running(n):
                self.run.violation(f"{n} is down after the scenario (powered off by a fence "
                                   f"agent?); starting it")
                docker("start", f"mailnode-{n}")
        for n in NODES:
            self.rejoined(n)
        self.holder()

    def figure(self, what, seconds):
        self.figures.append((self.run.scenario, what, seconds))
        self.run.note(f"{what}: {seconds:.2f} s")

    # a
    def kill9(self):
        h = self.holder()
        with self.run.lock:
            self.run.faulted.add(h)
        t0 = time.monotonic()
        docker("kill", "-s", "KILL", f"mailnode-{h}")
        log(f"kill -9 of holder {h}")
        dt, host = self.first_login(t0, exclude=h)
        new = self.holder(not_=h)
        self.figure(f"kill -9 {h} -> first IMAP LOGIN on the VIP (served by {host})", dt)
        self.more_acked(20)
        docker("start", f"mailnode-{h}")
        self.rejoined(h)
        with self.run.lock:
            self.run.faulted.discard(h)
        self.run.note(f"{h} restarted and rejoined; holder {new}")

    # b
    def pause(self):
        h = self.holder()
        pid = mailnode_pid(h)
        with self.run.lock:
            self.run.faulted.add(h)
        t0 = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        log(f"SIGSTOP of holder {h} (pid {pid}) for {self.args.pause:.0f} s")
        dt, host = self.first_login(t0, exclude=h)
        new = self.holder(not_=h)
        self.figure(f"SIGSTOP {h} -> first IMAP LOGIN on the VIP (served by {host})", dt)
        time.sleep(max(0.0, t0 + self.args.pause - time.monotonic()))
        try:
            os.kill(pid, signal.SIGCONT)
            alive = True
        except ProcessLookupError:
            alive = False
        if alive and running(h):
            self.run.note(f"SIGCONT {h} after {time.monotonic() - t0:.1f} s")
            def standby():
                st = self.c.status(h)
                return st and (st.get("mailstore") or {}).get("local", {}).get("state") == "standby"
            self.wait(f"resumed {h} to stand by", standby, 15)
        else:
            self.run.note(f"{h} was powered off by the fence agent of {new} while paused; starting it")
            docker("start", f"mailnode-{h}")
        self.rejoined(h)
        with self.run.lock:
            self.run.faulted.discard(h)
        self.more_acked(10)

    # e
    def switchovers(self):
        a = self.holder()
        b = next(n for n in self.run.healthy() if n != a)
        times = []
        for i in range(self.args.switchovers):
            src, target = (a, b) if i % 2 == 0 else (b, a)
            t0 = time.monotonic()
            proc = subprocess.Popen(
                ["docker", "exec", f"mailnode-{src}", "mailctl", "--server", f"{self.c.ip[src]}:443",
                 "--token-file", "/etc/mailnode/admin.token", "--ca-file",
                 "/etc/mailnode/tls/ca.pem", "failover", "--to", target],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            dt, _ = self.first_login(t0, expect=target, timeout=20)
            out, err = proc.communicate(timeout=30)
            if proc.returncode != 0:
                raise Failed(f"mailctl failover --to {target} exited {proc.returncode}: {err.strip()}")
            times.append(dt)
            log(f"switchover {i + 1}: {src} -> {target}: first IMAP LOGIN on {target} after {dt:.2f} s ({out.strip()})")
            self.more_acked(3)
        times.sort()
        self.figure(f"{len(times)} switchovers, p50 to the first IMAP LOGIN on the target", times[len(times) // 2])
        self.figure(f"{len(times)} switchovers, max", times[-1])

    # f
    def rolling_restart(self):
        for n in NODES:
            was_holder = self.holder() == n
            with self.run.lock:
                self.run.faulted.add(n)
            t0 = time.monotonic()
            docker("restart", "-t", "30", f"mailnode-{n}", timeout=90)
            self.rejoined(n)
            with self.run.lock:
                self.run.faulted.discard(n)
            h = self.holder()
            self.run.note(f"restart of {n}{' (the holder)' if was_holder else ''}: back after "
                          f"{time.monotonic() - t0:.1f} s; holder {h}")
            self.more_acked(10)

    # c
    def cut_holder(self):
        h = self.holder()
        peers = [self.c.ip[n] for n in NODES if n != h]
        with self.run.lock:
            self.run.faulted.add(h)
        t0 = time.monotonic()
        iptables_cut(h, peers, True)
        log(f"holder {h} cut off from {', '.join(peers)}")
        try:
            dt, host = self.first_login(t0, exclude=h)
            new = self.holder(not_=h)
            self.figure(f"cut off holder {h} -> first IMAP LOGIN on another node ({host})", dt)
            self.more_acked(10)
            time.sleep(max(0.0, t0 + self.args.cut - time.monotonic()))
        finally:
            healed = iptables_cut(h, peers, False)
        if healed:
            self.run.note(f"healed {h} after {time.monotonic() - t0:.1f} s")
        else:
            self.run.note(f"{h} was powered off by the fence agent of {new}; starting it")
            docker("start", f"mailnode-{h}")
        self.rejoined(h)
        with self.run.lock:
            self.run.faulted.discard(h)
        self.more_acked(10)

    # d
    def cut_leader(self):
        lead = self.c.leader(self.run.healthy())
        if lead is None:
            raise Failed("no leader known")
        h = self.holder()
        if h == lead:
            target = next(n for n in NODES if n != lead)
            r = self.c.mailctl(lead, "failover", "--to", target)
            if r.returncode != 0:
                raise Failed(f"moving the mailstore off the leader: {r.stderr.strip()}")
            h = self.holder()
            self.run.note(f"moved the mailstore off leader {lead} to {h} first")
        peers = [self.c.ip[n] for n in NODES if n != lead]
        with self.run.lock:
            self.run.faulted.add(lead)
        t0 = time.monotonic()
        iptables_cut(lead, peers, True)
        log(f"leader {lead} (holder {h}) cut off from {', '.join(peers)}")
        changes, no_holder_since, longest = [], None, 0.0
        try:
            while time.monotonic() < t0 + self.args.cut:
                cur = self.c.active_holder(self.run.healthy())
                if cur != h:
                    if cur is not None:
                        changes.append(cur)
                        h = cur
                if cur is None:
                    no_holder_since = no_holder_since or time.monotonic()
                elif no_holder_since:
                    longest = max(longest, time.monotonic() - no_holder_since)
                    no_holder_since = None
                time.sleep(0.1)
            new_leader = self.c.leader(self.run.healthy())
        finally:
            healed = iptables_cut(lead, peers, False)
        self.run.note(f"new leader {new_leader}; holder changes while the leader was cut off: "
                      f"{changes or 'none'}; longest time without an active holder {longest:.1f} s")
        if not healed:
            docker("start", f"mailnode-{lead}")
        self.rejoined(lead)
        with self.run.lock:
            self.run.faulted.discard(lead)
        self.more_acked(10)


# --- setup, final checks, report ------------------------------------------------------------

def setup(cluster):
    st, body = cluster.api("n1", "POST", "/api/domains", {"name": DOMAIN}, timeout=15)
    if st != 200:
        raise Failed(f"adding {DOMAIN}: HTTP {st} {body}")
    for u in USERS:
        st, body = cluster.api("n1", "POST", "/api/users",
                               {"address": f"{u}@{DOMAIN}", "password": PASSWORD}, timeout=15)
        if st != 201:
            raise Failed(f"adding {u}: HTTP {st} {body}")


def drain_queues(cluster, timeout):
    deadline = time.monotonic() + timeout
    while True:
        left = {}
        for n in NODES:
            st = cluster.status(n)
            left[n] = (st or {}).get("queue", {}).get("messages") if st else "?"
        if all(v == 0 for v in left.values()):
            return
        if time.monotonic() > deadline:
            raise Failed(f"the queues did not drain within {timeout} s: {left}")
        time.sleep(0.5)


def final_check(run, cluster):
    """Every acknowledged (message, recipient) in that mailbox exactly once, readable."""
    expected = {u: set() for u in USERS}
    with run.lock:
        for tag, rcpts in run.acked.items():
            for r in rcpts:
                expected[r.split("@")[0]].add(tag)
    result = {"acked": 0, "delivered": 0, "missing": 0, "duplicates": 0, "unacked": 0}
    for u in USERS:
        m, _ = imap_login(cluster, u, timeout=30)
        m.select("INBOX")
        got = {}
        for _uid, tag, raw in fetch_tags(m, 1, "BODY.PEEK[]"):
            if tag is None or f"body of {tag}".encode() not in raw:
                run.violation(f"{u}: an unreadable message: {raw[:120]!r}")
                continue
            got[tag] = got.get(tag, 0) + 1
        m.logout()
        missing = expected[u] - got.keys()
        dups = {t: c for t, c in got.items() if c > 1}
        result["acked"] += len(expected[u])
        result["delivered"] += sum(got.values())
        result["missing"] += len(missing)
        result["duplicates"] += len(dups)
        result["unacked"] += len(got.keys() - expected[u])
        if missing:
            run.violation(f"{u}: {len(missing)} acknowledged messages not delivered: {sorted(missing)[:20]}")
        if dups:
            run.violation(f"{u}: {len(dups)} messages delivered more than once: {dict(list(dups.items())[:20])}")
    return result


def panics():
    found = []
    for n in NODES:
        r = subprocess.run(["docker", "logs", f"mailnode-{n}"], capture_output=True, text=True,
                           timeout=60)
        for line in (r.stdout + r.stderr).splitlines():
            if "panicked" in line:
                found.append(f"{n}: {line.strip()[:300]}")
    return found


def table(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--state", default=os.environ.get("MAILNODE_CLUSTER_DIR", "/var/tmp/mailnode-cluster"))
    ap.add_argument("--net", default=os.environ.get("MAILNODE_NET", "10.97.0"))
    ap.add_argument("--scenarios", default="a,b,e,f,c,d",
                    help="which faults, in order (default: a,b,e,f,c,d)")
    ap.add_argument("--switchovers", type=int, default=20)
    ap.add_argument("--pause", type=float, default=3 * LEASE_S, help="SIGSTOP length, s")
    ap.add_argument("--cut", type=float, default=4 * LEASE_S, help="partition length, s")
    ap.add_argument("--interval", type=float, default=0.05, help="pause between messages per sender, s")
    ap.add_argument("--sample-ms", type=float, default=50)
    ap.add_argument("--drain-timeout", type=float, default=180,
                    help="how long the queues may take to empty at the end, s")
    args = ap.parse_args()

    cluster = Cluster(args.state, args.net)
    run = Run()
    run.set_scenario("setup")
    nem = Nemesis(run, cluster, args)
    scenarios = {"a": ("a kill -9 holder", nem.kill9), "b": ("b SIGSTOP holder", nem.pause),
                 "e": (f"e {args.switchovers} switchovers", nem.switchovers),
                 "f": ("f rolling restart", nem.rolling_restart),
                 "c": ("c cut off holder", nem.cut_holder),
                 "d": ("d cut off leader", nem.cut_leader)}
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in chosen:
        if s not in scenarios:
            ap.error(f"unknown scenario {s!r}")

    try:
        setup(cluster)
        nem.holder()
    except Failed as e:
        log(f"cannot start: {e}")
        return 2
    sampler = Sampler(run, cluster, args.sample_ms / 1000)
    sampler.start()
    threads = [threading.Thread(target=sender, args=(run, cluster, n, args.interval), daemon=True)
               for n in NODES]
    threads += [threading.Thread(target=reader, args=(run, cluster, u), daemon=True) for u in USERS]
    threads.append(threading.Thread(target=dir_writer, args=(run, cluster), daemon=True))
    for t in threads:
        t.start()

    aborted = None
    run.set_scenario("warm-up")
    try:
        nem.more_acked(30)
    except Failed as e:
        aborted = f"warm-up: {e}"
    durations = {}
    for s in chosen if not aborted else []:
        name, fn = scenarios[s]
        run.set_scenario(name)
        log(f"=== {name}")
        t = time.monotonic()
        try:
            fn()
            nem.ensure_whole()
        except (Failed, subprocess.SubprocessError, OSError) as e:
            run.violation(f"scenario did not complete: {e}")
            try:
                nem.restore()
            except Failed as e2:
                aborted = f"cannot restore the cluster after {name}: {e2}"
        durations[name] = time.monotonic() - t
        if aborted:
            break

    run.set_scenario("drain + check")
    log("=== stopping the load; draining the queues; reading every mailbox over IMAP on the VIP")
    run.stop_load.set()
    for t in threads[:len(NODES)]:
        t.join(timeout=30)
    result = None
    try:
        drain_queues(cluster, args.drain_timeout)
        time.sleep(1.5)   # the readers catch up
        result = final_check(run, cluster)
    except (Failed, OSError, imaplib.IMAP4.error, imaplib.IMAP4.abort) as e:
        run.violation(f"final check: {e}")
    run.stop_all.set()
    time.sleep(0.2)
    for p in panics():
        run.violation(f"a node panicked: {p}")

    # A check that never saw the state it guards has no power.
    if sampler.seen_holder_mount < 10:
        run.violation(f"the sampler saw the holder's mount only {sampler.seen_holder_mount} times")

    # The report.
    rows = [("SCENARIO", "RESULT", "TIME", "ACKED", "DIR WRITES ok/retried/failed",
             "MAX IMAP GAP", "SAMPLES", "2x MOUNT", "2x VIP", "VIOLATIONS")]
    for name, st in run.stats.items():
        if name == "setup":
            continue
        nviol = sum(1 for v in run.violations if v[1] == name)
        rows.append((name, "FAIL" if nviol else "ok",
                     f"{durations[name]:.0f} s" if name in durations else "-",
                     st["acked"], f"{st['writes_ok']}/{st['writes_retried']}/{st['writes_failed']}",
                     f"{st['imap_gap']:.1f} s", st["samples"], st["double_mount"],
                     st["double_vip"], nviol))
    print("\n" + table(rows))
    if nem.figures:
        print("\n" + table([("SCENARIO", "FIGURE", "SECONDS")] +
                           [(s, w, f"{v:.2f}") for s, w, v in nem.figures]))
    print("\nnotes:")
    for name, st in run.stats.items():
        for n in st["notes"]:
            print(f"  {name}: {n}")
    print(f"\nsampler: {sampler.samples} samples of mounts and VIP every {args.sample_ms:.0f} ms "
          f"(longest gap {sampler.max_gap * 1000:.0f} ms), holder's mount seen in "
          f"{sampler.seen_holder_mount}")
    if result:
        print(f"mail: {run.attempts} sent, {len(run.acked)} acknowledged (250), "
              f"{result['acked']} acknowledged deliveries expected, {result['delivered']} in the "
              f"mailboxes, {result['missing']} missing, {result['duplicates']} duplicated, "
              f"{result['unacked']} delivered without a 250 seen by the client")
    checked = rows[1:]
    failed = sum(1 for r in checked if r[1] == "FAIL")
    if aborted:
        print(f"\nABORTED: {aborted}")
    if run.violations:
        print(f"\n{len(run.violations)} VIOLATIONS:")
        for t, s, v in run.violations[:50]:
            print(f"  [{t:7.2f}] {s}: {v}")
        print(f"\nnemesis: {len(checked) - failed} passed, {max(failed, 1)} failed")
        return 1
    if aborted:
        return 2
    print(f"\nno violations\nnemesis: {len(checked)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
