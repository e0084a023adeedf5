//! A register workload for fault tests: concurrent clients writing and reading a few keys
//! through every node while a test injects faults, recording a history for the
//! [linearizability checker](super::linearizability).
//!
//! Each client is a thread with its own connection. It starts on node `client % nodes` and
//! moves to the next node after any error, reconnecting; every operation has a client-side
//! timeout, so a paused or partitioned node costs a client at most that long. Every value
//! written is unique (`client << 40 | counter`, never 0), which is what lets the checker decide
//! large histories quickly and lets a test tell which write a read observed.
//!
//! How operations are recorded (times are nanoseconds since the workload started):
//! - `SET k v` answered `OK`: an acknowledged write.
//! - `SET k v` failed in any other way (an error reply, a timeout, a lost connection): a write
//!   whose outcome is [`Outcome::Unknown`], as it may have been applied. `CLUSTERDOWN` and
//!   `TRYAGAIN` promise that nothing was applied; those values are also kept in
//!   [`History::refused`], so a test can check that no node ever shows them.
//! - `GET k` answered: an acknowledged read of the value or of nil. A failed read observed
//!   nothing and is not recorded.
//!
//! The workload runs until [`Workload::stop`], or until its own bound on time or operations,
//! whichever comes first.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use redis::{Connection, Value};

use super::linearizability::{Event, Op, Outcome};
use super::{connect, wait_until};

/// Pause after a failed operation or connection, before the next attempt on the next node.
const ERROR_BACKOFF: Duration = Duration::from_millis(20);

/// The shape of a workload.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Concurrent client threads.
    pub clients: usize,
    /// How many registers: keys `<key_prefix>0`, `<key_prefix>1`, ...
    pub keys: usize,
    pub key_prefix: String,
    /// Percentage of operations that are writes; the rest are reads.
    pub write_percent: u64,
    /// Client-side bound on one operation (longer than the node's own bound on a write whose
    /// fate is unknown, so that bound is normally what a client sees).
    pub op_timeout: Duration,
    /// The workload stops by itself after this long ...
    pub max_duration: Duration,
    /// ... or after this many operations, whichever comes first.
    pub max_ops: usize,
    /// Writes and reads through Lua scripts (EVAL, EVAL_RO) instead of SET and GET.
    pub scripts: bool,
}

/// The scripted workload's write and read.
const SET_SCRIPT: &str = "return redis.call('set', KEYS[1], ARGV[1])";
const GET_SCRIPT: &str = "return redis.call('get', KEYS[1])";

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            clients: 6,
            keys: 5,
            key_prefix: "register:".to_string(),
            write_percent: 50,
            op_timeout: Duration::from_secs(7),
            max_duration: Duration::from_secs(180),
            max_ops: 500_000,
            scripts: false,
        }
    }
}

impl WorkloadConfig {
    /// The name of register `n`.
    pub fn key(&self, n: usize) -> String {
        format!("{}{n}", self.key_prefix)
    }

    /// Every register's name.
    pub fn keys(&self) -> Vec<String> {
        (0..self.keys).map(|n| self.key(n)).collect()
    }
}

/// What the clients share with the test.
struct Shared {
    config: WorkloadConfig,
    start: Instant,
    /// Redis ports of the nodes the clients spread over.
    targets: RwLock<Vec<u16>>,
    stop: AtomicBool,
    /// Operations issued, acknowledged writes and acknowledged reads so far.
    issued: AtomicUsize,
    writes_ok: AtomicUsize,
    reads_ok: AtomicUsize,
}

