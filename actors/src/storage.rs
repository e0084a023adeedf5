//! Storage is an actor. It owns the RocksDB database, and nothing else touches it.
//!
//! It runs on its own arbiter (thread), so an fsync never stalls the sessions and the Raft loop,
//! and it syncs on yet another thread ([`WalSyncer`]), so applies and reads go on during an
//! fsync. Its mailbox is the ordering guarantee the rest of the node relies on: a Ready's
//! [`PersistReady`] is written before any later one, an [`ApplyCommitted`] only carries entries
//! that an earlier, already durable Ready persisted, and RedisStore reads ([`Read`]) only after
//! an [`Applied`] notification says the data it needs is there.
//!
//! Column families:
//! - `raft_log`: entry index (u64 big-endian) → protobuf `Entry`
//! - `raft_state`: `hard_state` and `conf_state` (protobuf), `members` (the address book)
//! - `kv`: the user data (see [`crate::keyspace`])
//! - `meta`: `applied_index`, `key_count`, `expires_count`, `incarnation`, `store_id`, `kv_layout`, the compaction point
//!   (`snapshot_index`, `snapshot_term`) and the markers of a snapshot being received or
//!   installed
//!
//! Durability rules: the entries and hard state of one Ready are one `WriteBatch`; the reply to
//! its `PersistReady` waits for a sync of the write-ahead log that covers it (one fsync for all
//! the Readies written while the previous one ran: group commit). A Ready whose only change is
//! the commit index is not synced: it is learnt again from the leader after a crash. The kv
//! changes of a batch of committed entries (each entry carrying the proposals of one turn of
//! RedisStore), the new applied index and a commit index covering them are one atomic
//! `WriteBatch`, so a restart resumes exactly at the applied index and never finds
//! applied > commit.
//!
//! Snapshots: a leader sends a follower a RocksDB checkpoint (hard links, taken between two
//! messages, so the keyspace matches the applied index recorded next to it), read back in
//! bounded chunks by [`stream_checkpoint`]. A follower writes incoming chunks to a staging file
//! and installs it when raft-rs hands it the snapshot: the `kv` column family is replaced and
//! the applied index, membership and compaction point move to the snapshot in one synced batch.
//! An `installing` marker written first makes an interrupted install resume at the next start.
//!
//! Failures: a write that fails stops the node ([`fatal`]) on Storage's own thread, at once, with
//! RocksDB's reason. A failed sync is reported back to Storage ([`SyncFailed`]) rather than where
//! it surfaced: a failed write leaves RocksDB's log writer failed, so the syncs after it fail too
//! ("Writer has previous error"), and going through the mailbox lets the write that failed first
//! be the one the node names.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use actix::prelude::*;
use bytes::Bytes;
use protobuf::Message as PbMessage;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, SnapshotMetadata};
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{ColumnFamilyDescriptor, FlushOptions, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use tokio::sync::oneshot;
use tracing::{error, info};

use crate::command::{Proposal, ReadQuery};
use crate::error::{Error, Result};
use crate::keyspace::{self, ApplyBatch, KeyCounts, CF_KV};
use crate::membership::{decode_members, encode_members, is_membership_record, Member};
use crate::redis_store::Applied;
use crate::resp::Frame;
use crate::telemetry;

const CF_RAFT_LOG: &str = "raft_log";
const CF_RAFT_STATE: &str = "raft_state";
const CF_META: &str = "meta";
const COLUMN_FAMILIES: [&str; 4] = [CF_RAFT_LOG, CF_RAFT_STATE, CF_KV, CF_META];

const KEY_HARD_STATE: &[u8] = b"hard_state";
const KEY_CONF_STATE: &[u8] = b"conf_state";
const KEY_MEMBERS: &[u8] = b"members";
const KEY_APPLIED: &[u8] = b"applied_index";
const KEY_KEY_COUNT: &[u8] = b"key_count";
/// How many keys have an expiry; absent in data directories from before it was kept.
const KEY_EXPIRES_COUNT: &[u8] = b"expires_count";
const KEY_INCARNATION: &[u8] = b"incarnation";
/// The store id: random, chosen once when the data directory is first opened (see
/// [`crate::membership`]).
const KEY_STORE_ID: &[u8] = b"store_id";
/// How the `kv` family lays keys out: [`KV_LAYOUT`]. Absent in a data directory written before
/// keys were ordered by position, which this version cannot read.
const KEY_KV_LAYOUT: &[u8] = b"kv_layout";
/// Keys prefixed by their position in the keyspace's order (see [`crate::keyspace`]); since
/// layout 2, long lists, large hashes and large sets stored in parts after every key; since
/// layout 3, large sorted sets too. An earlier layout is read as it is, and marked as this one
/// at start, so that an earlier version refuses the data once it may hold what it cannot read.
const KV_LAYOUT: u64 = 3;
/// The layouts before, which this version reads: 1 (no parts) and 2 (no sorted sets in parts).
const KV_LAYOUTS_READ: [u64; 2] = [1, 2];
const KEY_SNAPSHOT_INDEX: &[u8] = b"snapshot_index";
const KEY_SNAPSHOT_TERM: &[u8] = b"snapshot_term";
/// The (index, term) of a completely received snapshot waiting in the staging file.
const KEY_STAGED: &[u8] = b"staged_snapshot";
/// The metadata of a snapshot whose installation has started and not finished.
const KEY_INSTALLING: &[u8] = b"installing_snapshot";
/// Sorts after every 8-byte log key: the end of a range that covers the whole log.
const LOG_END: [u8; 9] = [0xff; 9];
/// The size of one snapshot chunk on the wire.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// How many table files RocksDB keeps open at once (its table cache; RocksDB's default keeps
/// every one open). Bounded, so that the descriptors a node keeps for itself
/// ([`crate::RESERVED_FDS`]) hold however large the data grows, and a flood of client
/// connections cannot leave RocksDB without one for a new file (such a failed write stops the
/// node).
pub const MAX_OPEN_TABLE_FILES: i32 = 256;

/// The same bound for a checkpoint read while it is sent as a snapshot: it is read in key order,
/// a few files at a time.
const CHECKPOINT_OPEN_FILES: i32 = 32;

/// Persist the entries and hard state of one Ready, durably (fsync) when they hold entries, a
/// new term or a vote, before anything that depends on them is sent or acknowledged. Sent by
/// RaftNode; replies once the write is done, with what its durability waits for. A failed write
/// stops the node.
#[derive(Message)]
#[rtype(result = "Durability")]
pub struct PersistReady {
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
}

/// What a written Ready waits for to be durable. The sync thread answers whoever awaits
/// [`Durability::durable`] directly: the answer does not pass through Storage's thread, which
/// would be one more thread to wake on the way of every write.
#[derive(Debug)]
pub enum Durability {
    /// Nothing: it needed no sync of its own (a commit index alone, or `--fsync everysec`).
    Written,
    /// The sync of the write-ahead log that covers it.
    Syncing(oneshot::Receiver<Result<()>>),
}

impl Durability {
    /// Resolves once the Ready is durable (as far as its kind needs to be).
    pub async fn durable(self) -> Result<()> {
        match self {
            Durability::Written => Ok(()),
            Durability::Syncing(synced) => synced.await.unwrap_or(Err(Error::Stopped)),
        }
    }
}

/// Apply committed entries to the keyspace. Sent by RaftNode after the Ready that committed
/// them is persisted. Storage answers by sending [`Applied`] to RedisStore; a failure stops the
/// node.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyCommitted {
    pub entries: Vec<Entry>,
    /// The membership after these entries, when they contain a configuration change.
    pub conf_state: Option<ConfState>,
    /// The address book after these entries, when it changed (a configuration change or an
    /// address record).
    pub members: Option<Vec<Member>>,
}

/// Read the applied keyspace: the reads RedisStore released together, answered in order (a
/// storage failure becomes that read's error reply). Sent by RedisStore once the node has
/// applied up to their read index.
#[derive(Message)]
#[rtype(result = "Vec<Frame>")]
pub struct Read(pub Vec<ReadQuery>);

/// Drop the log up to and including `index` (which Storage has applied). Sent by RaftNode when
/// the log grows past its threshold. A failure stops the node.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CompactLog(pub u64);

/// Take a consistent checkpoint of the applied state to send to a peer. Sent by
/// PeerTransport when raft-rs wants a snapshot sent.
#[derive(Message)]
#[rtype(result = "Result<CheckpointInfo>")]
pub struct CreateCheckpoint {
    pub for_peer: u64,
}

/// A checkpoint on disk and the Raft position it captures.
#[derive(Debug, Clone)]
pub struct CheckpointInfo {
    pub dir: PathBuf,
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfState,
    pub members: Vec<Member>,
}

/// A snapshot starts arriving from the leader. Sent by PeerTransport; discards any earlier,
/// unfinished staging.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct BeginSnapshot {
    pub index: u64,
    pub term: u64,
}

