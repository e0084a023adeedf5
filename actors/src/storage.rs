//! Storage is an actor. It owns the RocksDB database, and nothing else touches it.
//!
//! It runs on its own arbiter (thread), so an fsync never stalls the sessions and the Raft loop.
//! Its mailbox is the ordering guarantee the rest of the node relies on: RaftNode sends a
//! Ready's [`PersistReady`] before the [`ApplyCommitted`] that depends on it, and RedisStore
//! reads ([`Read`]) only after an [`Applied`] notification says the data it needs is there.
//!
//! Column families:
//! - `raft_log`: entry index (u64 big-endian) → protobuf `Entry`
//! - `raft_state`: `hard_state` and `conf_state` (protobuf)
//! - `kv`: the user data (see [`crate::keyspace`])
//! - `meta`: `applied_index`, `key_count`, `incarnation`
//!
//! Durability rules: the entries and hard state of one Ready are one `WriteBatch` written with
//! `sync = true` (one fsync per Ready: group commit). The kv changes of a batch of committed
//! entries, the new applied index and a commit index covering them are one atomic `WriteBatch`,
//! so a restart resumes exactly at the applied index and never finds applied > commit.

use std::path::Path;

use actix::prelude::*;
use protobuf::Message as PbMessage;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState};
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use tracing::error;

use crate::command::{Proposal, ReadQuery};
use crate::error::{Error, Result};
use crate::keyspace::{self, ApplyBatch, CF_KV};
use crate::redis_store::Applied;
use crate::resp::Frame;

const CF_RAFT_LOG: &str = "raft_log";
const CF_RAFT_STATE: &str = "raft_state";
const CF_META: &str = "meta";
const COLUMN_FAMILIES: [&str; 4] = [CF_RAFT_LOG, CF_RAFT_STATE, CF_KV, CF_META];

const KEY_HARD_STATE: &[u8] = b"hard_state";
const KEY_CONF_STATE: &[u8] = b"conf_state";
const KEY_APPLIED: &[u8] = b"applied_index";
const KEY_KEY_COUNT: &[u8] = b"key_count";
const KEY_INCARNATION: &[u8] = b"incarnation";

/// Persist the entries and hard state of one Ready, durably (fsync), before anything that
/// depends on them is sent or acknowledged. Sent by RaftNode; replies once the write is synced.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct PersistReady {
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
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
}

/// Read the applied keyspace. Sent by RedisStore once the node has applied up to the read index.
#[derive(Message)]
#[rtype(result = "Result<Frame>")]
pub struct Read(pub ReadQuery);

/// What a node finds in its data directory when it starts.
#[derive(Debug, Clone)]
pub struct RecoveredState {
    pub hard_state: HardState,
    pub conf_state: ConfState,
    pub entries: Vec<Entry>,
    pub applied: u64,
    /// This boot's incarnation: one more than the previous boot's.
    pub incarnation: u64,
}

pub struct Storage {
    db: DB,
    node_id: u64,
    incarnation: u64,
    hard_state: HardState,
    last_index: u64,
    applied: u64,
    key_count: u64,
    applied_to: Option<Recipient<Applied>>,
}

impl Actor for Storage {
    type Context = Context<Self>;
}

impl Storage {
    /// Opens (or creates) the database in `dir`. A new node starts with `initial_voters` as its
    /// membership; an existing one recovers its own.
    pub fn open(dir: &Path, node_id: u64, initial_voters: &[u64]) -> Result<(Storage, RecoveredState)> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = COLUMN_FAMILIES.iter().map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;

        let hard_state: HardState = get_proto(&db, CF_RAFT_STATE, KEY_HARD_STATE)?.unwrap_or_default();
        let conf_state = match get_proto::<ConfState>(&db, CF_RAFT_STATE, KEY_CONF_STATE)? {
            Some(cs) => cs,
            None => {
                let mut cs = ConfState::default();
                cs.set_voters(initial_voters.to_vec());
                put_synced(&db, CF_RAFT_STATE, KEY_CONF_STATE, &cs.write_to_bytes().map_err(corrupt)?)?;
                cs
            }
        };
        let mut entries = Vec::new();
        for item in db.iterator_cf(cf(&db, CF_RAFT_LOG), IteratorMode::Start) {
            let (_, raw) = item?;
            entries.push(Entry::parse_from_bytes(&raw).map_err(corrupt)?);
        }
        let applied = get_u64(&db, KEY_APPLIED)?;
        let key_count = get_u64(&db, KEY_KEY_COUNT)?;
        let incarnation = get_u64(&db, KEY_INCARNATION)? + 1;
        put_synced(&db, CF_META, KEY_INCARNATION, &incarnation.to_be_bytes())?;

