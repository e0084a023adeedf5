//! The cluster test harness: real `raft-kv` processes on loopback, driven over real sockets.
//!
//! A [`Cluster`] owns N node processes. Each node gets two free loopback ports (its Raft peer
//! port and its Redis port), a data directory and a log file, all inside one temporary
//! directory that lives as long as the `Cluster`. A node can be killed (SIGKILL), stopped
//! (SIGTERM), paused (SIGSTOP) and started again with the same arguments and data directory,
//! which is how the tests model crashes and restarts.
//!
//! Nothing here sleeps to "let things settle": every wait polls a condition against a deadline
//! ([`wait_until`], [`Cluster::wait_for_leader`], [`Cluster::query_with_retry`]) and fails with
//! a message naming what it waited for. Every client has read and write timeouts, so a node
//! that never answers fails the test instead of hanging it. When a test panics, dropping the
//! `Cluster` kills the nodes and prints the tail of each node's log to stderr.
//!
//! Environment:
//! - `RUST_LOG` is passed to the nodes (default `info`); their output goes to the log files.
//! - `RAFT_KV_BIN` runs another node binary instead of the one Cargo built for this test.

// Each test binary uses its own subset of the helpers.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use redis::{Connection, FromRedisValue, RedisError, RedisResult, Value};
use tempfile::TempDir;

/// How long a client waits for one reply. Longer than the node's own bound on a write whose
/// fate is unknown (a few seconds), so that bound is what a test observes.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a TCP connect (plus redis-rs's connection handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-node timeout while polling `INFO raft`: one paused or stuck node must not stall a poll.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Pause between two polls of a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Pause between two attempts of a command refused during an election.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// How long a node may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How many lines of each node's log a failing test prints.
const LOG_TAIL_LINES: usize = 80;

/// A set of `raft-kv` node processes forming one Raft group. Node ids are 1-based.
pub struct Cluster {
    binary: PathBuf,
    /// `--cluster`: the peer address of every node, in id order.
    peers: String,
    nodes: Vec<Node>,
    /// Holds every node's data directory and log file; removed when the cluster is dropped.
    dir: TempDir,
}

struct Node {
    id: u64,
    redis_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// `None` while the node is down.
    process: Option<Child>,
    /// Stopped with SIGSTOP and not yet continued.
    paused: bool,
}