/// One chunk of the snapshot being received, in [`stream_checkpoint`]'s format.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct SnapshotChunk(pub Bytes);

/// The whole snapshot has arrived: make the staging durable. Sent by PeerTransport before it
/// steps the snapshot message into RaftNode.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct FinishSnapshot;

/// Replace the keyspace with the staged snapshot. Sent by RaftNode when a Ready carries a
/// snapshot, before anything after it is persisted. A failure stops the node.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InstallSnapshot {
    pub meta: SnapshotMetadata,
    /// The address book sent with the snapshot.
    pub members: Vec<Member>,
}

/// A sync of the write-ahead log failed: stop the node. Sent by whoever awaited the
/// [`Durability`]; Storage stops the node with it only if no write failed first (such a write
/// stopped the node on Storage's thread before this message could be handled).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SyncFailed(pub Error);

/// The process is about to exit: make the write-ahead log durable and stop RocksDB's background
/// work, so exiting does not race a flush or compaction. Sent by the binary at shutdown, last.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

/// What a node finds in its data directory when it starts.
#[derive(Debug, Clone)]
pub struct RecoveredState {
    pub hard_state: HardState,
    pub conf_state: ConfState,
    pub members: Vec<Member>,
    pub entries: Vec<Entry>,
    pub applied: u64,
    /// This boot's incarnation: one more than the previous boot's.
    pub incarnation: u64,
    /// This data directory's store id: never 0, the same on every boot.
    pub store_id: u64,
    /// The compaction point: the log holds the entries after it.
    pub snapshot_index: u64,
    pub snapshot_term: u64,
}

/// When a written Ready becomes durable (`--fsync`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fsync {
    /// Raft's rule: entries, a new term and a vote are synced before raft-rs hears that they
    /// are persisted, so before this node acknowledges them to anyone.
    #[default]
    Always,
    /// Only a new term or vote is synced at once; entries are synced about once a second,
    /// like Redis's `appendfsync everysec`. A process crash loses nothing (the writes are in
    /// the kernel already), but a power loss or kernel crash can lose acknowledged writes and,
    /// together with another node's failure, make the replicas disagree. Not Raft-safe.
    EverySec,
}

/// How often [`Fsync::EverySec`] syncs what it wrote since the last sync.
pub const EVERYSEC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Storage {
    /// Shared only with this actor's own [`WalSyncer`] thread.
    db: Arc<DB>,
    /// Started on the first synced Ready; stopped at [`Close`] and around a snapshot install.
    syncer: Option<WalSyncer>,
    dir: PathBuf,
    node_id: u64,
    incarnation: u64,
    hard_state: HardState,
    last_index: u64,
    applied: u64,
    counts: KeyCounts,
    snapshot_index: u64,
    snapshot_term: u64,
    /// The staging file of a snapshot being received, and its (index, term).
    incoming: Option<(BufWriter<File>, u64, u64)>,
    applied_to: Option<Recipient<Applied>>,
    fsync: Fsync,
    /// Log writes made since the last sync and not synced yet ([`Fsync::EverySec`]).
    unsynced: bool,
}

impl Actor for Storage {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.fsync == Fsync::EverySec {
            ctx.run_interval(EVERYSEC_INTERVAL, |storage, _| {
                if std::mem::take(&mut storage.unsynced) {
                    // Nobody waits for this sync: the writes were acknowledged already.
                    drop(storage.syncer().sync());
                }
            });
        }
    }
}

impl Storage {
    /// Opens (or creates) the database in `dir`. A new node starts with `initial` as its
    /// membership (every one a voter; none for a node that waits to be added); an existing one
    /// recovers its own.
    pub fn open(
        dir: &Path,
        node_id: u64,
        initial: &[Member],
        voters: bool,
    ) -> Result<(Storage, RecoveredState)> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // A bounded write-ahead log bounds what a restart after `kill -9` must replay.
        opts.set_max_total_wal_size(64 << 20);
        opts.set_max_open_files(MAX_OPEN_TABLE_FILES);
        let cfs = COLUMN_FAMILIES.iter().map(|&name| ColumnFamilyDescriptor::new(name, family_options(name)));
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        // Checkpoints only live while they are being sent.
        let _ = fs::remove_dir_all(dir.join("checkpoints"));
        check_kv_layout(&db, dir)?;

        let hard_state: HardState = get_proto(&db, CF_RAFT_STATE, KEY_HARD_STATE)?.unwrap_or_default();
        let conf_state = match get_proto::<ConfState>(&db, CF_RAFT_STATE, KEY_CONF_STATE)? {
            Some(cs) => cs,
            None => {
                let mut cs = ConfState::default();
                if voters {
                    cs.set_voters(initial.iter().map(|m| m.id).collect());
                }
                let mut batch = WriteBatch::default();
                let state = cf(&db, CF_RAFT_STATE);
                batch.put_cf(state, KEY_CONF_STATE, cs.write_to_bytes().map_err(corrupt)?);
                batch.put_cf(state, KEY_MEMBERS, encode_members(initial));
                write_synced(&db, batch)?;
                cs
            }
        };
        let mut entries: Vec<Entry> = Vec::new();
        for item in db.iterator_cf(cf(&db, CF_RAFT_LOG), IteratorMode::Start) {
            let (_, raw) = item?;
            entries.push(Entry::parse_from_bytes(&raw).map_err(corrupt)?);
        }
        let applied = get_u64(&db, KEY_APPLIED)?;
        let counts = KeyCounts { keys: get_u64(&db, KEY_KEY_COUNT)?, expires: count_expires(&db)? };
        let incarnation = get_u64(&db, KEY_INCARNATION)? + 1;
        put_synced(&db, CF_META, KEY_INCARNATION, &incarnation.to_be_bytes())?;
        let store_id = match get_u64(&db, KEY_STORE_ID)? {
            0 => {
                let id = new_store_id()?;
                put_synced(&db, CF_META, KEY_STORE_ID, &id.to_be_bytes())?;
                id
            }
            id => id,
        };

        let snapshot_index = get_u64(&db, KEY_SNAPSHOT_INDEX)?;
        let snapshot_term = get_u64(&db, KEY_SNAPSHOT_TERM)?;

