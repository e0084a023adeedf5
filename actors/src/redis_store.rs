//! RedisStore is an actor. It gives Redis semantics to commands, on top of Raft.
//!
//! - A write becomes a proposal with a unique [`RequestId`] and a waiting reply. The reply is
//!   the one Storage computed when it applied that very entry on this node ([`Applied`]), so a
//!   client is answered only after its write is committed and applied. A write that cannot be
//!   proposed fails at once (`-CLUSTERDOWN`); one whose fate stays unknown fails after a bounded
//!   time (`-TIMEOUT`), or as soon as a newer leader's commit shows that it was lost with the
//!   old leader (also `-TIMEOUT`: a deposed leader may still have passed it on).
//! - A read asks RaftNode for a read index (the leader's commit index, confirmed by a quorum),
//!   waits until this node has applied that far, then reads from Storage: linearizable on any
//!   node.
//! - SCAN needs no state here: its cursor is a position in the keyspace's order (see
//!   [`crate::keyspace`]), which every node shares, so a scan may go on through any node.
//! - On the leader, an expiry sweeper walks the keyspace a slice at a time and proposes the
//!   deletion of the keys it finds expired ([`WriteOp::ExpireKeys`]); the entry deletes them only
//!   if they are still expired at the entry's time, so every replica removes the same keys.
//! - Blocking commands (BLPOP ...) wait here: their pop is a write; while it finds nothing the
//!   client waits in [`BlockedClients`], and every apply names the lists and sorted sets it
//!   left with elements ([`Applied::fed`]), which wakes as many waiting clients, in the order
//!   they blocked, to pop again through Raft. Every node applies every entry, so a client may
//!   wait on any node, through changes of leader.
//! - It keeps the list of this node's client connections (`CLIENT LIST`, `INFO clients`),
//!   which Sessions report with [`ClientEvent`].

use std::cell::{Cell, RefCell};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::debug;

use crate::command::raft::RaftAdmin;
use crate::command::{
    batch_context, Command, Eval, KillFilter, Proposal, Queued, ReadQuery, RequestId, Script, ValueType,
    WriteOp,
};
use crate::error::Error;
use crate::keyspace::scripts::{sha1_hex, DEFAULT_BUDGET};
use crate::keyspace::{now_ms, FedKey, ScriptChange};
use crate::pubsub::{Deliver, Published, Subscriptions};
use crate::raft_node::{
    BatchEntry, ChangeMembership, GetMembers, GetStatus, MemberStatus, Propose, RaftNode, RaftStatus,
    ReadIndex, TransferLeader,
};
use crate::resp::Frame;
use crate::storage::{Read, Storage};
use crate::telemetry;

/// Execute a parsed command and reply with its answer. Sent by a Session for every command
/// that is not answered by the session itself.
#[derive(Message)]
#[rtype(result = "Frame")]
pub struct Execute(pub Command);

/// Execute several commands and reply with their answers, in order, once all are answered.
/// Sent by a Session for the requests of one kind (reads or writes) that it started in one
/// turn, typically a pipelined batch: one message instead of one per command.
#[derive(Message)]
#[rtype(result = "Vec<Frame>")]
pub struct ExecuteBatch(pub Vec<Command>);

/// Run a blocking command (BLPOP ...) for a client; its answer goes to `reply` once it has
/// popped something, failed or timed out. The client's Session keeps the receiver: a client
/// that goes away drops it, and stops waiting.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Block {
    /// The client's id (`CLIENT UNBLOCK`, `CLIENT LIST`).
    pub client: u64,
    pub op: WriteOp,
    pub timeout: Option<Duration>,
    pub reply: oneshot::Sender<Frame>,
}

/// The node is shutting down: refuse new commands, and reply once every write and read already
/// under way has been answered (applied, or failed by its bounded wait). Sent by the binary on
/// SIGTERM/SIGINT, after it stopped accepting connections.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

/// Storage applied the log up to `index`. `replies` are the answers for writes this node
/// proposed in this incarnation, by request sequence number; `fed`, the lists and sorted sets
/// these entries left with elements, for the clients blocked on them. Sent by Storage after
/// each apply, and after installing a snapshot (`reloaded`: any key may have changed).
#[derive(Message, Debug, Default, PartialEq)]
#[rtype(result = "()")]
pub struct Applied {
    pub index: u64,
    pub replies: Vec<(u64, Frame)>,
    pub fed: Vec<FedKey>,
    /// The messages these entries published, for this node's subscribers.
    pub published: Vec<Published>,
    /// The scripts these entries ran or loaded, and the flushes, for this node's script cache.
    pub scripts: Vec<ScriptChange>,
    pub reloaded: bool,
}

/// What became of this node's batches of writes, each named by the sequence number of its
/// first write. Sent by RaftNode when entries are committed, before it hands them to Storage
/// to apply.
#[derive(Message, Debug, Clone, Default, PartialEq)]
#[rtype(result = "()")]
pub struct Committed {
    /// Committed now.
    pub batches: Vec<u64>,
    /// Proposed in an earlier term than an entry committed now, and not committed before it:
    /// lost with a change of leader (see [`Error::WriteLost`]).
    pub lost: Vec<u64>,
}

/// What a Session reports about itself, for `CLIENT LIST` and `INFO`. Sent by Sessions with
/// `do_send`; no reply.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum ClientEvent {
    /// A connection was accepted, or its name or protocol changed.
    Updated(ClientInfo),
    /// The session answered a command itself (it counts in `total_commands_processed`).
    LocalCommand,
    /// The connection closed.
    Gone(u64),
    /// A connection was refused: `--maxclients` were connected already.
    Rejected,
    /// `CONFIG RESETSTAT`: the `INFO stats` counters start again from zero.
    ResetStats,
    /// `SUBSCRIBE` / `PSUBSCRIBE` (`pattern`): the client, reached at `deliver`, listens to
    /// these channels (patterns) now.
    Subscribe { client: u64, names: Vec<Bytes>, pattern: bool, deliver: Recipient<Deliver> },
    /// `UNSUBSCRIBE` / `PUNSUBSCRIBE` of these channels (patterns).
    Unsubscribe { client: u64, names: Vec<Bytes>, pattern: bool },
    /// `SHUTDOWN`: a client asked the node to stop, as SIGTERM does.
    Shutdown,
}

/// One client connection, as `CLIENT LIST` shows it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub name: String,
    pub protocol: u8,
    pub connected: Instant,
    /// How many channels and patterns it is subscribed to.
    pub subscriptions: (usize, usize),
    /// Where `CLIENT KILL` tells its Session to close the connection.
    pub session: Option<Recipient<Disconnect>>,
}

/// Close the connection now, its unsent replies with it (`CLIENT KILL`). Sent to a Session.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Disconnect;

impl ClientInfo {
    /// The `CLIENT LIST` / `CLIENT INFO` line (without the newline), with Redis's fields; the
    /// ones that describe Redis internals (buffers, memory) are reported as 0.
    pub fn line(&self, in_multi: Option<usize>, blocked: bool, last_command: &str) -> String {
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle=0 flags={} db=0 sub={} psub={} ssub=0 \
             multi={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 \
             tot-mem=0 events=r cmd={} user=default redir=-1 resp={}",
            self.id,
            self.addr,
            self.laddr,
            self.name,
            self.connected.elapsed().as_secs(),
            match (blocked, in_multi, self.subscriptions) {
                (true, _, _) => "b",
                (false, Some(_), _) => "x",
                (false, None, (0, 0)) => "N",
                (false, None, _) => "P",
            },
            self.subscriptions.0,
            self.subscriptions.1,
            in_multi.map_or(-1, |n| n as i64),
            last_command,
            self.protocol
        )
    }
}

/// How often the leader looks for expired keys, and how many stored keys one look visits.
const EXPIRY_SWEEP_INTERVAL: Duration = Duration::from_millis(200);
const EXPIRY_SWEEP_KEYS: usize = 1000;

/// Bounded waits for requests that cannot complete.
#[derive(Debug, Clone)]
pub struct StoreTiming {
    pub write_timeout: Duration,
    /// How long a read whose index is confirmed may wait for this node to apply that far.
    pub apply_wait_timeout: Duration,
    pub sweep_interval: Duration,
}

