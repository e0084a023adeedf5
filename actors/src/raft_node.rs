//! RaftNode is an actor. It owns raft-rs's `RawNode` and runs all of its `Ready` processing.
//!
//! It ticks on an interval, steps messages from peers, accepts proposals and read-index
//! requests from RedisStore (all requests that arrive before the next Ready are handled by that
//! one Ready, which is how writes are group-committed and reads share one ReadIndex round), and
//! drives each Ready in the order raft-rs documents (see [`RaftNode::on_ready`]).
//!
//! Readies are persisted asynchronously (raft-rs's `advance_append_async`): RaftNode hands a
//! Ready's entries and hard state to Storage and goes on stepping messages and taking proposals;
//! when Storage answers that they are durable, `on_persist_ready` lets raft-rs count them (a
//! leader's own acknowledgement) and the messages that promised durability go out, in Ready
//! order. The [`RaftLog`] given to raft-rs mirrors the log in Storage: entries are added to it
//! when a Ready is handed to Storage. Once the applied log grows past a threshold, both are
//! compacted; a peer that needs compacted entries gets a snapshot (see PeerTransport).
//!
//! Reads on the leader use a lease ([`ReadLease`]) while one is held: a read-index round
//! confirmed by a quorum proves that no other leader can be elected for a while, and until
//! then the leader answers read indexes from its own commit index without asking the
//! followers again. Outside a lease, and on followers, every read takes a read-index round.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use actix::prelude::*;
use protobuf::Message as PbMessage;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, Message,
    MessageType, SnapshotMetadata,
};
use raft::prelude::{Config, RawNode, Ready};
use raft::{ReadOnlyOption, SnapshotStatus, StateRole, CAMPAIGN_TRANSFER, INVALID_ID};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::command::batch_origin;
use crate::error::{Error, Result};
use crate::membership::{
    address_record, apply_address_record, decode_members, encode_address, refused_change, upsert,
    ConfChangeContext, Member, ADDRESS_CONTEXT, REFUSED_CHANGE_CONTEXT,
};
use crate::peer_transport::{SendMessages, UpdatePeers};
use crate::raft_log::RaftLog;
use crate::redis_store::Committed;
use crate::storage::{
    fatal, ApplyCommitted, CompactLog, InstallSnapshot, PersistReady, RecoveredState, Storage, SyncFailed,
};
use crate::telemetry;

/// Propose replicated writes, all that RedisStore gathered in one turn: each element is one
/// log entry, a batch of encoded `Proposal`s ([`crate::command::Proposal::encode_batch`]).
/// Replies, for each, as soon as raft-rs accepted or refused it; the outcome arrives later
/// through the apply path.
#[derive(Message)]
#[rtype(result = "Vec<Result<()>>")]
pub struct Propose(pub Vec<BatchEntry>);

/// One log entry to propose: a batch of proposals and its context ([`crate::command::batch_context`]).
#[derive(Debug, Clone)]
pub struct BatchEntry {
    pub context: Vec<u8>,
    pub data: Vec<u8>,
}

/// Ask for a read index: replies with the leader's commit index once a quorum has confirmed
/// leadership, or an error after a bounded time. Sent by RedisStore for every linearizable read.
#[derive(Message)]
#[rtype(result = "Result<u64>")]
pub struct ReadIndex;

/// A Raft message from a peer. Sent by PeerTransport.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Step(pub Message);

/// A peer could not be reached. Sent by PeerTransport when connecting or writing fails.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerUnreachable(pub u64);

/// The outcome of sending a snapshot to a peer. Sent by PeerTransport; raft-rs pauses the peer
/// until it hears this.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SnapshotReport {
    pub to: u64,
    pub delivered: bool,
}

/// Add a node to the cluster (as a learner; the leader promotes it to voter once it has caught
/// up) or remove one. Sent by RedisStore for `RAFT.NODE`; replies once the change is applied on
/// this node, or with an error after a bounded time.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<()>")]
pub enum ChangeMembership {
    Add(Member),
    Remove(u64),
}

/// Hand leadership to another voter. Sent by RedisStore for `RAFT.TRANSFER-LEADER`; replies
/// once that node leads, or with an error after a bounded time.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct TransferLeader(pub u64);

/// Every member with its addresses and, on the leader, its replication progress. Sent by
/// RedisStore for `RAFT.INFO`.
#[derive(Message)]
#[rtype(result = "Vec<MemberStatus>")]
pub struct GetMembers;

#[derive(Debug, Clone, PartialEq)]
pub struct MemberStatus {
    pub member: Member,
    pub voter: bool,
    pub leader: bool,
    /// The highest log index known to be replicated on it (only the leader knows).
    pub matched: Option<u64>,
}

/// The node is about to stop: a leader hands leadership to its most up-to-date voter first,
/// so the cluster does not wait out an election timeout. Sent by the binary on SIGTERM/SIGINT;
/// replies when the transfer is done, failed, or not needed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Current Raft state, for `INFO raft`. Sent by RedisStore.
#[derive(Message)]
#[rtype(result = "RaftStatus")]
pub struct GetStatus;

/// Run the next Ready. Sent by the actor to itself, at most one at a time.
#[derive(Message)]
#[rtype(result = "()")]
struct DriveReady;

#[derive(Debug, Clone, PartialEq)]
pub struct RaftStatus {
    pub id: u64,
    pub role: &'static str,
    pub term: u64,
    pub leader_id: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// The first index the in-memory log holds (one past the compaction point).
    pub log_first_index: u64,
    /// The payload bytes of the entries it holds.
    pub log_bytes: u64,
    /// What is left of the leader's read lease (0: none, or not the leader).
    pub read_lease_ms: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

/// Timing and limits of the Raft loop.
#[derive(Debug, Clone)]
pub struct RaftTiming {
    pub tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// A read index not confirmed in this time is asked for again (the first request may have
    /// been dropped by raft-rs: no leader yet, or a leader that has not committed in its term).
    pub read_retry: Duration,
    /// A read index not confirmed in this time fails the read.
    pub read_timeout: Duration,
    /// Compact the log once this many applied entries follow the last compaction point...
    pub compact_after: u64,
    /// ... or once they hold this many bytes (an entry carries a whole turn of writes, so a
    /// few thousand entries may be large).
    pub compact_after_bytes: u64,
    /// Entries kept below the applied index at compaction, so a follower that is only a little
    /// behind catches up from the log instead of a snapshot; at most an eighth of
    /// `compact_after_bytes` of them.
    pub compact_keep: u64,
    /// How long a membership change or leadership transfer may take.
    pub admin_timeout: Duration,
    /// A learner within this many entries of the commit index is promoted to voter.
    pub promote_lag: u64,
    /// Serve reads on the leader under a [`ReadLease`] (`--read-lease`).
    pub read_lease: bool,
}

impl RaftTiming {
    /// The base election timeout.
    pub fn election_tick_duration(&self) -> Duration {
        self.tick * self.election_ticks as u32
    }

    /// How long a confirmed read-index round lets the leader serve reads alone.
    pub fn lease_duration(&self) -> Duration {
        self.election_tick_duration() / 2
    }
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 1,
            read_retry: Duration::from_millis(500),
            read_timeout: Duration::from_secs(5),
            compact_after: 20_000,
            compact_after_bytes: 64 << 20,
            compact_keep: 2_000,
            admin_timeout: Duration::from_secs(10),
            promote_lag: 100,
            read_lease: true,
        }
    }
}

type ReadWaiter = oneshot::Sender<Result<u64>>;

/// The leader's read lease: until `until` (on [`boot_time`]'s clock), in `term`, no other node
/// can have become leader, so this node's commit index is the cluster's and a read can be
/// served at it without a read-index round.
///
/// Why that holds. The lease starts when a read-index round is *asked* for and runs for half
/// an election timeout. The heartbeats of that round reach the followers after it was asked;
/// a quorum answered them, and each of those followers then refuses to vote, and cannot
/// campaign, for a whole election timeout after it heard from us: raft-rs ignores vote
/// requests while its leader is recent (`check_quorum`), its election timer counts ticks,
/// and ticks here never run faster than the clock (they are scheduled one after another,
/// never caught up in a burst). A follower that restarts forgets its leader, so for an
/// election timeout after it starts a node answers no vote request at all. Any new leader
/// needs a vote from that quorum. A leadership transfer lets its target skip those checks, so
/// a term in which a transfer started has no lease. Pauses (SIGSTOP) and machine suspends
/// are covered by the clock: CLOCK_BOOTTIME keeps counting through both, so a leader that
/// wakes up late finds its lease over. What it assumes is that clocks on different machines
/// run at about the same rate: the half election timeout left over is the margin.
#[derive(Debug, Clone, Copy)]
struct ReadLease {
    term: u64,
    until: Duration,
}

/// Time since boot, suspends included (CLOCK_BOOTTIME), for [`ReadLease`]. `Instant` counts
/// on CLOCK_MONOTONIC, which stops while the machine is suspended.
#[cfg(target_os = "linux")]
fn boot_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[cfg(not(target_os = "linux"))]
fn boot_time() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// A Ready handed to Storage (or one behind it) whose messages wait for it to be durable.
struct Unpersisted {
    number: u64,
    /// Whether this Ready waits for a write of its own (until Storage answers), or only for
    /// the ones before it.
    writing: bool,
    messages: Vec<Message>,
}

/// The Readies not yet known durable, in order. Storage may answer them out of order (a Ready
/// that needs no sync of its own, such as a new commit index, is answered while an earlier one
/// still waits for its fsync), but a Ready counts as durable only once every earlier one is:
/// raft-rs takes `on_persist_ready(n)` to mean every Ready up to `n`.
#[derive(Default)]
struct PersistQueue {
    waiting: VecDeque<Unpersisted>,
}

impl PersistQueue {
    /// Ready `number` was handed to Storage: its messages wait for its write and every earlier.
    fn push_write(&mut self, number: u64, messages: Vec<Message>) {
        self.waiting.push_back(Unpersisted { number, writing: true, messages });
    }

    /// Ready `number` wrote nothing: its messages only wait for the earlier Readies. Returns
    /// them at once if nothing is waiting.
    fn push_no_write(&mut self, number: u64, messages: Vec<Message>) -> Vec<Message> {
        if self.waiting.is_empty() {
            return messages;
        }
        if !messages.is_empty() {
            self.waiting.push_back(Unpersisted { number, writing: false, messages });
        }
        Vec::new()
    }

    /// Storage answered Ready `number`. Returns the newest Ready now durable together with
    /// every earlier one, if that moved, and the messages that waited for them.
    fn written(&mut self, number: u64) -> (Option<u64>, Vec<Message>) {
        if let Some(ready) = self.waiting.iter_mut().find(|r| r.number == number) {
            ready.writing = false;
        }
        let (mut durable, mut messages) = (None, Vec::new());
        while self.waiting.front().is_some_and(|r| !r.writing) {
            let ready = self.waiting.pop_front().expect("front exists");
            durable = Some(ready.number);
            messages.extend(ready.messages);
        }
        (durable, messages)
    }

    /// Every Ready handed over is durable (a snapshot install synced them all).
    fn take_all(&mut self) -> Vec<Message> {
        self.waiting.drain(..).flat_map(|r| r.messages).collect()
    }
}

/// Reads that share one `read_index` request.
struct ReadBatch {
    waiters: Vec<ReadWaiter>,
    /// When it was first and last asked for, on [`boot_time`]'s clock (a lease it confirms
    /// starts at `first_asked`).
    first_asked: Duration,
    last_asked: Duration,
}