        let last_index = entries.last().map_or(snapshot_index, |e| e.index);
        let mut storage = Storage {
            db: Arc::new(db),
            syncer: None,
            dir: dir.to_path_buf(),
            node_id,
            incarnation,
            hard_state,
            last_index,
            applied,
            counts,
            snapshot_index,
            snapshot_term,
            incoming: None,
            applied_to: None,
            fsync: Fsync::Always,
            unsynced: false,
        };
        if let Some(meta) = get_proto::<SnapshotMetadata>(&storage.db, CF_META, KEY_INSTALLING)? {
            info!(index = meta.index, term = meta.term, "resuming an interrupted snapshot installation");
            let members = read_members(&storage.db)?;
            storage.install_snapshot(&meta, &members)?;
            entries.clear();
        }
        let recovered = RecoveredState {
            hard_state: storage.hard_state.clone(),
            conf_state: get_proto(&storage.db, CF_RAFT_STATE, KEY_CONF_STATE)?.unwrap_or(conf_state),
            members: read_members(&storage.db)?,
            entries,
            applied: storage.applied,
            incarnation,
            store_id,
            snapshot_index: storage.snapshot_index,
            snapshot_term: storage.snapshot_term,
        };
        Ok((storage, recovered))
    }

    /// Where [`Applied`] notifications go (RedisStore).
    pub fn with_applied_sink(mut self, sink: Recipient<Applied>) -> Self {
        self.applied_to = Some(sink);
        self
    }

    /// When written Readies are synced (the default is [`Fsync::Always`]).
    pub fn with_fsync(mut self, fsync: Fsync) -> Self {
        self.fsync = fsync;
        self
    }

    /// Persists a Ready and syncs it on this thread (for tests and tools; the actor hands the
    /// sync to its [`WalSyncer`] instead).
    pub fn persist_ready(&mut self, msg: PersistReady) -> Result<()> {
        if self.write_ready(msg)? {
            let started = std::time::Instant::now();
            self.db.flush_wal(true)?;
            metrics::histogram!(telemetry::FSYNC_SECONDS).record(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Writes a Ready's entries and hard state in one batch, without syncing it, and tells
    /// whether it must be synced before raft-rs hears that it is persisted.
    fn write_ready(&mut self, msg: PersistReady) -> Result<bool> {
        let mut batch = WriteBatch::default();
        if let (Some(first), Some(last)) = (msg.entries.first(), msg.entries.last()) {
            let log = cf(&self.db, CF_RAFT_LOG);
            for entry in &msg.entries {
                batch.put_cf(log, entry.index.to_be_bytes(), entry.write_to_bytes().map_err(corrupt)?);
            }
            // A new leader may overwrite a suffix of our log: what lies beyond the new entries
            // is no longer part of it.
            if self.last_index > last.index {
                batch.delete_range_cf(
                    log,
                    (last.index + 1).to_be_bytes(),
                    (self.last_index + 1).to_be_bytes(),
                );
            }
            debug_assert!(first.index <= self.last_index + 1, "log entries must be contiguous");
            self.last_index = last.index;
        }
        // Entries, a term and a vote must be durable before anyone hears of them. A commit index
        // alone need not be (as in etcd's `MustSync`): after a crash it is learnt again from the
        // leader, and the one an apply depends on is written with that apply.
        // With `--fsync everysec` only a term and a vote are (a node that forgot its vote
        // could vote twice in one term); the entries wait for the next periodic sync.
        let wrote_entries = !msg.entries.is_empty();
        let mut sync = wrote_entries && self.fsync == Fsync::Always;
        if let Some(hs) = msg.hard_state {
            sync |= hs.term != self.hard_state.term || hs.vote != self.hard_state.vote;
            batch.put_cf(cf(&self.db, CF_RAFT_STATE), KEY_HARD_STATE, hs.write_to_bytes().map_err(corrupt)?);
            self.hard_state = hs;
        }
        // Unsynced, this write is not yet durable but is already visible; nothing reads the
        // log or hard state back before the sync except a restart, which sees only what is
        // durable.
        self.db.write(batch)?;
        // A sync covers everything written before it.
        self.unsynced = !sync && (self.unsynced || wrote_entries);
        Ok(sync)
    }

    fn apply_committed(&mut self, msg: ApplyCommitted) -> Result<Applied> {
        let mut apply = ApplyBatch::new(&self.db, self.counts);
        let mut replies = Vec::new();
        let mut last = self.applied;
        for entry in &msg.entries {
            if entry.index <= self.applied {
                continue; // already applied before a restart
            }
            last = entry.index;
            if entry.get_entry_type() != EntryType::EntryNormal
                || entry.data.is_empty()
                || is_membership_record(&entry.context)
            {
                continue; // leader no-ops; conf changes and membership records were applied by RaftNode
            }
            for proposal in Proposal::decode_entry(&entry.context, &entry.data)? {
                let origin = proposal.origin;
                let reply = apply.apply(entry.index, proposal)?;
                if origin.node == self.node_id && origin.incarnation == self.incarnation {
                    replies.push((origin.seq, reply));
                }
            }
        }
        if last == self.applied && msg.conf_state.is_none() && msg.members.is_none() {
            return Ok(Applied { index: last, replies, ..Applied::default() });
        }
        let (fed, published, scripts) = (apply.fed_keys(), apply.take_published(), apply.take_scripts());
        let (mut batch, counts) = apply.into_write_batch();
        // Applying an entry proves it committed: recording a commit index that covers it in the
        // same batch keeps `applied <= commit` true on disk, which raft-rs checks at restart.
        let mut hs = self.hard_state.clone();
        if hs.commit < last {
            hs.commit = last;
            batch.put_cf(cf(&self.db, CF_RAFT_STATE), KEY_HARD_STATE, hs.write_to_bytes().map_err(corrupt)?);
        }
        if let Some(cs) = &msg.conf_state {
            batch.put_cf(cf(&self.db, CF_RAFT_STATE), KEY_CONF_STATE, cs.write_to_bytes().map_err(corrupt)?);
        }
        if let Some(members) = &msg.members {
            batch.put_cf(cf(&self.db, CF_RAFT_STATE), KEY_MEMBERS, encode_members(members));
        }
        let meta = cf(&self.db, CF_META);
        batch.put_cf(meta, KEY_APPLIED, last.to_be_bytes());
        batch.put_cf(meta, KEY_KEY_COUNT, counts.keys.to_be_bytes());
        batch.put_cf(meta, KEY_EXPIRES_COUNT, counts.expires.to_be_bytes());
        // No fsync: the log holds these entries durably, and after a crash the lost tail of
        // applies is replayed from it, because the applied index is lost with them.
        self.db.write(batch)?;
        self.hard_state = hs;
        self.applied = last;
        self.counts = counts;
        metrics::gauge!(telemetry::KEYS).set(counts.keys as f64);
        Ok(Applied { index: last, replies, fed, published, scripts, reloaded: false })
    }
}

impl Storage {
    fn term_of(&self, index: u64) -> Result<u64> {
        if index == self.snapshot_index {
            return Ok(self.snapshot_term);
        }
        let raw = self
            .db
            .get_pinned_cf(cf(&self.db, CF_RAFT_LOG), index.to_be_bytes())?
            .ok_or_else(|| Error::Corrupt(format!("log entry {index} is missing")))?;
        Ok(Entry::parse_from_bytes(&raw).map_err(corrupt)?.term)
    }

    fn compact_log(&mut self, index: u64) -> Result<()> {
        if index <= self.snapshot_index || index > self.applied {
            return Ok(());
        }
        let term = self.term_of(index)?;
        // The applies up to `index` were written without fsync; once the log below is gone
        // they are the only copy, so make them durable first.
        self.db.flush_wal(true)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf(&self.db, CF_RAFT_LOG), 0u64.to_be_bytes(), (index + 1).to_be_bytes());
        let meta = cf(&self.db, CF_META);
        batch.put_cf(meta, KEY_SNAPSHOT_INDEX, index.to_be_bytes());
        batch.put_cf(meta, KEY_SNAPSHOT_TERM, term.to_be_bytes());
        write_synced(&self.db, batch)?;
        self.snapshot_index = index;
        self.snapshot_term = term;
        // Start writing the memtables out (without waiting), so the write-ahead log a restart
        // replays stays about one compaction interval long instead of growing with the data.
        let mut background = FlushOptions::default();
        background.set_wait(false);
        for family in COLUMN_FAMILIES {
            self.db.flush_cf_opt(cf(&self.db, family), &background)?;
        }
        Ok(())
    }

    fn create_checkpoint(&mut self, for_peer: u64) -> Result<CheckpointInfo> {
        if self.applied == 0 {
            return Err(Error::Storage("nothing applied yet to snapshot".into()));
        }
        let dir = self.dir.join("checkpoints").join(format!("to-{for_peer}-at-{}", self.applied));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.parent().expect("has a parent")).map_err(io_error)?;
        Checkpoint::new(&self.db)?.create_checkpoint(&dir)?;
        let conf_state = get_proto(&self.db, CF_RAFT_STATE, KEY_CONF_STATE)?.unwrap_or_default();
        let members = read_members(&self.db)?;
        Ok(CheckpointInfo {
            dir,
            index: self.applied,
            term: self.term_of(self.applied)?,
            conf_state,
            members,
        })
    }

    fn staging_path(&self) -> PathBuf {
        self.dir.join("snapshot-incoming.kvs")
    }

    fn begin_snapshot(&mut self, index: u64, term: u64) -> Result<()> {
        let file = File::create(self.staging_path()).map_err(io_error)?;
        self.db.delete_cf(cf(&self.db, CF_META), KEY_STAGED)?;
        self.incoming = Some((BufWriter::new(file), index, term));
        Ok(())
    }

    fn snapshot_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        let Some((file, _, _)) = self.incoming.as_mut() else {
            return Err(Error::Storage("snapshot chunk without a snapshot in progress".into()));
        };
        validate_chunk(chunk)?;
        file.write_all(chunk).map_err(io_error)
    }

    fn finish_snapshot(&mut self) -> Result<()> {
        let Some((file, index, term)) = self.incoming.take() else {
            return Err(Error::Storage("no snapshot in progress".into()));
        };
        let file = file.into_inner().map_err(|e| io_error(e.into_error()))?;
        file.sync_all().map_err(io_error)?;
        let mut staged = Vec::with_capacity(16);
        staged.extend_from_slice(&index.to_be_bytes());
        staged.extend_from_slice(&term.to_be_bytes());
        put_synced(&self.db, CF_META, KEY_STAGED, &staged)
    }

    /// Replaces the keyspace with the staged snapshot. Safe to repeat after a crash: the
    /// `installing` marker stays until the final batch.
    fn install_snapshot(&mut self, meta: &SnapshotMetadata, members: &[Member]) -> Result<()> {
        let staged = self.db.get_pinned_cf(cf(&self.db, CF_META), KEY_STAGED)?.map(|v| v.to_vec());
        let mut expected = Vec::with_capacity(16);
        expected.extend_from_slice(&meta.index.to_be_bytes());
        expected.extend_from_slice(&meta.term.to_be_bytes());
        if staged.as_deref() != Some(&expected[..]) {
            return Err(Error::Storage(format!(
                "raft wants snapshot {}/{} installed but it was not received",
                meta.index, meta.term
            )));
        }
        put_synced(&self.db, CF_META, KEY_INSTALLING, &meta.write_to_bytes().map_err(corrupt)?)?;
        let db = self.db_mut();
        db.drop_cf(CF_KV)?;
        db.create_cf(CF_KV, &family_options(CF_KV))?;
        let mut reader = BufReader::new(File::open(self.staging_path()).map_err(io_error)?);
        let mut batch = WriteBatch::default();
        let mut counts = KeyCounts::default();
        while let Some((key, value)) = read_pair(&mut reader)? {
            counts.add_record(&key, &value);
            batch.put_cf(cf(&self.db, CF_KV), key, value);
            if batch.size_in_bytes() >= SNAPSHOT_CHUNK_BYTES {
                self.db.write(std::mem::take(&mut batch))?;
            }
        }
        let mut hs = self.hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = hs.commit.max(meta.index);
        batch.delete_range_cf(cf(&self.db, CF_RAFT_LOG), &0u64.to_be_bytes()[..], &LOG_END[..]);
        let state = cf(&self.db, CF_RAFT_STATE);
        batch.put_cf(state, KEY_HARD_STATE, hs.write_to_bytes().map_err(corrupt)?);
        batch.put_cf(state, KEY_CONF_STATE, meta.get_conf_state().write_to_bytes().map_err(corrupt)?);
        batch.put_cf(state, KEY_MEMBERS, encode_members(members));
        let m = cf(&self.db, CF_META);
        batch.put_cf(m, KEY_APPLIED, meta.index.to_be_bytes());
        batch.put_cf(m, KEY_KEY_COUNT, counts.keys.to_be_bytes());
        batch.put_cf(m, KEY_EXPIRES_COUNT, counts.expires.to_be_bytes());
        batch.put_cf(m, KEY_SNAPSHOT_INDEX, meta.index.to_be_bytes());
        batch.put_cf(m, KEY_SNAPSHOT_TERM, meta.term.to_be_bytes());
        batch.delete_cf(m, KEY_STAGED);
        batch.delete_cf(m, KEY_INSTALLING);
        write_synced(&self.db, batch)?;
        let _ = fs::remove_file(self.staging_path());
        self.hard_state = hs;
        self.applied = meta.index;
        self.counts = counts;
        self.last_index = meta.index;
        self.snapshot_index = meta.index;
        self.snapshot_term = meta.term;
        info!(index = meta.index, term = meta.term, keys = counts.keys, "installed a snapshot");
        Ok(())
    }
}