impl Default for StoreTiming {
    fn default() -> Self {
        StoreTiming {
            write_timeout: Duration::from_secs(5),
            apply_wait_timeout: Duration::from_secs(5),
            sweep_interval: Duration::from_millis(100),
        }
    }
}

/// Static facts about this node, for `INFO`.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node_id: u64,
    pub redis_port: u16,
    pub peer_addrs: Vec<String>,
    pub started: Instant,
    /// `--maxclients`, as the node runs with it (`INFO clients`).
    pub maxclients: usize,
}

/// Where the answer to one command goes: a channel of its own (`Execute`), or its place in the
/// answer to an `ExecuteBatch`, which is sent once every place is filled. A reply dropped
/// unsent answers `-ERR node is shutting down` (RedisStore stopped).
struct Reply(Option<ReplyTo>);

enum ReplyTo {
    Own(oneshot::Sender<Frame>),
    Place(Rc<BatchAnswer>, usize),
}

/// The answers of one `ExecuteBatch`, filled in any order, sent together.
struct BatchAnswer {
    frames: RefCell<Vec<Frame>>,
    missing: Cell<usize>,
    done: Cell<Option<oneshot::Sender<Vec<Frame>>>>,
}

impl Reply {
    fn own(sender: oneshot::Sender<Frame>) -> Reply {
        Reply(Some(ReplyTo::Own(sender)))
    }

    /// `n` replies for the places of one batch answer, and the receiver of that answer.
    fn batch(n: usize) -> (Vec<Reply>, oneshot::Receiver<Vec<Frame>>) {
        let (tx, rx) = oneshot::channel();
        let answer = Rc::new(BatchAnswer {
            frames: RefCell::new(vec![Frame::Null; n]),
            missing: Cell::new(n),
            done: Cell::new(Some(tx)),
        });
        if n == 0 {
            answer.finish();
        }
        ((0..n).map(|i| Reply(Some(ReplyTo::Place(Rc::clone(&answer), i)))).collect(), rx)
    }

    /// Whether no one waits for this reply any more (its client's session is gone).
    fn is_closed(&self) -> bool {
        match &self.0 {
            Some(ReplyTo::Own(sender)) => sender.is_closed(),
            Some(ReplyTo::Place(answer, _)) => {
                let done = answer.done.take();
                let closed = done.as_ref().is_none_or(oneshot::Sender::is_closed);
                answer.done.set(done);
                closed
            }
            None => true,
        }
    }

    fn send(mut self, frame: Frame) {
        match self.0.take() {
            Some(ReplyTo::Own(sender)) => {
                let _ = sender.send(frame);
            }
            Some(ReplyTo::Place(answer, i)) => answer.fill(i, frame),
            None => {}
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(ReplyTo::Place(answer, i)) = self.0.take() {
            answer.fill(i, Error::Stopped.to_frame());
        }
    }
}

impl BatchAnswer {
    fn fill(&self, i: usize, frame: Frame) {
        self.frames.borrow_mut()[i] = frame;
        self.missing.set(self.missing.get() - 1);
        if self.missing.get() == 0 {
            self.finish();
        }
    }

    fn finish(&self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(self.frames.take());
        }
    }
}

/// The clocks a write reads when it is proposed, read once for the commands of one message.
#[derive(Clone, Copy)]
struct Now {
    instant: Instant,
    wall_ms: i64,
}

impl Now {
    fn read() -> Now {
        Now { instant: Instant::now(), wall_ms: now_ms() }
    }
}

struct PendingWrite {
    reply: Reply,
    started: Instant,
    deadline: Instant,
    /// Its reply is `+OK` whatever the keyspace holds (SET, MSET), so it can be sent once the
    /// write is committed, before it is applied.
    blind: bool,
    /// The pop of a blocking command: if it finds nothing, the client waits (see [`Blocked`]).
    attempt: Option<Attempt>,
}

impl PendingWrite {
    /// Answers the client with the write's reply, counted as a write that took effect.
    fn succeed(self, reply: Frame) {
        metrics::counter!(telemetry::WRITES, "result" => "ok").increment(1);
        metrics::histogram!(telemetry::WRITE_SECONDS).record(self.started.elapsed().as_secs_f64());
        self.reply.send(reply);
    }

    /// Answers the client with an error, counted under `result`.
    fn fail(self, result: &'static str, error: &Error) {
        metrics::counter!(telemetry::WRITES, "result" => result).increment(1);
        self.reply.send(error.to_frame());
    }
}

/// A blocking command's pop on its way through the log.
struct Attempt {
    /// The client's place among the blocked clients, kept from the time it first blocked.
    id: u64,
    client: u64,
    op: WriteOp,
    deadline: Option<Instant>,
    /// The keys whose feeding woke it; empty for the first attempt, whose WRONGTYPE is the
    /// client's answer (a later one waits on, as in Redis 7.0).
    woken_by: Vec<Bytes>,
    /// `CLIENT UNBLOCK` came while it was under way: if it finds nothing, the client gets this
    /// answer instead of waiting again.
    unblocked: Option<Frame>,
}

/// The keys a blocking command's pop waits on, and the type it pops.
fn waits_on(op: &WriteOp) -> (&[Bytes], ValueType) {
    op.blocking_keys().unwrap_or((&[], ValueType::List))
}

/// A client of a blocking command (BLPOP, BZPOPMIN ...) whose pop found nothing to take: it
/// waits until one of its keys is fed ([`Applied::fed`]) and then tries again, or until its
/// deadline, when it is answered null.
struct Blocked {
    client: u64,
    op: WriteOp,
    kind: ValueType,
    reply: Reply,
    deadline: Option<Instant>,
    /// Its last attempt was refused before it reached the log (no leader): try again on the
    /// next sweep.
    retry: bool,
}

/// The blocked clients of this node, by the order they blocked in, and by key.
#[derive(Default)]
struct BlockedClients {
    next_id: u64,
    waiting: BTreeMap<u64, Blocked>,
    by_key: HashMap<Bytes, BTreeSet<u64>>,
}

impl BlockedClients {
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn insert(&mut self, id: u64, blocked: Blocked) {
        for key in waits_on(&blocked.op).0 {
            self.by_key.entry(key.clone()).or_default().insert(id);
        }
        self.waiting.insert(id, blocked);
    }

    fn remove(&mut self, id: u64) -> Option<Blocked> {
        let blocked = self.waiting.remove(&id)?;
        for key in waits_on(&blocked.op).0 {
            if let Some(ids) = self.by_key.get_mut(key) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_key.remove(key);
                }
            }
        }
        Some(blocked)
    }

    /// Takes the first `n` clients blocked on `key` for a value of `kind` (all for `None`).
    fn take(&mut self, key: &[u8], kind: ValueType, n: Option<u64>) -> Vec<(u64, Blocked)> {
        let ids: Vec<u64> = match self.by_key.get(key) {
            Some(ids) => ids
                .iter()
                .copied()
                .filter(|id| self.waiting.get(id).is_some_and(|b| b.kind == kind))
                .take(n.map_or(usize::MAX, |n| n.min(usize::MAX as u64) as usize))
                .collect(),
            None => return Vec::new(),
        };
        ids.into_iter().filter_map(|id| Some((id, self.remove(id)?))).collect()
    }

    fn take_all(&mut self) -> Vec<(u64, Blocked)> {
        self.by_key.clear();
        std::mem::take(&mut self.waiting).into_iter().collect()
    }
}

struct WaitingRead {
    query: ReadQuery,
    reply: Reply,
    deadline: Instant,
}