pub struct RaftNode {
    id: u64,
    incarnation: u64,
    /// This node's store id, which the address book records once (see [`crate::membership`]).
    store_id: u64,
    raw: RawNode<RaftLog>,
    conf_state: ConfState,
    members: Vec<Member>,
    storage: Addr<Storage>,
    transport: Recipient<SendMessages>,
    peers_changed: Recipient<UpdatePeers>,
    /// Told which of this node's batches were committed (RedisStore), if anyone.
    committed_to: Option<Recipient<Committed>>,
    /// This node's Redis address, for the address book when it lacks one (see
    /// [`RaftNode::advertise_self`]), and when that was last proposed.
    redis_addr: Option<String>,
    advertised: Option<Instant>,
    timing: RaftTiming,
    drive_scheduled: bool,
    /// Readies being persisted, oldest first.
    unpersisted: PersistQueue,
    /// Reads that arrived since the last Ready; they get one read-index request together.
    new_reads: Vec<ReadWaiter>,
    /// Read-index requests in flight, by their context.
    reads_in_flight: HashMap<Vec<u8>, ReadBatch>,
    /// The leader changed: the requests in flight are asked again before anything else.
    reask_reads: bool,
    next_read: u64,
    role: StateRole,
    leader: u64,
    /// Membership changes this node proposed, by request number, waiting to be applied.
    pending_changes: HashMap<u64, PendingChange>,
    next_change: u64,
    /// Leadership transfers waiting for the target to lead.
    transfers: Vec<(u64, oneshot::Sender<Result<()>>, Instant)>,
    /// This node's batches that raft-rs took and that are not committed yet, oldest first.
    proposed: VecDeque<ProposedBatch>,
    /// [`boot_time`] when this actor started: it answers no vote request for an election
    /// timeout after (see [`ReadLease`]).
    started: Duration,
    /// The read lease, while this node leads and holds one.
    lease: Option<ReadLease>,
    /// A term in which a leadership transfer started: no lease in it.
    no_lease_term: u64,
    /// A lease running out soon: renew it with the next read-index round.
    renew_lease: bool,
}

/// A batch of this node's writes in the log, or on its way to the leader.
#[derive(Debug)]
struct ProposedBatch {
    /// The sequence number of its first write, which names it.
    first_seq: u64,
    /// The term this node was in when it proposed the batch.
    term: u64,
    at: Instant,
}

/// A membership change this node proposed, waiting to be applied here.
struct PendingChange {
    reply: oneshot::Sender<Result<()>>,
    /// When it is answered `-TIMEOUT` if still not applied.
    deadline: Instant,
    /// The term this node was in when it proposed the change.
    term: u64,
}

/// How long RaftNode remembers a batch that was neither committed nor lost to a leader change
/// (a leader can drop a forwarded proposal without telling anyone, during a leadership
/// transfer): RedisStore has long answered its writes with a timeout by then.
const FORGET_PROPOSED_AFTER: Duration = Duration::from_secs(60);

impl RaftNode {
    pub fn new(
        id: u64,
        recovered: RecoveredState,
        timing: RaftTiming,
        storage: Addr<Storage>,
        transport: Recipient<SendMessages>,
        peers_changed: Recipient<UpdatePeers>,
    ) -> Result<Self> {
        let cs = &recovered.conf_state;
        let in_conf = cs.voters.contains(&id) || cs.learners.contains(&id);
        let no_membership_yet = cs.voters.is_empty() && cs.learners.is_empty();
        if !(in_conf || no_membership_yet) {
            return Err(Error::Invalid(format!(
                "node {id} was removed from the cluster; it will not serve again"
            )));
        }
        let log = RaftLog::new(
            recovered.hard_state.clone(),
            recovered.conf_state.clone(),
            recovered.snapshot_index,
            recovered.snapshot_term,
            recovered.entries,
        );
        let config = Config {
            id,
            election_tick: timing.election_ticks,
            heartbeat_tick: timing.heartbeat_ticks,
            applied: recovered.applied,
            pre_vote: true,
            check_quorum: true,
            read_only_option: ReadOnlyOption::Safe,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        config.validate().map_err(|e| Error::Corrupt(e.to_string()))?;
        let logger = crate::raft_logger();
        let raw = RawNode::new(&config, log, &logger).map_err(|e| Error::Corrupt(e.to_string()))?;
        Ok(RaftNode {
            id,
            incarnation: recovered.incarnation,
            store_id: recovered.store_id,
            raw,
            conf_state: recovered.conf_state,
            members: recovered.members,
            storage,
            transport,
            peers_changed,
            committed_to: None,
            redis_addr: None,
            advertised: None,
            timing,
            drive_scheduled: false,
            unpersisted: PersistQueue::default(),
            new_reads: Vec::new(),
            reads_in_flight: HashMap::new(),
            reask_reads: false,
            next_read: 0,
            role: StateRole::Follower,
            leader: INVALID_ID,
            pending_changes: HashMap::new(),
            next_change: 0,
            transfers: Vec::new(),
            proposed: VecDeque::new(),
            started: boot_time(),
            lease: None,
            no_lease_term: 0,
            renew_lease: false,
        })
    }

    /// Where to say which of this node's batches were committed (RedisStore).
    pub fn with_committed_sink(mut self, sink: Recipient<Committed>) -> Self {
        self.committed_to = Some(sink);
        self
    }

    /// This node's Redis address (`host:port`), which it writes into the address book if that
    /// lacks it.
    pub fn with_redis_addr(mut self, addr: String) -> Self {
        self.redis_addr = Some(addr);
        self
    }

    /// The next tick, one tick from now. Not `run_interval`, which fires the ticks it missed
    /// in a burst after a stall: raft-rs's election timer counts ticks, and the read lease
    /// relies on a follower's timer never running ahead of the clock.
    fn schedule_tick(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(self.timing.tick, |node, ctx| {
            node.raw.tick();
            node.retry_or_expire_reads(false);
            node.promote_caught_up_learners();
            node.advertise_self();
            node.expire_admin_requests();
            while node.proposed.front().is_some_and(|p| p.at.elapsed() > FORGET_PROPOSED_AFTER) {
                node.proposed.pop_front();
            }
            node.schedule_drive(ctx);
            node.schedule_tick(ctx);
        });
    }

    /// What is left of the read lease, if this node holds a valid one.
    fn lease_left(&self) -> Option<Duration> {
        let (lease, raft) = (self.lease?, &self.raw.raft);
        let valid = raft.state == StateRole::Leader
            && lease.term == raft.term
            && self.no_lease_term != raft.term
            && raft.lead_transferee.is_none()
            && raft.commit_to_current_term();
        lease.until.checked_sub(boot_time()).filter(|_| valid)
    }

    /// The read index a read can use at once, under the lease, if this node holds one; in the
    /// lease's second half it also has the next Ready ask for a renewal.
    fn lease_read_index(&mut self, ctx: &mut Context<Self>) -> Option<u64> {
        let Some(left) = self.lease_left() else {
            self.lease = None;
            return None;
        };
        if left < self.timing.lease_duration() / 2 {
            self.renew_lease = true;
            self.schedule_drive(ctx);
        }
        Some(self.raw.raft.raft_log.committed)
    }

    /// A leadership transfer under way (however it started: RAFT.TRANSFER-LEADER, shutdown,
    /// or a follower's request) ends the lease for the rest of the term: its target may be
    /// elected without the votes a lease counts on. Checked on every Ready and tick; the
    /// transfer lasts at least until its target leads or an election timeout passes, and
    /// `lease_left` refuses the lease meanwhile anyway.
    fn note_transfer(&mut self) {
        if self.raw.raft.lead_transferee.is_some() {
            self.no_lease_term = self.raw.raft.term;
            self.lease = None;
        }
    }

    /// Runs a Ready soon, after the messages already in the mailbox: everything that arrives
    /// before then is batched into the same Ready.
    fn schedule_drive(&mut self, ctx: &mut Context<Self>) {
        if !self.drive_scheduled {
            self.drive_scheduled = true;
            ctx.notify(DriveReady);
        }
    }

    /// Processes one Ready, in raft-rs's documented order, without waiting for its fsync:
    /// Storage persists it while this actor goes on stepping messages, taking proposals and
    /// making the next Readies (raft-rs's asynchronous Ready). [`Self::on_persisted`] finishes
    /// it. Only a Ready that installs a snapshot is waited for.
    fn on_ready(&mut self, ctx: &mut Context<Self>) {
        self.note_transfer();
        self.ask_read_index();
        if !self.raw.has_ready() {
            return;
        }
        let mut ready = self.raw.ready();

        // 1. Role changes, for the log and for failing requests that can no longer complete.
        if let Some(ss) = ready.ss() {
            self.observe_soft_state(ss.raft_state, ss.leader_id);
        }
        // 2. A leader sends its messages at once: followers can persist in parallel with us.
        self.send(ready.take_messages());
        // 3. A snapshot from the leader (its data already staged by PeerTransport) replaces
        //    the keyspace before anything that follows it is persisted.
        let snapshot = if ready.snapshot().is_empty() {
            None
        } else {
            let meta = ready.snapshot().get_metadata().clone();
            let members = match decode_members(ready.snapshot().get_data()) {
                Ok(members) => members,
                Err(e) => fatal("a snapshot carried no member list", &e),
            };
            self.raw.mut_store().apply_snapshot(&meta);
            self.conf_state = meta.get_conf_state().clone();
            self.set_members(members.clone());
            info!(
                node = self.id,
                index = meta.index,
                term = meta.term,
                "installing a snapshot from the leader"
            );
            Some((meta, members))
        };
        // 4. Confirmed read indexes go back to the waiting reads.
        self.release_reads(ready.take_read_states());
        // 5. Entries committed (and persisted here) earlier go to the state machine now, ahead
        //    of this Ready's persist in Storage's mailbox. (raft-rs gives none with a snapshot.)
        self.apply_committed(ready.take_committed_entries(), ctx);
        // 6. Entries and hard state are handed to raft-rs's view of the log and persisted.
        let entries = ready.take_entries();
        let hard_state = ready.hs().cloned();
        let log = self.raw.mut_store();
        log.append(&entries);
        if let Some(hs) = &hard_state {
            log.set_hard_state(hs.clone());
        }
        // 7. Messages that promise durability (a follower's votes and append responses) wait
        //    for this Ready's persist, and for every earlier one. raft-rs puts all of a
        //    follower's messages there; the requests it forwards to the leader (proposals and
        //    read-index requests, which carry no term) promise nothing and go at once.
        let (forwarded, waiting): (Vec<_>, Vec<_>) = ready
            .take_persisted_messages()
            .into_iter()
            .partition(|m| matches!(m.get_msg_type(), MessageType::MsgPropose | MessageType::MsgReadIndex));
        self.send(forwarded);
        if snapshot.is_some() {
            let persist = persist_ready(self.storage.clone(), snapshot, entries, hard_state);
            ctx.wait(persist.into_actor(self).map(move |result, node, ctx| match result {
                Ok(()) => node.after_snapshot(ready, waiting, ctx),
                Err(e) => node.sync_failed(e),
            }));
            return;
        }
        let number = ready.number();
        self.raw.advance_append_async(ready);
        self.raw.advance_apply();
        if !entries.is_empty() || hard_state.is_some() {
            self.unpersisted.push_write(number, waiting);
            let persist = self.storage.send(PersistReady { entries, hard_state });
            // The sync thread wakes this actor directly once the Ready is durable. (A failed
            // write stops the node in Storage; a failed sync is reported there too.)
            let durable = async move { persist.await?.durable().await };
            ctx.spawn(durable.into_actor(self).map(move |result, node, ctx| match result {
                Ok(()) => node.on_persisted(number, ctx),
                Err(e) => node.sync_failed(e),
            }));
        } else {
            let ready_now = self.unpersisted.push_no_write(number, waiting);
            self.send(ready_now);
        }
        self.finish_turn(ctx);
    }

    /// A Ready could not be made durable. Storage stops the node, naming the write that failed
    /// first if one did (a sync fails after any failed write); if Storage is gone, here.
    fn sync_failed(&self, e: Error) {
        if let Err(SendError::Closed(SyncFailed(e))) = self.storage.try_send(SyncFailed(e)) {
            fatal("syncing the raft log failed", &e);
        }
    }

    /// Storage has made Ready `number` durable. Once every Ready before it is too, raft-rs
    /// may count them (a leader's own match index, hence commits), and the messages that
    /// waited for them go out.
    fn on_persisted(&mut self, number: u64, ctx: &mut Context<Self>) {
        let (durable, messages) = self.unpersisted.written(number);
        if let Some(number) = durable {
            self.raw.on_persist_ready(number);
        }
        self.send(messages);
        self.finish_turn(ctx);
    }

    /// The rest of a Ready that installed a snapshot, once it and everything before it is
    /// durable (Storage syncs the install, and with it every earlier write).
    fn after_snapshot(&mut self, ready: Ready, waiting: Vec<Message>, ctx: &mut Context<Self>) {
        let earlier = self.unpersisted.take_all();
        self.send(earlier);
        self.send(waiting);
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
        }
        self.send(light.take_messages());
        self.apply_committed(light.take_committed_entries(), ctx);
        self.raw.advance_apply();
        self.finish_turn(ctx);
    }