/// Reads a checkpoint's keyspace and hands it to `send` in chunks of about
/// [`SNAPSHOT_CHUNK_BYTES`]: a sequence of `[key len: u32][key][value len: u32][value]`.
/// Runs on a plain thread (RocksDB reads block); memory stays at one chunk.
pub fn stream_checkpoint(dir: &Path, mut send: impl FnMut(&[u8]) -> std::io::Result<()>) -> Result<u64> {
    let mut opts = Options::default();
    opts.set_max_open_files(CHECKPOINT_OPEN_FILES);
    let families = DB::list_cf(&opts, dir)?;
    let db = DB::open_cf_for_read_only(&opts, dir, families, false)?;
    let mut chunk = Vec::with_capacity(SNAPSHOT_CHUNK_BYTES + 1024);
    let mut keys = 0;
    for item in db.iterator_cf(cf(&db, CF_KV), IteratorMode::Start) {
        let (key, value) = item?;
        chunk.extend_from_slice(&(key.len() as u32).to_be_bytes());
        chunk.extend_from_slice(&key);
        chunk.extend_from_slice(&(value.len() as u32).to_be_bytes());
        chunk.extend_from_slice(&value);
        keys += 1;
        if chunk.len() >= SNAPSHOT_CHUNK_BYTES {
            send(&chunk).map_err(io_error)?;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        send(&chunk).map_err(io_error)?;
    }
    Ok(keys)
}

/// Checks that a received chunk is a whole number of well-formed pairs.
fn validate_chunk(mut chunk: &[u8]) -> Result<()> {
    while !chunk.is_empty() {
        for _ in 0..2 {
            if chunk.len() < 4 {
                return Err(Error::Corrupt("truncated snapshot chunk".into()));
            }
            let len = u32::from_be_bytes(chunk[..4].try_into().expect("4 bytes")) as usize;
            if chunk.len() < 4 + len {
                return Err(Error::Corrupt("truncated snapshot chunk".into()));
            }
            chunk = &chunk[4 + len..];
        }
    }
    Ok(())
}

fn read_pair(reader: &mut impl std::io::Read) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io_error(e)),
    }
    let mut key = vec![0; u32::from_be_bytes(len) as usize];
    reader.read_exact(&mut key).map_err(io_error)?;
    reader.read_exact(&mut len).map_err(io_error)?;
    let mut value = vec![0; u32::from_be_bytes(len) as usize];
    reader.read_exact(&mut value).map_err(io_error)?;
    Ok(Some((key, value)))
}

fn io_error(e: std::io::Error) -> Error {
    Error::Storage(e.to_string())
}

/// A storage failure leaves the node with a log it cannot trust: report it and stop the
/// process, rather than answer clients from a broken state. Only the first caller speaks: a
/// second thread failing meanwhile waits here for the exit.
pub fn fatal(what: &str, err: &dyn std::fmt::Display) -> ! {
    static STOPPING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _first = STOPPING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    error!(error = %err, "{what}; stopping the node");
    eprintln!("raft-kv: fatal: {what}: {err}");
    std::process::exit(70)
}

impl Handler<PersistReady> for Storage {
    type Result = MessageResult<PersistReady>;

    /// Writes the Ready in one batch and answers at once, with the sync it waits for. The sync
    /// happens on the [`WalSyncer`] thread, so applies and reads go on meanwhile, and Readies
    /// written while one sync runs share the next.
    fn handle(&mut self, msg: PersistReady, _: &mut Context<Self>) -> Self::Result {
        MessageResult(match self.write_ready(msg) {
            Ok(false) => Durability::Written,
            Ok(true) => Durability::Syncing(self.syncer().sync()),
            Err(e) => fatal("persisting the raft log failed", &e),
        })
    }
}

impl Handler<ApplyCommitted> for Storage {
    type Result = ();

    /// Applies the entries atomically, then tells RedisStore what was applied.
    fn handle(&mut self, msg: ApplyCommitted, _: &mut Context<Self>) {
        match self.apply_committed(msg) {
            Ok(applied) => {
                if let Some(sink) = &self.applied_to {
                    sink.do_send(applied);
                }
            }
            Err(e) => fatal("applying committed entries failed", &e),
        }
    }
}

impl Handler<Close> for Storage {
    type Result = ();

    /// Syncs the WAL and waits for background work to stop.
    fn handle(&mut self, _: Close, _: &mut Context<Self>) {
        if let Some(syncer) = self.syncer.take() {
            syncer.stop();
        }
        if let Err(e) = self.db.flush_wal(true) {
            error!(error = %e, "syncing the write-ahead log at shutdown failed");
        }
        // Foreground writes still work (RaftNode may persist one more Ready before the exit).
        self.db.cancel_all_background_work(true);
    }
}

impl Handler<CompactLog> for Storage {
    type Result = ();

    /// Drops the applied log prefix.
    fn handle(&mut self, msg: CompactLog, _: &mut Context<Self>) {
        if let Err(e) = self.compact_log(msg.0) {
            fatal("compacting the raft log failed", &e);
        }
    }
}

impl Handler<SyncFailed> for Storage {
    type Result = ();

    /// Stops the node with the failed sync: no write failed before it, or that write's own
    /// failure would have stopped the node before this message was handled.
    fn handle(&mut self, msg: SyncFailed, _: &mut Context<Self>) {
        fatal("syncing the raft log failed", &msg.0)
    }
}

impl Handler<CreateCheckpoint> for Storage {
    type Result = Result<CheckpointInfo>;

    /// Hard-links a consistent copy of the database for a snapshot transfer.
    fn handle(&mut self, msg: CreateCheckpoint, _: &mut Context<Self>) -> Self::Result {
        self.create_checkpoint(msg.for_peer)
    }
}

impl Handler<BeginSnapshot> for Storage {
    type Result = Result<()>;

    /// Starts a new staging file.
    fn handle(&mut self, msg: BeginSnapshot, _: &mut Context<Self>) -> Result<()> {
        self.begin_snapshot(msg.index, msg.term)
    }
}

impl Handler<SnapshotChunk> for Storage {
    type Result = Result<()>;

    /// Appends a validated chunk to the staging file.
    fn handle(&mut self, msg: SnapshotChunk, _: &mut Context<Self>) -> Result<()> {
        self.snapshot_chunk(&msg.0)
    }
}

impl Handler<FinishSnapshot> for Storage {
    type Result = Result<()>;

    /// Syncs the staging file and records which snapshot it holds.
    fn handle(&mut self, _: FinishSnapshot, _: &mut Context<Self>) -> Result<()> {
        self.finish_snapshot()
    }
}

impl Handler<InstallSnapshot> for Storage {
    type Result = ();