        let last_index = entries.last().map_or(0, |e| e.index);
        let storage = Storage {
            db,
            node_id,
            incarnation,
            hard_state: hard_state.clone(),
            last_index,
            applied,
            key_count,
            applied_to: None,
        };
        let recovered = RecoveredState { hard_state, conf_state, entries, applied, incarnation };
        Ok((storage, recovered))
    }

    /// Where [`Applied`] notifications go (RedisStore).
    pub fn with_applied_sink(mut self, sink: Recipient<Applied>) -> Self {
        self.applied_to = Some(sink);
        self
    }

    fn persist_ready(&mut self, msg: PersistReady) -> Result<()> {
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
        if let Some(hs) = msg.hard_state {
            batch.put_cf(cf(&self.db, CF_RAFT_STATE), KEY_HARD_STATE, hs.write_to_bytes().map_err(corrupt)?);
            self.hard_state = hs;
        }
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        self.db.write_opt(batch, &sync)?;
        Ok(())
    }

    fn apply_committed(&mut self, msg: ApplyCommitted) -> Result<Applied> {
        let mut apply = ApplyBatch::new(&self.db);
        let mut replies = Vec::new();
        let mut last = self.applied;
        for entry in &msg.entries {
            if entry.index <= self.applied {
                continue; // already applied before a restart
            }
            last = entry.index;
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                continue; // leader no-ops; conf changes were applied by RaftNode
            }
            let proposal = Proposal::decode(&entry.data)?;
            let reply = apply.apply(proposal.op)?;
            let origin = proposal.origin;
            if origin.node == self.node_id && origin.incarnation == self.incarnation {
                replies.push((origin.seq, reply));
            }
        }
        if last == self.applied && msg.conf_state.is_none() {
            return Ok(Applied { index: last, replies });
        }
        let key_count = (self.key_count as i64 + apply.key_delta).max(0) as u64;
        let mut batch = std::mem::take(&mut apply.batch);
        drop(apply);
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
        let meta = cf(&self.db, CF_META);
        batch.put_cf(meta, KEY_APPLIED, last.to_be_bytes());
        batch.put_cf(meta, KEY_KEY_COUNT, key_count.to_be_bytes());
        // No fsync: the log holds these entries durably, and after a crash the lost tail of
        // applies is replayed from it, because the applied index is lost with them.
        self.db.write(batch)?;
        self.hard_state = hs;
        self.applied = last;
        self.key_count = key_count;
        Ok(Applied { index: last, replies })
    }
}

/// A storage failure leaves the node with a log it cannot trust: report it and stop the
/// process, rather than answer clients from a broken state.
pub fn fatal(what: &str, err: &dyn std::fmt::Display) -> ! {
    error!(error = %err, "{what}; stopping the node");
    eprintln!("raft-kv: fatal: {what}: {err}");
    std::process::exit(70)
}

impl Handler<PersistReady> for Storage {
    type Result = Result<()>;

