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
//! Faults: every node runs with `--fault-control <dir>/node<id>.faults`, a file of
//! `drop-out <id>` / `drop-in <id>` lines naming the Raft traffic it must drop. The harness
//! keeps the rules of every node and rewrites those files for [`Cluster::partition`],
//! [`Cluster::isolate`], [`Cluster::cut_one_way`] and [`Cluster::heal`]; it returns once every
//! running node has logged that it picked the new rules up, so a fault is in place (or gone)
//! when the call returns.
//!
//! Membership: [`Cluster::add_node`] starts one more node with `--join`, [`Cluster::add_member`]
//! and [`Cluster::remove_member`] change the membership through `RAFT.NODE` and wait until it
//! has taken effect. [`Cluster::launch_with`] gives every node extra flags.
//!
//! Environment:
//! - `RUST_LOG` is passed to the nodes (default `info`), after `actors::peer_transport=info` so
//!   the line a fault change waits for is always logged; their output goes to the log files.
//! - `RAFT_KV_BIN` runs another node binary instead of the one Cargo built for this test.

// Each test binary uses its own subset of the helpers.
#![allow(dead_code)]

pub mod linearizability;
pub mod workload;

use std::collections::{BTreeSet, VecDeque};
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

/// How long a running node may take to pick up new fault rules (it polls every 100 ms).
const FAULT_PICKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a node logs when it picks up new fault rules.
const FAULT_RULES_CHANGED: &str = "fault rules changed";

/// A set of `raft-kv` node processes forming one Raft group. Node ids are 1-based.
pub struct Cluster {
    binary: PathBuf,
    /// The peer address of every node, in id order (nodes added later included).
    peer_addrs: Vec<String>,
    /// Flags given to every node after the harness's own (see [`Cluster::launch_with`]).
    extra_args: Vec<String>,
    nodes: Vec<Node>,
    /// Holds every node's data directory and log file; removed when the cluster is dropped.
    dir: TempDir,
}

struct Node {
    id: u64,
    redis_port: u16,
    /// `--cluster` for this node: the peer addresses of nodes 1..=id when it was created.
    cluster_arg: String,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// `--fault-control`: the rules below, as the node reads them.
    fault_path: PathBuf,
    faults: FaultRules,
    /// `--join`: the node was added to a running cluster by [`Cluster::add_node`].
    join: bool,
    /// `None` while the node is down.
    process: Option<Child>,
    /// Stopped with SIGSTOP and not yet continued.
    paused: bool,
    /// The log file's length when the node was last started: where this run's lines begin.
    log_offset: u64,
    /// Removed from the cluster (`RAFT.NODE REMOVE`) and exited: no longer a member.
    removed: bool,
    /// The largest file the node may write (`RLIMIT_FSIZE`, set with `prlimit` when it starts).
    file_size_limit: Option<u64>,
    /// How many files the node may have open (`RLIMIT_NOFILE`, soft and hard, likewise).
    open_files_limit: Option<u64>,
}

/// The Raft traffic one node drops: messages to (`drop-out`) and from (`drop-in`) these peers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FaultRules {
    drop_out: BTreeSet<u64>,
    drop_in: BTreeSet<u64>,
}

impl FaultRules {
    /// The fault-control file's text.
    fn to_file(&self) -> String {
        let out = self.drop_out.iter().map(|id| format!("drop-out {id}\n"));
        let inbound = self.drop_in.iter().map(|id| format!("drop-in {id}\n"));
        out.chain(inbound).collect()
    }
}

impl Node {
    fn new(dir: &Path, id: u64, redis_port: u16, cluster_arg: String, join: bool) -> Node {
        let fault_path = dir.join(format!("node{id}.faults"));
        write_fault_file(&fault_path, &FaultRules::default());
        Node {
            id,
            redis_port,
            cluster_arg,
            // Not created here: the node creates its data directory when it is missing.
            data_dir: dir.join(format!("node{id}")),
            log_path: dir.join(format!("node{id}.log")),
            fault_path,
            faults: FaultRules::default(),
            join,
            process: None,
            paused: false,
            removed: false,
            log_offset: 0,
            file_size_limit: None,
            open_files_limit: None,
        }
    }