    /// Installs the staged snapshot, then tells RedisStore the new applied index.
    fn handle(&mut self, msg: InstallSnapshot, _: &mut Context<Self>) {
        if let Err(e) = self.install_snapshot(&msg.meta, &msg.members) {
            fatal("installing a snapshot failed", &e);
        }
        if let Some(sink) = &self.applied_to {
            sink.do_send(Applied { index: self.applied, reloaded: true, ..Applied::default() });
        }
    }
}

impl Handler<Read> for Storage {
    type Result = MessageResult<Read>;

    /// Answers reads from the applied keyspace.
    fn handle(&mut self, msg: Read, _: &mut Context<Self>) -> Self::Result {
        MessageResult(keyspace::read(&self.db, &msg.0, self.counts))
    }
}

impl Storage {
    fn syncer(&mut self) -> &WalSyncer {
        let db = &self.db;
        self.syncer.get_or_insert_with(|| WalSyncer::start(Arc::clone(db)))
    }

    /// The database for the rare operations that need it exclusively (replacing a column
    /// family): the syncer thread, after finishing the syncs asked of it, lets go of it.
    fn db_mut(&mut self) -> &mut DB {
        if let Some(syncer) = self.syncer.take() {
            syncer.stop();
        }
        Arc::get_mut(&mut self.db).expect("only Storage holds the database once its syncer stopped")
    }
}

/// Storage's own thread for `fsync`: it makes RocksDB's write-ahead log durable for every
/// Ready written before the request, while the Storage thread goes on applying and reading.
/// Requests that arrive during one sync share the next: group commit across Readies.
/// Dropping it finishes the syncs already asked for and joins the thread, so the database is
/// never left open on it.
struct WalSyncer {
    requests: Option<mpsc::Sender<oneshot::Sender<Result<()>>>>,
    thread: Option<JoinHandle<()>>,
}

impl WalSyncer {
    fn start(db: Arc<DB>) -> WalSyncer {
        let (requests, pending) = mpsc::channel::<oneshot::Sender<Result<()>>>();
        let thread = std::thread::Builder::new()
            .name("wal-sync".into())
            .spawn(move || {
                while let Ok(first) = pending.recv() {
                    let waiting: Vec<_> = std::iter::once(first).chain(pending.try_iter()).collect();
                    let started = std::time::Instant::now();
                    let result = db.flush_wal(true).map_err(Error::from);
                    metrics::histogram!(telemetry::FSYNC_SECONDS).record(started.elapsed().as_secs_f64());
                    metrics::histogram!(telemetry::READIES_PER_FSYNC).record(waiting.len() as f64);
                    for reply in waiting {
                        let _ = reply.send(result.clone());
                    }
                }
            })
            .expect("spawning the wal-sync thread");
        WalSyncer { requests: Some(requests), thread: Some(thread) }
    }

    /// Resolves once everything written before this call is durable.
    fn sync(&self) -> oneshot::Receiver<Result<()>> {
        let (reply, synced) = oneshot::channel();
        // The thread only stops when `self` is dropped: the send cannot fail before.
        if let Some(requests) = &self.requests {
            let _ = requests.send(reply);
        }
        synced
    }

    /// Finishes the syncs already asked for, then ends the thread and its hold on the database.
    fn stop(self) {
        drop(self);
    }
}

impl Drop for WalSyncer {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                fatal("the wal-sync thread", &"it panicked");
            }
        }
    }
}

/// Per-family tuning: the keyspace gets bloom filters, because every write first asks whether
/// its key exists (to keep DBSIZE exact) and most such lookups miss.
fn family_options(name: &str) -> Options {
    let mut opts = Options::default();
    if name == CF_KV {
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&table);
        // A bloom filter over the memtable's keys too: every write looks its key up first (to
        // keep DBSIZE exact), and for a new key, in hash order, that miss would otherwise walk
        // the memtable's skiplist through cold cache lines.
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(0.1);
    }
    opts
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("column families are created at open")
}

fn corrupt(e: protobuf::ProtobufError) -> Error {
    Error::Corrupt(e.to_string())
}

fn get_proto<M: PbMessage>(db: &DB, family: &str, key: &[u8]) -> Result<Option<M>> {
    match db.get_pinned_cf(cf(db, family), key)? {
        Some(raw) => Ok(Some(M::parse_from_bytes(&raw).map_err(corrupt)?)),
        None => Ok(None),
    }
}

fn read_members(db: &DB) -> Result<Vec<Member>> {
    match db.get_pinned_cf(cf(db, CF_RAFT_STATE), KEY_MEMBERS)? {
        Some(raw) => decode_members(&raw),
        None => Ok(Vec::new()),
    }
}

/// Refuses a keyspace laid out otherwise than this version reads it (an earlier version's keys,
/// in byte order, would be misread); records the layout in a new data directory.
fn check_kv_layout(db: &DB, dir: &Path) -> Result<()> {
    match get_u64(db, KEY_KV_LAYOUT)? {
        KV_LAYOUT => Ok(()),
        earlier if KV_LAYOUTS_READ.contains(&earlier) => {
            put_synced(db, CF_META, KEY_KV_LAYOUT, &KV_LAYOUT.to_be_bytes())
        }
        0 if db.iterator_cf(cf(db, CF_KV), IteratorMode::Start).next().is_none() => {
            put_synced(db, CF_META, KEY_KV_LAYOUT, &KV_LAYOUT.to_be_bytes())
        }
        other => Err(Error::Storage(format!(
            "the keyspace in {} is in layout {other}, which this version of raft-kv cannot read (it \
             reads layout {KV_LAYOUT}); move the data directory away to start this node empty",
            dir.display()
        ))),
    }
}

/// The number of keys with an expiry: recorded with every apply, or counted once in a data
/// directory written before it was recorded.
fn count_expires(db: &DB) -> Result<u64> {
    if db.get_pinned_cf(cf(db, CF_META), KEY_EXPIRES_COUNT)?.is_some() {
        return get_u64(db, KEY_EXPIRES_COUNT);
    }
    let mut counts = KeyCounts::default();
    for item in db.iterator_cf(cf(db, CF_KV), IteratorMode::Start) {
        let (key, value) = item?;
        counts.add_record(&key, &value);
    }
    Ok(counts.expires)
}

fn get_u64(db: &DB, key: &[u8]) -> Result<u64> {
    match db.get_pinned_cf(cf(db, CF_META), key)? {
        Some(raw) if raw.len() == 8 => Ok(u64::from_be_bytes(raw[..].try_into().expect("8 bytes"))),
        Some(raw) => Err(Error::Corrupt(format!("meta value of {} bytes", raw.len()))),
        None => Ok(0),
    }
}

fn write_synced(db: &DB, batch: WriteBatch) -> Result<()> {
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    db.write_opt(batch, &sync)?;
    Ok(())
}

/// A random, non-zero store id.
fn new_store_id() -> Result<u64> {
    loop {
        let mut id = [0u8; 8];
        getrandom::getrandom(&mut id)
            .map_err(|e| Error::Storage(format!("no randomness for a store id: {e}")))?;
        if id != [0; 8] {
            return Ok(u64::from_be_bytes(id));
        }
    }
}

fn put_synced(db: &DB, family: &str, key: &[u8], value: &[u8]) -> Result<()> {
    let mut batch = WriteBatch::default();
    batch.put_cf(cf(db, family), key, value);
    write_synced(db, batch)
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)] // raft-rs's protobuf messages are built field by field
mod tests {
    use super::*;
    use crate::command::{ExpireCond, Expiry, RequestId, SetCond, SetExpiry, WriteOp, BATCH_CONTEXT};
    use bytes::Bytes;

    fn members(ids: &[u64]) -> Vec<Member> {
        ids.iter()
            .map(|&id| Member { id, peer_addr: format!("127.0.0.1:{id}"), ..Default::default() })
            .collect()
    }

    fn entry(index: u64, term: u64, op: Option<WriteOp>, node: u64, incarnation: u64) -> Entry {
        let mut e = Entry::default();
        e.index = index;
        e.term = term;
        if let Some(op) = op {
            let p = Proposal { origin: RequestId { node, incarnation, seq: index }, now_ms: 0, op };
            e.data = p.encode().into();
        }
        e
    }

    fn set(k: &str, v: &str) -> Option<WriteOp> {
        Some(WriteOp::Set {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: Bytes::copy_from_slice(v.as_bytes()),
        })
    }

    /// `SET k v EX 3600`.
    fn set_ex(k: &str, v: &str) -> Option<WriteOp> {
        Some(WriteOp::SetWith {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: Bytes::copy_from_slice(v.as_bytes()),
            cond: SetCond::Always,
            expiry: SetExpiry::At(Expiry::InMs(3_600_000)),
            get: false,
        })
    }