    fn finish_turn(&mut self, ctx: &mut Context<Self>) {
        self.maybe_compact();
        self.record_metrics();
        if self.raw.has_ready() || !self.new_reads.is_empty() {
            self.schedule_drive(ctx);
        }
    }

    /// Compacts the log once enough applied entries, or enough bytes of them, follow the last
    /// compaction point. A leader first waits for a follower that still finds its next entries
    /// in the log but would not after the compaction (one back from a restart, or slow), until
    /// the log holds twice as much: so a short absence is made up from the log, not by sending
    /// the whole keyspace. Storage compacts after the applies already in its mailbox, so it
    /// never drops an unapplied entry.
    fn maybe_compact(&mut self) {
        let applied = self.raw.raft.raft_log.applied;
        let log = self.raw.store();
        let timing = &self.timing;
        let past_intervals = |n: u64| {
            applied >= log.snapshot_index() + n * timing.compact_after
                || log.bytes_through(applied) >= n * timing.compact_after_bytes
        };
        if !past_intervals(1) {
            return;
        }
        let to = log.compaction_point(applied, timing.compact_keep, timing.compact_after_bytes / 8);
        if !past_intervals(2) && self.cuts_off_a_follower(to) {
            return;
        }
        self.compact_to(to);
    }

    /// Whether, as leader, compacting to `to` would take away the next entries of a follower
    /// that still finds them in the log.
    fn cuts_off_a_follower(&self, to: u64) -> bool {
        if self.role != StateRole::Leader {
            return false;
        }
        let compacted = self.raw.store().snapshot_index();
        let prs = self.raw.raft.prs();
        prs.iter().any(|(&id, pr)| id != self.id && (compacted..to).contains(&pr.matched))
    }

    fn compact_to(&mut self, to: u64) {
        let log = self.raw.mut_store();
        if to <= log.snapshot_index() || to > log.last_index() {
            return;
        }
        log.compact(to);
        debug!(node = self.id, to, "compacting the raft log");
        self.storage.do_send(CompactLog(to));
    }

    fn send(&self, messages: Vec<Message>) {
        if !messages.is_empty() {
            self.transport.do_send(SendMessages(messages));
        }
    }

    /// What the newly committed `entries` mean for this node's own batches. Committed ones are
    /// final: RedisStore can answer the writes whose reply does not depend on the keyspace
    /// without waiting for Storage to apply them. And once an entry of term `t` is committed,
    /// a batch proposed in an earlier term that was not committed before it is not in the
    /// log that every later leader holds: it was lost with the leader it was sent to (or
    /// was in this node's log as a deposed leader, and is overwritten).
    fn committed_batches(&mut self, entries: &[Entry]) -> Committed {
        let (id, incarnation) = (self.id, self.incarnation);
        let batches: Vec<u64> = entries
            .iter()
            .filter_map(|e| batch_origin(&e.context))
            .filter(|origin| origin.node == id && origin.incarnation == incarnation)
            .map(|origin| origin.seq)
            .collect();
        if !batches.is_empty() {
            self.proposed.retain(|p| !batches.contains(&p.first_seq));
        }
        let newest_term = entries.last().map_or(0, |e| e.term);
        let mut lost = Vec::new();
        // Proposed in order, so in order of term.
        while self.proposed.front().is_some_and(|p| p.term < newest_term) {
            lost.extend(self.proposed.pop_front().map(|p| p.first_seq));
        }
        if !lost.is_empty() {
            debug!(
                node = self.id,
                batches = lost.len(),
                term = newest_term,
                "batches lost to a leader change"
            );
        }
        Committed { batches, lost }
    }

    /// Applies configuration changes to raft-rs and the address book here, and hands every
    /// entry to Storage.
    fn apply_committed(&mut self, entries: Vec<Entry>, ctx: &mut Context<Self>) {
        if entries.is_empty() {
            return;
        }
        let committed = self.committed_batches(&entries);
        if let Some(sink) = &self.committed_to {
            if committed != Committed::default() {
                sink.do_send(committed);
            }
        }
        let mut conf_state = None;
        let mut addresses_changed = false;
        let mut removed_self = false;
        for entry in &entries {
            let Some(change) = conf_change_of(entry) else {
                if let Some(member) = address_record(&entry.context, &entry.data) {
                    addresses_changed |= apply_address_record(&mut self.members, &member);
                } else if let Some(refused) = refused_change(&entry.context, &entry.data) {
                    self.answer_change(refused.origin, Err(Error::ChangeInProgress));
                }
                continue;
            };
            let applied = change.and_then(|cc| {
                let cs = self.raw.apply_conf_change(&cc).map_err(|e| e.to_string())?;
                Ok((cc, cs))
            });
            let (cc, cs) = match applied {
                Ok(done) => done,
                Err(e) => {
                    warn!(node = self.id, index = entry.index, error = %e, "ignoring an invalid conf change");
                    continue;
                }
            };
            let context = ConfChangeContext::decode(&cc.context);
            for single in cc.get_changes() {
                match single.get_change_type() {
                    ConfChangeType::RemoveNode => {
                        self.members.retain(|m| m.id != single.node_id);
                        removed_self |= single.node_id == self.id;
                    }
                    ConfChangeType::AddLearnerNode | ConfChangeType::AddNode => {
                        if let Some(member) = context.as_ref().and_then(|c| c.member.clone()) {
                            upsert(&mut self.members, member);
                        }
                        // A new node must start from a snapshot, which carries the membership
                        // its log alone would not rebuild: make the log start after it.
                        if single.get_change_type() == ConfChangeType::AddLearnerNode
                            && self.role == StateRole::Leader
                        {
                            self.compact_to(self.raw.raft.raft_log.applied);
                        }
                    }
                }
            }
            info!(node = self.id, term = self.raw.raft.term, voters = ?cs.voters, learners = ?cs.learners, "membership changed");
            self.conf_state = cs.clone();
            conf_state = Some(cs);
            self.answer_change(context.and_then(|c| c.origin), Ok(()));
        }
        self.answer_lost_changes(entries.last().map_or(0, |e| e.term));
        // The address book only changes with the membership and address records: no copy for
        // ordinary entries.
        let members = (conf_state.is_some() || addresses_changed).then(|| self.members.clone());
        if let Some(members) = &members {
            self.peers_changed.do_send(UpdatePeers(members.clone()));
        }
        let apply = self.storage.send(ApplyCommitted { entries, conf_state, members });
        if removed_self {
            // Stop only once the removal is on disk, so a restart knows it too.
            ctx.wait(apply.into_actor(self).map(|_, node, _| {
                tracing::error!(node = node.id, "this node was removed from the cluster; it stops serving");
                std::process::exit(0);
            }));
        } else {
            ctx.spawn(apply.into_actor(self).map(|_, _, _| ()));
        }
    }

    /// Answers the membership change that `origin` names, if this node (in this incarnation)
    /// proposed it and still waits for it.
    fn answer_change(&mut self, origin: Option<(u64, u64, u64)>, result: Result<()>) {
        if let Some((node, incarnation, seq)) = origin {
            if node == self.id && incarnation == self.incarnation {
                if let Some(change) = self.pending_changes.remove(&seq) {
                    let _ = change.reply.send(result);
                }
            }
        }
    }

    /// Answers the membership changes this node proposed in a term before `newest_term`, an
    /// entry of which was just committed, and that were not applied before it: lost with the
    /// leader they were sent to, as lost write batches are ([`Self::committed_batches`]). The
    /// answer says their outcome is unknown ([`Error::ChangeLost`]), rather than after the admin
    /// timeout: a deposed leader may still have forwarded one to the new leader.
    fn answer_lost_changes(&mut self, newest_term: u64) {
        for (_, change) in self.pending_changes.extract_if(|_, change| change.term < newest_term) {
            debug!(node = self.id, term = newest_term, "a membership change lost to a leader change");
            let _ = change.reply.send(Err(Error::ChangeLost));
        }
    }

    /// On the leader, while a membership change is pending: turns the membership changes in a
    /// follower's forwarded proposal into records of their refusal, normal entries that tell
    /// the follower to answer `-TRYAGAIN` once they commit. raft-rs would refuse them all the
    /// same, as empty entries that name nobody, and the follower's client would wait out the
    /// admin timeout.
    fn refuse_forwarded_changes(&self, proposal: &mut Message) {
        if self.role != StateRole::Leader || !self.raw.raft.has_pending_conf() {
            return;
        }
        let from = proposal.from;
        for entry in proposal.mut_entries().iter_mut() {
            let Some(change) = conf_change_of(entry) else { continue };
            debug!(node = self.id, from, "refusing a forwarded membership change: another is pending");
            let mut refused = Entry::default();
            refused.set_entry_type(EntryType::EntryNormal);
            refused.context = REFUSED_CHANGE_CONTEXT.to_vec().into();
            refused.data = change.map(|cc| cc.context).unwrap_or_default();
            *entry = refused;
        }
    }

    /// Why the leader's `heartbeat` cannot be answered, if it says this node holds entries its
    /// log does not: the leader only counts entries a node said it had made durable, so this
    /// node has lost them (its data directory was emptied or replaced, or `--fsync everysec`
    /// met a power loss), and with them perhaps a vote. It must not take part again under its
    /// id; raft-rs would panic here anyway.
    fn lost_log(&self, heartbeat: &Message) -> Option<String> {
        let last = self.raw.raft.raft_log.last_index();
        (heartbeat.commit > last).then(|| {
            format!(
                "leader {} counts entries up to {} that this node (id {}) does not have (its log ends at \
                 {last}): its data directory was emptied or replaced, or lost synced writes. {}",
                heartbeat.from,
                heartbeat.commit,
                self.id,
                how_to_replace(self.id)
            )
        })
    }