pub struct RedisStore {
    info: NodeInfo,
    incarnation: u64,
    next_seq: u64,
    raft: Addr<RaftNode>,
    storage: Addr<Storage>,
    timing: StoreTiming,
    applied: u64,
    /// Writes waiting for their entry to be applied, in proposal order (so also by deadline).
    pending_writes: BTreeMap<u64, PendingWrite>,
    /// The writes of each batch in flight, by the sequence number of its first write.
    batches: HashMap<u64, Vec<u64>>,
    /// Reads whose read index is ahead of what this node has applied, by read index.
    waiting_reads: BTreeMap<u64, VecDeque<WaitingRead>>,
    /// Where the expiry sweeper resumes (a keyspace position), and whether a sweep is under way.
    sweep_from: u64,
    sweeping: bool,
    clients: BTreeMap<u64, ClientInfo>,
    stats: Stats,
    /// Reads between their arrival and being served or parked in `waiting_reads`.
    reads_in_flight: usize,
    /// Writes and reads that arrived in this turn of the event loop: they go to RaftNode
    /// together, as one `Propose` and one `ReadIndex`, when the turn's messages are handled.
    new_proposals: Vec<(u64, Vec<u8>)>,
    new_reads: Vec<(ReadQuery, Reply)>,
    flush_scheduled: bool,
    /// `Some` once draining for shutdown: who waits for the last request to be answered.
    draining: Option<Vec<oneshot::Sender<()>>>,
    /// Where a client's `SHUTDOWN` goes (the binary, which stops the node as on SIGTERM).
    shutdown_requests: Option<tokio::sync::mpsc::UnboundedSender<()>>,
    /// Clients of blocking commands waiting for something to pop.
    blocked: BlockedClients,
    /// Clients listening to channels (`SUBSCRIBE`).
    subscriptions: Subscriptions,
    /// The scripts EVALSHA finds, by digest: those the log's entries ran or loaded since the
    /// last SCRIPT FLUSH (since this node started), and those EVAL_RO ran here.
    scripts: HashMap<String, Bytes>,
    /// `Some` while an EVALSHA waits for this node to catch up with the log: the client writes
    /// that came after it, in order, proposed once it is (so none overtakes it).
    held: Option<VecDeque<(WriteOp, Reply)>>,
}

/// Counters for `INFO stats`.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub connections_received: u64,
    pub commands_processed: u64,
    pub rejected_connections: u64,
    pub expired_keys: u64,
}

impl RedisStore {
    pub fn new(
        info: NodeInfo,
        incarnation: u64,
        applied: u64,
        raft: Addr<RaftNode>,
        storage: Addr<Storage>,
        timing: StoreTiming,
    ) -> Self {
        RedisStore {
            info,
            incarnation,
            next_seq: 0,
            raft,
            storage,
            timing,
            applied,
            pending_writes: BTreeMap::new(),
            batches: HashMap::new(),
            waiting_reads: BTreeMap::new(),
            sweep_from: 0,
            sweeping: false,
            clients: BTreeMap::new(),
            stats: Stats::default(),
            reads_in_flight: 0,
            new_proposals: Vec::new(),
            new_reads: Vec::new(),
            flush_scheduled: false,
            draining: None,
            shutdown_requests: None,
            blocked: BlockedClients::default(),
            subscriptions: Subscriptions::default(),
            scripts: HashMap::new(),
            held: None,
        }
    }

    /// Where a client's `SHUTDOWN` is passed on to.
    pub fn with_shutdown_sink(mut self, sink: tokio::sync::mpsc::UnboundedSender<()>) -> Self {
        self.shutdown_requests = Some(sink);
        self
    }

    /// Fills in what a write learns from this node as it is proposed (inside EXEC too): a
    /// PUBLISH's reply, how many of this node's subscriptions its channel reaches; an EVALSHA's
    /// script, from this node's cache.
    fn prepare_write(&self, op: &mut WriteOp) {
        match op {
            WriteOp::Publish { channel, receivers, .. } => *receivers = self.subscriptions.receivers(channel),
            WriteOp::Exec { commands, .. } => {
                for command in commands {
                    match command {
                        Queued::Write(op) => self.prepare_write(op),
                        Queued::Read(ReadQuery::Eval(eval)) => self.resolve_script(eval),
                        Queued::Read(_) => {}
                    }
                }
            }
            WriteOp::Eval(eval) => {
                // The budget travels in the entry: every replica stops a runaway script alike.
                eval.budget = DEFAULT_BUDGET;
                self.resolve_script(eval);
            }
            _ => {}
        }
    }

    /// Puts the body of the script an EVALSHA names into it, if this node's cache has it (an
    /// entry must carry the body: every node runs it).
    fn resolve_script(&self, eval: &mut Eval) {
        if let Script::Sha(digest) = &eval.script {
            if let Some(body) = std::str::from_utf8(digest).ok().and_then(|d| self.scripts.get(d)) {
                eval.script = Script::Body(body.clone());
            }
        }
    }

    /// Proposes a client's write, unless writes are held (see [`RedisStore::held`]). An EVALSHA
    /// (or an EXEC holding one) whose script this node's cache lacks is proposed once this
    /// node has caught up (see [`RedisStore::after_barrier`]), and the writes that come after it
    /// wait for it; a script still unknown then stays a digest, which the entry answers
    /// NOSCRIPT.
    fn propose_client_write(&mut self, mut op: WriteOp, reply: Reply, now: Now, ctx: &mut Context<Self>) {
        if let Some(held) = &mut self.held {
            return held.push_back((op, reply));
        }
        self.prepare_write(&mut op);
        if !names_unknown_script(&op) {
            return self.propose(op, reply, now, ctx);
        }
        self.held = Some(VecDeque::new());
        let (tx, rx) = oneshot::channel();
        self.after_barrier(Reply::own(tx), ctx, |_, reply, _| reply.send(Frame::ok()));
        ctx.spawn(rx.into_actor(self).map(move |caught_up, store, ctx| {
            let held = store.held.take().unwrap_or_default();
            match caught_up {
                Ok(Frame::Simple(_)) => {
                    store.prepare_write(&mut op);
                    store.propose(op, reply, Now::read(), ctx);
                }
                Ok(error) => reply.send(error),
                Err(_) => reply.send(Error::Stopped.to_frame()),
            }
            for (op, reply) in held {
                store.propose_client_write(op, reply, Now::read(), ctx);
            }
        }));
    }

