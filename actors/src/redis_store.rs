//! RedisStore is an actor. It gives Redis semantics to commands, on top of Raft.
//!
//! - A write becomes a proposal with a unique [`RequestId`] and a waiting reply. The reply is
//!   the one Storage computed when it applied that very entry on this node ([`Applied`]), so a
//!   client is answered only after its write is committed and applied. A write that cannot be
//!   proposed fails at once (`-CLUSTERDOWN`); one whose fate stays unknown fails after a bounded
//!   time (`-TIMEOUT`).
//! - A read asks RaftNode for a read index (the leader's commit index, confirmed by a quorum),
//!   waits until this node has applied that far, then reads from Storage: linearizable on any
//!   node.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;
use tracing::debug;

use crate::command::{Command, Proposal, ReadQuery, RequestId, WriteOp};
use crate::error::Error;
use crate::raft_node::{GetStatus, Propose, RaftNode, RaftStatus, ReadIndex};
use crate::resp::Frame;
use crate::storage::{Read, Storage};

/// Execute a parsed command and reply with its answer. Sent by a Session for every command
/// that is not answered by the session itself.
#[derive(Message)]
#[rtype(result = "Frame")]
pub struct Execute(pub Command);

/// Storage applied the log up to `index`. `replies` are the answers for writes this node
/// proposed in this incarnation, by request sequence number. Sent by Storage after each apply.
#[derive(Message, Debug, PartialEq)]
#[rtype(result = "()")]
pub struct Applied {
    pub index: u64,
    pub replies: Vec<(u64, Frame)>,
}

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
}

struct PendingWrite {
    reply: oneshot::Sender<Frame>,
    deadline: Instant,
}

struct WaitingRead {
    query: ReadQuery,
    reply: oneshot::Sender<Frame>,
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
    /// Reads whose read index is ahead of what this node has applied, by read index.
    waiting_reads: BTreeMap<u64, VecDeque<WaitingRead>>,
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
            waiting_reads: BTreeMap::new(),
        }
    }

    fn propose(&mut self, op: WriteOp, reply: oneshot::Sender<Frame>, ctx: &mut Context<Self>) {
        self.next_seq += 1;
        let seq = self.next_seq;
        let origin = RequestId { node: self.info.node_id, incarnation: self.incarnation, seq };
        let data = Proposal { origin, op }.encode();
        let deadline = Instant::now() + self.timing.write_timeout;
        self.pending_writes.insert(seq, PendingWrite { reply, deadline });
        let proposed = self.raft.send(Propose(data));
        ctx.spawn(proposed.into_actor(self).map(move |result, store, _| {
            let err = match result {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e,
                Err(mailbox) => Error::from(mailbox),
            };
            // Refused outright: nothing entered the log, so the client learns it now.
            if let Some(w) = store.pending_writes.remove(&seq) {
                let _ = w.reply.send(err.to_frame());
            }
        }));
    }

    fn read(&mut self, query: ReadQuery, reply: oneshot::Sender<Frame>, ctx: &mut Context<Self>) {
        let index = self.raft.send(ReadIndex);
        ctx.spawn(index.into_actor(self).map(move |result, store, _| match result {
            Ok(Ok(index)) => store.read_at(index, query, reply),
            Ok(Err(e)) => {
                let _ = reply.send(e.to_frame());
            }
            Err(e) => {
                let _ = reply.send(Error::from(e).to_frame());
            }
        }));
    }

    /// Serves a read whose index is confirmed, once this node has applied up to it.
    fn read_at(&mut self, index: u64, query: ReadQuery, reply: oneshot::Sender<Frame>) {
        if self.applied >= index {
            self.read_now(query, reply);
        } else {
            let deadline = Instant::now() + self.timing.apply_wait_timeout;
            self.waiting_reads.entry(index).or_default().push_back(WaitingRead { query, reply, deadline });
        }
    }

    fn read_now(&self, query: ReadQuery, reply: oneshot::Sender<Frame>) {
        let read = self.storage.send(Read(query));
        actix_rt::spawn(async move {
            let frame = match read.await {
                Ok(Ok(frame)) => frame,
                Ok(Err(e)) => e.to_frame(),
                Err(e) => Error::from(e).to_frame(),
            };
            let _ = reply.send(frame);
        });
    }

    /// Fails writes and reads that waited past their deadline.
    fn sweep(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.pending_writes.first_entry() {
            if entry.get().deadline > now {
                break;
            }
            let w = entry.remove();
            let ms = self.timing.write_timeout.as_millis() as u64;
            let _ = w.reply.send(Error::WriteTimeout(ms).to_frame());
        }
        for reads in self.waiting_reads.values_mut() {
            while reads.front().is_some_and(|r| r.deadline <= now) {
                let r = reads.pop_front().expect("front exists");
                let ms = self.timing.apply_wait_timeout.as_millis() as u64;
                let _ = r.reply.send(Frame::error(format!(
                    "TIMEOUT this node did not catch up with the leader within {ms} ms"
                )));
            }
        }
        self.waiting_reads.retain(|_, reads| !reads.is_empty());
    }

    fn info(&self, sections: Vec<String>, reply: oneshot::Sender<Frame>) {
        let status = self.raft.send(GetStatus);
        let dbsize = self.storage.send(Read(ReadQuery::DbSize));
        let node = self.info.clone();
        actix_rt::spawn(async move {
            let (Ok(status), Ok(Ok(Frame::Integer(keys)))) = (status.await, dbsize.await) else {
                let _ = reply.send(Error::Stopped.to_frame());
                return;
            };
            let _ = reply.send(Frame::Verbatim(format_info(&node, &status, keys, &sections)));
        });
    }
}