impl Cluster {
    /// Starts `size` nodes on fresh loopback ports, each with an empty data directory.
    /// Returns at once; use [`Cluster::wait_for_leader`] before sending commands.
    pub fn launch(size: usize) -> Cluster {
        assert!(size > 0, "a cluster needs at least one node");
        let binary = std::env::var_os("RAFT_KV_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_raft-kv")));
        let dir = tempfile::Builder::new()
            .prefix("raft-kv-cluster-")
            .tempdir()
            .expect("cannot create the cluster's temporary directory");
        let ports = free_loopback_ports(2 * size);
        let (peer_ports, redis_ports) = ports.split_at(size);
        let peers = peer_ports.iter().map(|port| format!("127.0.0.1:{port}")).collect::<Vec<_>>().join(",");
        let nodes = (1..=size as u64)
            .zip(redis_ports)
            .map(|(id, &redis_port)| Node {
                id,
                redis_port,
                // Not created here: the node creates its data directory when it is missing.
                data_dir: dir.path().join(format!("node{id}")),
                log_path: dir.path().join(format!("node{id}.log")),
                process: None,
                paused: false,
            })
            .collect();
        let mut cluster = Cluster { binary, peers, nodes, dir };
        for id in cluster.ids() {
            cluster.start(id);
        }
        cluster
    }

    /// Every node id, running or not: `1..=size`.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|node| node.id).collect()
    }

    /// Ids of the nodes whose process is running and not paused.
    pub fn live_ids(&self) -> Vec<u64> {
        self.nodes.iter().filter(|node| node.process.is_some() && !node.paused).map(|node| node.id).collect()
    }

    /// The node's Redis port.
    pub fn redis_port(&self, id: u64) -> u16 {
        self.node(id).redis_port
    }

    /// The node's log file (stdout and stderr of every run of that node, appended).
    pub fn log_path(&self, id: u64) -> &Path {
        &self.node(id).log_path
    }

    /// The directory holding every node's data directory and log file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts a node that is down, with the same arguments and data directory as before.
    pub fn start(&mut self, id: u64) {
        let binary = self.binary.clone();
        let peers = self.peers.clone();
        let node = self.node_mut(id);
        assert!(node.process.is_none(), "node {id} is already running");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", node.log_path.display()));
        writeln!(log, "==== harness: starting node {id} ====").expect("cannot write the log");
        let stdout = log.try_clone().expect("cannot clone the log file handle");

        let mut command = Command::new(&binary);
        command
            .arg("--id")
            .arg(id.to_string())
            .arg("--cluster")
            .arg(&peers)
            .arg("--port")
            .arg(node.redis_port.to_string())
            .arg("--data-dir")
            .arg(&node.data_dir)
            .arg("--bind")
            .arg("127.0.0.1")
            .env("RUST_LOG", std::env::var_os("RUST_LOG").unwrap_or_else(|| OsString::from("info")))
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log);
        // The node also reads its flags from RAFTKV_* variables: only the flags above count.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("RAFTKV_") {
                command.env_remove(name);
            }
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        node.process = Some(child);
        node.paused = false;
    }

    /// Kills a running node with SIGKILL (a crash: nothing is flushed) and waits for it to exit.
    pub fn kill(&mut self, id: u64) {
        let node = self.node_mut(id);
        let mut child = node.process.take().unwrap_or_else(|| panic!("node {id} is not running"));
        node.paused = false;
        // SIGKILL also ends a paused process.
        child.kill().unwrap_or_else(|e| panic!("cannot kill node {id}: {e}"));
        let status = child.wait().unwrap_or_else(|e| panic!("cannot wait for node {id}: {e}"));
        self.log_marker(id, &format!("killed with SIGKILL ({status})"));
    }

    /// Stops a running node with SIGTERM and waits for it to exit. Panics if it is still
    /// running after a few seconds (it is then killed).
    pub fn stop(&mut self, id: u64) {
        if self.node(id).paused {
            self.resume(id);
        }
        self.signal(id, "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        let node = self.node_mut(id);
        let mut child = node.process.take().unwrap_or_else(|| panic!("node {id} is not running"));
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("node {id} was still running {STOP_TIMEOUT:?} after SIGTERM");
                }
                Err(e) => panic!("cannot wait for node {id}: {e}"),
            }
        };
        self.log_marker(id, &format!("stopped with SIGTERM ({status})"));
    }

    /// Stops a node with SIGTERM and starts it again with the same data directory.
    pub fn restart(&mut self, id: u64) {
        self.stop(id);
        self.start(id);
    }

    /// Kills every running node with SIGKILL.
    pub fn kill_all(&mut self) {
        for id in self.ids() {
            if self.node(id).process.is_some() {
                self.kill(id);
            }
        }
    }

    /// Freezes a running node with SIGSTOP: its sockets stay open but it answers nothing.
    pub fn pause(&mut self, id: u64) {
        self.signal(id, "STOP");
        self.node_mut(id).paused = true;
        self.log_marker(id, "paused with SIGSTOP");
    }

    /// Continues a node frozen by [`Cluster::pause`].
    pub fn resume(&mut self, id: u64) {
        self.signal(id, "CONT");
        self.node_mut(id).paused = false;
        self.log_marker(id, "continued with SIGCONT");
    }

    /// A Redis connection to the node, with read and write timeouts. Panics if the node
    /// does not accept it.
    pub fn client(&self, id: u64) -> Connection {
        connect(self.redis_port(id), REPLY_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot connect to node {id}: {e}"))
    }

    /// A raw TCP connection to the node's Redis port, for speaking RESP byte by byte.
    pub fn raw_client(&self, id: u64) -> TcpStream {
        let port = self.redis_port(id);
        let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), CONNECT_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot connect to node {id} on port {port}: {e}"));
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(REPLY_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// The node's `INFO raft` section, parsed.
    pub fn raft_info(&self, id: u64) -> Result<RaftInfo, String> {
        self.raft_info_within(id, REPLY_TIMEOUT)
    }

    fn raft_info_within(&self, id: u64, timeout: Duration) -> Result<RaftInfo, String> {
        let mut con = connect(self.redis_port(id), timeout).map_err(|e| e.to_string())?;
        let text: String = redis::cmd("INFO").arg("raft").query(&mut con).map_err(|e| e.to_string())?;
        RaftInfo::parse(&text)
    }

    /// Polls `INFO raft` on every live node until one of them is leader and every live node
    /// names it as its leader; returns its id. Panics after `timeout`, or at once if a node
    /// that should be running has exited.
    pub fn wait_for_leader(&mut self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_nothing_exited();
            let views: Vec<(u64, Result<RaftInfo, String>)> = self
                .live_ids()
                .into_iter()
                .map(|id| (id, self.raft_info_within(id, PROBE_TIMEOUT)))
                .collect();
            if let Some(leader) = agreed_leader(&views) {
                return leader;
            }
            if Instant::now() >= deadline {
                panic!("no leader agreed on by every live node within {timeout:?}; last views: {views:#?}");
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Sends `command` to the node until it succeeds, retrying while the cluster cannot serve
    /// it (`CLUSTERDOWN`, `TIMEOUT`, connection refused or dropped), for example during an
    /// election or while the node starts. Any other error fails the test, and so does running
    /// out of `timeout`.
    pub fn query_with_retry<T: FromRedisValue>(&self, id: u64, command: &redis::Cmd, timeout: Duration) -> T {
        let deadline = Instant::now() + timeout;
        let mut con: Option<Connection> = None;
        let mut last_error = String::from("no attempt finished");
        while Instant::now() < deadline {
            if con.is_none() {
                match connect(self.redis_port(id), REPLY_TIMEOUT) {
                    Ok(new) => con = Some(new),
                    Err(e) => {
                        last_error = e.to_string();
                        thread::sleep(RETRY_INTERVAL);
                        continue;
                    }
                }
            }
            let attempt = command.query::<T>(con.as_mut().expect("connected above"));
            match attempt {
                Ok(value) => return value,
                Err(e) if is_unavailable(&e) => {
                    // After an I/O error (including a read timeout) a late reply could still
                    // arrive on this connection, so the next attempt uses a new one.
                    if !is_unavailable_reply(&e) {
                        con = None;
                    }
                    last_error = e.to_string();
                }
                Err(e) => panic!("{command:?} on node {id} failed: {e}"),
            }
            thread::sleep(RETRY_INTERVAL);
        }
        panic!("{command:?} on node {id} did not succeed within {timeout:?}; last error: {last_error}");
    }

    /// `SET key value` through the node, retried as [`Cluster::query_with_retry`] does,
    /// until the node answers `OK`.
    pub fn set_with_retry(&self, id: u64, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>, timeout: Duration) {
        let mut command = redis::cmd("SET");
        command.arg(key.as_ref()).arg(value.as_ref());
        let reply: Value = self.query_with_retry(id, &command, timeout);
        assert_eq!(reply, Value::Okay, "SET through node {id}");
    }

    /// Panics if a node the harness believes is running has exited on its own.
    pub fn assert_nothing_exited(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.process.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("node {} exited unexpectedly: {status}", node.id);
                }
            }
        }
    }

    fn node(&self, id: u64) -> &Node {
        let index = id.checked_sub(1).expect("node ids start at 1") as usize;
        self.nodes.get(index).unwrap_or_else(|| panic!("no node {id} in a cluster of {}", self.nodes.len()))
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        let size = self.nodes.len();
        let index = id.checked_sub(1).expect("node ids start at 1") as usize;
        self.nodes.get_mut(index).unwrap_or_else(|| panic!("no node {id} in a cluster of {size}"))
    }

    /// Sends a signal with the shell's `kill` (the tests use no libc bindings).
    fn signal(&self, id: u64, signal: &str) {
        let pid = self.node(id).process.as_ref().unwrap_or_else(|| panic!("node {id} is not running")).id();
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -s {signal} {pid}"))
            .status()
            .unwrap_or_else(|e| panic!("cannot run sh to send SIG{signal}: {e}"));
        assert!(status.success(), "sending SIG{signal} to node {id} failed");
    }

    /// Notes a harness action in the node's log, so a log tail shows what the test did.
    fn log_marker(&self, id: u64, what: &str) {
        if let Ok(mut log) = OpenOptions::new().append(true).open(&self.node(id).log_path) {
            let _ = writeln!(log, "==== harness: node {id} {what} ====");
        }
    }
}