    /// Runs `then` once this node has applied every entry committed when it was called (a
    /// ReadIndex round): a SCRIPT LOAD through another node that completed before is then in
    /// this node's cache. If the round fails, `reply` gets its error instead.
    fn after_barrier(
        &mut self,
        reply: Reply,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, Reply, &mut Context<Self>) + 'static,
    ) {
        let (tx, rx) = oneshot::channel();
        self.read_linearizable(ReadQuery::Versions(Vec::new()), Reply::own(tx), ctx);
        ctx.spawn(rx.into_actor(self).map(move |barrier, store, ctx| match barrier {
            Ok(Frame::Error(error)) => reply.send(Frame::Error(error)),
            Err(_) => reply.send(Error::Stopped.to_frame()),
            Ok(_) => then(store, reply, ctx),
        }));
    }

    /// SCRIPT EXISTS: which of these scripts this node's cache holds.
    fn scripts_exist(&self, digests: &[Bytes]) -> (Frame, bool) {
        let known: Vec<bool> = digests
            .iter()
            .map(|d| std::str::from_utf8(d).is_ok_and(|d| self.scripts.contains_key(&d.to_ascii_lowercase())))
            .collect();
        let all = known.iter().all(|&k| k);
        (Frame::Array(known.into_iter().map(|k| Frame::Integer(k as i64)).collect()), all)
    }

    /// Brings this node's script cache up to what the applied entries did.
    fn change_scripts(&mut self, changes: Vec<ScriptChange>) {
        for change in changes {
            match change {
                ScriptChange::Load(digest, body) => {
                    self.scripts.entry(digest).or_insert(body);
                }
                ScriptChange::Flush => self.scripts.clear(),
            }
        }
    }

    fn propose(&mut self, op: WriteOp, reply: Reply, now: Now, ctx: &mut Context<Self>) {
        self.propose_attempt(op, reply, now, None, ctx);
    }

    /// Proposes a write; `attempt` when it is a blocking command's pop.
    fn propose_attempt(
        &mut self,
        op: WriteOp,
        reply: Reply,
        now: Now,
        attempt: Option<Attempt>,
        ctx: &mut Context<Self>,
    ) {
        self.next_seq += 1;
        let seq = self.next_seq;
        let origin = RequestId { node: self.info.node_id, incarnation: self.incarnation, seq };
        let blind = matches!(op, WriteOp::Set { .. } | WriteOp::MSet { .. });
        let data = Proposal { origin, now_ms: now.wall_ms, op }.encode();
        let started = now.instant;
        let deadline = started + self.timing.write_timeout;
        self.pending_writes.insert(seq, PendingWrite { reply, started, deadline, blind, attempt });
        self.new_proposals.push((seq, data));
        self.schedule_flush(ctx);
    }

    /// Sends what this turn gathered once the messages already in the mailbox are handled.
    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.notify(Flush);
        }
    }

    /// One `Propose` for the turn's writes and one `ReadIndex` for its reads.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.flush_scheduled = false;
        if !self.new_proposals.is_empty() {
            let (datas, seqs) = batch_entries(std::mem::take(&mut self.new_proposals));
            let (node, incarnation) = (self.info.node_id, self.incarnation);
            let firsts: Vec<u64> = seqs.iter().map(|seqs| seqs[0]).collect();
            let entries = datas
                .into_iter()
                .zip(seqs)
                .map(|(data, seqs)| {
                    let first = seqs[0];
                    self.batches.insert(first, seqs);
                    BatchEntry { context: batch_context(RequestId { node, incarnation, seq: first }), data }
                })
                .collect();
            let proposed = self.raft.send(Propose(entries));
            ctx.spawn(proposed.into_actor(self).map(move |result, store, _| {
                let results = match result {
                    Ok(results) => results,
                    Err(mailbox) => vec![Err(Error::from(mailbox)); firsts.len()],
                };
                for (first, result) in firsts.into_iter().zip(results) {
                    // Refused outright: nothing entered the log, so the clients learn it now.
                    if let Err(e) = result {
                        for seq in store.batches.remove(&first).unwrap_or_default() {
                            let Some(mut w) = store.pending_writes.remove(&seq) else { continue };
                            match w.attempt.take() {
                                // Woken, so there may be something to pop: the client goes on
                                // waiting, and tries again on the next sweep.
                                Some(attempt) if !attempt.woken_by.is_empty() => {
                                    store.block(attempt, w.reply, true);
                                }
                                _ => w.fail("refused", &e),
                            }
                        }
                    }
                }
            }));
        }
        if !self.new_reads.is_empty() {
            let reads = std::mem::take(&mut self.new_reads);
            let index = self.raft.send(ReadIndex);
            let started = Instant::now();
            ctx.spawn(index.into_actor(self).map(move |result, store, _| {
                store.reads_in_flight -= reads.len();
                let index = result.map_err(Error::from).and_then(|index| index);
                let outcome = if index.is_ok() { "ok" } else { "error" };
                metrics::counter!(telemetry::READS, "result" => outcome).increment(reads.len() as u64);
                metrics::histogram!(telemetry::READ_INDEX_SECONDS).record(started.elapsed().as_secs_f64());
                match index {
                    Ok(index) => store.read_at(index, reads),
                    Err(e) => {
                        for (_, reply) in reads {
                            reply.send(e.to_frame());
                        }
                    }
                }
            }));
        }
    }

    /// A blocking command of `client`: its first pop, which may find something at once.
    fn start_blocking(
        &mut self,
        client: u64,
        op: WriteOp,
        timeout: Option<Duration>,
        reply: Reply,
        now: Now,
        ctx: &mut Context<Self>,
    ) {
        let deadline = timeout.and_then(|t| now.instant.checked_add(t));
        let id = self.blocked.new_id();
        let attempt = Attempt { id, client, op: op.clone(), deadline, woken_by: Vec::new(), unblocked: None };
        self.propose_attempt(op, reply, now, Some(attempt), ctx);
    }

    /// A blocking command's pop was applied. If it took something, or failed (a first attempt's
    /// WRONGTYPE), that is the client's answer; if it found nothing, the client waits (again),
    /// or is answered null once its deadline has passed.
    fn attempted(&mut self, write: PendingWrite, attempt: Attempt, frame: Frame, ctx: &mut Context<Self>) {
        let first = attempt.woken_by.is_empty();
        let found_nothing = matches!(&frame, Frame::Null | Frame::NullArray)
            || (!first && matches!(&frame, Frame::Error(e) if e.starts_with("WRONGTYPE")));
        if !found_nothing {
            // Woken by keys it did not pop from (it took from an earlier key of its list): what
            // woke it is still there for the next client blocked on them.
            let popped = match &frame {
                Frame::Array(parts) => parts.first().cloned(),
                _ => None,
            };
            let kind = waits_on(&attempt.op).1;
            let now = Now::read();
            for key in attempt.woken_by {
                if popped.as_ref().is_some_and(|p| *p != Frame::Bulk(key.clone())) {
                    let woken = self.blocked.take(&key, kind, Some(1));
                    self.wake(woken, vec![key], now, ctx);
                }
            }
            return write.succeed(frame);
        }
        if let Some(answer) = attempt.unblocked {
            return write.succeed(answer);
        }
        if attempt.deadline.is_some_and(|deadline| deadline <= Instant::now()) {
            return write.succeed(Frame::NullArray);
        }
        self.block(attempt, write.reply, false);
    }

    /// The client of `attempt` waits for one of its keys to be fed (unless it is gone).
    fn block(&mut self, attempt: Attempt, reply: Reply, retry: bool) {
        if self.draining.is_some() {
            return reply.send(Error::Stopped.to_frame());
        }
        if reply.is_closed() {
            return;
        }
        let kind = waits_on(&attempt.op).1;
        let blocked = Blocked {
            client: attempt.client,
            op: attempt.op,
            kind,
            reply,
            deadline: attempt.deadline,
            retry,
        };
        self.blocked.insert(attempt.id, blocked);
    }

    /// Wakes the blocked clients that the applied entries `fed` may serve: as many per key as
    /// it holds elements, in the order they blocked; every one after a snapshot (`reloaded`).
    fn wake_fed(&mut self, fed: Vec<FedKey>, reloaded: bool, ctx: &mut Context<Self>) {
        let now = Now::read();
        for fed in fed {
            let woken = self.blocked.take(&fed.key, fed.kind, Some(fed.elements));
            self.wake(woken, vec![fed.key], now, ctx);
        }
        if reloaded {
            // A snapshot replaced the keyspace: every blocked client looks again.
            for (id, blocked) in self.blocked.take_all() {
                let keys = waits_on(&blocked.op).0.to_vec();
                self.wake(vec![(id, blocked)], keys, now, ctx);
            }
        }
    }

    /// Blocked clients try their pop again, woken by `keys`. One whose client is gone is
    /// dropped.
    fn wake(&mut self, woken: Vec<(u64, Blocked)>, keys: Vec<Bytes>, now: Now, ctx: &mut Context<Self>) {
        for (id, blocked) in woken {
            if blocked.reply.is_closed() {
                continue;
            }
            let attempt = Attempt {
                id,
                client: blocked.client,
                op: blocked.op.clone(),
                deadline: blocked.deadline,
                woken_by: keys.clone(),
                unblocked: None,
            };
            self.propose_attempt(blocked.op, blocked.reply, now, Some(attempt), ctx);
        }
    }

    /// Answers null the blocked clients whose deadline has passed, drops those whose client is
    /// gone, and retries those whose last attempt was refused.
    fn sweep_blocked(&mut self, now: Instant, ctx: &mut Context<Self>) {
        let due: Vec<u64> = self
            .blocked
            .waiting
            .iter()
            .filter(|(_, b)| b.retry || b.deadline.is_some_and(|d| d <= now) || b.reply.is_closed())
            .map(|(id, _)| *id)
            .collect();
        let at = Now::read();
        for id in due {
            let Some(blocked) = self.blocked.remove(id) else { continue };
            if blocked.deadline.is_some_and(|d| d <= now) {
                blocked.reply.send(Frame::NullArray);
            } else if blocked.retry && !blocked.reply.is_closed() {
                let keys = waits_on(&blocked.op).0.to_vec();
                self.wake(vec![(id, blocked)], keys, at, ctx);
            }
        }
    }

    fn read_linearizable(&mut self, query: ReadQuery, reply: Reply, ctx: &mut Context<Self>) {
        self.reads_in_flight += 1;
        self.new_reads.push((query, reply));
        self.schedule_flush(ctx);
    }

    /// Serves reads whose index is confirmed, once this node has applied up to it.
    fn read_at(&mut self, index: u64, reads: Vec<(ReadQuery, Reply)>) {
        if self.applied >= index {
            self.read_now(reads);
        } else {
            let deadline = Instant::now() + self.timing.apply_wait_timeout;
            let waiting = self.waiting_reads.entry(index).or_default();
            waiting.extend(reads.into_iter().map(|(query, reply)| WaitingRead { query, reply, deadline }));
        }
    }

    /// Reads from Storage, in one message however many reads there are.
    fn read_now(&self, reads: Vec<(ReadQuery, Reply)>) {
        if reads.is_empty() {
            return;
        }
        let (mut queries, replies): (Vec<ReadQuery>, Vec<Reply>) = reads.into_iter().unzip();
        // An EVALSHA_RO's script, looked up now that this node has applied what the read must
        // see (a SCRIPT LOAD through another node included).
        for query in &mut queries {
            if let ReadQuery::Eval(eval) = query {
                self.resolve_script(eval);
            }
        }
        let read = self.storage.send(Read(queries));
        actix_rt::spawn(async move {
            match read.await {
                Ok(frames) => {
                    for (reply, frame) in replies.into_iter().zip(frames) {
                        reply.send(frame);
                    }
                }
                Err(e) => {
                    for reply in replies {
                        reply.send(Error::from(e).to_frame());
                    }
                }
            }
        });
    }

    /// Fails writes and reads that waited past their deadline.
    /// Answers the shutdown drain once nothing is under way any more.
    fn check_drained(&mut self) {
        let idle =
            self.pending_writes.is_empty() && self.waiting_reads.is_empty() && self.reads_in_flight == 0;
        if idle {
            for waiter in self.draining.iter_mut().flat_map(std::mem::take) {
                let _ = waiter.send(());
            }
        }
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.sweep_blocked(now, ctx);
        while let Some(entry) = self.pending_writes.first_entry() {
            if entry.get().deadline > now {
                break;
            }
            let ms = self.timing.write_timeout.as_millis() as u64;
            entry.remove().fail("timeout", &Error::WriteTimeout(ms));
        }
        let pending = &self.pending_writes;
        self.batches.retain(|_, seqs| seqs.iter().any(|seq| pending.contains_key(seq)));
        for reads in self.waiting_reads.values_mut() {
            while reads.front().is_some_and(|r| r.deadline <= now) {
                let r = reads.pop_front().expect("front exists");
                let ms = self.timing.apply_wait_timeout.as_millis() as u64;
                r.reply.send(Frame::error(format!(
                    "TIMEOUT this node did not catch up with the leader within {ms} ms"
                )));
            }
        }
        self.waiting_reads.retain(|_, reads| !reads.is_empty());
    }

    /// `RAFT.*`: membership and leadership changes, and `RAFT.INFO`, carried out by RaftNode.
    fn raft_admin(&self, admin: RaftAdmin, reply: Reply) {
        let raft = self.raft.clone();
        actix_rt::spawn(async move {
            let done = |result: Result<crate::Result<()>, MailboxError>| match result {
                Ok(Ok(())) => Frame::ok(),
                Ok(Err(e)) => e.to_frame(),
                Err(e) => Error::from(e).to_frame(),
            };
            let frame = match admin {
                RaftAdmin::AddNode(member) => done(raft.send(ChangeMembership::Add(member)).await),
                RaftAdmin::RemoveNode(id) => done(raft.send(ChangeMembership::Remove(id)).await),
                RaftAdmin::TransferLeader(id) => done(raft.send(TransferLeader(id)).await),
                RaftAdmin::Info => match (raft.send(GetStatus).await, raft.send(GetMembers).await) {
                    (Ok(status), Ok(members)) => Frame::Verbatim(format_raft_info(&status, &members)),
                    _ => Error::Stopped.to_frame(),
                },
                RaftAdmin::Role => match (raft.send(GetStatus).await, raft.send(GetMembers).await) {
                    (Ok(status), Ok(members)) => Replication::of(&status, &members).role_reply(),
                    _ => Error::Stopped.to_frame(),
                },
            };
            reply.send(frame);
        });
    }

    fn info(&self, sections: Vec<String>, reply: Reply) {
        let status = self.raft.send(GetStatus);
        let members = self.raft.send(GetMembers);
        let keyspace = self.storage.send(Read(vec![ReadQuery::KeyspaceStats]));
        let node = self.info.clone();
        let stats = self.stats.clone();
        let clients = ClientCounts { connected: self.clients.len(), blocked: self.blocked.waiting.len() };
        actix_rt::spawn(async move {
            let (Ok(status), Ok(members), Ok(mut keyspace)) = (status.await, members.await, keyspace.await)
            else {
                reply.send(Error::Stopped.to_frame());
                return;
            };
            let Some(Frame::Array(counts)) = keyspace.pop() else {
                reply.send(Error::Stopped.to_frame());
                return;
            };
            let count = |i: usize| match counts.get(i) {
                Some(Frame::Integer(n)) => *n,
                _ => 0,
            };
            let keyspace = KeyspaceInfo { keys: count(0), expires: count(1) };
            let replication = Replication::of(&status, &members);
            let text = format_info(&node, &status, &replication, &keyspace, &stats, clients, &sections);
            reply.send(Frame::Verbatim(text));
        });
    }

    /// `CLIENT UNBLOCK`: the client's blocking command answers now, null or (`error`) an
    /// error; 1 if it was waiting in one. One whose pop is under way gets that answer if the pop
    /// finds nothing.
    fn unblock(&mut self, id: i64, error: bool) -> Frame {
        let answer = if error {
            Frame::error("UNBLOCKED client unblocked via CLIENT UNBLOCK")
        } else {
            Frame::NullArray
        };
        let waiting = self.blocked.waiting.iter().find(|(_, b)| b.client as i64 == id).map(|(n, _)| *n);
        if let Some(blocked) = waiting.and_then(|n| self.blocked.remove(n)) {
            blocked.reply.send(answer);
            return Frame::Integer(1);
        }
        let under_way = self.pending_writes.values_mut().filter_map(|w| w.attempt.as_mut());
        for attempt in under_way {
            if attempt.client as i64 == id {
                attempt.unblocked = Some(answer);
                return Frame::Integer(1);
            }
        }
        Frame::Integer(0)
    }

    /// Whether `client` waits in a blocking command (`CLIENT LIST`'s flag `b`).
    fn is_blocked(&self, client: u64) -> bool {
        self.blocked.waiting.values().any(|b| b.client == client)
            || self.pending_writes.values().any(|w| w.attempt.as_ref().is_some_and(|a| a.client == client))
    }

    /// `CLIENT KILL`: closes the matching connections of this node.
    fn kill(&mut self, filter: &KillFilter) -> Frame {
        let mut killed = 0;
        for client in self.clients.values() {
            let matches = !filter.none
                && filter.id.is_none_or(|id| id == client.id)
                && filter.addr.as_ref().is_none_or(|a| *a == client.addr)
                && filter.laddr.as_ref().is_none_or(|a| *a == client.laddr)
                && !(filter.skip_me && client.id == filter.caller);
            if let (true, Some(session)) = (matches, &client.session) {
                session.do_send(Disconnect);
                killed += 1;
            }
        }
        match (filter.old_form, killed) {
            (true, 0) => Frame::error("ERR No such client"),
            (true, _) => Frame::ok(),
            (false, n) => Frame::Integer(n),
        }
    }

    /// `CLIENT LIST`: one line per connection of this node.
    fn client_list(&self) -> Frame {
        let mut text = String::new();
        for client in self.clients.values() {
            text.push_str(&client.line(None, self.is_blocked(client.id), "client|list"));
            text.push('\n');
        }
        Frame::Verbatim(text)
    }

    /// On the leader: looks at the next slice of the keyspace and proposes the deletion of the
    /// expired keys found there.
    fn sweep_expired(&mut self, ctx: &mut Context<Self>) {
        if self.sweeping || self.draining.is_some() {
            return;
        }
        self.sweeping = true;
        let status = self.raft.send(GetStatus);
        let storage = self.storage.clone();
        let from = self.sweep_from;
        let work = async move {
            let status = status.await.ok()?;
            if status.role != "leader" {
                return None;
            }
            let query = ReadQuery::ExpiredKeys { from, limit: EXPIRY_SWEEP_KEYS };
            match storage.send(Read(vec![query])).await.ok()?.pop() {
                Some(Frame::Array(parts)) => Some(parts),
                _ => None,
            }
        };
        ctx.spawn(work.into_actor(self).map(|found, store, ctx| {
            store.sweeping = false;
            let Some(mut parts) = found else { return };
            let (Some(Frame::Array(expired)), Some(resume)) = (parts.pop(), parts.pop()) else { return };
            store.sweep_from = match resume {
                Frame::Integer(from) => from as u64,
                _ => 0,
            };
            let keys: Vec<Bytes> = expired
                .into_iter()
                .filter_map(|k| match k {
                    Frame::Bulk(k) => Some(k),
                    _ => None,
                })
                .collect();
            if keys.is_empty() {
                return;
            }
            debug!(count = keys.len(), "proposing the deletion of expired keys");
            let (tx, rx) = oneshot::channel();
            store.propose(WriteOp::ExpireKeys { keys }, Reply::own(tx), Now::read(), ctx);
            ctx.spawn(async move { rx.await.ok() }.into_actor(store).map(|reply, store, _| {
                if let Some(Frame::Integer(n)) = reply {
                    store.stats.expired_keys += n as u64;
                }
            }));
        }));
    }
}