/// The `INFO` text: Redis's `# Section` / `field:value` lines, CRLF separated.
pub fn format_info(node: &NodeInfo, status: &RaftStatus, keys: i64, sections: &[String]) -> String {
    let all =
        sections.is_empty() || sections.iter().any(|s| s == "all" || s == "everything" || s == "default");
    let wants = |name: &str| all || sections.iter().any(|s| s == name);
    let mut out = String::new();
    if wants("server") {
        out.push_str("# Server\r\n");
        out.push_str(&format!("redis_version:7.0.0\r\nraft_kv_version:{}\r\n", env!("CARGO_PKG_VERSION")));
        out.push_str(&format!("process_id:{}\r\ntcp_port:{}\r\n", std::process::id(), node.redis_port));
        out.push_str(&format!("uptime_in_seconds:{}\r\n\r\n", node.started.elapsed().as_secs()));
    }
    if wants("keyspace") {
        out.push_str("# Keyspace\r\n");
        if keys > 0 {
            out.push_str(&format!("db0:keys={keys},expires=0,avg_ttl=0\r\n"));
        }
        out.push_str("\r\n");
    }
    if wants("raft") {
        let join = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        out.push_str("# Raft\r\n");
        out.push_str(&format!("node_id:{}\r\nrole:{}\r\nterm:{}\r\n", status.id, status.role, status.term));
        out.push_str(&format!("leader_id:{}\r\n", status.leader_id));
        out.push_str(&format!(
            "commit_index:{}\r\napplied_index:{}\r\n",
            status.commit_index, status.applied_index
        ));
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
        ctx.run_interval(self.timing.sweep_interval, |store, _| store.sweep());
    }
}

impl Handler<Execute> for RedisStore {
    type Result = ResponseFuture<Frame>;

    /// Proposes writes, reads linearizably, answers INFO.
    fn handle(&mut self, msg: Execute, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        match msg.0 {
            Command::Write(op) => self.propose(op, tx, ctx),
            Command::Read(query) => self.read(query, tx, ctx),
            Command::Info(sections) => self.info(sections, tx),
            Command::Local(cmd) => {
                debug!(?cmd, "session command reached the store");
                let _ = tx.send(Frame::error("ERR command not handled by the store"));
            }
        }
        Box::pin(async move { rx.await.unwrap_or_else(|_| Error::Stopped.to_frame()) })
    }
}

impl Handler<Applied> for RedisStore {
    type Result = ();

    /// Answers the writes this node proposed and releases the reads that were waiting.
    fn handle(&mut self, msg: Applied, _: &mut Context<Self>) {
        self.applied = self.applied.max(msg.index);
        for (seq, frame) in msg.replies {
            if let Some(w) = self.pending_writes.remove(&seq) {
                let _ = w.reply.send(frame);
            }
        }
        let still_waiting = self.waiting_reads.split_off(&(self.applied + 1));
        let ready = std::mem::replace(&mut self.waiting_reads, still_waiting);
        for read in ready.into_values().flatten() {
            self.read_now(read.query, read.reply);
        }
    }
}