    /// Writes the Ready in one synced batch; the reply means it is durable.
    fn handle(&mut self, msg: PersistReady, _: &mut Context<Self>) -> Result<()> {
        self.persist_ready(msg)
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

impl Handler<Read> for Storage {
    type Result = Result<Frame>;

    /// Answers a read from the applied keyspace.
    fn handle(&mut self, msg: Read, _: &mut Context<Self>) -> Result<Frame> {
        keyspace::read(&self.db, &msg.0, self.key_count)
    }
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

fn get_u64(db: &DB, key: &[u8]) -> Result<u64> {
    match db.get_pinned_cf(cf(db, CF_META), key)? {
        Some(raw) if raw.len() == 8 => Ok(u64::from_be_bytes(raw[..].try_into().expect("8 bytes"))),
        Some(raw) => Err(Error::Corrupt(format!("meta value of {} bytes", raw.len()))),
        None => Ok(0),
    }
}

fn put_synced(db: &DB, family: &str, key: &[u8], value: &[u8]) -> Result<()> {
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    db.put_cf_opt(cf(db, family), key, value, &sync)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{RequestId, WriteOp};
    use bytes::Bytes;

    fn entry(index: u64, term: u64, op: Option<WriteOp>, node: u64, incarnation: u64) -> Entry {
        let mut e = Entry::default();
        e.index = index;
        e.term = term;
        if let Some(op) = op {
            let p = Proposal { origin: RequestId { node, incarnation, seq: index }, op };
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

    fn get(storage: &Storage, k: &str) -> Frame {
        keyspace::read(&storage.db, &ReadQuery::Get(Bytes::copy_from_slice(k.as_bytes())), storage.key_count)
            .unwrap()
    }

    #[test]
    fn a_new_node_starts_with_the_initial_voters_and_incarnation_one() {
        let dir = tempfile::tempdir().unwrap();
        let (_, rec) = Storage::open(dir.path(), 1, &[1, 2, 3]).unwrap();
        assert_eq!(rec.conf_state.voters, vec![1, 2, 3]);
        assert_eq!(rec.incarnation, 1);
        assert!(rec.entries.is_empty());
        assert_eq!(rec.applied, 0);
    }

    #[test]
    fn persisted_log_hard_state_and_applied_data_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Storage::open(dir.path(), 1, &[1, 2, 3]).unwrap();
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
                .apply_committed(ApplyCommitted { entries: entries[..2].to_vec(), conf_state: None })
                .unwrap();
            assert_eq!(applied.index, 2);
            // Only the entry this node proposed in this incarnation has a waiting client.
            assert_eq!(applied.replies, vec![(1, Frame::ok())]);
        }
        let (s, rec) = Storage::open(dir.path(), 1, &[9]).unwrap();
        assert_eq!(rec.incarnation, 2);
        assert_eq!(rec.conf_state.voters, vec![1, 2, 3], "membership comes from disk, not flags");
        assert_eq!(rec.hard_state.term, 2);
        assert_eq!(rec.hard_state.vote, 1);
        assert_eq!(rec.applied, 2);
        assert_eq!(rec.entries.iter().map(|e| e.index).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(get(&s, "a"), Frame::bulk("1"));
        assert_eq!(get(&s, "b"), Frame::bulk("2"));
        assert_eq!(keyspace::read(&s.db, &ReadQuery::DbSize, s.key_count).unwrap(), Frame::Integer(2));
    }

    #[test]
    fn appending_over_a_conflicting_suffix_truncates_the_old_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Storage::open(dir.path(), 1, &[1]).unwrap();
            let old: Vec<Entry> = (1..=5).map(|i| entry(i, 1, None, 1, 1)).collect();
            s.persist_ready(PersistReady { entries: old, hard_state: None }).unwrap();
            s.persist_ready(PersistReady { entries: vec![entry(3, 2, None, 1, 1)], hard_state: None })
                .unwrap();
        }
        let (_, rec) = Storage::open(dir.path(), 1, &[1]).unwrap();
        let log: Vec<(u64, u64)> = rec.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(log, vec![(1, 1), (2, 1), (3, 2)]);
    }

    #[test]
    fn applying_records_a_commit_index_that_covers_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Storage::open(dir.path(), 1, &[1]).unwrap();
            let entries = vec![entry(1, 1, set("k", "v"), 1, 1)];
            s.persist_ready(PersistReady { entries: entries.clone(), hard_state: None }).unwrap();
            s.apply_committed(ApplyCommitted { entries, conf_state: None }).unwrap();
        }
        let (_, rec) = Storage::open(dir.path(), 1, &[1]).unwrap();
        assert!(rec.hard_state.commit >= rec.applied, "{} < {}", rec.hard_state.commit, rec.applied);
        assert_eq!(rec.applied, 1);
    }

    #[test]
    fn entries_already_applied_are_not_applied_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path(), 1, &[1]).unwrap();
        let del = Some(WriteOp::Del { keys: vec![Bytes::from_static(b"k")] });
        let entries = vec![entry(1, 1, set("k", "v"), 1, 1), entry(2, 1, del, 1, 1)];
        let first = s.apply_committed(ApplyCommitted { entries: entries.clone(), conf_state: None }).unwrap();
        assert_eq!(first.replies, vec![(1, Frame::ok()), (2, Frame::Integer(1))]);
        let again = s.apply_committed(ApplyCommitted { entries, conf_state: None }).unwrap();
        assert!(again.replies.is_empty());
        assert_eq!(get(&s, "k"), Frame::Null);
    }

    #[actix_rt::test]
    async fn storage_actor_answers_reads_after_applies_in_mailbox_order() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Storage::open(dir.path(), 1, &[1]).unwrap();
        let addr = s.start();
        let entries = vec![entry(1, 1, set("x", "y"), 1, 1)];
        addr.send(PersistReady { entries: entries.clone(), hard_state: None }).await.unwrap().unwrap();
        addr.do_send(ApplyCommitted { entries, conf_state: None });
        let reply = addr.send(Read(ReadQuery::Get(Bytes::from_static(b"x")))).await.unwrap().unwrap();
        assert_eq!(reply, Frame::bulk("y"));
    }
}