/// The `INFO clients` figures: connections, and the clients waiting in a blocking command.
#[derive(Debug, Clone, Copy)]
pub struct ClientCounts {
    pub connected: usize,
    pub blocked: usize,
}

/// The `INFO keyspace` figures.
pub struct KeyspaceInfo {
    pub keys: i64,
    pub expires: i64,
}

/// The `INFO` text: Redis's `# Section` / `field:value` lines, CRLF separated.
pub fn format_info(
    node: &NodeInfo,
    status: &RaftStatus,
    replication: &Replication,
    keyspace: &KeyspaceInfo,
    stats: &Stats,
    clients: ClientCounts,
    sections: &[String],
) -> String {
    let all =
        sections.is_empty() || sections.iter().any(|s| s == "all" || s == "everything" || s == "default");
    let wants = |name: &str| all || sections.iter().any(|s| s == name);
    let mut out = String::new();
    if wants("server") {
        out.push_str("# Server\r\n");
        out.push_str(&format!("redis_version:7.0.0\r\nraft_kv_version:{}\r\n", env!("CARGO_PKG_VERSION")));
        out.push_str(&format!("process_id:{}\r\ntcp_port:{}\r\n", std::process::id(), node.redis_port));
        out.push_str(&format!("redis_mode:standalone\r\nos:{}\r\narch_bits:64\r\n", std::env::consts::OS));
        out.push_str(&format!("uptime_in_seconds:{}\r\n", node.started.elapsed().as_secs()));
        out.push_str(&format!("uptime_in_days:{}\r\n\r\n", node.started.elapsed().as_secs() / 86400));
    }
    if wants("clients") {
        out.push_str(&format!(
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\n\r\n",
            clients.connected, node.maxclients, clients.blocked
        ));
    }
    if wants("stats") {
        out.push_str("# Stats\r\n");
        out.push_str(&format!("total_connections_received:{}\r\n", stats.connections_received));
        out.push_str(&format!("total_commands_processed:{}\r\n", stats.commands_processed));
        out.push_str(&format!("rejected_connections:{}\r\n", stats.rejected_connections));
        out.push_str(&format!("expired_keys:{}\r\n\r\n", stats.expired_keys));
    }
    if wants("replication") {
        out.push_str("# Replication\r\n");
        out.push_str(&replication.info_section());
        out.push_str("\r\n");
    }
    if wants("keyspace") {
        out.push_str("# Keyspace\r\n");
        if keyspace.keys > 0 {
            out.push_str(&format!("db0:keys={},expires={},avg_ttl=0\r\n", keyspace.keys, keyspace.expires));
        }
        out.push_str("\r\n");
    }
    if wants("raft") {
        let join = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        out.push_str("# Raft\r\n");
        out.push_str(&format!("node_id:{}\r\nrole:{}\r\nterm:{}\r\n", status.id, status.role, status.term));
        out.push_str(&format!("leader_id:{}\r\n", status.leader_id));
        out.push_str(&format!(
            "commit_index:{}\r\napplied_index:{}\r\nlog_first_index:{}\r\nlog_bytes:{}\r\n",
            status.commit_index, status.applied_index, status.log_first_index, status.log_bytes
        ));
        out.push_str(&format!("read_lease_ms:{}\r\n", status.read_lease_ms));
        out.push_str(&format!("members:{}\r\nlearners:{}\r\n", join(&status.voters), join(&status.learners)));
        out.push_str(&format!("peers:{}\r\n\r\n", node.peer_addrs.join(",")));
    }
    out.truncate(out.trim_end().len());
    out.push_str("\r\n");
    out
}

