//! RaftNode's view of the Raft log, given to raft-rs as its `Storage`.
//!
//! It holds the entries after the last compaction point in memory, plus the hard state and
//! membership, mirroring what Storage has made durable. RaftNode updates it when it hands a
//! Ready to Storage; raft-rs treats those entries as persisted only after Storage has synced
//! them and `advance` is called, so the mirror may run ahead of the disk but raft-rs never
//! relies on that. Compaction keeps it bounded: everything up to a compaction point lives only
//! in the applied keyspace, and a peer that needs it gets a snapshot.

use std::collections::VecDeque;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

#[derive(Debug, Default)]
pub struct RaftLog {
    hard_state: HardState,
    conf_state: ConfState,
    /// The last compacted entry (0 before any compaction): its index and term.
    snapshot_index: u64,
    snapshot_term: u64,
    /// Entries `snapshot_index + 1 ..= last_index`.
    entries: VecDeque<Entry>,
    /// A running total of the entries' payload bytes (data and context), which bound the log
    /// as much as their count: `ends[i]` counts through `entries[i]`, `start` before the first.
    ends: VecDeque<u64>,
    start: u64,
}

/// What an entry weighs in the log: its payload.
fn payload(entry: &Entry) -> u64 {
    (entry.data.len() + entry.context.len()) as u64
}

impl RaftLog {
    pub fn new(
        hard_state: HardState,
        conf_state: ConfState,
        snapshot_index: u64,
        snapshot_term: u64,
        entries: Vec<Entry>,
    ) -> Self {
        let mut log = RaftLog { hard_state, conf_state, snapshot_index, snapshot_term, ..Default::default() };
        log.append(&entries);
        log
    }

    pub fn first_index(&self) -> u64 {
        self.snapshot_index + 1
    }

    pub fn last_index(&self) -> u64 {
        self.snapshot_index + self.entries.len() as u64
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    /// The payload bytes of the entries held.
    pub fn bytes(&self) -> u64 {
        self.bytes_through(self.last_index())
    }

    /// The payload bytes of the entries held up to and including `index`.
    pub fn bytes_through(&self, index: u64) -> u64 {
        match index.min(self.last_index()).checked_sub(self.first_index()) {
            Some(offset) => self.ends[offset as usize] - self.start,
            None => 0,
        }
    }

    /// Where to compact so that at most `keep_entries` entries, and at most `keep_bytes` of
    /// payload, stay below `applied` (for a follower that is only a little behind): the lowest
    /// such point. A leader holding compaction for a follower asks on every turn, so it is a
    /// binary search (the bytes kept only shrink as the point rises).
    pub fn compaction_point(&self, applied: u64, keep_entries: u64, keep_bytes: u64) -> u64 {
        let applied = applied.min(self.last_index());
        let through_applied = self.bytes_through(applied);
        let (mut low, mut high) =
            (self.snapshot_index.max(applied.saturating_sub(keep_entries)).min(applied), applied);
        while low < high {
            let mid = low + (high - low) / 2;
            if through_applied - self.bytes_through(mid) <= keep_bytes {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        low
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    /// Appends entries, replacing any conflicting suffix (a new leader may overwrite it).
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index > self.snapshot_index && first.index <= self.last_index() + 1,
            "appending entries from {} to a log holding {}..={}",
            first.index,
            self.first_index(),
            self.last_index()
        );
        let keep = (first.index - self.first_index()) as usize;
        self.entries.truncate(keep);
        self.ends.truncate(keep);
        let mut total = self.ends.back().copied().unwrap_or(self.start);
        for entry in entries {
            total += payload(entry);
            self.ends.push_back(total);
        }
        self.entries.extend(entries.iter().cloned());
    }

    /// Drops entries up to and including `index`, which becomes the compaction point.
    pub fn compact(&mut self, index: u64) {
        if index <= self.snapshot_index || index > self.last_index() {
            return;
        }
        let term = self.entries[(index - self.first_index()) as usize].term;
        let dropped = (index - self.snapshot_index) as usize;
        self.entries.drain(..dropped);
        self.start = self.ends[dropped - 1];
        self.ends.drain(..dropped);
        self.snapshot_index = index;
        self.snapshot_term = term;
    }

    /// Replaces the log with an installed snapshot.
    pub fn apply_snapshot(&mut self, meta: &SnapshotMetadata) {
        self.entries.clear();
        self.ends.clear();
        self.snapshot_index = meta.index;
        self.snapshot_term = meta.term;
        self.conf_state = meta.get_conf_state().clone();
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
    }
}

impl raft::Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), self.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snapshot_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let offset = self.first_index();
        let mut out: Vec<Entry> =
            self.entries.range((low - offset) as usize..(high - offset) as usize).cloned().collect();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snapshot_index {
            return Ok(self.snapshot_term);
        }
        if idx < self.snapshot_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.first_index()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index())
    }

    /// Describes the compaction point. The data itself never travels inside this message:
    /// PeerTransport streams a consistent checkpoint of Storage in chunks, and rewrites the
    /// metadata to the checkpoint's own index, term and membership.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot_index == 0 || self.snapshot_index < request_index {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        let mut snapshot = Snapshot::default();
        let meta = snapshot.mut_metadata();
        meta.index = self.snapshot_index;
        meta.term = self.snapshot_term;
        meta.set_conf_state(self.conf_state.clone());
        Ok(snapshot)
    }
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)] // raft-rs's protobuf messages are built field by field
mod tests {
    use super::*;
    use raft::Storage as _;

    fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        range
            .map(|i| {
                let mut e = Entry::default();
                e.index = i;
                e.term = term;
                e
            })
            .collect()
    }

    fn sized(range: std::ops::RangeInclusive<u64>, term: u64, len: usize) -> Vec<Entry> {
        let mut out = entries(range, term);
        for e in &mut out {
            e.data = vec![0; len].into();
        }
        out
    }

    #[test]
    fn the_payload_count_follows_appends_conflicts_compaction_and_snapshots() {
        let mut log = RaftLog::new(HardState::default(), ConfState::default(), 0, 0, sized(1..=4, 1, 10));
        assert_eq!(log.bytes(), 40);
        log.append(&sized(3..=6, 2, 100)); // 3 and 4 replaced
        assert_eq!(log.bytes(), 20 + 400);
        assert_eq!(log.bytes_through(4), 20 + 200);
        assert_eq!(log.bytes_through(0), 0);
        log.compact(4);
        assert_eq!(log.bytes(), 200);
        assert_eq!((log.bytes_through(4), log.bytes_through(5), log.bytes_through(99)), (0, 100, 200));
        log.append(&sized(7..=7, 2, 1));
        assert_eq!(log.bytes(), 201);
        let mut meta = SnapshotMetadata::default();
        meta.index = 9;
        log.apply_snapshot(&meta);
        assert_eq!(log.bytes(), 0);
        log.append(&sized(10..=11, 3, 7));
        assert_eq!((log.bytes(), log.bytes_through(10)), (14, 7));
    }

    #[test]
    fn the_compaction_point_keeps_a_tail_bounded_by_count_and_by_bytes() {
        let mut log = RaftLog::default();
        log.append(&sized(1..=100, 1, 10));
        assert_eq!(log.compaction_point(90, 20, 1_000), 70);
        assert_eq!(log.compaction_point(90, 20, 55), 85, "five entries of 10 bytes fit in 55");
        assert_eq!(log.compaction_point(90, 20, 5), 90, "none fits");
        assert_eq!(log.compaction_point(10, 20, 1_000), 0, "never below the log's start");
        log.compact(50);
        assert_eq!(log.compaction_point(60, 20, 1_000), 50);
    }

    #[test]
    fn the_compaction_point_is_the_lowest_that_keeps_both_bounds() {
        let mut log = RaftLog::default();
        for index in 1..=60 {
            log.append(&sized(index..=index, 1, (index as usize * 7) % 13));
        }
        log.compact(5);
        for applied in 5..=60 {
            for keep_entries in [0, 1, 3, 10, 100] {
                for keep_bytes in [0, 6, 20, 45, 1_000] {
                    let keeps = |point: u64| {
                        applied - point <= keep_entries
                            && log.bytes_through(applied) - log.bytes_through(point) <= keep_bytes
                    };
                    let lowest =
                        (5..=applied).find(|&point| keeps(point)).expect("applied itself keeps none");
                    assert_eq!(
                        log.compaction_point(applied, keep_entries, keep_bytes),
                        lowest,
                        "applied {applied}, keep {keep_entries} entries and {keep_bytes} bytes"
                    );
                }
            }
        }
    }

    #[test]
    fn append_replaces_a_conflicting_suffix() {
        let mut log = RaftLog::default();
        log.append(&entries(1..=5, 1));
        log.append(&entries(3..=4, 2));
        assert_eq!(log.last_index(), 4);
        assert_eq!(log.term(2).unwrap(), 1);
        assert_eq!(log.term(3).unwrap(), 2);
    }

    #[test]
    fn compaction_keeps_the_term_of_the_compaction_point() {
        let mut log = RaftLog::default();
        log.append(&entries(1..=10, 3));
        log.compact(6);
        assert_eq!(log.first_index(), 7);
        assert_eq!(log.term(6).unwrap(), 3);
        assert!(matches!(log.term(5), Err(raft::Error::Store(StorageError::Compacted))));
        assert!(matches!(
            log.entries(5, 8, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert_eq!(log.entries(7, 11, None, GetEntriesContext::empty(false)).unwrap().len(), 4);
        let snap = log.snapshot(6, 2).unwrap();
        assert_eq!((snap.get_metadata().index, snap.get_metadata().term), (6, 3));
    }

    #[test]
    fn no_snapshot_before_any_compaction() {
        let mut log = RaftLog::default();
        log.append(&entries(1..=3, 1));
        assert!(log.snapshot(0, 2).is_err());
    }

    #[test]
    fn installing_a_snapshot_empties_the_log() {
        let mut log = RaftLog::default();
        log.append(&entries(1..=3, 1));
        let mut meta = SnapshotMetadata::default();
        meta.index = 50;
        meta.term = 4;
        meta.mut_conf_state().set_voters(vec![1, 2, 3]);
        log.apply_snapshot(&meta);
        assert_eq!((log.first_index(), log.last_index()), (51, 50));
        assert_eq!(log.term(50).unwrap(), 4);
        assert_eq!(log.initial_state().unwrap().hard_state.commit, 50);
        log.append(&entries(51..=52, 4));
        assert_eq!(log.last_index(), 52);
    }
}