    /// The fault rules the running node last reported loading (its log's last
    /// `fault rules changed node=1 drop_out={2, 3} drop_in={}` line since it started; none
    /// means no rules).
    fn loaded_faults(&self) -> FaultRules {
        let mut rules = FaultRules::default();
        let Ok(mut file) = File::open(&self.log_path) else { return rules };
        let mut text = Vec::new();
        if std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(self.log_offset)).is_err()
            || file.read_to_end(&mut text).is_err()
        {
            return rules;
        }
        let text = String::from_utf8_lossy(&text);
        let Some(line) = text.lines().rfind(|line| line.contains(FAULT_RULES_CHANGED)) else {
            return rules;
        };
        let set = |field: &str| -> BTreeSet<u64> {
            let Some((_, rest)) = line.split_once(&format!(" {field}={{")) else { return BTreeSet::new() };
            let inner = rest.split('}').next().unwrap_or_default();
            inner.split(',').filter_map(|id| id.trim().parse().ok()).collect()
        };
        rules.drop_out = set("drop_out");
        rules.drop_in = set("drop_in");
        rules
    }
}

/// Replaces a fault-control file in one step (write, then rename). The node notices a change
/// by the file's modification time, so that time is made to move forward even when two
/// changes come within one tick of the file system's clock.
fn write_fault_file(path: &Path, rules: &FaultRules) {
    let previous = std::fs::metadata(path).and_then(|meta| meta.modified()).ok();
    let staging = path.with_extension("faults.new");
    let file = File::create(&staging).unwrap_or_else(|e| panic!("cannot create {}: {e}", staging.display()));
    (&file).write_all(rules.to_file().as_bytes()).expect("cannot write the fault-control file");
    let now = std::time::SystemTime::now();
    let modified = match previous {
        Some(previous) if previous >= now => previous + Duration::from_millis(1),
        _ => now,
    };
    file.set_modified(modified).expect("cannot set the fault-control file's modification time");
    drop(file);
    std::fs::rename(&staging, path).unwrap_or_else(|e| panic!("cannot replace {}: {e}", path.display()));
}

impl Cluster {
    /// Starts `size` nodes on fresh loopback ports, each with an empty data directory.
    /// Returns at once; use [`Cluster::wait_for_leader`] before sending commands.
    pub fn launch(size: usize) -> Cluster {
        Cluster::launch_with(size, &[])
    }

    /// [`Cluster::launch`], giving every node (also those added later) these extra flags,
    /// e.g. `&["--snapshot-threshold", "200"]`.
    pub fn launch_with(size: usize, extra_args: &[&str]) -> Cluster {
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
        let peer_addrs: Vec<String> = peer_ports.iter().map(|port| format!("127.0.0.1:{port}")).collect();
        let cluster_arg = peer_addrs.join(",");
        let nodes = (1..=size as u64)
            .zip(redis_ports)
            .map(|(id, &redis_port)| Node::new(dir.path(), id, redis_port, cluster_arg.clone(), false))
            .collect();
        let extra_args = extra_args.iter().map(|arg| arg.to_string()).collect();
        let mut cluster = Cluster { binary, peer_addrs, extra_args, nodes, dir };
        for id in cluster.ids() {
            cluster.start(id);
        }
        cluster
    }