    /// As leader, a follower's `rejection` of an append, if it shows that the follower no longer
    /// has entries it acknowledged: the entries it matched agree with this log, so a follower
    /// that still had them would point at or past them. raft-rs would send it the log again
    /// from its hint, and it would rejoin having forgotten its vote; instead the rejection is
    /// dropped, and the follower is sent a heartbeat counting those entries, which stops it
    /// (see [`Self::lost_log`]).
    fn answer_lost_log(&self, rejection: &Message) -> Option<Message> {
        let raft = &self.raw.raft;
        let matched = raft.prs().get(rejection.from)?.matched;
        if rejection.term != raft.term || rejection.index < matched || rejection.reject_hint >= matched {
            return None;
        }
        warn!(
            node = self.id,
            follower = rejection.from,
            matched,
            its_log_ends_at = rejection.reject_hint,
            "a follower lost log entries it had acknowledged; it is told so and must be replaced"
        );
        let mut heartbeat = Message::default();
        heartbeat.set_msg_type(MessageType::MsgHeartbeat);
        (heartbeat.to, heartbeat.from, heartbeat.term) = (rejection.from, self.id, raft.term);
        heartbeat.commit = matched.min(raft.raft_log.committed);
        Some(heartbeat)
    }

    fn set_members(&mut self, members: Vec<Member>) {
        if members != self.members {
            self.members = members;
            self.peers_changed.do_send(UpdatePeers(self.members.clone()));
        }
    }

    /// Proposes a configuration change carrying `context`.
    fn propose_change(
        &mut self,
        change: ConfChangeType,
        node_id: u64,
        context: ConfChangeContext,
    ) -> Result<()> {
        let mut single = ConfChangeSingle::default();
        single.set_change_type(change);
        single.node_id = node_id;
        let mut cc = ConfChangeV2::default();
        cc.set_changes(vec![single].into());
        cc.context = context.encode().into();
        self.raw.propose_conf_change(Vec::new(), cc).map_err(|e| {
            debug!(node = self.id, error = %e, "conf change dropped");
            Error::ProposalDropped
        })
    }

    /// Writes what the address book lacks about this node: its Redis address (`RAFT.INFO`'s
    /// `redis=`), which the initial members, named by peer address only in `--cluster`, must add
    /// themselves, and its store id, which every member adds once. It goes through the log as an
    /// address record ([`ADDRESS_CONTEXT`]), a normal entry, so it is applied in log order on
    /// every node and persisted with the address book, yet neither waits for nor blocks a
    /// membership change (raft-rs allows one pending at a time). Proposed again after two
    /// election timeouts if it was lost (no leader yet, a leader change).
    fn advertise_self(&mut self) {
        let Some(me) = self.members.iter().find(|m| m.id == self.id) else { return };
        let lacks_addr = me.redis_addr.is_empty() && self.redis_addr.is_some();
        let again = self.advertised.is_none_or(|at| at.elapsed() >= 2 * self.timing.election_tick_duration());
        if !(lacks_addr || me.store_id == 0) || !again || self.raw.raft.leader_id == INVALID_ID {
            return;
        }
        let redis_addr =
            if lacks_addr { self.redis_addr.clone().unwrap_or_default() } else { me.redis_addr.clone() };
        let record = Member { redis_addr, store_id: self.store_id, ..me.clone() };
        self.advertised = Some(Instant::now());
        debug!(node = self.id, redis = %record.redis_addr, store = record.store_id, "adding this node to the address book");
        if let Err(e) = self.raw.propose(ADDRESS_CONTEXT.to_vec(), encode_address(&record)) {
            debug!(node = self.id, error = %e, "address record dropped");
        }
    }

    /// On the leader: promotes a learner that has caught up.
    fn promote_caught_up_learners(&mut self) {
        if self.role != StateRole::Leader || self.raw.raft.has_pending_conf() {
            return;
        }
        let commit = self.raw.raft.raft_log.committed;
        let lag = self.timing.promote_lag;
        let ready = self.conf_state.learners.iter().copied().find(|&id| {
            self.raw.raft.prs().get(id).is_some_and(|pr| pr.matched > 0 && pr.matched + lag >= commit)
        });
        if let Some(id) = ready {
            info!(node = self.id, learner = id, "promoting a caught-up learner to voter");
            let context = ConfChangeContext { origin: None, member: None };
            let _ = self.propose_change(ConfChangeType::AddNode, id, context);
        }
    }

    /// Fails membership changes and transfers that took too long, and transfers that are over.
    fn expire_admin_requests(&mut self) {
        let now = Instant::now();
        let ms = self.timing.admin_timeout.as_millis() as u64;
        for (_, change) in self.pending_changes.extract_if(|_, change| change.deadline <= now) {
            let _ = change.reply.send(Err(Error::WriteTimeout(ms)));
        }
        // A transfer is over without its target leading once raft-rs has given it up (the target
        // did not win within an election timeout, while this node still leads), or once another
        // node leads; else it waits for its deadline.
        let raft = &self.raw.raft;
        let (leading, transferee, leader) =
            (raft.state == StateRole::Leader, raft.lead_transferee, raft.leader_id);
        let transfers = std::mem::take(&mut self.transfers);
        for (target, reply, deadline) in transfers {
            let failure = if leading && transferee != Some(target) {
                format!(
                    "node {target} did not take over leadership within an election timeout, and \
                     this node gave the transfer up (node {target} may still take over if the \
                     request reaches it late); is it running and caught up?"
                )
            } else if !leading && leader != INVALID_ID && leader != target {
                format!("node {leader} took over leadership, not node {target}")
            } else if deadline <= now {
                format!("node {target} did not take over leadership within {ms} ms")
            } else {
                self.transfers.push((target, reply, deadline));
                continue;
            };
            let _ = reply.send(Err(Error::Invalid(failure)));
        }
    }

    fn member_statuses(&self) -> Vec<MemberStatus> {
        let leader = self.raw.raft.leader_id;
        let is_leader = self.role == StateRole::Leader;
        let mut ids: Vec<u64> =
            self.conf_state.voters.iter().chain(&self.conf_state.learners).copied().collect();
        ids.sort_unstable();
        ids.into_iter()
            .map(|id| MemberStatus {
                member: self
                    .members
                    .iter()
                    .find(|m| m.id == id)
                    .cloned()
                    .unwrap_or(Member { id, ..Default::default() }),
                voter: self.conf_state.voters.contains(&id),
                leader: id == leader,
                matched: if is_leader { self.raw.raft.prs().get(id).map(|pr| pr.matched) } else { None },
            })
            .collect()
    }

    fn record_metrics(&self) {
        let raft = &self.raw.raft;
        metrics::gauge!(telemetry::RAFT_TERM).set(raft.term as f64);
        metrics::gauge!(telemetry::RAFT_IS_LEADER).set(if self.role == StateRole::Leader {
            1.0
        } else {
            0.0
        });
        metrics::gauge!(telemetry::RAFT_LEADER_ID).set(raft.leader_id as f64);
        metrics::gauge!(telemetry::RAFT_COMMIT_INDEX).set(raft.raft_log.committed as f64);
        metrics::gauge!(telemetry::RAFT_APPLIED_INDEX).set(raft.raft_log.applied as f64);
    }

    fn observe_soft_state(&mut self, role: StateRole, leader: u64) {
        if role != self.role || leader != self.leader {
            info!(node = self.id, term = self.raw.raft.term, ?role, leader, "raft role changed");
            // A read-index request to the old leader is lost: ask the new one at once.
            self.reask_reads = true;
            self.lease = None;
        }
        self.role = role;
        self.leader = leader;
        let (done, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.transfers).into_iter().partition(|(target, _, _)| *target == leader);
        self.transfers = waiting;
        for (_, reply, _) in done {
            let _ = reply.send(Ok(()));
        }
    }

    /// Sends one read-index request for all reads that arrived since the last one, once the
    /// request before it is answered: one round at a time (as etcd does), so a busy node
    /// confirms every read that came in during a heartbeat exchange with the next exchange,
    /// instead of starting an exchange for each turn of its event loop.
    fn ask_read_index(&mut self) {
        if std::mem::take(&mut self.reask_reads) {
            self.retry_or_expire_reads(true);
        }
        let renew = std::mem::take(&mut self.renew_lease);
        if self.new_reads.is_empty() && !renew {
            return;
        }
        if self.raw.raft.leader_id == INVALID_ID {
            for w in std::mem::take(&mut self.new_reads) {
                let _ = w.send(Err(Error::NoLeader));
            }
            return;
        }
        if !self.reads_in_flight.is_empty() {
            return;
        }
        let waiters = std::mem::take(&mut self.new_reads);
        let now = boot_time();
        let rctx = self.next_read_context();
        self.raw.read_index(rctx.clone());
        self.reads_in_flight.insert(rctx, ReadBatch { waiters, first_asked: now, last_asked: now });
    }

    /// A context unique across the cluster and across restarts: the leader drops a read-index
    /// request whose context duplicates a pending one.
    fn next_read_context(&mut self) -> Vec<u8> {
        self.next_read += 1;
        let mut rctx = Vec::with_capacity(24);
        rctx.extend_from_slice(&self.id.to_be_bytes());
        rctx.extend_from_slice(&self.incarnation.to_be_bytes());
        rctx.extend_from_slice(&self.next_read.to_be_bytes());
        rctx
    }

    fn release_reads(&mut self, states: Vec<raft::ReadState>) {
        for state in states {
            if let Some(batch) = self.reads_in_flight.remove(&state.request_ctx) {
                let raft = &self.raw.raft;
                if self.timing.read_lease
                    && raft.state == StateRole::Leader
                    && raft.lead_transferee.is_none()
                    && self.no_lease_term != raft.term
                {
                    let until = batch.first_asked + self.timing.lease_duration();
                    if self.lease.is_none_or(|l| l.term != raft.term || l.until < until) {
                        self.lease = Some(ReadLease { term: raft.term, until });
                    }
                }
                for w in batch.waiters {
                    let _ = w.send(Ok(state.index));
                }
            }
        }
    }

    /// On every tick (and, with `now_all`, when the leader changed): ask again for reads whose
    /// request may have been dropped, and fail the ones that waited too long.
    fn retry_or_expire_reads(&mut self, now_all: bool) {
        let now = boot_time();
        let leader_known = self.raw.raft.leader_id != INVALID_ID;
        let stale: Vec<Vec<u8>> = self
            .reads_in_flight
            .iter()
            .filter(|(_, b)| now_all || now.saturating_sub(b.last_asked) >= self.timing.read_retry)
            .map(|(k, _)| k.clone())
            .collect();
        for rctx in stale {
            let mut batch = self.reads_in_flight.remove(&rctx).expect("key just listed");
            if now.saturating_sub(batch.first_asked) >= self.timing.read_timeout {
                let err = if leader_known {
                    Error::ReadTimeout(self.timing.read_timeout.as_millis() as u64)
                } else {
                    Error::NoLeader
                };
                for w in batch.waiters {
                    let _ = w.send(Err(err.clone()));
                }
            } else if leader_known {
                let rctx = self.next_read_context();
                self.raw.read_index(rctx.clone());
                batch.last_asked = now;
                self.reads_in_flight.insert(rctx, batch);
            } else {
                self.reads_in_flight.insert(rctx, batch);
            }
        }
    }