impl Actor for RedisStore {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.timing.sweep_interval, |store, ctx| {
            store.sweep(ctx);
            store.check_drained();
        });
        ctx.run_interval(EXPIRY_SWEEP_INTERVAL, |store, ctx| store.sweep_expired(ctx));
    }
}

impl RedisStore {
    /// Proposes a write, reads linearizably, answers INFO: the answer goes to `reply`.
    fn execute(&mut self, command: Command, reply: Reply, now: Now, ctx: &mut Context<Self>) {
        self.stats.commands_processed += 1;
        if self.draining.is_some() {
            return reply.send(Error::Stopped.to_frame());
        }
        match command {
            Command::Write(op) => self.propose_client_write(op, reply, now, ctx),
            Command::PubSub(query) => reply.send(self.subscriptions.query(&query)),
            Command::Read(query) => {
                // An EVAL_RO runs on this node only: its script is cached here (an EVALSHA_RO's
                // is looked up once the read's index is applied, in `read_now`).
                if let ReadQuery::Eval(Eval { script: Script::Body(body), .. }) = &query {
                    self.scripts.entry(sha1_hex(body)).or_insert_with(|| body.clone());
                }
                self.read_linearizable(query, reply, ctx)
            }
            Command::ScriptExists(digests) => match self.scripts_exist(&digests) {
                (answer, true) => reply.send(answer),
                // Perhaps loaded through another node by an entry not applied here yet.
                _ => self.after_barrier(reply, ctx, move |store, reply, _| {
                    reply.send(store.scripts_exist(&digests).0)
                }),
            },
            Command::Info(sections) => self.info(sections, reply),
            Command::Raft(admin) => self.raft_admin(admin, reply),
            Command::ClientList => reply.send(self.client_list()),
            // Sessions send theirs as `Block`, with the client's id.
            Command::Blocking { op, timeout } => self.start_blocking(0, op, timeout, reply, now, ctx),
            Command::ClientUnblock { id, error } => reply.send(self.unblock(id, error)),
            Command::ClientKill(filter) => reply.send(self.kill(&filter)),
            cmd @ (Command::Local(_) | Command::Transaction(_)) => {
                debug!(?cmd, "session command reached the store");
                reply.send(Frame::error("ERR command not handled by the store"));
            }
        }
    }
}

/// Whether a write names a script by a digest this node's cache did not have (an EVALSHA, or
/// an EXEC holding one).
fn names_unknown_script(op: &WriteOp) -> bool {
    let unknown = |eval: &Eval| matches!(eval.script, Script::Sha(_));
    match op {
        WriteOp::Eval(eval) => unknown(eval),
        WriteOp::Exec { commands, .. } => commands.iter().any(|command| match command {
            Queued::Write(WriteOp::Eval(eval)) | Queued::Read(ReadQuery::Eval(eval)) => unknown(eval),
            _ => false,
        }),
        _ => false,
    }
}

