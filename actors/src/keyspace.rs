//! The replicated keyspace: how values are laid out in RocksDB's `kv` column family, how a
//! committed [`WriteOp`] changes it, and how a [`ReadQuery`] reads it.
//!
//! Everything here runs inside the Storage actor, the only owner of the database. Applying is a
//! pure function of the log entry and the current data, so every replica computes the same bytes
//! and the same reply; the reply only travels back to a client on the node that proposed it.

use std::collections::HashMap;

use bytes::Bytes;
use rocksdb::{IteratorMode, WriteBatch, DB};

use crate::command::{ReadQuery, WriteOp};
use crate::error::Result;
use crate::glob::glob_match;
use crate::resp::Frame;

pub const CF_KV: &str = "kv";

/// The type tag stored in front of every value. Only strings exist so far; the tag makes room
/// for other types without a data migration.
const KIND_STRING: u8 = 0;

/// A stored value: a type tag, an absolute expiry time (0 = none) and the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub kind: u8,
    pub expires_at_ms: u64,
    pub data: Bytes,
}

impl Value {
    pub fn string(data: Bytes) -> Self {
        Value { kind: KIND_STRING, expires_at_ms: 0, data }
    }

    /// `[kind: u8][expires_at_ms: u64 big-endian][payload]`
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.data.len());
        out.push(self.kind);
        out.extend_from_slice(&self.expires_at_ms.to_be_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    pub fn decode(raw: &[u8]) -> Result<Self> {
        if raw.len() < 9 {
            return Err(crate::Error::Corrupt(format!("value record of {} bytes", raw.len())));
        }
        let expires_at_ms = u64::from_be_bytes(raw[1..9].try_into().expect("8 bytes"));
        Ok(Value { kind: raw[0], expires_at_ms, data: Bytes::copy_from_slice(&raw[9..]) })
    }
}

/// The writes of one batch of committed entries, collected into one atomic RocksDB `WriteBatch`.
/// Later entries of the batch must see the effects of earlier ones before anything is written,
/// so reads go through an overlay of this batch's pending changes first.
pub struct ApplyBatch<'a> {
    db: &'a DB,
    pub batch: WriteBatch,
    overlay: HashMap<Bytes, Option<Value>>,
    /// Change in the number of keys caused by this batch.
    pub key_delta: i64,
}

impl<'a> ApplyBatch<'a> {
    pub fn new(db: &'a DB) -> Self {
        ApplyBatch { db, batch: WriteBatch::default(), overlay: HashMap::new(), key_delta: 0 }
    }

    fn get(&self, key: &Bytes) -> Result<Option<Value>> {
        if let Some(pending) = self.overlay.get(key) {
            return Ok(pending.clone());
        }
        read_value(self.db, key)
    }

    fn put(&mut self, key: Bytes, value: Value) -> Result<()> {
        if self.get(&key)?.is_none() {
            self.key_delta += 1;
        }
        self.batch.put_cf(kv_cf(self.db), &key, value.encode());
        self.overlay.insert(key, Some(value));
        Ok(())
    }

    /// Deletes `key`; true if it existed.
    fn delete(&mut self, key: &Bytes) -> Result<bool> {
        if self.get(key)?.is_none() {
            return Ok(false);
        }
        self.key_delta -= 1;
        self.batch.delete_cf(kv_cf(self.db), key);
        self.overlay.insert(key.clone(), None);
        Ok(true)
    }

    /// Applies one committed write and returns the reply its client gets.
    pub fn apply(&mut self, op: WriteOp) -> Result<Frame> {
        Ok(match op {
            WriteOp::Set { key, value } => {
                self.put(key, Value::string(value))?;
                Frame::ok()
            }
            WriteOp::Del { keys } => {
                let mut removed = 0;
                for key in &keys {
                    if self.delete(key)? {
                        removed += 1;
                    }
                }
                Frame::Integer(removed)
            }
        })
    }
}

fn kv_cf(db: &DB) -> &rocksdb::ColumnFamily {
    db.cf_handle(CF_KV).expect("the kv column family is created at open")
}

fn read_value(db: &DB, key: &[u8]) -> Result<Option<Value>> {
    match db.get_pinned_cf(kv_cf(db), key)? {
        Some(raw) => Ok(Some(Value::decode(&raw)?)),
        None => Ok(None),
    }
}

/// Answers a read from the current (applied) state of the keyspace.
pub fn read(db: &DB, query: &ReadQuery, key_count: u64) -> Result<Frame> {
    Ok(match query {
        ReadQuery::Get(key) => match read_value(db, key)? {
            Some(v) if v.kind == KIND_STRING => Frame::Bulk(v.data),
            Some(_) => Frame::error("WRONGTYPE Operation against a key holding the wrong kind of value"),
            None => Frame::Null,
        },
        ReadQuery::Exists(keys) => {
            let mut n = 0;
            for key in keys {
                if db.get_pinned_cf(kv_cf(db), key)?.is_some() {
                    n += 1;
                }
            }
            Frame::Integer(n)
        }
        ReadQuery::Keys(pattern) => {
            let mut out = Vec::new();
            for item in db.iterator_cf(kv_cf(db), IteratorMode::Start) {
                let (key, _) = item?;
                if glob_match(pattern, &key) {
                    out.push(Frame::Bulk(Bytes::copy_from_slice(&key)));
                }
            }
            Frame::Array(out)
        }
        ReadQuery::DbSize => Frame::Integer(key_count as i64),
    })
}