impl Drop for Cluster {
    /// Kills every node; when the test is failing, prints the tail of each node's log first.
    fn drop(&mut self) {
        let failing = thread::panicking();
        let mut states = Vec::new();
        for node in &mut self.nodes {
            let state = match node.process.take() {
                None => "down".to_string(),
                Some(mut child) => {
                    let state = match child.try_wait() {
                        Ok(Some(status)) => format!("had exited on its own: {status}"),
                        _ => "running".to_string(),
                    };
                    let _ = child.kill();
                    let _ = child.wait();
                    state
                }
            };
            states.push(state);
        }
        if failing {
            for (node, state) in self.nodes.iter().zip(states) {
                eprintln!(
                    "\n----- node {} ({state}): last {LOG_TAIL_LINES} lines of {} -----",
                    node.id,
                    node.log_path.display()
                );
                match File::open(&node.log_path) {
                    Ok(file) => {
                        for line in tail(file, LOG_TAIL_LINES) {
                            eprintln!("{line}");
                        }
                    }
                    Err(e) => eprintln!("(no log: {e})"),
                }
            }
            eprintln!("----- end of node logs -----\n");
        }
    }
}

/// The `# Raft` section of `INFO`, as a node reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftInfo {
    pub node_id: u64,
    /// `leader`, `follower`, `candidate` or `precandidate`.
    pub role: String,
    pub term: u64,
    /// 0 when the node knows no leader.
    pub leader_id: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub members: Vec<u64>,
}