    /// Starts one more node, with `--join` and an empty data directory, on fresh ports, and
    /// returns its id (the next one). It waits, empty, until the cluster adds it: see
    /// [`Cluster::add_member`].
    pub fn add_node(&mut self) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        let ports = free_loopback_ports(2);
        self.peer_addrs.push(format!("127.0.0.1:{}", ports[0]));
        let cluster_arg = self.peer_addrs.join(",");
        let node = Node::new(self.dir.path(), id, ports[1], cluster_arg, true);
        self.nodes.push(node);
        self.start(id);
        id
    }

    /// The node's Raft peer address (`host:port`).
    pub fn peer_addr(&self, id: u64) -> &str {
        &self.peer_addrs[self.index(id)]
    }

    /// `RAFT.NODE ADD` for a node started by [`Cluster::add_node`], sent to `via` (retried while
    /// the cluster cannot serve it), then waits until every live member lists it as a voter.
    pub fn add_member(&self, via: u64, id: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut command = redis::cmd("RAFT.NODE");
        command.arg("ADD").arg(id).arg(self.peer_addr(id)).arg(format!("127.0.0.1:{}", self.redis_port(id)));
        self.admin_with_retry(via, &command, "is already a member", deadline);
        wait_until(
            deadline.saturating_duration_since(Instant::now()),
            &format!("node {id} to be a voter"),
            || {
                self.live_ids().iter().all(|&member| {
                matches!(self.raft_info_within(member, PROBE_TIMEOUT), Ok(info) if info.members.contains(&id))
            })
            },
        );
    }

    /// `RAFT.NODE REMOVE` sent to `via` (retried while the cluster cannot serve it); then, if
    /// the removed node runs, waits until it has exited with status 0, as a removed node does,
    /// and until every other live member no longer lists it.
    pub fn remove_member(&mut self, via: u64, id: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut command = redis::cmd("RAFT.NODE");
        command.arg("REMOVE").arg(id);
        self.admin_with_retry(via, &command, "is not a member", deadline);
        if self.node(id).process.is_some() {
            let status = self.wait_for_exit(id, deadline.saturating_duration_since(Instant::now()));
            assert!(status.success(), "node {id} exited with {status} after its removal, not 0");
        }
        self.node_mut(id).removed = true;
        wait_until(
            deadline.saturating_duration_since(Instant::now()),
            &format!("node {id} to leave"),
            || {
                self.live_ids().iter().all(|&member| {
                matches!(self.raft_info_within(member, PROBE_TIMEOUT), Ok(info) if !info.members.contains(&id) && !info.learners.contains(&id))
            })
            },
        );
    }

    /// Sends a membership command until it answers OK, or an error containing `done_if` (a
    /// retry after an attempt whose reply was lost). Retries `CLUSTERDOWN`, `TIMEOUT`,
    /// `TRYAGAIN` and connection failures until `deadline`.
    fn admin_with_retry(&self, via: u64, command: &redis::Cmd, done_if: &str, deadline: Instant) {
        let mut last_error = String::from("no attempt finished");
        while Instant::now() < deadline {
            let reply = connect(self.redis_port(via), REPLY_TIMEOUT)
                .and_then(|mut con| command.query::<Value>(&mut con));
            match reply {
                Ok(Value::Okay) => return,
                Ok(other) => panic!("{command:?} through node {via} answered {other:?}"),
                Err(e) if e.to_string().contains(done_if) => return,
                Err(e) if is_unavailable(&e) || e.code() == Some("TRYAGAIN") => last_error = e.to_string(),
                Err(e) => panic!("{command:?} through node {via} failed: {e}"),
            }
            thread::sleep(RETRY_INTERVAL);
        }
        panic!("{command:?} through node {via} did not succeed in time; last error: {last_error}");
    }

    /// Waits until a running node exits on its own; returns its exit status. Panics if it is
    /// still running after `timeout`.
    pub fn wait_for_exit(&mut self, id: u64, timeout: Duration) -> ExitStatus {
        let node = self.node_mut(id);
        let child = node.process.as_mut().unwrap_or_else(|| panic!("node {id} is not running"));
        let status = exit_within(child, timeout, &format!("node {id}"))
            .unwrap_or_else(|| panic!("node {id} was still running after {timeout:?}"));
        node.process = None;
        node.paused = false;
        self.log_marker(id, &format!("exited on its own ({status})"));
        status
    }

    /// Every node id, running or not: `1..=size`.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|node| node.id).collect()
    }

    /// Ids of the nodes that are members: every node except those removed.
    pub fn member_ids(&self) -> Vec<u64> {
        self.nodes.iter().filter(|node| !node.removed).map(|node| node.id).collect()
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

    /// The length of the node's log file so far: where [`Cluster::log_since`] starts reading.
    pub fn log_len(&self, id: u64) -> u64 {
        std::fs::metadata(self.log_path(id)).map(|meta| meta.len()).unwrap_or(0)
    }

    /// The node's log from byte `from` (a [`Cluster::log_len`]) on.
    pub fn log_since(&self, id: u64, from: u64) -> String {
        let bytes = std::fs::read(self.log_path(id)).expect("read a node log");
        String::from_utf8_lossy(&bytes[from as usize..]).into_owned()
    }

    /// The node's data directory.
    pub fn data_dir(&self, id: u64) -> &Path {
        &self.node(id).data_dir
    }

    /// The directory holding every node's data directory and log file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts a node that is down, with the same arguments and data directory as before.
    pub fn start(&mut self, id: u64) {
        let binary = self.binary.clone();
        let extra_args = self.extra_args.clone();
        let node = self.node_mut(id);
        assert!(node.process.is_none(), "node {id} is already running");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", node.log_path.display()));
        writeln!(log, "==== harness: starting node {id} ====").expect("cannot write the log");
        node.log_offset = log.metadata().map(|meta| meta.len()).unwrap_or(0);
        let stdout = log.try_clone().expect("cannot clone the log file handle");

        let limits: Vec<String> = [
            node.file_size_limit.map(|bytes| format!("--fsize={bytes}")),
            node.open_files_limit.map(|files| format!("--nofile={files}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut command = if limits.is_empty() {
            Command::new(&binary)
        } else {
            let mut command = Command::new("prlimit");
            command.args(&limits).arg("--").arg(&binary);
            command
        };
        command
            .arg("--id")
            .arg(id.to_string())
            .arg("--cluster")
            .arg(&node.cluster_arg)
            .arg("--port")
            .arg(node.redis_port.to_string())
            .arg("--data-dir")
            .arg(&node.data_dir)
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--fault-control")
            .arg(&node.fault_path)
            .args(node.join.then_some("--join"))
            .args(&extra_args)
            .env("RUST_LOG", node_log_filter())
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

    /// Limits the size of every file the node writes from its next start on (`None`: no
    /// limit): a write past it fails (EFBIG), as on a full disk.
    pub fn limit_file_size(&mut self, id: u64, bytes: Option<u64>) {
        self.node_mut(id).file_size_limit = bytes;
    }

    /// Limits how many files the node may have open (`ulimit -n`, soft and hard) from its next
    /// start on (`None`: the harness's own limit).
    pub fn limit_open_files(&mut self, id: u64, files: Option<u64>) {
        self.node_mut(id).open_files_limit = files;
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
        let node = self.node_mut(id);
        let mut child = node.process.take().unwrap_or_else(|| panic!("node {id} is not running"));
        let status = exit_within(&mut child, STOP_TIMEOUT, &format!("node {id}"))
            .unwrap_or_else(|| panic!("node {id} was still running {STOP_TIMEOUT:?} after SIGTERM"));
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

    /// Splits the members into groups that can only talk within themselves: every node drops
    /// all Raft traffic to and from the nodes outside its group. Every member must be in
    /// exactly one group. Replaces the faults in force; returns once every running node has
    /// picked up its rules.
    pub fn partition(&mut self, groups: &[&[u64]]) {
        let members = self.member_ids();
        for &id in &members {
            let count = groups.iter().filter(|group| group.contains(&id)).count();
            assert_eq!(count, 1, "node {id} must be in exactly one of the groups {groups:?}");
        }
        let rules = members
            .iter()
            .map(|&id| {
                let group = groups.iter().find(|group| group.contains(&id)).expect("checked above");
                let others: BTreeSet<u64> = members.iter().copied().filter(|m| !group.contains(m)).collect();
                (id, FaultRules { drop_out: others.clone(), drop_in: others })
            })
            .collect();
        self.set_faults(rules);
    }

    /// Cuts one node off from every other member, both ways (replaces the faults in force).
    pub fn isolate(&mut self, id: u64) {
        let rest: Vec<u64> = self.member_ids().into_iter().filter(|&m| m != id).collect();
        self.partition(&[&[id], &rest]);
    }

    /// Drops every Raft message `from` sends to `to` (`to` still reaches `from`), on top of
    /// the faults in force.
    pub fn cut_one_way(&mut self, from: u64, to: u64) {
        let mut rules: Vec<(u64, FaultRules)> =
            self.nodes.iter().map(|node| (node.id, node.faults.clone())).collect();
        rules[self.index(from)].1.drop_out.insert(to);
        rules[self.index(to)].1.drop_in.insert(from);
        self.set_faults(rules);
    }

    /// Lifts every network fault; returns once every running node has picked that up.
    pub fn heal(&mut self) {
        let rules = self.nodes.iter().map(|node| (node.id, FaultRules::default())).collect();
        self.set_faults(rules);
    }

    /// Writes the fault-control file of every node whose rules change, then waits until every
    /// running node that is not paused reports the rules the harness gave it. A node that is
    /// down or paused reads its file when it starts or continues.
    fn set_faults(&mut self, rules: Vec<(u64, FaultRules)>) {
        for (id, new) in rules {
            if self.node(id).faults == new {
                continue;
            }
            let node = self.node_mut(id);
            node.faults = new;
            write_fault_file(&node.fault_path, &node.faults);
            let text = node.faults.to_file().replace('\n', "; ");
            self.log_marker(id, &format!("fault rules set to: {text}"));
        }
        wait_until(FAULT_PICKUP_TIMEOUT, "every running node to pick up its fault rules", || {
            self.nodes
                .iter()
                .filter(|node| node.process.is_some() && !node.paused)
                .all(|node| node.loaded_faults() == node.faults)
        });
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

    /// Hands leadership to node `id` (`RAFT.TRANSFER-LEADER`), asking again until it leads
    /// (a node that is catching up refuses it), for at most `timeout`: then it answers reads
    /// from its own keyspace.
    pub fn make_leader(&mut self, id: u64, timeout: Duration) {
        wait_until(timeout, &format!("node {id} to lead"), || {
            let leader = self.wait_for_leader(timeout);
            if leader != id {
                let _ = redis::cmd("RAFT.TRANSFER-LEADER")
                    .arg(id)
                    .query::<redis::Value>(&mut self.client(leader));
            }
            leader == id
        });
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

    fn index(&self, id: u64) -> usize {
        let index = id.checked_sub(1).expect("node ids start at 1") as usize;
        assert!(index < self.nodes.len(), "no node {id} in a cluster of {}", self.nodes.len());
        index
    }

    fn node(&self, id: u64) -> &Node {
        &self.nodes[self.index(id)]
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        let index = self.index(id);
        &mut self.nodes[index]
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
    /// The first index the node's log holds: one past its last compaction point.
    pub log_first_index: u64,
    /// What is left of the leader's read lease (0 on followers).
    pub read_lease_ms: u64,
    /// The voters.
    pub members: Vec<u64>,
    /// The learners (nodes being added, not yet promoted).
    pub learners: Vec<u64>,
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
        let ids = |name: &str, list: &str| -> Result<Vec<u64>, String> {
            list.split(',')
                .filter(|member| !member.is_empty())
                .map(|member| member.parse().map_err(|_| format!("`{name}:{list}` is not a list of ids")))
                .collect()
        };
        Ok(RaftInfo {
            node_id: number("node_id")?,
            role: field("role")?.to_string(),
            term: number("term")?,
            leader_id: number("leader_id")?,
            commit_index: number("commit_index")?,
            applied_index: number("applied_index")?,
            log_first_index: number("log_first_index")?,
            read_lease_ms: number("read_lease_ms")?,
            members: ids("members", members)?,
            learners: ids("learners", field("learners").unwrap_or(""))?,
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

/// How many clients wait in a blocking command (BLPOP ...) on the node at `port`: its
/// `INFO clients` field `blocked_clients`.
pub fn blocked_clients(port: u16) -> usize {
    let mut con = connect(port, REPLY_TIMEOUT).expect("connect");
    let info: String = redis::cmd("INFO").arg("clients").query(&mut con).expect("INFO clients");
    let field = info.lines().find_map(|l| l.strip_prefix("blocked_clients:")).expect("blocked_clients");
    field.trim().parse().expect("a count")
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
    let Some(status) = exit_within(&mut child, timeout, &format!("`{program}`")) else {
        panic!(
            "`{program} {}` did not finish within {timeout:?}; stdout so far: {:?}",
            args.join(" "),
            stdout.join().unwrap_or_default()
        );
    };
    ToolOutput {
        status,
        stdout: stdout.join().expect("stdout reader panicked"),
        stderr: stderr.join().expect("stderr reader panicked"),
    }
}

/// Waits up to `timeout` for `child` to exit; on time-out kills it and returns `None`.
pub fn exit_within(child: &mut Child, timeout: Duration, what: &str) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Err(e) => panic!("cannot wait for {what}: {e}"),
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The nodes' `RUST_LOG`: the test's own (default `info`), but never hiding the line the harness
/// waits for when it changes fault rules.
fn node_log_filter() -> OsString {
    let mut filter = OsString::from("actors::peer_transport=info,");
    filter.push(std::env::var_os("RUST_LOG").unwrap_or_else(|| OsString::from("info")));
    filter
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