    fn status(&self) -> RaftStatus {
        let raft = &self.raw.raft;
        RaftStatus {
            id: self.id,
            role: match raft.state {
                StateRole::Leader => "leader",
                StateRole::Follower => "follower",
                StateRole::Candidate => "candidate",
                StateRole::PreCandidate => "precandidate",
            },
            term: raft.term,
            leader_id: raft.leader_id,
            commit_index: raft.raft_log.committed,
            applied_index: raft.raft_log.applied,
            log_first_index: self.raw.store().first_index(),
            log_bytes: self.raw.store().bytes(),
            read_lease_ms: self.lease_left().map_or(0, |left| left.as_millis() as u64),
            voters: self.conf_state.voters.clone(),
            learners: self.conf_state.learners.clone(),
        }
    }
}

/// What an operator does with a node that lost the Raft state the cluster counted on it for.
pub(crate) fn how_to_replace(id: u64) -> String {
    format!(
        "Remove it from the cluster through another node (RAFT.NODE REMOVE {id}) and add a new member in \
         its place (an empty node started with --join, then RAFT.NODE ADD)"
    )
}

/// The configuration change a conf change entry carries (as a `ConfChangeV2`), or why it does
/// not decode; `None` for a normal entry.
fn conf_change_of(entry: &Entry) -> Option<std::result::Result<ConfChangeV2, String>> {
    let change = match entry.get_entry_type() {
        EntryType::EntryNormal => return None,
        EntryType::EntryConfChange => ConfChange::parse_from_bytes(&entry.data).map(conf_change_v2),
        EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&entry.data),
    };
    Some(change.map_err(|e| e.to_string()))
}

/// The single-change form of a (legacy) `ConfChange`.
fn conf_change_v2(cc: ConfChange) -> ConfChangeV2 {
    let mut single = ConfChangeSingle::default();
    single.set_change_type(cc.get_change_type());
    single.node_id = cc.node_id;
    let mut v2 = ConfChangeV2::default();
    v2.set_changes(vec![single].into());
    v2.context = cc.context;
    v2
}

/// Makes a Ready durable: first the snapshot it installs, then its entries and hard state.
async fn persist_ready(
    storage: Addr<Storage>,
    snapshot: Option<(SnapshotMetadata, Vec<Member>)>,
    entries: Vec<Entry>,
    hard_state: Option<raft::eraftpb::HardState>,
) -> Result<()> {
    if let Some((meta, members)) = snapshot {
        storage.send(InstallSnapshot { meta, members }).await?;
    }
    if !entries.is_empty() || hard_state.is_some() {
        storage.send(PersistReady { entries, hard_state }).await?.durable().await?;
    }
    Ok(())
}

impl Actor for RaftNode {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        info!(node = self.id, voters = ?self.conf_state.voters, "raft node started");
        self.schedule_tick(ctx);
    }
}

impl Handler<DriveReady> for RaftNode {
    type Result = ();

    /// Processes the pending Ready, if any.
    fn handle(&mut self, _: DriveReady, ctx: &mut Context<Self>) {
        self.drive_scheduled = false;
        self.on_ready(ctx);
    }
}

impl Handler<Propose> for RaftNode {
    type Result = Vec<Result<()>>;

    /// Appends the proposals to raft-rs (a follower forwards them to the leader).
    fn handle(&mut self, msg: Propose, ctx: &mut Context<Self>) -> Vec<Result<()>> {
        if self.raw.raft.leader_id == INVALID_ID {
            return vec![Err(Error::NoLeader); msg.0.len()];
        }
        let results = msg
            .0
            .into_iter()
            .map(|entry| {
                let origin = batch_origin(&entry.context)
                    .filter(|o| o.node == self.id && o.incarnation == self.incarnation);
                self.raw.propose(entry.context, entry.data).map_err(|e| {
                    debug!(node = self.id, error = %e, "proposal dropped");
                    Error::ProposalDropped
                })?;
                if let Some(origin) = origin {
                    let term = self.raw.raft.term;
                    self.proposed.push_back(ProposedBatch {
                        first_seq: origin.seq,
                        term,
                        at: Instant::now(),
                    });
                }
                Ok(())
            })
            .collect();
        self.schedule_drive(ctx);
        results
    }
}

impl Handler<ReadIndex> for RaftNode {
    type Result = ResponseFuture<Result<u64>>;

    /// Queues the read for the next read-index request.
    fn handle(&mut self, _: ReadIndex, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(index) = self.lease_read_index(ctx) {
            return Box::pin(async move { Ok(index) });
        }
        let (tx, rx) = oneshot::channel();
        self.new_reads.push(tx);
        self.schedule_drive(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(Error::Stopped)) })
    }
}

impl Handler<Step> for RaftNode {
    type Result = ();

    /// Steps a peer's message into raft-rs.
    fn handle(&mut self, mut msg: Step, ctx: &mut Context<Self>) {
        match msg.0.get_msg_type() {
            // Just started: this node may have promised a leader, before it restarted, not to
            // vote for a while (see `ReadLease`). A transfer's forced vote is the exception.
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
                if msg.0.context != CAMPAIGN_TRANSFER
                    && boot_time() < self.started + self.timing.election_tick_duration() =>
            {
                debug!(node = self.id, from = msg.0.from, "vote request ignored: just started");
                return;
            }
            // A follower's read-index request: under the lease it needs no round either.
            MessageType::MsgReadIndex if msg.0.from != self.id => {
                if let Some(index) = self.lease_read_index(ctx) {
                    let mut request = msg.0;
                    let mut reply = Message::default();
                    reply.set_msg_type(MessageType::MsgReadIndexResp);
                    (reply.to, reply.from, reply.term, reply.index) =
                        (request.from, self.id, self.raw.raft.term, index);
                    reply.set_entries(request.take_entries());
                    self.send(vec![reply]);
                    return;
                }
                // No lease: raft-rs confirms this request with a round, and a round of this
                // node's own alongside gives it the lease, which only its own rounds do. Else a
                // leader whose reads all come through followers would never hold one.
                if self.timing.read_lease && self.role == StateRole::Leader {
                    self.renew_lease = true;
                }
            }
            MessageType::MsgPropose => self.refuse_forwarded_changes(&mut msg.0),
            MessageType::MsgHeartbeat if msg.0.term >= self.raw.raft.term => {
                if let Some(lost) = self.lost_log(&msg.0) {
                    fatal("this node lost Raft state the cluster relies on", &lost);
                }
            }
            MessageType::MsgAppendResponse if msg.0.reject && self.role == StateRole::Leader => {
                if let Some(heartbeat) = self.answer_lost_log(&msg.0) {
                    self.send(vec![heartbeat]);
                    return;
                }
            }
            _ => {}
        }
        if let Err(e) = self.raw.step(msg.0) {
            debug!(node = self.id, error = %e, "peer message rejected");
        }
        self.schedule_drive(ctx);
    }
}

impl Handler<PeerUnreachable> for RaftNode {
    type Result = ();

    /// Lets raft-rs fall back to probing that peer.
    fn handle(&mut self, msg: PeerUnreachable, _: &mut Context<Self>) {
        self.raw.report_unreachable(msg.0);
    }
}

impl Handler<SnapshotReport> for RaftNode {
    type Result = ();

    /// Resumes replication to a peer after a snapshot was (or failed to be) delivered.
    fn handle(&mut self, msg: SnapshotReport, ctx: &mut Context<Self>) {
        let status = if msg.delivered { SnapshotStatus::Finish } else { SnapshotStatus::Failure };
        self.raw.report_snapshot(msg.to, status);
        self.schedule_drive(ctx);
    }
}

impl Handler<ChangeMembership> for RaftNode {
    type Result = ResponseFuture<Result<()>>;

    /// Proposes the change; the reply waits for it to be applied here.
    fn handle(&mut self, msg: ChangeMembership, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        match self.propose_membership(msg) {
            Ok(seq) => {
                let deadline = Instant::now() + self.timing.admin_timeout;
                let term = self.raw.raft.term;
                self.pending_changes.insert(seq, PendingChange { reply: tx, deadline, term });
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
        self.schedule_drive(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(Error::Stopped)) })
    }
}

impl RaftNode {
    /// Validates and proposes a membership change; returns its request number.
    fn propose_membership(&mut self, change: ChangeMembership) -> Result<u64> {
        if self.raw.raft.leader_id == INVALID_ID {
            return Err(Error::NoLeader);
        }
        // raft-rs would turn the change into an empty entry: say so now instead of timing out.
        // (A follower forwards it; the leader records its refusal in the log, for the follower
        // to answer: `refuse_forwarded_changes`.)
        if self.role == StateRole::Leader && self.raw.raft.has_pending_conf() {
            return Err(Error::ChangeInProgress);
        }
        let cs = &self.conf_state;
        let is_member = |id: u64| cs.voters.contains(&id) || cs.learners.contains(&id);
        let origin = Some((self.id, self.incarnation, self.next_change + 1));
        match change {
            ChangeMembership::Add(member) => {
                if member.id == 0 || is_member(member.id) {
                    return Err(Error::Invalid(format!("node {} is already a member", member.id)));
                }
                let id = member.id;
                self.propose_change(
                    ConfChangeType::AddLearnerNode,
                    id,
                    ConfChangeContext { origin, member: Some(member) },
                )?;
            }
            ChangeMembership::Remove(id) => {
                if !is_member(id) {
                    return Err(Error::Invalid(format!("node {id} is not a member")));
                }
                if cs.voters == [id] {
                    return Err(Error::Invalid("cannot remove the last voter".into()));
                }
                self.propose_change(
                    ConfChangeType::RemoveNode,
                    id,
                    ConfChangeContext { origin, member: None },
                )?;
            }
        }
        self.next_change += 1;
        Ok(self.next_change)
    }
}

impl Handler<TransferLeader> for RaftNode {
    type Result = ResponseFuture<Result<()>>;

    /// Starts a leadership transfer from this node, the leader.
    fn handle(&mut self, msg: TransferLeader, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let target = msg.0;
        if self.role != StateRole::Leader {
            let leader = self.raw.raft.leader_id;
            let msg = format!("node {} is not the leader (node {leader} is); ask the leader", self.id);
            let _ = tx.send(Err(Error::Invalid(msg)));
        } else if !self.conf_state.voters.contains(&target) {
            let _ = tx.send(Err(Error::Invalid(format!("node {target} is not a voter"))));
        } else if target == self.id {
            let _ = tx.send(Ok(()));
        } else {
            info!(node = self.id, target, "transferring leadership");
            self.raw.transfer_leader(target);
            self.transfers.push((target, tx, Instant::now() + self.timing.admin_timeout));
            self.schedule_drive(ctx);
        }
        Box::pin(async move { rx.await.unwrap_or(Err(Error::Stopped)) })
    }
}

impl Handler<Shutdown> for RaftNode {
    type Result = ResponseFuture<()>;