impl RaftInfo {
    /// Parses `field:value` lines; other lines (`# Raft`, blank lines) are skipped.
    pub fn parse(text: &str) -> Result<RaftInfo, String> {
        let field = |name: &str| -> Result<&str, String> {
            text.lines()
                .filter_map(|line| line.trim_end().split_once(':'))
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value)
                .ok_or_else(|| format!("no `{name}` in INFO raft: {text:?}"))
        };
        let number = |name: &str| -> Result<u64, String> {
            let value = field(name)?;
            value.parse().map_err(|_| format!("`{name}:{value}` is not a number in INFO raft"))
        };
        let members = field("members")?;
        Ok(RaftInfo {
            node_id: number("node_id")?,
            role: field("role")?.to_string(),
            term: number("term")?,
            leader_id: number("leader_id")?,
            commit_index: number("commit_index")?,
            applied_index: number("applied_index")?,
            members: members
                .split(',')
                .filter(|member| !member.is_empty())
                .map(|member| member.parse().map_err(|_| format!("`members:{members}` is not a list of ids")))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// The leader every node in `views` names, if all of them answered, all name the same
/// non-zero leader, and that leader is among them and says it is leader.
fn agreed_leader(views: &[(u64, Result<RaftInfo, String>)]) -> Option<u64> {
    let leader = views.first()?.1.as_ref().ok()?.leader_id;
    if leader == 0 {
        return None;
    }
    let all_agree = views.iter().all(|(_, view)| matches!(view, Ok(info) if info.leader_id == leader));
    let leader_says_so =
        views.iter().any(|(id, view)| *id == leader && matches!(view, Ok(info) if info.role == "leader"));
    (all_agree && leader_says_so).then_some(leader)
}

/// Polls `condition` until it holds; panics with `what` if it still does not after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        thread::sleep(POLL_INTERVAL);
    }
}

/// A Redis connection to `127.0.0.1:port` whose every reply must come within `reply_timeout`.
pub fn connect(port: u16, reply_timeout: Duration) -> RedisResult<Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let con = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    con.set_read_timeout(Some(reply_timeout))?;
    con.set_write_timeout(Some(reply_timeout))?;
    Ok(con)
}

