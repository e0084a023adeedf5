//! The records that stand behind the record of a long list or a large hash, set or sorted set:
//! its *parts* (a list's chunks, [`super::chunked`]; a hash's or set's buckets,
//! [`super::buckets`]; a sorted set's tree nodes and buckets, [`super::ztree`]).
//!
//! A part's RocksDB key is `[1][id: u64, u32][number: u64]`, all big-endian. A key's record is
//! stored under its position, whose first byte is always 0 (positions have 53 bits,
//! [`super::position`]), so parts sort after every key: iterating the keyspace (SCAN, KEYS,
//! FLUSHALL, the key counts) stops at the first record that is not a key's
//! ([`super::is_key_record`]). An id is the index of the log entry that created the parts and a
//! count within that entry: the same on every replica, and never used twice; so a RENAME moves
//! the key's record alone, and a value deleted, replaced or rewritten whole has its parts
//! deleted by id ([`ApplyBatch::put`], [`ApplyBatch::remove`]).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::buckets::Buckets;
use super::chunked::Directory;
use super::hashes::KIND_HASH;
use super::lists::KIND_LIST;
use super::sets::KIND_SET;
use super::zsets::KIND_ZSET;
use super::ztree::Tree;
use super::{ApplyBatch, KeyRead, Value};
use crate::error::{Error, Result};

/// The first byte of every part's RocksDB key.
const PART_RECORD: u8 = 1;

/// Names a value's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PartsId {
    pub index: u64,
    pub n: u32,
}

/// The RocksDB key of part `number` of the value whose parts are `id`.
pub(super) fn part_key(id: PartsId, number: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(21);
    key.push(PART_RECORD);
    key.extend_from_slice(&id.index.to_be_bytes());
    key.extend_from_slice(&id.n.to_be_bytes());
    key.extend_from_slice(&number.to_be_bytes());
    key
}

/// Starts the payload of a record that holds a directory of parts, where a whole collection's
/// payload starts with its element count: that count can never be `u32::MAX` (the record would
/// be over 16 GiB).
const DIRECTORY_MARK: u32 = u32::MAX;

/// A directory's payload of `len` bytes so far: the mark and the parts' id.
pub(super) fn directory_header(id: PartsId, len: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(len);
    out.put_u32(DIRECTORY_MARK);
    out.put_u64(id.index);
    out.put_u32(id.n);
    out
}

/// The parts' id and the rest of a directory's payload, if `data` (a record's payload) is a
/// directory of `len` bytes; none if it is a whole collection's payload.
pub(super) fn directory_fields<'a>(
    data: &'a [u8],
    len: usize,
    what: &str,
) -> Result<Option<(PartsId, &'a [u8])>> {
    if data.get(..4) != Some(&DIRECTORY_MARK.to_be_bytes()[..]) {
        return Ok(None);
    }
    if data.len() != len {
        return Err(damaged(what, data));
    }
    let mut rest = &data[4..];
    Ok(Some((PartsId { index: rest.get_u64(), n: rest.get_u32() }, rest)))
}

/// The error for a directory (`what`: a list's, a hash's ...) that makes no sense.
pub(super) fn damaged(what: &str, data: &[u8]) -> Error {
    Error::Corrupt(format!("{what} directory of {} bytes", data.len()))
}

/// What a value's record says about its parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Parts {
    List(Directory),
    /// A hash's or a set's.
    Buckets(Buckets),
    /// A sorted set's.
    Tree(Tree),
}

impl Parts {
    /// The parts `value` stands in front of; none for a value stored whole.
    pub(super) fn of(value: &Value) -> Result<Option<Parts>> {
        Ok(match value.kind {
            KIND_LIST => Directory::decode(&value.data)?.map(Parts::List),
            KIND_HASH | KIND_SET => Buckets::decode(&value.data)?.map(Parts::Buckets),
            KIND_ZSET => Tree::decode(&value.data)?.map(Parts::Tree),
            _ => None,
        })
    }

    pub(super) fn id(&self) -> PartsId {
        match self {
            Parts::List(directory) => directory.id,
            Parts::Buckets(buckets) => buckets.id,
            Parts::Tree(tree) => tree.scores.id,
        }
    }

    /// The numbers its parts may have (a hash's empty buckets are not stored); a sorted set's
    /// are found by reading its tree's inner nodes from `ks`.
    pub(super) fn numbers(&self, ks: &dyn KeyRead) -> Result<Vec<u64>> {
        Ok(match self {
            Parts::List(directory) => directory.chunks().collect(),
            Parts::Buckets(buckets) => buckets.numbers().collect(),
            Parts::Tree(tree) => tree.numbers(ks)?,
        })
    }

    /// The value's record payload, its parts named `id`.
    fn renamed(&self, id: PartsId) -> Bytes {
        match *self {
            Parts::List(mut directory) => {
                directory.id = id;
                directory.encode()
            }
            Parts::Buckets(mut buckets) => {
                buckets.id = id;
                buckets.encode()
            }
            Parts::Tree(mut tree) => {
                tree.scores.id = id;
                tree.encode()
            }
        }
    }
}

impl ApplyBatch<'_> {
    /// An id for parts created by the entry being applied.
    pub(super) fn new_parts_id(&mut self) -> PartsId {
        if self.parts_ids.0 != self.index {
            self.parts_ids = (self.index, 0);
        }
        let id = PartsId { index: self.index, n: self.parts_ids.1 };
        self.parts_ids.1 += 1;
        id
    }

    /// Deletes every part of a value.
    pub(super) fn drop_parts(&mut self, parts: &Parts) -> Result<()> {
        for number in parts.numbers(self)? {
            self.parts.insert(part_key(parts.id(), number), None);
        }
        Ok(())
    }

    /// Copies a value's parts under a new id (COPY); the copy's record payload.
    pub(super) fn copy_parts(&mut self, parts: &Parts) -> Result<Bytes> {
        let id = self.new_parts_id();
        for number in parts.numbers(self)? {
            if let Some(data) = self.part(&part_key(parts.id(), number))? {
                self.parts.insert(part_key(id, number), Some(data));
            }
        }
        Ok(parts.renamed(id))
    }
}