    /// Transfers leadership away before the process exits.
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        let target = (self.role == StateRole::Leader)
            .then(|| {
                let prs = self.raw.raft.prs();
                self.conf_state
                    .voters
                    .iter()
                    .copied()
                    .filter(|&id| id != self.id)
                    .max_by_key(|&id| prs.get(id).map_or(0, |pr| pr.matched))
            })
            .flatten();
        let Some(target) = target else { return Box::pin(async {}) };
        info!(node = self.id, target, "shutting down: handing leadership over first");
        let (tx, rx) = oneshot::channel();
        self.raw.transfer_leader(target);
        let deadline = Instant::now() + self.timing.election_tick_duration() * 2;
        self.transfers.push((target, tx, deadline));
        self.schedule_drive(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<GetMembers> for RaftNode {
    type Result = MessageResult<GetMembers>;

    /// The members and their progress.
    fn handle(&mut self, _: GetMembers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.member_statuses())
    }
}

impl Handler<GetStatus> for RaftNode {
    type Result = MessageResult<GetStatus>;

    /// A snapshot of the Raft state.
    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)] // raft-rs's protobuf messages are built field by field
mod tests {
    use super::*;
    use crate::command::{batch_context, Proposal, ReadQuery, RequestId, WriteOp, BATCH_CONTEXT};
    use crate::redis_store::Applied;
    use crate::resp::Frame;
    use crate::storage::Read;
    use bytes::Bytes;
    use std::sync::{Arc, Mutex};

    fn message_to(to: u64) -> Message {
        let mut m = Message::default();
        m.to = to;
        m
    }

    fn recipients(messages: &[Message]) -> Vec<u64> {
        messages.iter().map(|m| m.to).collect()
    }

    #[test]
    fn a_ready_answered_early_waits_for_the_earlier_ones_to_be_durable() {
        let mut queue = PersistQueue::default();
        queue.push_write(4, vec![message_to(40)]);
        // Ready 5 only moved the commit index: Storage answers it without a sync, while Ready
        // 4 still waits for its fsync. Neither counts as durable yet.
        queue.push_write(5, vec![message_to(50)]);
        assert_eq!(queue.written(5), (None, vec![]));
        // Ready 6 wrote nothing: its messages wait behind 4 and 5.
        assert!(queue.push_no_write(6, vec![message_to(60)]).is_empty());
        let (durable, messages) = queue.written(4);
        assert_eq!(durable, Some(6));
        assert_eq!(recipients(&messages), vec![40, 50, 60]);
        // With nothing waiting, a Ready that wrote nothing sends at once.
        assert_eq!(recipients(&queue.push_no_write(7, vec![message_to(70)])), vec![70]);
    }

    #[test]
    fn readies_answered_in_order_are_durable_one_by_one() {
        let mut queue = PersistQueue::default();
        queue.push_write(1, vec![message_to(10)]);
        queue.push_write(2, vec![]);
        let (durable, messages) = queue.written(1);
        assert_eq!((durable, recipients(&messages)), (Some(1), vec![10]));
        assert_eq!(queue.written(2), (Some(2), vec![]));
        queue.push_write(3, vec![message_to(30)]);
        assert_eq!(recipients(&queue.take_all()), vec![30]);
        assert_eq!(queue.written(3), (None, vec![]), "an answer after a snapshot install is a no-op");
    }

    /// Stands in for PeerTransport and RedisStore: records what RaftNode and Storage send.
    #[derive(Default, Clone)]
    struct Recorder {
        sent: Arc<Mutex<Vec<Message>>>,
        applied: Arc<Mutex<Vec<Applied>>>,
        /// What RaftNode said was committed, and how many applies had arrived by then.
        committed: Arc<Mutex<Vec<(Committed, usize)>>>,
    }

    impl Actor for Recorder {
        type Context = Context<Self>;
    }

    impl Handler<SendMessages> for Recorder {
        type Result = ();
        fn handle(&mut self, msg: SendMessages, _: &mut Context<Self>) {
            self.sent.lock().unwrap().extend(msg.0);
        }
    }

    impl Handler<UpdatePeers> for Recorder {
        type Result = ();
        fn handle(&mut self, _: UpdatePeers, _: &mut Context<Self>) {}
    }

    impl Handler<Committed> for Recorder {
        type Result = ();
        fn handle(&mut self, msg: Committed, _: &mut Context<Self>) {
            let applies = self.applied.lock().unwrap().len();
            self.committed.lock().unwrap().push((msg, applies));
        }
    }

    impl Handler<Applied> for Recorder {
        type Result = ();
        fn handle(&mut self, msg: Applied, _: &mut Context<Self>) {
            self.applied.lock().unwrap().push(msg);
        }
    }

    fn fast_timing() -> RaftTiming {
        RaftTiming {
            tick: Duration::from_millis(10),
            read_retry: Duration::from_millis(50),
            ..Default::default()
        }
    }

    struct TestNode {
        raft: Addr<RaftNode>,
        storage: Addr<Storage>,
        recorder: Recorder,
        incarnation: u64,
        store_id: u64,
        _dir: tempfile::TempDir,
    }

    fn start_node(voters: &[u64]) -> TestNode {
        start_node_with(voters, fast_timing())
    }

    fn start_node_with(voters: &[u64], timing: RaftTiming) -> TestNode {
        start_node_full(voters, timing, None)
    }