/// True for the errors that mean "the cluster cannot serve this right now": the node's
/// `CLUSTERDOWN` and `TIMEOUT` replies, and any connection failure.
pub fn is_unavailable(error: &RedisError) -> bool {
    is_unavailable_reply(error) || error.is_io_error()
}

/// True for the node's `CLUSTERDOWN` (no leader known) and `TIMEOUT` (fate unknown) replies.
pub fn is_unavailable_reply(error: &RedisError) -> bool {
    matches!(error.code(), Some("CLUSTERDOWN") | Some("TIMEOUT"))
}

/// `SET key value`, which must answer `OK`.
pub fn set(con: &mut Connection, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
    let key = key.as_ref();
    let reply: RedisResult<Value> = redis::cmd("SET").arg(key).arg(value.as_ref()).query(con);
    match reply {
        Ok(Value::Okay) => {}
        other => panic!("SET {:?} answered {other:?}, not OK", String::from_utf8_lossy(key)),
    }
}

/// `GET key`: `None` for a missing key, the exact bytes otherwise. Any error fails the test.
pub fn get(con: &mut Connection, key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    let key = key.as_ref();
    let reply: RedisResult<Value> = redis::cmd("GET").arg(key).query(con);
    match reply {
        Ok(Value::Nil) => None,
        Ok(Value::BulkString(bytes)) => Some(bytes),
        other => panic!("GET {:?} answered {other:?}", String::from_utf8_lossy(key)),
    }
}

/// `GET key` as UTF-8 text.
pub fn get_string(con: &mut Connection, key: impl AsRef<[u8]>) -> Option<String> {
    get(con, key).map(|bytes| String::from_utf8(bytes).expect("the value is not UTF-8"))
}

/// What an external program printed, and how it ended.
#[derive(Debug)]
pub struct ToolOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs an external program (`redis-cli`, `redis-benchmark`) to completion, capturing its
/// output. Panics if it is not installed or runs longer than `timeout` (it is then killed).
pub fn run_tool<S: AsRef<str>>(program: &str, args: &[S], timeout: Duration) -> ToolOutput {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let mut child = Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `{program}` ({e}); it comes with redis-tools: run `make deps`")
        });
    // Drain both pipes while the program runs, so it never blocks on a full pipe.
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`{program} {}` did not finish within {timeout:?}; stdout so far: {:?}",
                    args.join(" "),
                    stdout.join().unwrap_or_default()
                );
            }
            Err(e) => panic!("cannot wait for `{program}`: {e}"),
        }
    };
    ToolOutput {
        status,
        stdout: stdout.join().expect("stdout reader panicked"),
        stderr: stderr.join().expect("stderr reader panicked"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Picks `count` distinct free ports on 127.0.0.1 by binding port 0. Every listener is held
/// until all ports are picked, so no port is handed out twice; they are released on return,
/// just before the nodes bind them.
fn free_loopback_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..count).map(|_| TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port")).collect();
    listeners.iter().map(|listener| listener.local_addr().expect("a bound address").port()).collect()
}

/// The last `lines` lines of a file.
fn tail(file: File, lines: usize) -> Vec<String> {
    let mut last = VecDeque::with_capacity(lines);
    for line in BufReader::new(file).split(b'\n') {
        let Ok(line) = line else { break };
        if last.len() == lines {
            last.pop_front();
        }
        last.push_back(String::from_utf8_lossy(&line).into_owned());
    }
    last.into()
}