impl Shared {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// What one client recorded.
#[derive(Default)]
struct ClientLog {
    events: Vec<Event>,
    /// Redis port of the node that served each event.
    served_by: Vec<u16>,
    refused: Vec<u64>,
    /// Replies no Redis server should give (e.g. `GET` returning something not written).
    anomalies: Vec<String>,
}

/// A running workload. Dropping it without [`Workload::stop`] stops the clients too.
pub struct Workload {
    shared: Arc<Shared>,
    clients: Vec<JoinHandle<ClientLog>>,
}

/// Everything a workload recorded.
#[derive(Debug, Clone)]
pub struct History {
    pub events: Vec<Event>,
    /// For each event, the Redis port of the node that served it.
    pub served_by: Vec<u16>,
    /// Values of writes refused with `CLUSTERDOWN` or `TRYAGAIN` (promised not applied).
    pub refused: HashSet<u64>,
    /// Replies no Redis server should give; a test fails if there are any.
    pub anomalies: Vec<String>,
    /// The instant event times count from: events appended later use [`History::now`].
    pub start: Instant,
}

impl History {
    /// Nanoseconds since the workload started, the clock of every event.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn writes(&self, outcome: Outcome) -> usize {
        self.events.iter().filter(|e| matches!(e.op, Op::Write(_)) && e.outcome == outcome).count()
    }

    pub fn reads(&self) -> usize {
        self.events.iter().filter(|e| matches!(e.op, Op::Read(_))).count()
    }
}

impl Workload {
    /// Starts the clients, spread over the nodes listening on these Redis ports.
    pub fn start(ports: Vec<u16>, config: WorkloadConfig) -> Workload {
        assert!(!ports.is_empty(), "a workload needs at least one node");
        let shared = Arc::new(Shared {
            config: config.clone(),
            start: Instant::now(),
            targets: RwLock::new(ports),
            stop: AtomicBool::new(false),
            issued: AtomicUsize::new(0),
            writes_ok: AtomicUsize::new(0),
            reads_ok: AtomicUsize::new(0),
        });
        let clients = (0..config.clients)
            .map(|client| {
                let shared = Arc::clone(&shared);
                thread::Builder::new()
                    .name(format!("client{client}"))
                    .spawn(move || run_client(client, &shared))
                    .expect("cannot start a client thread")
            })
            .collect();
        Workload { shared, clients }
    }

    /// Changes the nodes the clients use from their next (re)connection on.
    pub fn set_targets(&self, ports: Vec<u16>) {
        assert!(!ports.is_empty(), "a workload needs at least one node");
        *self.shared.targets.write().unwrap() = ports;
    }

    /// Acknowledged writes and reads so far.
    pub fn acknowledged(&self) -> (usize, usize) {
        (self.shared.writes_ok.load(Ordering::SeqCst), self.shared.reads_ok.load(Ordering::SeqCst))
    }

    /// Waits until the clients have had `writes` more writes and `reads` more reads
    /// acknowledged than when called; returns how long that took. Panics after `timeout`,
    /// naming `what`. This is how a test shows the cluster serves, and how long a fault lasts.
    pub fn wait_for_progress(&self, writes: usize, reads: usize, timeout: Duration, what: &str) -> Duration {
        let started = Instant::now();
        let (w0, r0) = self.acknowledged();
        let what = format!("{writes} more acknowledged writes and {reads} more reads {what}");
        wait_until(timeout, &what, || {
            let (w, r) = self.acknowledged();
            assert!(!self.finished(), "the workload reached its own bound while waiting for {what}");
            w >= w0 + writes && r >= r0 + reads
        });
        started.elapsed()
    }

    /// True once every client has stopped (its bound reached, or [`Workload::stop`]).
    fn finished(&self) -> bool {
        self.clients.iter().all(|client| client.is_finished())
    }