    /// `redis_addr`: the Redis address node 1 records in the address book for itself, with its
    /// store id. Without it, the book holds node 1's store id already (as after its first
    /// election), so node 1 proposes no address record, and a test's log holds what it proposed.
    fn start_node_full(voters: &[u64], timing: RaftTiming, redis_addr: Option<&str>) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let members: Vec<Member> = voters
            .iter()
            .map(|&id| Member { id, peer_addr: format!("127.0.0.1:{id}"), ..Default::default() })
            .collect();
        let (storage, mut recovered) = Storage::open(dir.path(), 1, &members, true).unwrap();
        if redis_addr.is_none() {
            recovered.members[0].store_id = recovered.store_id;
        }
        let recorder = Recorder::default();
        let rec = recorder.clone().start();
        let storage = crate::mailbox::start(storage.with_applied_sink(rec.clone().recipient()));
        let (incarnation, store_id) = (recovered.incarnation, recovered.store_id);
        let node = RaftNode::new(
            1,
            recovered,
            timing,
            storage.clone(),
            rec.clone().recipient(),
            rec.clone().recipient(),
        )
        .unwrap()
        .with_committed_sink(rec.recipient());
        let node = match redis_addr {
            Some(addr) => node.with_redis_addr(addr.to_owned()),
            None => node,
        };
        TestNode { raft: crate::mailbox::start(node), storage, recorder, incarnation, store_id, _dir: dir }
    }

    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[actix_rt::test]
    async fn a_single_node_elects_itself_commits_applies_and_confirms_reads() {
        let node = start_node(&[1]);
        wait_for_leader(&node).await;
        let op = WriteOp::Set { key: Bytes::from_static(b"k"), value: Bytes::from_static(b"v") };
        let origin = RequestId { node: 1, incarnation: node.incarnation, seq: 42 };
        let proposal = Proposal { origin, now_ms: 0, op };
        let data = Proposal::encode_batch([proposal.encode().as_slice()].into_iter());
        let entry = BatchEntry { context: batch_context(origin), data };
        node.raft.send(Propose(vec![entry])).await.unwrap().pop().unwrap().unwrap();
        let applied = node.recorder.applied.clone();
        wait_for("the proposal to be applied", || {
            applied.lock().unwrap().iter().any(|a| a.replies.iter().any(|(seq, _)| *seq == 42))
        })
        .await;
        // RaftNode named the batch as committed, by its first write, before it was applied.
        let committed = node.recorder.committed.lock().unwrap().clone();
        assert_eq!(committed.len(), 1, "{committed:?}");
        assert_eq!(committed[0].0, Committed { batches: vec![42], lost: vec![] });
        let applies_before = committed[0].1;
        let applied_42_at =
            applied.lock().unwrap().iter().position(|a| a.replies.iter().any(|(s, _)| *s == 42));
        assert!(
            applied_42_at.is_some_and(|at| at >= applies_before),
            "committed after the apply: {committed:?}"
        );
        let index = node.raft.send(ReadIndex).await.unwrap().unwrap();
        let applied_index = applied.lock().unwrap().iter().map(|a| a.index).max().unwrap();
        assert!(index >= 2 && index <= applied_index, "read index {index}, applied {applied_index}");
        let value = node
            .storage
            .send(Read(vec![ReadQuery::Get(Bytes::from_static(b"k"))]))
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(value, Frame::bulk("v"));
        assert!(node.recorder.sent.lock().unwrap().is_empty(), "a single node sends nothing");
    }

    #[actix_rt::test]
    async fn a_log_of_few_large_entries_is_compacted_by_its_size() {
        // Far fewer entries than `compact_after`, but over `compact_after_bytes`.
        let timing = RaftTiming { compact_after: 1_000_000, compact_after_bytes: 64 << 10, ..fast_timing() };
        let node = start_node_with(&[1], timing);
        wait_for_leader(&node).await;
        let value = Bytes::from(vec![b'v'; 4 << 10]);
        for seq in 1..=40u64 {
            let op = WriteOp::Set { key: Bytes::from(format!("k{seq}")), value: value.clone() };
            let proposal =
                Proposal { origin: RequestId { node: 1, incarnation: node.incarnation, seq }, now_ms: 0, op };
            let data = Proposal::encode_batch([proposal.encode().as_slice()].into_iter());
            let entry = BatchEntry { context: BATCH_CONTEXT.to_vec(), data };
            node.raft.send(Propose(vec![entry])).await.unwrap().pop().unwrap().unwrap();
        }
        let applied = node.recorder.applied.clone();
        wait_for("every proposal to be applied", || {
            applied
                .lock()
                .unwrap()
                .iter()
                .flat_map(|a| &a.replies)
                .filter(|(seq, _)| (1..=40).contains(seq))
                .count()
                == 40
        })
        .await;
        let status = node.raft.send(GetStatus).await.unwrap();
        assert!(status.log_first_index > 20, "the log was not compacted: {status:?}");
        // 160 KiB went through the log; what it holds now (what the last compaction kept, at
        // most an eighth of the bound, plus what was applied since) stays under the bound.
        // Where exactly the last compaction fell depends on how the applies were grouped.
        assert!(status.log_bytes < 64 << 10, "{status:?}");
        let first = node.storage.send(Read(vec![ReadQuery::Get(Bytes::from_static(b"k1"))])).await.unwrap();
        assert_eq!(first, vec![Frame::Bulk(value)], "compaction keeps the applied data");
    }

    /// As leader, node 1 appends a SET entry for each of `seqs`; once it has sent node 2 the log
    /// up to `last`, node 2 acknowledges it, and the entries are applied.
    async fn append_acked_by_2(
        node: &TestNode,
        seqs: std::ops::RangeInclusive<u64>,
        last: u64,
    ) -> RaftStatus {
        for seq in seqs {
            node.raft.send(Propose(vec![set_batch(node, seq, "k")])).await.unwrap().pop().unwrap().unwrap();
        }
        let sent = node.recorder.sent.clone();
        wait_for("node 1 to send node 2 its whole log", || {
            sent.lock().unwrap().iter().any(|m| {
                m.to == 2
                    && m.get_msg_type() == MessageType::MsgAppend
                    && m.index + m.entries.len() as u64 == last
            })
        })
        .await;
        ack_as(node, 2, last).await;
        status_once(node, |s| s.applied_index >= last).await
    }

    /// Node 1's status, once `done` holds for it.
    async fn status_once(node: &TestNode, done: impl Fn(&RaftStatus) -> bool) -> RaftStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = node.raft.send(GetStatus).await.unwrap();
            if done(&status) {
                return status;
            }
            assert!(Instant::now() < deadline, "timed out; last status {status:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Node `from` (played by the test) tells leader node 1 that it holds its log up to `index`.
    async fn ack_as(node: &TestNode, from: u64, index: u64) {
        let term = node.raft.send(GetStatus).await.unwrap().term;
        let mut ack = Message::default();
        ack.set_msg_type(MessageType::MsgAppendResponse);
        (ack.from, ack.to, ack.term, ack.index) = (from, 1, term, index);
        node.raft.send(Step(ack)).await.unwrap();
    }

    #[actix_rt::test]
    async fn a_leader_waits_to_compact_for_a_follower_the_log_can_still_catch_up() {
        let timing = RaftTiming { compact_after: 10, compact_keep: 2, election_ticks: 200, ..fast_timing() };
        let node = start_node_with(&[1, 2, 3], timing);
        // Node 2 votes and acknowledges; node 3 says nothing: it matches nothing yet.
        lead_with_node_2_played(&node).await;
        // Entry 1 is the leader's empty one, entries 2..=16 the SETs.
        let status = append_acked_by_2(&node, 1..=15, 16).await;
        assert_eq!(status.log_first_index, 1, "compacted past node 3's next entry: {status:?}");

        // Node 3 catches up: the compaction (to 2 entries below the applied index) goes ahead.
        ack_as(&node, 3, 16).await;
        let status = status_once(&node, |s| s.log_first_index > 1).await;
        assert_eq!(status.log_first_index, 15, "{status:?}");

        // Node 3 falls silent at 16. Past one compaction interval the leader still waits...
        let status = append_acked_by_2(&node, 16..=29, 30).await;
        assert_eq!(status.log_first_index, 15, "compacted past node 3's next entry: {status:?}");
        // ... but not past two (34): a log that long is better replaced by a snapshot. Where it
        // compacts depends on how far the commit had got then (the leader's own writes are
        // durable in their own time).
        let status = append_acked_by_2(&node, 30..=40, 41).await;
        assert!(status.log_first_index > 17, "the log kept growing for node 3: {status:?}");
    }

    #[actix_rt::test]
    async fn a_follower_that_lost_what_it_acknowledged_is_told_so_instead_of_sent_the_log_again() {
        let node = start_node_with(&[1, 2], RaftTiming { election_ticks: 200, ..fast_timing() });
        lead_with_node_2_played(&node).await;
        append_acked_by_2(&node, 1..=5, 6).await;
        // Two more appends go out (7, then 8); node 2, emptied meanwhile, rejects the second:
        // its log ends at 0.
        for (seq, last) in [(6, 7), (7, 8)] {
            let after = node.recorder.sent.lock().unwrap().len();
            node.raft.send(Propose(vec![set_batch(&node, seq, "k")])).await.unwrap().pop().unwrap().unwrap();
            let append = next_sent(&node, after, MessageType::MsgAppend).await;
            assert_eq!(append.index + append.entries.len() as u64, last);
        }
        let term = node.raft.send(GetStatus).await.unwrap().term;
        let after = node.recorder.sent.lock().unwrap().len();
        for rejected in [7, 6] {
            let mut rejection = from_2(MessageType::MsgAppendResponse, term);
            (rejection.reject, rejection.index, rejection.reject_hint) = (true, rejected, 0);
            node.raft.send(Step(rejection)).await.unwrap();
        }
        let heartbeat = next_sent(&node, after, MessageType::MsgHeartbeat).await;
        assert_eq!(heartbeat.commit, 6, "the heartbeat counts what node 2 acknowledged");
        // raft-rs would have probed back to node 2's hint and sent it the log from the start.
        node.raft.send(Propose(vec![set_batch(&node, 8, "k")])).await.unwrap().pop().unwrap().unwrap();
        let sent = node.recorder.sent.clone();
        let appends = || -> Vec<(u64, u64)> {
            let sent = sent.lock().unwrap();
            let appends = sent[after..].iter().filter(|m| m.get_msg_type() == MessageType::MsgAppend);
            appends.map(|m| (m.index, m.index + m.entries.len() as u64)).collect()
        };
        wait_for("the append of entry 9", || appends().iter().any(|&(_, last)| last == 9)).await;
        assert!(appends().iter().all(|&(from, _)| from >= 6), "the log sent again: {:?}", appends());
    }

    /// A SET of `key` as this node's batch `seq`.
    fn set_batch(node: &TestNode, seq: u64, key: &'static str) -> BatchEntry {
        let op = WriteOp::Set { key: Bytes::from_static(key.as_bytes()), value: Bytes::from_static(b"v") };
        let origin = RequestId { node: 1, incarnation: node.incarnation, seq };
        let data =
            Proposal::encode_batch([Proposal { origin, now_ms: 0, op }.encode().as_slice()].into_iter());
        BatchEntry { context: batch_context(origin), data }
    }

    /// What node 2, the leader, would send node 1: `entries` after (`index`, `log_term`), and
    /// its commit index.
    fn append_from_2(term: u64, index: u64, log_term: u64, entries: Vec<Entry>, commit: u64) -> Step {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        (m.from, m.to, m.term, m.index, m.log_term, m.commit) = (2, 1, term, index, log_term, commit);
        m.set_entries(entries.into());
        Step(m)
    }

    fn entry(term: u64, index: u64, batch: Option<BatchEntry>) -> Entry {
        let mut e = Entry::default();
        (e.term, e.index) = (term, index);
        if let Some(batch) = batch {
            (e.context, e.data) = (batch.context.into(), batch.data.into());
        }
        e
    }

    /// A message from node 2 (played by the test) to node 1.
    fn from_2(kind: MessageType, term: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(kind);
        (m.from, m.to, m.term) = (2, 1, term);
        m
    }

    /// Waits for node 1 to send node 2 a message of `kind` that `sent` did not hold before
    /// position `after`, and returns it.
    async fn next_sent(node: &TestNode, after: usize, kind: MessageType) -> Message {
        let sent = node.recorder.sent.clone();
        let found = || sent.lock().unwrap()[after..].iter().find(|m| m.get_msg_type() == kind).cloned();
        wait_for(&format!("node 1 to send {kind:?}"), || found().is_some()).await;
        found().unwrap()
    }

    /// A node 1 that follows node 2, played by the test, in term 1, with the first entry
    /// applied. It never campaigns.
    async fn follow_node_2_played() -> TestNode {
        let node = start_node_with(&[1, 2], RaftTiming { election_ticks: 10_000, ..fast_timing() });
        node.raft.send(append_from_2(1, 0, 0, vec![entry(1, 1, None)], 1)).await.unwrap();
        status_once(&node, |s| s.leader_id == 2 && s.applied_index >= 1).await;
        node
    }

    /// Makes node 1 the leader in term 1, with its first entry committed, once its election
    /// timer fires: node 2, played by the test, votes for it and acknowledges that entry (a
    /// quorum with node 1 of two or three voters).
    async fn lead_with_node_2_played(node: &TestNode) {
        let pre_vote = next_sent(node, 0, MessageType::MsgRequestPreVote).await;
        node.raft.send(Step(from_2(MessageType::MsgRequestPreVoteResponse, pre_vote.term))).await.unwrap();
        let vote = next_sent(node, 0, MessageType::MsgRequestVote).await;
        node.raft.send(Step(from_2(MessageType::MsgRequestVoteResponse, vote.term))).await.unwrap();
        let append = next_sent(node, 0, MessageType::MsgAppend).await;
        ack_as(node, 2, append.index + append.entries.len() as u64).await;
        status_once(node, |s| s.role == "leader" && s.commit_index >= 1).await;
    }

    /// A ReadIndex that node 1 must answer alone: node 2 answers nothing meanwhile.
    async fn read_under_lease(node: &TestNode) -> u64 {
        node.raft.send(ReadIndex).await.unwrap().expect("answered without a round")
    }

    /// A ReadIndex that must wait for node 2 to confirm a heartbeat round.
    async fn read_with_round(node: &TestNode) -> u64 {
        use futures::FutureExt as _;
        let after = node.recorder.sent.lock().unwrap().len();
        let mut read = Box::pin(node.raft.send(ReadIndex));
        let sent = node.recorder.sent.clone();
        let round = || {
            let sent = sent.lock().unwrap();
            sent[after..]
                .iter()
                .find(|m| m.get_msg_type() == MessageType::MsgHeartbeat && !m.context.is_empty())
                .cloned()
        };
        wait_for("a heartbeat round", || round().is_some()).await;
        assert!((&mut read).now_or_never().is_none(), "answered before node 2 confirmed");
        let heartbeat = round().unwrap();
        let mut ack = from_2(MessageType::MsgHeartbeatResponse, heartbeat.term);
        ack.context = heartbeat.context.clone();
        node.raft.send(Step(ack)).await.unwrap();
        read.await.unwrap().unwrap()
    }

    #[actix_rt::test]
    async fn a_confirmed_read_round_lets_the_leader_answer_reads_alone_until_a_transfer() {
        // An election timeout of 2 s: a lease of 1 s, ample for the reads below.
        let timing = RaftTiming { tick: Duration::from_millis(10), election_ticks: 200, ..fast_timing() };
        let node = start_node_with(&[1, 2], timing);
        lead_with_node_2_played(&node).await;
        assert_eq!(read_with_round(&node).await, 1, "the first read takes a round");
        assert_eq!(read_under_lease(&node).await, 1, "the next one is answered under the lease");
        // A transfer's target may be elected without node 2's promise: no lease in this term.
        let _transfer = node.raft.send(TransferLeader(2));
        assert_eq!(read_with_round(&node).await, 1, "after a transfer started, a round again");
        assert_eq!(read_with_round(&node).await, 1, "and no lease for the rest of the term");
    }

    #[actix_rt::test]
    async fn reads_that_only_followers_forward_also_give_the_leader_a_lease() {
        let timing = RaftTiming { tick: Duration::from_millis(10), election_ticks: 200, ..fast_timing() };
        let node = start_node_with(&[1, 2], timing);
        lead_with_node_2_played(&node).await;
        let term = node.raft.send(GetStatus).await.unwrap().term;
        let forwarded = |ctx: &[u8]| {
            let mut request = from_2(MessageType::MsgReadIndex, term);
            let mut entry = Entry::default();
            entry.data = ctx.to_vec().into();
            request.set_entries(vec![entry].into());
            Step(request)
        };
        let sent = node.recorder.sent.clone();
        let rounds_after = |after: usize| -> Vec<Message> {
            let sent = sent.lock().unwrap();
            let round = |m: &&Message| m.get_msg_type() == MessageType::MsgHeartbeat && !m.context.is_empty();
            sent[after..].iter().filter(round).cloned().collect()
        };

        // No lease yet: node 2's request takes a round, and the leader starts one of its own.
        let after = sent.lock().unwrap().len();
        node.raft.send(forwarded(b"first")).await.unwrap();
        wait_for("two heartbeat rounds", || rounds_after(after).len() >= 2).await;
        for heartbeat in rounds_after(after) {
            let mut ack = from_2(MessageType::MsgHeartbeatResponse, heartbeat.term);
            ack.context = heartbeat.context.clone();
            node.raft.send(Step(ack)).await.unwrap();
        }
        let answer = next_sent(&node, after, MessageType::MsgReadIndexResp).await;
        assert_eq!(answer.entries[0].data.as_ref(), b"first");
        assert!(node.raft.send(GetStatus).await.unwrap().read_lease_ms > 0, "the leader holds a lease");

        // Under it, the next forwarded request is answered at once, without a round.
        let after = sent.lock().unwrap().len();
        node.raft.send(forwarded(b"second")).await.unwrap();
        let answer = next_sent(&node, after, MessageType::MsgReadIndexResp).await;
        assert_eq!(answer.entries[0].data.as_ref(), b"second");
        assert!(rounds_after(after).is_empty(), "no round for a read under the lease");
    }

    #[actix_rt::test]
    async fn a_members_redis_address_is_recorded_through_the_log_without_blocking_a_membership_change() {
        let node = start_node_full(&[1, 2], fast_timing(), Some("127.0.0.1:6391"));
        lead_with_node_2_played(&node).await;
        // Node 1 proposes its Redis address ...
        let sent = node.recorder.sent.clone();
        let carries_address = |e: &Entry| {
            [&e.data[..], &e.context[..]].iter().any(|b| b.windows(14).any(|w| w == b"127.0.0.1:6391"))
        };
        let record_sent = || {
            let sent = sent.lock().unwrap();
            sent.iter()
                .any(|m| m.get_msg_type() == MessageType::MsgAppend && m.entries.iter().any(carries_address))
        };
        wait_for("node 1 to send its address record", record_sent).await;
        // ... and a membership change proposed while that is uncommitted is not dropped
        // (raft-rs drops a conf change while another one is pending).
        let after = node.recorder.sent.lock().unwrap().len();
        let member = Member {
            id: 3,
            peer_addr: "127.0.0.1:3".into(),
            redis_addr: "127.0.0.1:6393".into(),
            store_id: 0,
        };
        let change = node.raft.send(ChangeMembership::Add(member));
        // One change at a time: another one, asked meanwhile, is refused at once.
        let other = Member { id: 4, peer_addr: "127.0.0.1:4".into(), ..Default::default() };
        let refused = node.raft.send(ChangeMembership::Add(other)).await.unwrap();
        assert!(matches!(refused, Err(Error::ChangeInProgress)), "{refused:?}");
        let append = next_sent(&node, after, MessageType::MsgAppend).await;
        let mut ack = from_2(MessageType::MsgAppendResponse, append.term);
        ack.index = append.index + append.entries.len() as u64;
        node.raft.send(Step(ack)).await.unwrap();
        change.await.unwrap().expect("the membership change was applied");
        let members = node.raft.send(GetMembers).await.unwrap();
        let redis = |id| members.iter().find(|s| s.member.id == id).map(|s| s.member.redis_addr.clone());
        assert_eq!(redis(1).as_deref(), Some("127.0.0.1:6391"), "{members:?}");
        assert_eq!(redis(3).as_deref(), Some("127.0.0.1:6393"), "{members:?}");
        // The record carried node 1's store id too; node 3's is known once it records it.
        let store = |id| members.iter().find(|s| s.member.id == id).map(|s| s.member.store_id);
        assert_eq!((store(1), store(3)), (Some(node.store_id), Some(0)), "{members:?}");
    }

    /// A membership change as a follower forwards it: a proposal of one conf change entry.
    fn forwarded_change(origin: (u64, u64, u64)) -> Message {
        let mut single = ConfChangeSingle::default();
        single.set_change_type(ConfChangeType::RemoveNode);
        single.node_id = 2;
        let mut cc = ConfChangeV2::default();
        cc.set_changes(vec![single].into());
        cc.context = ConfChangeContext { origin: Some(origin), member: None }.encode().into();
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryConfChangeV2);
        e.data = cc.write_to_bytes().unwrap().into();
        let mut m = from_2(MessageType::MsgPropose, 0);
        m.set_entries(vec![e].into());
        m
    }

    #[actix_rt::test]
    async fn a_change_forwarded_while_another_is_pending_is_refused_through_the_log() {
        let node = start_node(&[1, 2]);
        lead_with_node_2_played(&node).await;
        // Node 1's own change stays pending: node 2 does not acknowledge it.
        let after = node.recorder.sent.lock().unwrap().len();
        let member = Member { id: 3, peer_addr: "127.0.0.1:3".into(), ..Default::default() };
        let _pending = node.raft.send(ChangeMembership::Add(member));
        next_sent(&node, after, MessageType::MsgAppend).await;
        // Node 2 forwards a change of its own: the leader appends the record of its refusal.
        let after = node.recorder.sent.lock().unwrap().len();
        node.raft.send(Step(forwarded_change((2, 7, 1)))).await.unwrap();
        let append = next_sent(&node, after, MessageType::MsgAppend).await;
        let [record] = append.get_entries() else { panic!("one entry: {:?}", append.entries) };
        assert_eq!(record.get_entry_type(), EntryType::EntryNormal, "not a conf change any more");
        let refused = refused_change(&record.context, &record.data).expect("a refused change record");
        assert_eq!(refused.origin, Some((2, 7, 1)), "it names the follower's request");
    }

    #[actix_rt::test]
    async fn a_follower_answers_a_change_the_leader_refused_at_once() {
        let node = follow_node_2_played().await;
        let member = Member { id: 3, peer_addr: "127.0.0.1:3".into(), ..Default::default() };
        let change = node.raft.send(ChangeMembership::Add(member));
        let sent = node.recorder.sent.clone();
        let forwarded = || {
            let sent = sent.lock().unwrap();
            let propose = sent.iter().find(|m| m.get_msg_type() == MessageType::MsgPropose)?;
            Some(ConfChangeV2::parse_from_bytes(&propose.entries[0].data).unwrap().context)
        };
        wait_for("the change forwarded to node 2", || forwarded().is_some()).await;
        // Node 2 had a change of its own pending: it commits the record of this one's refusal.
        let mut record = entry(1, 2, None);
        (record.context, record.data) = (REFUSED_CHANGE_CONTEXT.to_vec().into(), forwarded().unwrap());
        node.raft.send(append_from_2(1, 1, 1, vec![record], 2)).await.unwrap();
        let answer = change.await.unwrap();
        assert!(matches!(answer, Err(Error::ChangeInProgress)), "{answer:?}");
        // Storage skipped the record (it is not a batch of writes) and went on.
        status_once(&node, |s| s.applied_index >= 2).await;
    }

    /// The entries of the newest membership change node 1 forwarded to node 2, once it has.
    async fn forwarded_change_entries(node: &TestNode, after: usize) -> Vec<Entry> {
        next_sent(node, after, MessageType::MsgPropose).await.entries.into_vec()
    }

    #[actix_rt::test]
    async fn a_change_overtaken_by_a_newer_terms_commit_is_answered_at_once_not_at_the_timeout() {
        let node = follow_node_2_played().await;
        let add = |id: u64| {
            ChangeMembership::Add(Member { id, peer_addr: format!("127.0.0.1:{id}"), ..Default::default() })
        };
        let lost = node.raft.send(add(3));
        forwarded_change_entries(&node, 0).await;
        // Node 2 was deposed before it appended the change; the next leader (played by the
        // test as node 2 again) commits the first entry of term 2.
        node.raft.send(append_from_2(2, 1, 1, vec![entry(2, 2, None)], 2)).await.unwrap();
        let answer = lost.await.unwrap();
        assert!(matches!(answer, Err(Error::ChangeLost)), "{answer:?}");

        // A change of term 2 committed together with the first entry of term 3 is applied,
        // and answered so, not reported lost.
        let after = node.recorder.sent.lock().unwrap().len();
        let kept = node.raft.send(add(4));
        let [mut change] = forwarded_change_entries(&node, after).await.try_into().unwrap();
        (change.term, change.index) = (2, 3);
        node.raft.send(append_from_2(3, 2, 2, vec![change, entry(3, 4, None)], 4)).await.unwrap();
        let answer = kept.await.unwrap();
        assert!(answer.is_ok(), "{answer:?}");
        status_once(&node, |s| s.applied_index >= 4).await;
    }

    #[actix_rt::test]
    async fn a_node_answers_no_vote_request_for_an_election_timeout_after_it_starts() {
        let timing = fast_timing();
        let window = timing.election_tick_duration();
        let node = start_node_with(&[1, 2], timing);
        let window_ends = boot_time() + window; // at or after the node's own
        let term = || async { node.raft.send(GetStatus).await.unwrap().term };
        node.raft.send(Step(from_2(MessageType::MsgRequestVote, 5))).await.unwrap();
        assert_eq!(term().await, 0, "a vote request right after the start is ignored");
        // The condition here is time itself: the window is one election timeout long.
        tokio::time::sleep(window_ends.saturating_sub(boot_time())).await;
        node.raft.send(Step(from_2(MessageType::MsgRequestVote, 5))).await.unwrap();
        assert_eq!(term().await, 5, "after the window the request is heard");
        next_sent(&node, 0, MessageType::MsgRequestVoteResponse).await;
    }

    #[actix_rt::test]
    async fn a_forwarded_batch_overtaken_by_a_newer_terms_commit_is_reported_lost() {
        let node = follow_node_2_played().await;
        // Two batches, forwarded to node 2 in term 1.
        for (seq, key) in [(7, "lost"), (8, "kept")] {
            node.raft.send(Propose(vec![set_batch(&node, seq, key)])).await.unwrap().pop().unwrap().unwrap();
        }
        let sent = node.recorder.sent.clone();
        wait_for("both batches forwarded to node 2", || {
            sent.lock()
                .unwrap()
                .iter()
                .filter(|m| m.get_msg_type() == MessageType::MsgPropose && m.to == 2)
                .count()
                == 2
        })
        .await;
        // Node 2 commits batch 8 in term 1; batch 7 never reached it.
        let kept = entry(1, 2, Some(set_batch(&node, 8, "kept")));
        node.raft.send(append_from_2(1, 1, 1, vec![kept], 2)).await.unwrap();
        let committed = node.recorder.committed.clone();
        wait_for("batch 8 committed", || !committed.lock().unwrap().is_empty()).await;
        assert_eq!(committed.lock().unwrap()[0].0, Committed { batches: vec![8], lost: vec![] });
        // A new term's leader commits its first entry: batch 7, proposed in term 1 and not
        // committed before it, can no longer be.
        node.raft.send(append_from_2(2, 2, 1, vec![entry(2, 3, None)], 3)).await.unwrap();
        wait_for("batch 7 reported lost", || committed.lock().unwrap().len() == 2).await;
        assert_eq!(committed.lock().unwrap()[1].0, Committed { batches: vec![], lost: vec![7] });
    }

    async fn wait_for_leader(node: &TestNode) {
        status_once(node, |s| s.role == "leader").await;
    }

    #[actix_rt::test]
    async fn without_a_quorum_proposals_and_reads_fail_instead_of_hanging() {
        // Node 2 never answers: node 1 can never win an election.
        let node = start_node(&[1, 2]);
        let sent = node.recorder.sent.clone();
        wait_for("a (pre-)vote request to node 2", || sent.lock().unwrap().iter().any(|m| m.to == 2)).await;
        let entry = BatchEntry { context: BATCH_CONTEXT.to_vec(), data: vec![1, 2, 3] };
        let proposal = node.raft.send(Propose(vec![entry])).await.unwrap().pop().unwrap();
        assert!(matches!(proposal, Err(Error::NoLeader)), "{proposal:?}");
        let read = node.raft.send(ReadIndex).await.unwrap();
        assert!(matches!(read, Err(Error::NoLeader)), "{read:?}");
        assert_eq!(node.raft.send(GetStatus).await.unwrap().leader_id, 0);
    }
}