/// A log entry carries at most about this many bytes of proposals; a turn's writes beyond it
/// go in further entries, so one huge pipeline does not become one huge Raft message.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// Groups a turn's encoded proposals, in order, into log entries of at most
/// [`MAX_BATCH_BYTES`] (or one proposal, if larger): the entries' data, and the request
/// sequence numbers each entry carries.
fn batch_entries(proposals: Vec<(u64, Vec<u8>)>) -> (Vec<Vec<u8>>, Vec<Vec<u64>>) {
    let mut groups: Vec<Vec<(u64, Vec<u8>)>> = Vec::new();
    let mut bytes = 0;
    for (seq, data) in proposals {
        match groups.last_mut() {
            Some(group) if bytes + data.len() <= MAX_BATCH_BYTES => {
                bytes += data.len();
                group.push((seq, data));
            }
            _ => {
                bytes = data.len();
                groups.push(vec![(seq, data)]);
            }
        }
    }
    groups
        .into_iter()
        .map(|group| {
            let data = Proposal::encode_batch(group.iter().map(|(_, data)| data.as_slice()));
            (data, group.into_iter().map(|(seq, _)| seq).collect())
        })
        .unzip()
}

impl Handler<Execute> for RedisStore {
    type Result = ResponseFuture<Frame>;

    fn handle(&mut self, msg: Execute, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.execute(msg.0, Reply::own(tx), Now::read(), ctx);
        Box::pin(async move { rx.await.unwrap_or_else(|_| Error::Stopped.to_frame()) })
    }
}

impl Handler<ExecuteBatch> for RedisStore {
    type Result = ResponseFuture<Vec<Frame>>;

    fn handle(&mut self, msg: ExecuteBatch, ctx: &mut Context<Self>) -> Self::Result {
        let (replies, answer) = Reply::batch(msg.0.len());
        let now = Now::read();
        for (command, reply) in msg.0.into_iter().zip(replies) {
            self.execute(command, reply, now, ctx);
        }
        // A batch answer is always sent: a place never filled is filled when its reply drops.
        Box::pin(async move { answer.await.unwrap_or_default() })
    }
}

impl Handler<Block> for RedisStore {
    type Result = ();

    fn handle(&mut self, msg: Block, ctx: &mut Context<Self>) {
        self.stats.commands_processed += 1;
        if self.draining.is_some() {
            return Reply::own(msg.reply).send(Error::Stopped.to_frame());
        }
        self.start_blocking(msg.client, msg.op, msg.timeout, Reply::own(msg.reply), Now::read(), ctx);
    }
}

/// Send the writes and reads gathered in this turn (RedisStore to itself).
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl Handler<Flush> for RedisStore {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.flush(ctx);
    }
}

impl Handler<Drain> for RedisStore {
    type Result = ResponseFuture<()>;