    /// Stops the clients (each finishes its operation in flight) and returns the history.
    pub fn stop(mut self) -> History {
        self.shared.stop.store(true, Ordering::SeqCst);
        let mut history = History {
            events: Vec::new(),
            served_by: Vec::new(),
            refused: HashSet::new(),
            anomalies: Vec::new(),
            start: self.shared.start,
        };
        for client in self.clients.drain(..) {
            let log = client.join().expect("a workload client panicked");
            history.events.extend(log.events);
            history.served_by.extend(log.served_by);
            history.refused.extend(log.refused);
            history.anomalies.extend(log.anomalies);
        }
        history
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

/// One client's loop: random reads and writes until told to stop or a bound is reached.
fn run_client(client: usize, shared: &Shared) -> ClientLog {
    let config = &shared.config;
    let mut log = ClientLog::default();
    let mut rng = SplitMix(0x9e37_79b9_7f4a_7c15 ^ client as u64);
    let mut target = client;
    let mut con: Option<(u16, Connection)> = None;
    let mut counter: u64 = 0;
    let deadline = shared.start + config.max_duration;
    while !shared.stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        if con.is_none() {
            let port = {
                let targets = shared.targets.read().unwrap();
                targets[target % targets.len()]
            };
            match connect(port, config.op_timeout) {
                Ok(connection) => con = Some((port, connection)),
                Err(_) => {
                    target += 1;
                    thread::sleep(ERROR_BACKOFF);
                    continue;
                }
            }
        }
        let (port, connection) =
            con.as_mut().map(|(port, connection)| (*port, connection)).expect("connected above");
        if shared.issued.fetch_add(1, Ordering::SeqCst) >= config.max_ops {
            break;
        }
        let key = config.key(rng.below(config.keys as u64) as usize);
        let failed = if rng.below(100) < config.write_percent {
            counter += 1;
            let value = ((client as u64 + 1) << 40) | counter;
            let call = shared.now();
            let command = match config.scripts {
                true => redis::cmd("EVAL").arg(SET_SCRIPT).arg(1).arg(&key).arg(value).clone(),
                false => redis::cmd("SET").arg(&key).arg(value).clone(),
            };
            let reply = command.query::<Value>(connection);
            let ret = shared.now();
            let outcome = match &reply {
                Ok(Value::Okay) => {
                    shared.writes_ok.fetch_add(1, Ordering::SeqCst);
                    Outcome::Ok
                }
                Ok(other) => {
                    log.anomalies.push(format!("SET {key} {value} on port {port} answered {other:?}"));
                    Outcome::Unknown
                }
                Err(e) => {
                    if matches!(e.code(), Some("CLUSTERDOWN") | Some("TRYAGAIN")) {
                        log.refused.push(value);
                    }
                    Outcome::Unknown
                }
            };
            log.events.push(Event { client, key, op: Op::Write(value), outcome, call, ret });
            log.served_by.push(port);
            reply.is_err()
        } else {
            let call = shared.now();
            let command = match config.scripts {
                true => redis::cmd("EVAL_RO").arg(GET_SCRIPT).arg(1).arg(&key).clone(),
                false => redis::cmd("GET").arg(&key).clone(),
            };
            let reply = command.query::<Value>(connection);
            let ret = shared.now();
            let seen = match &reply {
                Ok(Value::Nil) => Some(None),
                Ok(Value::BulkString(bytes)) => {
                    match std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok()) {
                        Some(value) => Some(Some(value)),
                        None => {
                            log.anomalies.push(format!("GET {key} on port {port} answered {bytes:?}"));
                            None
                        }
                    }
                }
                Ok(other) => {
                    log.anomalies.push(format!("GET {key} on port {port} answered {other:?}"));
                    None
                }
                Err(_) => None,
            };
            if let Some(seen) = seen {
                shared.reads_ok.fetch_add(1, Ordering::SeqCst);
                log.events.push(Event { client, key, op: Op::Read(seen), outcome: Outcome::Ok, call, ret });
                log.served_by.push(port);
            }
            reply.is_err()
        };
        if failed {
            // A late reply could still arrive on this connection: never reuse it. Another
            // node may be able to serve (this one may be cut off or without a leader).
            con = None;
            target += 1;
            thread::sleep(ERROR_BACKOFF);
        }
    }
    log
}

/// A small deterministic random number generator (SplitMix64).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