    /// `INFO keyspace`'s figures: (keys, keys with an expiry).
    fn keyspace_stats(storage: &Storage) -> (i64, i64) {
        match read_one(storage, ReadQuery::KeyspaceStats) {
            Frame::Array(counts) => match counts[..] {
                [Frame::Integer(keys), Frame::Integer(expires)] => (keys, expires),
                _ => panic!("{counts:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn key_and_expiry_counts_follow_every_write_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let key = |k: &str| Bytes::copy_from_slice(k.as_bytes());
        let expire = |k: &str| {
            Some(WriteOp::Expire { key: key(k), at: Expiry::InMs(60_000), cond: ExpireCond::Always })
        };
        let steps: Vec<(Option<WriteOp>, (i64, i64))> = vec![
            (set_ex("a", "1"), (1, 1)),
            (set("b", "1"), (2, 1)),
            (expire("b"), (2, 2)),
            (set("a", "2"), (2, 1)), // a plain SET drops the expiry
            (Some(WriteOp::Persist { key: key("b") }), (2, 0)),
            (expire("a"), (2, 1)),
            (set_ex("a", "3"), (2, 1)),
            (Some(WriteOp::Del { keys: vec![key("a")] }), (1, 0)),
            (set_ex("c", "1"), (2, 1)),
        ];
        {
            let (mut s, _) = Storage::open(dir.path(), 1, &members(&[1]), true).unwrap();
            for (i, (op, expected)) in steps.into_iter().enumerate() {
                let entries = vec![entry(i as u64 + 1, 1, op, 1, 1)];
                persist_and_apply(&mut s, entries);
                assert_eq!(keyspace_stats(&s), expected, "after step {}", i + 1);
            }
        }
        let (s, _) = Storage::open(dir.path(), 1, &members(&[1]), true).unwrap();
        assert_eq!(keyspace_stats(&s), (2, 1), "after a restart");
        // A data directory from before the expiry count was recorded: counted at the start.
        s.db.delete_cf(cf(&s.db, CF_META), KEY_EXPIRES_COUNT).unwrap();
        drop(s);
        let (s, _) = Storage::open(dir.path(), 1, &members(&[1]), true).unwrap();
        assert_eq!(keyspace_stats(&s), (2, 1), "counted from the keyspace");
    }

    #[test]
    fn hash_writes_of_one_batch_build_on_each_other_and_the_hash_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        let hset = |key: &str, pairs: &[(&str, &str)]| {
            let pairs = pairs.iter().map(|(f, v)| (b(f), b(v))).collect();
            Some(WriteOp::HSet { key: b(key), pairs, reply_ok: false })
        };
        let getall = |s: &Storage| {
            read_one(s, ReadQuery::HGetAll { key: b("h"), part: crate::command::HashPart::Pairs })
        };
        let hash = |pairs: &[(&str, &str)]| {
            Frame::Map(pairs.iter().map(|(f, v)| (Frame::Bulk(b(f)), Frame::Bulk(b(v)))).collect())
        };
        let in_an_hour = Expiry::AtMs(keyspace::now_ms() + 3_600_000);
        let ops = vec![
            hset("h", &[("a", "1"), ("b", "2")]),
            Some(WriteOp::HIncrBy { key: b("h"), field: b("a"), delta: 41 }),
            Some(WriteOp::Expire { key: b("h"), at: in_an_hour, cond: ExpireCond::Always }),
            Some(WriteOp::HDel { key: b("h"), fields: vec![b("b"), b("nothing")] }),
            hset("h", &[("c", "3")]),
            set("s", "x"),
            hset("s", &[("a", "1")]), // WRONGTYPE: changes nothing
        ];
        {
            let (mut s, _) = Storage::open(dir.path(), 1, &members(&[1]), true).unwrap();
            // One Ready and one apply: each write reads what the ones before it left in the batch.
            let entries =
                ops.into_iter().enumerate().map(|(i, op)| entry(i as u64 + 1, 1, op, 1, 1)).collect();
            persist_and_apply(&mut s, entries);
            assert_eq!(getall(&s), hash(&[("a", "42"), ("c", "3")]));
            assert_eq!(keyspace_stats(&s), (2, 1), "a changed hash keeps its expiry");
        }
        let (mut s, _) = Storage::open(dir.path(), 1, &members(&[1]), true).unwrap();
        assert_eq!(getall(&s), hash(&[("a", "42"), ("c", "3")]), "after a restart");
        assert_eq!(read_one(&s, ReadQuery::Type(b("h"))), Frame::Simple("hash".into()));
        assert_eq!(get(&s, "h"), Frame::error(keyspace::WRONGTYPE));
        assert_eq!(get(&s, "s"), Frame::bulk("x"));
        let del = Some(WriteOp::HDel { key: b("h"), fields: vec![b("a"), b("c")] });
        persist_and_apply(&mut s, vec![entry(8, 1, del, 1, 1)]);
        assert_eq!(read_one(&s, ReadQuery::Exists(vec![b("h")])), Frame::Integer(0), "no fields, no hash");
        assert_eq!(keyspace_stats(&s), (1, 0));
    }

    /// Persists `entries` as one Ready and applies them all.
    fn persist_and_apply(s: &mut Storage, entries: Vec<Entry>) {
        s.persist_ready(PersistReady { entries: entries.clone(), hard_state: None }).unwrap();
        s.apply_committed(ApplyCommitted { entries, conf_state: None, members: None }).unwrap();
    }

    fn read_one(storage: &Storage, query: ReadQuery) -> Frame {
        keyspace::read(&storage.db, &[query], storage.counts).remove(0)
    }

    fn get(storage: &Storage, k: &str) -> Frame {
        read_one(storage, ReadQuery::Get(Bytes::copy_from_slice(k.as_bytes())))
    }

    /// One `SCAN cursor COUNT count`: the next cursor and the keys.
    fn scan(storage: &Storage, cursor: u64, count: usize) -> (u64, Vec<String>) {
        let query = ReadQuery::Scan { cursor, count, pattern: None, kind: None };
        let Frame::Array(parts) = read_one(storage, query) else { panic!("not an array") };
        let [Frame::Bulk(next), Frame::Array(keys)] = &parts[..] else { panic!("{parts:?}") };
        let keys = keys.iter().map(|k| match k {
            Frame::Bulk(k) => String::from_utf8(k.to_vec()).unwrap(),
            other => panic!("{other:?}"),
        });
        (std::str::from_utf8(next).unwrap().parse().unwrap(), keys.collect())
    }

    #[test]
    fn a_scan_started_on_one_node_goes_on_through_another_and_across_a_restart() {
        let (dir1, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let entries: Vec<Entry> =
            (1..=50).map(|i| entry(i, 1, set(&format!("key:{i}"), "v"), 1, 1)).collect();
        let open_with_data = |dir: &Path| {
            let (mut s, _) = Storage::open(dir, 1, &members(&[1]), true).unwrap();
            persist_and_apply(&mut s, entries.clone());
            s
        };
        let (node1, node2) = (open_with_data(dir1.path()), open_with_data(dir2.path()));
        let mut nodes = [Some(node1), Some(node2)];
        let (mut cursor, mut seen, mut calls) = (0, Vec::new(), 0);
        loop {
            // Alternate between the nodes, and restart node 1 halfway.
            if calls == 6 {
                nodes[0] = None;
                nodes[0] = Some(Storage::open(dir1.path(), 1, &members(&[1]), true).unwrap().0);
            }
            let (next, keys) = scan(nodes[calls % 2].as_ref().unwrap(), cursor, 4);
            calls += 1;
            seen.extend(keys);
            assert!(next == 0 || next > cursor, "cursors move forward: {cursor} -> {next}");
            if next == 0 {
                break;
            }
            cursor = next;
        }
        assert!(calls > 6, "50 keys take more than a few SCANs of 4: {calls}");
        seen.sort();
        let mut expected: Vec<String> = (1..=50).map(|i| format!("key:{i}")).collect();
        expected.sort();
        assert_eq!(seen, expected, "every key exactly once");
    }

    #[test]
    fn a_keyspace_in_another_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Storage::open(dir.path(), 1, &members(&[1]), true).unwrap();
            let entries = vec![entry(1, 1, set("k", "v"), 1, 1)];
            persist_and_apply(&mut s, entries);
            // What an earlier version left: its keys, and no layout.
            s.db.delete_cf(cf(&s.db, CF_META), KEY_KV_LAYOUT).unwrap();
        }
        let refused = Storage::open(dir.path(), 1, &members(&[1]), true).err().expect("refused");
        assert!(refused.to_string().contains("layout 0"), "{refused}");
    }

    #[test]
    fn a_keyspace_in_an_earlier_layout_is_read_and_marked_as_the_current_layout() {
        for earlier in KV_LAYOUTS_READ {
            let dir = tempfile::tempdir().unwrap();
            {
                let (mut s, _) = Storage::open(dir.path(), 1, &members(&[1]), true).unwrap();
                persist_and_apply(&mut s, vec![entry(1, 1, set("k", "v"), 1, 1)]);
                // What an earlier version left.
                put_synced(&s.db, CF_META, KEY_KV_LAYOUT, &earlier.to_be_bytes()).unwrap();
            }
            let (s, _) = Storage::open(dir.path(), 1, &members(&[1]), true).unwrap();
            assert_eq!(get(&s, "k"), Frame::bulk("v"));
            assert_eq!(
                get_u64(&s.db, KEY_KV_LAYOUT).unwrap(),
                KV_LAYOUT,
                "an earlier version now refuses it"
            );
        }
    }

    #[test]
    fn a_new_node_starts_with_the_initial_voters_and_incarnation_one() {
        let dir = tempfile::tempdir().unwrap();
        let (_, rec) = Storage::open(dir.path(), 1, &members(&[1, 2, 3]), true).unwrap();
        assert_eq!(rec.conf_state.voters, vec![1, 2, 3]);
        assert_eq!(rec.incarnation, 1);
        assert_ne!(rec.store_id, 0);
        assert!(rec.entries.is_empty());
        assert_eq!(rec.applied, 0);
        let other = tempfile::tempdir().unwrap();
        let (_, elsewhere) = Storage::open(other.path(), 1, &members(&[1, 2, 3]), true).unwrap();
        assert_ne!(elsewhere.store_id, rec.store_id, "another data directory, another store id");
    }

    #[test]
    fn everysec_syncs_a_term_or_vote_at_once_and_leaves_entries_to_the_periodic_sync() {
        let dir = tempfile::tempdir().unwrap();
        let hs = |term, vote, commit| {
            let mut hs = HardState::default();
            (hs.term, hs.vote, hs.commit) = (term, vote, commit);
            hs
        };
        {
            let (s, _) = Storage::open(dir.path(), 1, &members(&[1, 2, 3]), true).unwrap();
            let mut s = s.with_fsync(Fsync::EverySec);
            let vote = PersistReady { entries: vec![], hard_state: Some(hs(2, 1, 0)) };
            assert!(s.write_ready(vote).unwrap(), "a vote is synced before anyone hears of it");
            assert!(!s.unsynced);
            let append = PersistReady { entries: vec![entry(1, 2, set("a", "1"), 1, 1)], hard_state: None };
            assert!(!s.write_ready(append).unwrap(), "entries wait for the periodic sync");
            assert!(s.unsynced, "the periodic sync has something to do");
            let commit = PersistReady {
                entries: vec![entry(2, 2, set("b", "2"), 1, 1)],
                hard_state: Some(hs(2, 1, 1)),
            };
            assert!(!s.write_ready(commit).unwrap(), "a commit index alone is never synced");
            let new_term = PersistReady { entries: vec![], hard_state: Some(hs(3, 0, 1)) };
            assert!(s.write_ready(new_term).unwrap());
            assert!(!s.unsynced, "that sync covered the entries written before it");
        }
        // The default keeps Raft's rule: entries are synced before they are acknowledged.
        let (mut s, rec) = Storage::open(dir.path(), 1, &members(&[1, 2, 3]), true).unwrap();
        assert_eq!(rec.entries.len(), 2, "written entries survive a restart of the process");
        let append = PersistReady { entries: vec![entry(3, 3, set("c", "3"), 1, 2)], hard_state: None };
        assert!(s.write_ready(append).unwrap());
    }

    #[test]
    fn persisted_log_hard_state_and_applied_data_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store_id = {
            let (mut s, first) = Storage::open(dir.path(), 1, &members(&[1, 2, 3]), true).unwrap();
            let mut hs = HardState::default();
            hs.term = 2;
            hs.vote = 1;
            hs.commit = 2;
            let entries = vec![
                entry(1, 2, set("a", "1"), 1, 1),
                entry(2, 2, set("b", "2"), 2, 7),
                entry(3, 2, None, 1, 1),
            ];
            s.persist_ready(PersistReady { entries: entries.clone(), hard_state: Some(hs) }).unwrap();
            let applied = s
                .apply_committed(ApplyCommitted {
                    entries: entries[..2].to_vec(),
                    conf_state: None,
                    members: None,
                })
                .unwrap();
            assert_eq!(applied.index, 2);
            // Only the entry this node proposed in this incarnation has a waiting client.
            assert_eq!(applied.replies, vec![(1, Frame::ok())]);
            first.store_id
        };
        let (s, rec) = Storage::open(dir.path(), 1, &members(&[9]), true).unwrap();
        assert_eq!(rec.incarnation, 2);
        assert_eq!(rec.store_id, store_id);
        assert_eq!(rec.conf_state.voters, vec![1, 2, 3], "membership comes from disk, not flags");
        assert_eq!(rec.hard_state.term, 2);
        assert_eq!(rec.hard_state.vote, 1);
        assert_eq!(rec.applied, 2);
        assert_eq!(rec.entries.iter().map(|e| e.index).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(get(&s, "a"), Frame::bulk("1"));
        assert_eq!(get(&s, "b"), Frame::bulk("2"));
        assert_eq!(read_one(&s, ReadQuery::DbSize), Frame::Integer(2));
    }

    #[test]
    fn appending_over_a_conflicting_suffix_truncates_the_old_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Storage::open(dir.path(), 1, &members(&[1]), true).unwrap();
            let old: Vec<Entry> = (1..=5).map(|i| entry(i, 1, None, 1, 1)).collect();
            s.persist_ready(PersistReady { entries: old, hard_state: None }).unwrap();
            s.persist_ready(PersistReady { entries: vec![entry(3, 2, None, 1, 1)], hard_state: None })
                .unwrap();
        }
        let (_, rec) = Storage::open(dir.path(), 1, &members(&[1]), true).unwrap();
        let log: Vec<(u64, u64)> = rec.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(log, vec![(1, 1), (2, 1), (3, 2)]);
    }

    #[test]
    fn applying_records_a_commit_index_that_covers_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Storage::open(dir.path(), 1, &members(&[1]), true).unwrap();
            let entries = vec![entry(1, 1, set("k", "v"), 1, 1)];
            persist_and_apply(&mut s, entries);
        }
        let (_, rec) = Storage::open(dir.path(), 1, &members(&[1]), true).unwrap();
        assert!(rec.hard_state.commit >= rec.applied, "{} < {}", rec.hard_state.commit, rec.applied);
        assert_eq!(rec.applied, 1);
    }

    #[test]
    fn entries_already_applied_are_not_applied_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path(), 1, &members(&[1]), true).unwrap();
        let del = Some(WriteOp::Del { keys: vec![Bytes::from_static(b"k")] });
        let entries = vec![entry(1, 1, set("k", "v"), 1, 1), entry(2, 1, del, 1, 1)];
        let first = s
            .apply_committed(ApplyCommitted { entries: entries.clone(), conf_state: None, members: None })
            .unwrap();
        assert_eq!(first.replies, vec![(1, Frame::ok()), (2, Frame::Integer(1))]);
        let again = s.apply_committed(ApplyCommitted { entries, conf_state: None, members: None }).unwrap();
        assert!(again.replies.is_empty());
        assert_eq!(get(&s, "k"), Frame::Null);
    }

    #[test]
    fn a_batch_entry_applies_its_proposals_in_order_and_answers_only_this_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path(), 1, &members(&[1, 2]), true).unwrap();
        let proposal = |node, seq, op: Option<WriteOp>| {
            let origin = RequestId { node, incarnation: 1, seq };
            Proposal { origin, now_ms: 0, op: op.unwrap() }.encode()
        };
        let incr = |k: &str| Some(WriteOp::IncrBy { key: Bytes::from(k.to_string()), delta: 1 });
        let parts = [
            proposal(1, 7, set("n", "41")),
            proposal(2, 7, incr("n")),
            proposal(1, 8, incr("n")),
            proposal(1, 9, set("m", "x")),
        ];
        let mut batch = entry(1, 1, None, 1, 1);
        batch.context = BATCH_CONTEXT.to_vec().into();
        batch.data = Proposal::encode_batch(parts.iter().map(Vec::as_slice)).into();
        let single = entry(2, 1, incr("n"), 1, 1); // the one-proposal format still applies
        let applied = s.apply_committed(ApplyCommitted {
            entries: vec![batch, single],
            conf_state: None,
            members: None,
        });
        let applied = applied.unwrap();
        assert_eq!(applied.index, 2);
        assert_eq!(
            applied.replies,
            vec![(7, Frame::ok()), (8, Frame::Integer(43)), (9, Frame::ok()), (2, Frame::Integer(44))]
        );
        assert_eq!(get(&s, "n"), Frame::bulk("44"));
        assert_eq!(get(&s, "m"), Frame::bulk("x"));
    }

    #[test]
    fn a_checkpoint_streamed_in_chunks_installs_on_another_node_and_survives_restart() {
        let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut leader, _) = Storage::open(leader_dir.path(), 1, &members(&[1, 2]), true).unwrap();
        let value = "x".repeat(5000); // several chunks' worth in total
        let mut entries: Vec<Entry> = (1..=400)
            .map(|i| {
                let (key, op) = (format!("key{i}"), if i % 100 == 50 { set_ex } else { set });
                entry(i, 3, op(&key, &value), 1, 1)
            })
            .collect();
        // A long list: a directory and its chunks, which travel with it but are not keys.
        let elements: Vec<Bytes> = (0..1000).map(|i| Bytes::from(format!("e{i}"))).collect();
        let push = WriteOp::Push { key: Bytes::from("list"), elements, left: false, only_if_exists: false };
        entries.push(entry(401, 3, Some(push), 1, 1));
        // A large sorted set: a directory, its tree's nodes and its buckets of scores.
        let zadd = WriteOp::ZAdd {
            key: Bytes::from("zset"),
            pairs: (0..1000).map(|i| ((i % 7) as f64, Bytes::from(format!("m{i}")))).collect(),
            cond: crate::command::ZAddCond::Always,
            cmp: crate::command::ZAddCmp::Any,
            ch: false,
            incr: false,
        };
        entries.push(entry(402, 3, Some(zadd), 1, 1));
        leader.persist_ready(PersistReady { entries: entries.clone(), hard_state: None }).unwrap();
        leader.apply_committed(ApplyCommitted { entries, conf_state: None, members: None }).unwrap();
        let cp = leader.create_checkpoint(2).unwrap();
        assert_eq!((cp.index, cp.term), (402, 3));
        let parts = leader
            .db
            .iterator_cf(cf(&leader.db, CF_KV), IteratorMode::Start)
            .filter(|item| !crate::keyspace::is_key_record(&item.as_ref().unwrap().0))
            .count();
        assert!(parts > 1000 / 128 + 1 + 1000 / 128, "the list's chunks, the sorted set's nodes and buckets");

        let meta = {
            let (mut follower, _) = Storage::open(follower_dir.path(), 2, &members(&[1, 2]), true).unwrap();
            let stale = vec![entry(1, 1, set("stale", "gone"), 2, 1)];
            follower.persist_ready(PersistReady { entries: stale.clone(), hard_state: None }).unwrap();
            follower
                .apply_committed(ApplyCommitted { entries: stale, conf_state: None, members: None })
                .unwrap();

            follower.begin_snapshot(cp.index, cp.term).unwrap();
            let mut chunks = 0;
            let sent = stream_checkpoint(&cp.dir, |chunk| {
                assert!(chunk.len() <= SNAPSHOT_CHUNK_BYTES + 6000, "chunks are bounded");
                chunks += 1;
                follower.snapshot_chunk(chunk).map_err(std::io::Error::other)
            })
            .unwrap();
            assert_eq!(sent, 402 + parts as u64, "the keys' records and the values' parts");
            assert!(chunks > 1, "2 MB of data must take more than one chunk");
            follower.finish_snapshot().unwrap();
            let mut meta = SnapshotMetadata::default();
            meta.index = cp.index;
            meta.term = cp.term;
            meta.set_conf_state(cp.conf_state.clone());
            follower.install_snapshot(&meta, &cp.members).unwrap();
            assert_eq!(get(&follower, "stale"), Frame::Null, "the snapshot replaces the keyspace");
            assert_eq!(get(&follower, "key400"), Frame::bulk(value.clone()));
            meta
        };
        let (follower, rec) = Storage::open(follower_dir.path(), 2, &members(&[1, 2]), true).unwrap();
        assert_eq!((rec.applied, rec.snapshot_index, rec.snapshot_term), (meta.index, 402, 3));
        assert!(rec.entries.is_empty());
        assert!(rec.hard_state.commit >= 402);
        assert_eq!(read_one(&follower, ReadQuery::DbSize), Frame::Integer(402));
        let list = Bytes::from("list");
        assert_eq!(read_one(&follower, ReadQuery::LLen(list.clone())), Frame::Integer(1000));
        assert_eq!(
            read_one(&follower, ReadQuery::LRange { key: list, start: 499, stop: 500 }),
            Frame::Array(vec![Frame::bulk("e499"), Frame::bulk("e500")])
        );
        let zset = Bytes::from("zset");
        assert_eq!(read_one(&follower, ReadQuery::ZCard(zset.clone())), Frame::Integer(1000));
        let rank = ReadQuery::ZRank { key: zset.clone(), member: Bytes::from("m13"), rev: false };
        assert_eq!(
            read_one(&follower, rank),
            Frame::Integer(143 * 6 + 4),
            "after 143 members of each score below 6, and m104, m111, m118, m125"
        );
        assert_eq!(keyspace_stats(&follower), (402, 4), "the snapshot's keys with an expiry are counted");
    }

    #[test]
    fn a_snapshot_that_was_not_received_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path(), 2, &members(&[1, 2]), true).unwrap();
        let mut meta = SnapshotMetadata::default();
        meta.index = 10;
        meta.term = 1;
        assert!(s.install_snapshot(&meta, &[]).is_err());
        s.begin_snapshot(10, 1).unwrap();
        assert!(s.snapshot_chunk(&[0, 0, 0, 9, 1]).is_err(), "truncated chunks are rejected");
    }

    #[test]
    fn compaction_drops_the_applied_log_prefix_and_restart_resumes_after_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Storage::open(dir.path(), 1, &members(&[1]), true).unwrap();
            let entries: Vec<Entry> =
                (1..=10).map(|i| entry(i, 2, set(&format!("k{i}"), "v"), 1, 1)).collect();
            s.persist_ready(PersistReady { entries: entries.clone(), hard_state: None }).unwrap();
            s.apply_committed(ApplyCommitted {
                entries: entries[..8].to_vec(),
                conf_state: None,
                members: None,
            })
            .unwrap();
            s.compact_log(9).unwrap(); // beyond applied: ignored
            assert_eq!(s.snapshot_index, 0);
            s.compact_log(6).unwrap();
        }
        let (_, rec) = Storage::open(dir.path(), 1, &members(&[1]), true).unwrap();
        assert_eq!((rec.snapshot_index, rec.snapshot_term), (6, 2));
        assert_eq!(rec.entries.iter().map(|e| e.index).collect::<Vec<_>>(), vec![7, 8, 9, 10]);
        assert_eq!(rec.applied, 8);
    }

    #[actix_rt::test]
    async fn readies_persisted_without_waiting_all_complete_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Storage::open(dir.path(), 1, &members(&[1]), true).unwrap();
        let thread = Arbiter::new();
        let addr = crate::mailbox::start_in(&thread.handle(), move || s);
        let hs = |commit| {
            let mut hs = HardState::default();
            hs.term = 1;
            hs.vote = 1;
            hs.commit = commit;
            hs
        };
        // Two hundred Readies in flight at once, as RaftNode sends them, far past actix's default
        // mailbox of 16: they must still reach Storage in the order sent (a Ready written after a
        // later one would cut that one's entries off the log), and the syncs they share must
        // answer every one, and only once it is durable.
        let persists: Vec<_> = (1..=200)
            .map(|i| {
                let entries = vec![entry(i, 1, set(&format!("k{i}"), "v"), 1, 1)];
                addr.send(PersistReady { entries, hard_state: Some(hs(i - 1)) })
            })
            .collect();
        for persist in persists {
            persist.await.unwrap().durable().await.unwrap();
        }
        // A commit index alone is written without a sync of its own.
        let commit = addr.send(PersistReady { entries: vec![], hard_state: Some(hs(200)) }).await.unwrap();
        assert!(matches!(commit, Durability::Written), "{commit:?}");
        addr.send(Close).await.unwrap();
        thread.stop();
        thread.join().unwrap();

        let (_, rec) = Storage::open(dir.path(), 1, &members(&[1]), true).unwrap();
        assert_eq!(rec.entries.iter().map(|e| e.index).collect::<Vec<_>>(), (1..=200).collect::<Vec<_>>());
        assert_eq!(rec.hard_state, hs(200));
    }

    #[actix_rt::test]
    async fn storage_actor_answers_reads_after_applies_in_mailbox_order() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Storage::open(dir.path(), 1, &members(&[1]), true).unwrap();
        let addr = crate::mailbox::start(s);
        let entries = vec![entry(1, 1, set("x", "y"), 1, 1)];
        addr.send(PersistReady { entries: entries.clone(), hard_state: None })
            .await
            .unwrap()
            .durable()
            .await
            .unwrap();
        addr.do_send(ApplyCommitted { entries, conf_state: None, members: None });
        let reads = vec![ReadQuery::Get(Bytes::from_static(b"x")), ReadQuery::Get(Bytes::from_static(b"z"))];
        let replies = addr.send(Read(reads)).await.unwrap();
        assert_eq!(replies, vec![Frame::bulk("y"), Frame::Null]);
    }
}