    /// Stops taking commands; replies when the ones under way are answered.
    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> Self::Result {
        for (_, blocked) in self.blocked.take_all() {
            blocked.reply.send(Error::Stopped.to_frame());
        }
        let (tx, rx) = oneshot::channel();
        self.draining.get_or_insert_with(Vec::new).push(tx);
        self.check_drained();
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<Committed> for RedisStore {
    type Result = ();

    /// Answers the blind writes of the committed batches at once: a later read waits for the
    /// apply anyway (its read index is at least this commit), so no one can see them missing.
    /// The writes of lost batches learn now that their outcome is unknown, rather than at
    /// their deadline.
    fn handle(&mut self, msg: Committed, _: &mut Context<Self>) {
        for first in msg.batches {
            for seq in self.batches.remove(&first).unwrap_or_default() {
                if let Entry::Occupied(w) = self.pending_writes.entry(seq) {
                    if w.get().blind {
                        w.remove().succeed(Frame::ok());
                    }
                }
            }
        }
        for first in msg.lost {
            for seq in self.batches.remove(&first).unwrap_or_default() {
                if let Some(w) = self.pending_writes.remove(&seq) {
                    w.fail("lost", &Error::WriteLost);
                }
            }
        }
        self.check_drained();
    }
}

impl Handler<Applied> for RedisStore {
    type Result = ();

    /// Answers the writes this node proposed, wakes the blocked clients whose keys were fed,
    /// delivers what was published to this node's subscribers, and releases the reads that
    /// were waiting.
    fn handle(&mut self, msg: Applied, ctx: &mut Context<Self>) {
        self.applied = self.applied.max(msg.index);
        // Pops that found nothing block first, so that a key fed later in these same entries
        // wakes them.
        for (seq, frame) in msg.replies {
            if let Some(mut w) = self.pending_writes.remove(&seq) {
                match w.attempt.take() {
                    Some(attempt) => self.attempted(w, attempt, frame, ctx),
                    None => w.succeed(frame),
                }
            }
        }
        // (Most applies feed nothing or find no one waiting: no clock read, no lookups.)
        if !self.blocked.waiting.is_empty() && (!msg.fed.is_empty() || msg.reloaded) {
            self.wake_fed(msg.fed, msg.reloaded, ctx);
        }
        for published in &msg.published {
            self.subscriptions.deliver(published);
        }
        if !msg.scripts.is_empty() {
            self.change_scripts(msg.scripts);
        }
        let still_waiting = self.waiting_reads.split_off(&(self.applied + 1));
        let ready = std::mem::replace(&mut self.waiting_reads, still_waiting);
        self.read_now(ready.into_values().flatten().map(|read| (read.query, read.reply)).collect());
        self.check_drained();
    }
}

impl Handler<ClientEvent> for RedisStore {
    type Result = ();

    /// Keeps the connection list and the command count up to date.
    fn handle(&mut self, msg: ClientEvent, _: &mut Context<Self>) {
        match msg {
            ClientEvent::Updated(info) => {
                if self.clients.insert(info.id, info).is_none() {
                    self.stats.connections_received += 1;
                }
            }
            ClientEvent::LocalCommand => self.stats.commands_processed += 1,
            ClientEvent::Gone(id) => {
                self.clients.remove(&id);
                self.subscriptions.remove_client(id);
            }
            ClientEvent::Subscribe { client, names, pattern, deliver } => {
                self.subscriptions.subscribe(client, names, pattern, deliver)
            }
            ClientEvent::Unsubscribe { client, names, pattern } => {
                self.subscriptions.unsubscribe(client, &names, pattern)
            }
            ClientEvent::Rejected => self.stats.rejected_connections += 1,
            ClientEvent::ResetStats => self.stats = Stats::default(),
            ClientEvent::Shutdown => {
                if let Some(requests) = &self.shutdown_requests {
                    let _ = requests.send(());
                }
            }
        }
        metrics::gauge!(telemetry::CLIENT_CONNECTIONS).set(self.clients.len() as f64);
    }
}

/// The Raft state in Redis's replication terms (`ROLE`, `INFO replication`): the leader is a
/// master whose replicas are the other members, every other node a replica of the leader.
#[derive(Debug, Clone, PartialEq)]
pub enum Replication {
    Master {
        /// The commit index.
        offset: u64,
        /// Every other member with a Redis address: host, port, and how far its log matches.
        replicas: Vec<(String, u16, u64)>,
    },
    Replica {
        /// The leader's Redis address, if this node knows the leader and its address.
        master: Option<(String, u16)>,
        /// The applied index.
        offset: u64,
    },
}

impl Replication {
    pub fn of(status: &RaftStatus, members: &[MemberStatus]) -> Replication {
        let address = |m: &MemberStatus| {
            let (host, port) = m.member.redis_addr.rsplit_once(':')?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Some((host.to_string(), port.parse::<u16>().ok()?))
        };
        if status.role == "leader" {
            let replicas = members
                .iter()
                .filter(|m| m.member.id != status.id)
                .filter_map(|m| address(m).map(|(host, port)| (host, port, m.matched.unwrap_or(0))))
                .collect();
            return Replication::Master { offset: status.commit_index, replicas };
        }
        let leader = members.iter().find(|m| m.member.id == status.leader_id && status.leader_id != 0);
        Replication::Replica { master: leader.and_then(address), offset: status.applied_index }
    }

    /// `ROLE`'s reply, in Redis's shape.
    pub fn role_reply(&self) -> Frame {
        let offset = |n: u64| Frame::Integer(n as i64);
        match self {
            Replication::Master { offset: at, replicas } => Frame::Array(vec![
                Frame::bulk("master"),
                offset(*at),
                Frame::Array(
                    replicas
                        .iter()
                        .map(|(host, port, matched)| {
                            Frame::Array(vec![
                                Frame::bulk(host.clone()),
                                Frame::bulk(port.to_string()),
                                Frame::bulk(matched.to_string()),
                            ])
                        })
                        .collect(),
                ),
            ]),
            Replication::Replica { master, offset: at } => {
                let (host, port) = master.clone().unwrap_or_default();
                let state = if master.is_some() { "connected" } else { "connect" };
                Frame::Array(vec![
                    Frame::bulk("slave"),
                    Frame::bulk(host),
                    Frame::Integer(i64::from(port)),
                    Frame::bulk(state),
                    offset(*at),
                ])
            }
        }
    }

    /// The lines of `INFO replication`.
    fn info_section(&self) -> String {
        match self {
            Replication::Master { offset, replicas } => {
                let mut out = format!("role:master\r\nconnected_slaves:{}\r\n", replicas.len());
                for (i, (host, port, matched)) in replicas.iter().enumerate() {
                    out.push_str(&format!(
                        "slave{i}:ip={host},port={port},state=online,offset={matched}\r\n"
                    ));
                }
                out.push_str(&format!("master_repl_offset:{offset}\r\n"));
                out
            }
            Replication::Replica { master, offset } => {
                let (host, port) = master.clone().unwrap_or_default();
                let link = if master.is_some() { "up" } else { "down" };
                format!(
                    "role:slave\r\nmaster_host:{host}\r\nmaster_port:{port}\r\nmaster_link_status:{link}\r\n\
                     slave_repl_offset:{offset}\r\nslave_read_only:0\r\nconnected_slaves:0\r\n\
                     master_repl_offset:{offset}\r\n"
                )
            }
        }
    }
}

/// The `RAFT.INFO` text: this node's state, then one `member:` line per member, with its
/// replication progress when this node leads.
pub fn format_raft_info(status: &RaftStatus, members: &[MemberStatus]) -> String {
    let mut out = format!(
        "node_id:{}\r\nrole:{}\r\nterm:{}\r\nleader_id:{}\r\ncommit_index:{}\r\napplied_index:{}\r\n",
        status.id, status.role, status.term, status.leader_id, status.commit_index, status.applied_index
    );
    for m in members {
        let role = match (m.leader, m.voter) {
            (true, _) => "leader",
            (false, true) => "voter",
            (false, false) => "learner",
        };
        let progress = match m.matched {
            Some(matched) => format!(",match={matched},lag={}", status.commit_index.saturating_sub(matched)),
            None => String::new(),
        };
        let store = match m.member.store_id {
            0 => String::new(),
            id => format!("{id:016x}"),
        };
        out.push_str(&format!(
            "member:id={},peer={},redis={},store={store},role={role}{progress}\r\n",
            m.member.id, m.member.peer_addr, m.member.redis_addr
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::BATCH_CONTEXT;

    fn raft_status(id: u64, role: &'static str, leader_id: u64) -> RaftStatus {
        RaftStatus {
            id,
            role,
            term: 2,
            leader_id,
            commit_index: 9,
            applied_index: 8,
            log_first_index: 1,
            log_bytes: 0,
            read_lease_ms: 0,
            voters: vec![1, 2, 3],
            learners: vec![],
        }
    }

    fn member(id: u64, redis_addr: &str, leader: bool, matched: Option<u64>) -> MemberStatus {
        let member = crate::membership::Member {
            id,
            peer_addr: format!("10.0.0.{id}:7000"),
            redis_addr: redis_addr.into(),
            store_id: 0,
        };
        MemberStatus { member, voter: true, leader, matched }
    }

    #[test]
    fn role_shows_the_leader_as_master_and_the_others_as_its_replicas() {
        let on_leader = [
            member(1, "10.0.0.1:6379", true, Some(9)),
            member(2, "[fd00::2]:6380", false, Some(7)),
            member(3, "", false, None),
        ];
        let master = Replication::of(&raft_status(1, "leader", 1), &on_leader);
        // Node 3's Redis address is not known yet: it is not listed.
        assert_eq!(master, Replication::Master { offset: 9, replicas: vec![("fd00::2".into(), 6380, 7)] });
        assert_eq!(
            master.role_reply(),
            Frame::Array(vec![
                Frame::bulk("master"),
                Frame::Integer(9),
                Frame::Array(vec![Frame::Array(vec![
                    Frame::bulk("fd00::2"),
                    Frame::bulk("6380"),
                    Frame::bulk("7")
                ])]),
            ])
        );
        assert!(master
            .info_section()
            .starts_with("role:master\r\nconnected_slaves:1\r\nslave0:ip=fd00::2,port=6380,"));

        let on_follower = [member(1, "10.0.0.1:6379", true, None), member(2, "10.0.0.2:6379", false, None)];
        let replica = Replication::of(&raft_status(2, "follower", 1), &on_follower);
        assert_eq!(
            replica.role_reply(),
            Frame::Array(vec![
                Frame::bulk("slave"),
                Frame::bulk("10.0.0.1"),
                Frame::Integer(6379),
                Frame::bulk("connected"),
                Frame::Integer(8),
            ])
        );
        // No leader known (an election): a replica whose link is down.
        let orphan = Replication::of(&raft_status(2, "candidate", 0), &on_follower);
        assert_eq!(orphan, Replication::Replica { master: None, offset: 8 });
        assert!(orphan.info_section().contains("master_link_status:down\r\n"));
    }

    #[test]
    fn a_batch_answer_is_sent_once_every_place_is_filled_in_request_order() {
        let (mut replies, mut answer) = Reply::batch(3);
        let third = replies.pop().unwrap();
        let second = replies.pop().unwrap();
        third.send(Frame::Integer(3));
        replies.pop().unwrap().send(Frame::Integer(1));
        assert!(answer.try_recv().is_err(), "the second place is still empty");
        // A reply dropped unsent (RedisStore stopped) still answers its client.
        drop(second);
        assert_eq!(
            answer.try_recv().unwrap(),
            vec![Frame::Integer(1), Error::Stopped.to_frame(), Frame::Integer(3)]
        );

        let (replies, mut empty) = Reply::batch(0);
        assert!(replies.is_empty());
        assert_eq!(empty.try_recv().unwrap(), Vec::<Frame>::new());
    }

    #[test]
    fn a_turns_writes_become_entries_of_bounded_size_in_order() {
        let proposal = |seq: u64, len: usize| Proposal {
            origin: RequestId { node: 1, incarnation: 1, seq },
            now_ms: 0,
            op: WriteOp::Set { key: Bytes::from(format!("k{seq}")), value: Bytes::from(vec![b'v'; len]) },
        };
        let third = MAX_BATCH_BYTES / 3;
        let turn = vec![
            proposal(1, 10),
            proposal(2, third),
            proposal(3, third),
            proposal(4, third),               // would pass the bound: a new entry
            proposal(5, MAX_BATCH_BYTES * 2), // over the bound alone: an entry of its own
            proposal(6, 10),
        ];
        let encoded = turn.iter().map(|p| (p.origin.seq, p.encode())).collect();
        let (entries, seqs) = batch_entries(encoded);
        assert_eq!(seqs, vec![vec![1, 2, 3], vec![4], vec![5], vec![6]]);
        let decoded: Vec<Proposal> =
            entries.iter().flat_map(|data| Proposal::decode_entry(BATCH_CONTEXT, data).unwrap()).collect();
        assert_eq!(decoded, turn);
    }
}
