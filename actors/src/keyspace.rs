//! The replicated keyspace: how values are laid out in RocksDB's `kv` column family, how a
//! committed [`WriteOp`] changes it, and how a [`ReadQuery`] reads it.
//!
//! Everything here runs inside the Storage actor, the only owner of the database. Applying is a
//! pure function of the log entry and the current data, so every replica computes the same bytes
//! and the same reply; the reply only travels back to a client on the node that proposed it.
//!
//! # Time
//! A key with an expiry is *alive* while `now <= expires_at_ms` (Redis's rule). Reads judge
//! that with the reading node's wall clock, so an expired key vanishes from every node at once.
//! Writes judge it with the clock carried in the log entry ([`Proposal::now_ms`], the proposer's
//! clock), never the local one, so every replica decides the same. Relative times (`EX 10`,
//! `EXPIRE k 10`) are resolved against that same carried clock. An expired key a write touches
//! is deleted by that write (lazy expiry); the others are deleted by the leader's sweeper
//! through [`WriteOp::ExpireKeys`].
//!
//! # Order
//! Keys are stored in the order of a stable hash of the key, their *position*
//! ([`position`]): the RocksDB key is the position (big-endian) followed by the key. A SCAN
//! cursor is the position to resume at, so it means the same on every node and across
//! restarts, and, as with Redis's hash-table cursors, a key present for the whole scan is
//! returned at least once.
//!
//! # Versions
//! Every stored value records the index of the log entry that last wrote it. `WATCH` reads
//! these versions and `EXEC` carries them into its entry: the transaction aborts at apply time
//! if any differs, which gives every replica the same verdict.

mod bitmaps;
mod buckets;
mod chunked;
mod geo;
mod hashes;
mod hyperloglog;
mod lists;
mod parts;
pub mod scripts;
mod sets;
mod sort;
mod zsets;
mod ztree;

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};

use crate::command::strings::{format_float, parse_float, parse_int};
use crate::command::{
    ExpireCond, Expiry, LcsMode, Proposal, Queued, ReadQuery, Script, SetCond, SetExpiry, ValueType, WriteOp,
};
use crate::error::Result;
use crate::glob::glob_match;
use crate::pubsub::Published;
use crate::resp::Frame;
pub use protocol::command::NOT_INTEGER;
pub use protocol::now_ms;

pub const CF_KV: &str = "kv";

/// The type tag stored in front of every value: a string, a hash ([`hashes`]), a list
/// ([`lists`]), a set ([`sets`]) or a sorted set ([`zsets`]).
const KIND_STRING: u8 = 0;
use hashes::KIND_HASH;
use lists::KIND_LIST;
use parts::Parts;
use sets::KIND_SET;
use zsets::KIND_ZSET;

/// The most elements a random pick with a negative count (HRANDFIELD, SRANDMEMBER) returns:
/// the reply is built in memory before it is sent, so an unbounded count could exhaust it.
pub const MAX_RANDOM_PICKS: u64 = 1_000_000;

/// Marsaglia's xorshift64: enough to pick fields or members, and the same on every replica.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        let x = &mut self.0;
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        (*x % n as u64) as usize
    }
}

/// `count` of `items` at random (HRANDFIELD, SRANDMEMBER, SPOP): with a positive count that many
/// distinct ones (all of them, in order, if there are no more), with a negative one that many
/// picks, repeats allowed (at most [`MAX_RANDOM_PICKS`]: `Err` is the reply to more).
fn pick_random<T: Clone>(
    items: Vec<T>,
    count: i64,
    rng: &mut XorShift,
) -> std::result::Result<Vec<T>, Frame> {
    let positions = random_positions(items.len(), count, rng)?;
    Ok(positions.into_iter().map(|at| items[at].clone()).collect())
}

/// The positions [`pick_random`] picks among `len` items, in the order it answers them; all of
/// them, in order, for a count of at least `len`.
fn random_positions(len: usize, count: i64, rng: &mut XorShift) -> std::result::Result<Vec<usize>, Frame> {
    if len == 0 || count == 0 {
        return Ok(Vec::new());
    }
    if count < 0 {
        if count.unsigned_abs() > MAX_RANDOM_PICKS {
            return Err(Frame::error(format!(
                "ERR a negative count returns at most {MAX_RANDOM_PICKS} elements in raft-kv"
            )));
        }
        return Ok((0..count.unsigned_abs()).map(|_| rng.below(len)).collect());
    }
    if count as u64 >= len as u64 {
        return Ok((0..len).collect());
    }
    // A partial Fisher-Yates shuffle: the first `count` places get distinct items. Only the
    // places a swap moved something to are remembered.
    let mut moved: HashMap<usize, usize> = HashMap::new();
    let mut picked = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let j = i + rng.below(len - i);
        let at_j = moved.get(&j).copied().unwrap_or(j);
        moved.insert(j, moved.get(&i).copied().unwrap_or(i));
        picked.push(at_j);
    }
    Ok(picked)
}

/// The type tag of the values a command of type `t` works on.
fn kind_of(t: ValueType) -> u8 {
    match t {
        ValueType::String => KIND_STRING,
        ValueType::Hash => KIND_HASH,
        ValueType::List => KIND_LIST,
        ValueType::Set => KIND_SET,
        ValueType::SortedSet => KIND_ZSET,
    }
}

/// A value if it holds `kind`, none if absent, or the WRONGTYPE reply.
fn of_kind(value: Option<Value>, kind: u8) -> std::result::Result<Option<Value>, Frame> {
    match value {
        Some(v) if v.kind != kind => Err(Frame::error(WRONGTYPE)),
        other => Ok(other),
    }
}

/// A collection (a hash, list, set or sorted set) decoded from its record, with its expiry; none
/// if the key is absent; or the WRONGTYPE reply.
type Collection<T> = std::result::Result<Option<(T, u64)>, Frame>;

/// `value` as a collection of `kind`, decoded by `decode`.
fn as_collection<T>(
    value: Option<Value>,
    kind: u8,
    decode: impl FnOnce(&Bytes) -> Result<T>,
) -> Result<Collection<T>> {
    Ok(match of_kind(value, kind) {
        Err(wrongtype) => Err(wrongtype),
        Ok(None) => Ok(None),
        Ok(Some(v)) => Ok(Some((decode(&v.data)?, v.expires_at_ms))),
    })
}

/// The collection of `kind` at `key` alive at `now`, as a read sees it.
fn read_collection<T>(
    ks: &dyn KeyRead,
    key: &[u8],
    now: i64,
    kind: u8,
    decode: impl FnOnce(&Bytes) -> Result<T>,
) -> Result<Collection<T>> {
    as_collection(ks.value(key)?.filter(|v| v.alive_at(now)), kind, decode)
}

/// The payload of a collection (a hash, list, set or sorted set): `[count: u32 BE]`, then per
/// element `[len: u32 BE][bytes]`. The elements share the record's buffer.
fn decode_elements(data: &Bytes) -> Result<Vec<Bytes>> {
    let corrupt = || crate::Error::Corrupt(format!("collection record of {} bytes", data.len()));
    let mut rest = data.clone();
    let count = rest.try_get_u32().map_err(|_| corrupt())? as usize;
    // Each element takes at least its 4-byte length: a damaged count cannot allocate much.
    let mut elements = Vec::with_capacity(count.min(rest.len() / 4));
    for _ in 0..count {
        let len = rest.try_get_u32().map_err(|_| corrupt())? as usize;
        if rest.len() < len {
            return Err(corrupt());
        }
        elements.push(rest.split_to(len));
    }
    if !rest.is_empty() {
        return Err(corrupt());
    }
    Ok(elements)
}

/// The size of [`encode_elements`]'s payload.
fn encoded_elements_len<'a>(elements: impl Iterator<Item = &'a Bytes>) -> u64 {
    4 + elements.map(|e| 4 + e.len() as u64).sum::<u64>()
}

fn encode_elements<'a>(count: usize, elements: impl Iterator<Item = &'a Bytes> + Clone) -> Bytes {
    let mut out = BytesMut::with_capacity(encoded_elements_len(elements.clone()) as usize);
    out.put_u32(count as u32);
    for element in elements {
        out.put_u32(element.len() as u32);
        out.put_slice(element);
    }
    out.freeze()
}

/// Redis's `proto-max-bulk-len` default: no string may grow beyond it.
const MAX_STRING_LEN: u64 = 512 * 1024 * 1024;

pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const TOO_BIG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
const TOO_BIG_COLLECTION: &str =
    "ERR value exceeds the largest record raft-kv stores (proto-max-bulk-len, 512 MiB)";

/// A stored value: a type tag, an absolute expiry time (0 = none), the index of the log entry
/// that last wrote it, and the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub kind: u8,
    pub expires_at_ms: u64,
    pub version: u64,
    pub data: Bytes,
}

impl Value {
    pub fn string(data: Bytes) -> Self {
        Value { kind: KIND_STRING, expires_at_ms: 0, version: 0, data }
    }

    /// `[kind: u8][expires_at_ms: u64 BE][version: u64 BE][payload]`
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + self.data.len());
        out.push(self.kind);
        out.extend_from_slice(&self.expires_at_ms.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    pub fn decode(raw: &[u8]) -> Result<Self> {
        if raw.len() < 17 {
            return Err(crate::Error::Corrupt(format!("value record of {} bytes", raw.len())));
        }
        let expires_at_ms = u64::from_be_bytes(raw[1..9].try_into().expect("8 bytes"));
        let version = u64::from_be_bytes(raw[9..17].try_into().expect("8 bytes"));
        Ok(Value { kind: raw[0], expires_at_ms, version, data: Bytes::copy_from_slice(&raw[17..]) })
    }

    /// Whether the key is still alive at `now` (Redis: expired once `now > expiry`).
    pub fn alive_at(&self, now: i64) -> bool {
        self.expires_at_ms == 0 || now <= self.expires_at_ms as i64
    }

    fn type_name(&self) -> &'static str {
        match self.kind {
            KIND_STRING => "string",
            KIND_HASH => "hash",
            KIND_LIST => "list",
            KIND_SET => "set",
            KIND_ZSET => "zset",
            _ => "unknown",
        }
    }
}

/// How many keys are stored, expired ones included (Redis's DBSIZE counts those too), and how
/// many of them carry an expiry (`INFO keyspace`'s `expires`). Kept up to date by every apply,
/// so neither needs a scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyCounts {
    pub keys: u64,
    pub expires: u64,
}

impl KeyCounts {
    /// Counts a record of the `kv` family, given its RocksDB key and its value: one more key if
    /// it is a key's record (not one of a value's parts, [`parts`]).
    pub fn add_record(&mut self, stored: &[u8], raw: &[u8]) {
        if is_key_record(stored) {
            self.keys += 1;
            self.expires += raw.get(1..9).is_some_and(|at| at != [0u8; 8]) as u64;
        }
    }
}

/// Where `key` lies in the keyspace's order: a stable hash of it (the top 53 bits of its XXH3),
/// the same on every node and in every version that reads this layout. 53 bits, so that a SCAN
/// cursor survives clients that parse it into a double (JavaScript's do); keys that share a
/// position are still scanned correctly (see [`visit_slice`]).
pub fn position(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key) >> 11
}

/// The RocksDB key of `key`: its position, big-endian, then the key.
fn stored_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&position(key).to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// Whether a RocksDB key of the `kv` family is a key's: its position's first byte is 0, as
/// positions have 53 bits. Other records (the parts of long lists and large hashes, [`parts`]) sort after every
/// key's.
pub fn is_key_record(stored: &[u8]) -> bool {
    stored.first() == Some(&0)
}

/// The position and the key a RocksDB key stands for.
fn split_stored_key(stored: &[u8]) -> Result<(u64, &[u8])> {
    match stored.split_first_chunk::<8>() {
        Some((position, key)) => Ok((u64::from_be_bytes(*position), key)),
        None => Err(crate::Error::Corrupt(format!("keyspace record key of {} bytes", stored.len()))),
    }
}

/// Read access to the keyspace, either the applied database or a batch being applied.
pub trait KeyRead {
    /// The stored value, expired or not.
    fn value(&self, key: &[u8]) -> Result<Option<Value>>;
    /// Visits stored keys in the keyspace's order, from position `from` on, with their
    /// positions, until `visit` says stop.
    fn for_each_from(&self, from: u64, visit: &mut dyn FnMut(u64, &[u8], &Value) -> bool) -> Result<()>;
    /// How many keys are stored, and how many of them have an expiry (with a batch's changes).
    fn counts(&self) -> KeyCounts;
    /// One of a value's parts, by its RocksDB key ([`parts`]).
    fn part(&self, stored: &[u8]) -> Result<Option<Bytes>>;
}

/// The applied database, as reads see it.
pub struct DbView<'a> {
    pub db: &'a DB,
    pub counts: KeyCounts,
}

impl KeyRead for DbView<'_> {
    fn value(&self, key: &[u8]) -> Result<Option<Value>> {
        read_value(self.db, key)
    }

    fn for_each_from(&self, from: u64, visit: &mut dyn FnMut(u64, &[u8], &Value) -> bool) -> Result<()> {
        let start = from.to_be_bytes();
        for item in self.db.iterator_cf(kv_cf(self.db), IteratorMode::From(&start, Direction::Forward)) {
            let (stored, raw) = item?;
            if !is_key_record(&stored) {
                break; // the parts of values, after every key
            }
            let (position, key) = split_stored_key(&stored)?;
            if !visit(position, key, &Value::decode(&raw)?) {
                break;
            }
        }
        Ok(())
    }

    fn counts(&self) -> KeyCounts {
        self.counts
    }

    fn part(&self, stored: &[u8]) -> Result<Option<Bytes>> {
        read_part(self.db, stored)
    }
}

/// The writes of one batch of committed entries, collected into one atomic RocksDB `WriteBatch`.
/// Later entries of the batch must see the effects of earlier ones before anything is written,
/// so reads go through an overlay of this batch's pending changes first; the overlay, each
/// touched key's final state, is what gets written ([`ApplyBatch::into_write_batch`]).
pub struct ApplyBatch<'a> {
    db: &'a DB,
    /// Every key this batch changed: its new value, or `None` once deleted.
    overlay: HashMap<Bytes, Option<Value>>,
    /// The counts before this batch.
    base: KeyCounts,
    /// The change in the number of keys, and of keys with an expiry, caused by this batch.
    delta: (i64, i64),
    /// The entry being applied: its index (the version it stamps) and its clock.
    index: u64,
    now: i64,
    /// The keys this batch stored a list or a sorted set at (see [`ApplyBatch::fed_keys`]).
    fed: Vec<Bytes>,
    /// Every part of a value ([`parts`]) this batch wrote (`None`: deleted), by RocksDB key.
    parts: HashMap<Vec<u8>, Option<Bytes>>,
    /// The entry that last created a value's parts, and how many it created ([`parts`]).
    parts_ids: (u64, u32),
    /// When collections leave their single record.
    limits: Limits,
    /// The messages this batch's entries published, in log order.
    published: Vec<Published>,
    /// The scripts this batch's entries ran or loaded, and the flushes, in log order.
    scripts: Vec<ScriptChange>,
}

/// A change to every node's script cache (the scripts EVALSHA finds), made by a log entry.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptChange {
    /// EVAL ran this script, or SCRIPT LOAD loaded it: its digest and body.
    Load(String, Bytes),
    /// SCRIPT FLUSH.
    Flush,
}

/// When a collection outgrows its single record and is stored in parts ([`parts`]): Redis's
/// thresholds for its compact encodings, or, in tests, tiny ones that put every path to work.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// A list of more elements is chunked, in chunks of this many ([`chunked`]).
    chunk_elements: u32,
    /// A hash of more fields is stored in buckets ([`buckets`]) ...
    whole_fields: usize,
    /// ... until it shrinks to this many.
    whole_again: u64,
    /// The average fields per bucket beyond which buckets grow (they shrink below a quarter).
    bucket_load: u64,
    /// The most members of a sorted set tree's leaf, and children of its inner nodes
    /// ([`ztree`]).
    tree_node: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            chunk_elements: chunked::CHUNK_ELEMENTS,
            whole_fields: buckets::WHOLE_FIELDS,
            whole_again: buckets::WHOLE_AGAIN,
            bucket_load: buckets::BUCKET_LOAD,
            tree_node: ztree::NODE_ENTRIES,
        }
    }
}

/// Whether a write's collection was stored: `Err` is the reply to a record too large, and then
/// nothing of it was.
type Stored = std::result::Result<(), Frame>;

/// `reply`, if the write's collection was stored; else the refusal.
fn or_refusal(stored: Stored, reply: Frame) -> Frame {
    match stored {
        Ok(()) => reply,
        Err(too_big) => too_big,
    }
}

/// A list or sorted set that a batch of writes left with elements: clients blocked on it
/// (BLPOP, BZPOPMIN ...) may pop now.
#[derive(Debug, Clone, PartialEq)]
pub struct FedKey {
    pub key: Bytes,
    pub kind: ValueType,
    /// How many elements (members) it holds once the batch is applied.
    pub elements: u64,
}

impl<'a> ApplyBatch<'a> {
    pub fn new(db: &'a DB, counts: KeyCounts) -> Self {
        ApplyBatch {
            db,
            overlay: HashMap::new(),
            base: counts,
            delta: (0, 0),
            index: 0,
            now: 0,
            fed: Vec::new(),
            parts: HashMap::new(),
            parts_ids: (0, 0),
            limits: Limits::default(),
            published: Vec::new(),
            scripts: Vec::new(),
        }
    }

    /// The messages this batch published (PUBLISH), in log order, for every node's subscribers.
    pub fn take_published(&mut self) -> Vec<Published> {
        std::mem::take(&mut self.published)
    }

    /// The changes this batch made to the script cache, in log order, for every node's cache.
    pub fn take_scripts(&mut self) -> Vec<ScriptChange> {
        std::mem::take(&mut self.scripts)
    }

    /// The value of `key` if it is alive at the entry's time. An expired one is deleted.
    fn live(&mut self, key: &Bytes) -> Result<Option<Value>> {
        match self.value(key)? {
            Some(v) if v.alive_at(self.now) => Ok(Some(v)),
            Some(_) => {
                self.delete(key)?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// A live string value, or the WRONGTYPE reply.
    fn live_string(&mut self, key: &Bytes) -> Result<Result<Option<Value>, Frame>> {
        self.live_of(key, KIND_STRING)
    }

    /// A live value of `kind`, or the WRONGTYPE reply.
    fn live_of(&mut self, key: &Bytes, kind: u8) -> Result<Result<Option<Value>, Frame>> {
        Ok(of_kind(self.live(key)?, kind))
    }

    /// The first of `keys` that holds a collection of `kind`: its key, the collection decoded
    /// by `decode`, and its expiry (LMPOP, BLPOP, ZMPOP ...); `None` if none does, and the
    /// WRONGTYPE reply if a key of another type comes first.
    fn first_collection<T>(
        &mut self,
        keys: Vec<Bytes>,
        kind: u8,
        decode: impl Fn(&Bytes) -> Result<T>,
    ) -> Result<Collection<(Bytes, T)>> {
        for key in keys {
            match self.live_collection(&key, kind, &decode)? {
                Err(wrongtype) => return Ok(Err(wrongtype)),
                Ok(None) => continue,
                Ok(Some((collection, expires))) => return Ok(Ok(Some(((key, collection), expires)))),
            }
        }
        Ok(Ok(None))
    }

    /// The live collection of `kind` at `key`, decoded by `decode`, as a write sees it.
    fn live_collection<T>(
        &mut self,
        key: &Bytes,
        kind: u8,
        decode: impl FnOnce(&Bytes) -> Result<T>,
    ) -> Result<Collection<T>> {
        as_collection(self.live(key)?, kind, decode)
    }

    /// Counts `value`'s key as added (`sign` 1) or removed (-1) by this batch.
    fn count(&mut self, value: &Value, sign: i64) {
        self.delta.0 += sign;
        self.delta.1 += sign * (value.expires_at_ms != 0) as i64;
    }

    fn put(&mut self, key: Bytes, mut value: Value) -> Result<()> {
        if let Some(old) = self.value(&key)? {
            self.count(&old, -1);
            if let Some(replaced) = Parts::of(&old)? {
                if Parts::of(&value)?.is_none_or(|new| new.id() != replaced.id()) {
                    self.drop_parts(&replaced)?;
                }
            }
        }
        self.count(&value, 1);
        value.version = self.index;
        if value.kind == KIND_LIST || value.kind == KIND_ZSET {
            self.fed.push(key.clone());
        }
        self.overlay.insert(key, Some(value));
        Ok(())
    }

    /// The lists and sorted sets this batch stored, each once, as they are at its end: a
    /// client blocked on one of them may now find something to pop. Keys this batch deleted
    /// or gave another type since are left out.
    pub fn fed_keys(&self) -> Vec<FedKey> {
        let mut fed = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for key in &self.fed {
            if !seen.insert(key) {
                continue;
            }
            let Some(Some(value)) = self.overlay.get(key) else { continue };
            let (kind, count) = match value.kind {
                KIND_LIST => (ValueType::List, lists::element_count(&value.data)),
                KIND_ZSET => (ValueType::SortedSet, zsets::member_count(&value.data)),
                _ => continue,
            };
            let Ok(elements) = count else { continue };
            fed.push(FedKey { key: key.clone(), kind, elements });
        }
        fed
    }

    /// Stores a string value with the given absolute expiry, or deletes the key when that
    /// expiry has already passed (`SET ... PXAT <past>`): no read sees it either way, and
    /// DBSIZE does not count it (Redis 7.0 stores it and counts it until it reclaims it).
    fn put_string(&mut self, key: Bytes, data: Bytes, expires_at_ms: u64) -> Result<()> {
        if expires_at_ms != 0 && (expires_at_ms as i64) < self.now {
            self.delete(&key)?;
            return Ok(());
        }
        self.put(key, Value { kind: KIND_STRING, expires_at_ms, version: 0, data })
    }

    /// Deletes `key`; true if it was stored (alive or not).
    fn delete(&mut self, key: &Bytes) -> Result<bool> {
        self.remove(key, false)
    }

    /// Deletes `key`'s record, and the parts of the value it held unless `moved` elsewhere
    /// (RENAME); true if it was stored (alive or not).
    fn remove(&mut self, key: &Bytes, moved: bool) -> Result<bool> {
        let Some(old) = self.value(key)? else {
            return Ok(false);
        };
        self.count(&old, -1);
        if let (false, Some(parts)) = (moved, Parts::of(&old)?) {
            self.drop_parts(&parts)?;
        }
        self.overlay.insert(key.clone(), None);
        Ok(true)
    }

    /// Stores a collection (a hash, list, set or sorted set) of `kind`, whose record payload is
    /// `data` (`None`: it has no elements left, and the key is deleted), with `expires_at_ms`
    /// (changing a collection keeps its expiry, as in Redis). `Err` is the reply to a record
    /// larger than [`MAX_STRING_LEN`]; nothing is stored then.
    fn put_collection(
        &mut self,
        key: Bytes,
        kind: u8,
        data: Option<Bytes>,
        expires_at_ms: u64,
    ) -> Result<Stored> {
        let Some(data) = data else {
            self.delete(&key)?;
            return Ok(Ok(()));
        };
        if data.len() as u64 > MAX_STRING_LEN {
            return Ok(Err(Frame::error(TOO_BIG_COLLECTION)));
        }
        self.put(key, Value { kind, expires_at_ms, version: 0, data })?;
        Ok(Ok(()))
    }

    /// Deletes `key` if it is alive; true if it was.
    fn delete_live(&mut self, key: &Bytes) -> Result<bool> {
        Ok(self.live(key)?.is_some() && self.delete(key)?)
    }

    /// Resolves an expiry to absolute milliseconds with the entry's clock.
    fn absolute(&self, expiry: Expiry) -> i64 {
        match expiry {
            Expiry::InMs(ms) => self.now.saturating_add(ms),
            Expiry::AtMs(at) => at,
        }
    }

    /// The batch's changes as one RocksDB `WriteBatch`, and the counts after them. Each key the
    /// batch touched is written once, in its final state: a key set a hundred times in one
    /// batch (a hot key, a counter, `redis-benchmark`'s one key) costs RocksDB one write.
    pub fn into_write_batch(self) -> (WriteBatch, KeyCounts) {
        let counts = self.counts();
        let (kv, mut batch) = (kv_cf(self.db), WriteBatch::default());
        for (key, value) in self.overlay {
            match value {
                Some(value) => batch.put_cf(kv, stored_key(&key), value.encode()),
                None => batch.delete_cf(kv, stored_key(&key)),
            }
        }
        for (stored, part) in self.parts {
            match part {
                Some(part) => batch.put_cf(kv, stored, part),
                None => batch.delete_cf(kv, stored),
            }
        }
        (batch, counts)
    }

    /// Applies one committed entry and returns the reply its client gets.
    pub fn apply(&mut self, index: u64, proposal: Proposal) -> Result<Frame> {
        self.index = index;
        self.now = proposal.now_ms;
        self.write(proposal.op)
    }

    fn write(&mut self, op: WriteOp) -> Result<Frame> {
        Ok(match op {
            WriteOp::Set { key, value } => {
                self.put(key, Value::string(value))?;
                Frame::ok()
            }
            WriteOp::SetWith { key, value, cond, expiry, get } => {
                let old = match self.live_string(&key)? {
                    Ok(old) => old,
                    Err(wrongtype) if get => return Ok(wrongtype),
                    Err(_) => self.live(&key)?,
                };
                let exists = old.is_some();
                let reply_old = || match &old {
                    Some(v) => Frame::Bulk(v.data.clone()),
                    None => Frame::Null,
                };
                let allowed = match cond {
                    SetCond::Always => true,
                    SetCond::IfAbsent => !exists,
                    SetCond::IfPresent => exists,
                };
                if !allowed {
                    return Ok(if get { reply_old() } else { Frame::Null });
                }
                let expires_at = match expiry {
                    SetExpiry::None => 0,
                    SetExpiry::KeepTtl => old.as_ref().map_or(0, |v| v.expires_at_ms),
                    SetExpiry::At(e) => self.absolute(e).max(1) as u64,
                };
                let reply = if get { reply_old() } else { Frame::ok() };
                self.put_string(key, value, expires_at)?;
                reply
            }
            WriteOp::SetNx { key, value } => {
                if self.live(&key)?.is_some() {
                    Frame::Integer(0)
                } else {
                    self.put(key, Value::string(value))?;
                    Frame::Integer(1)
                }
            }
            WriteOp::GetSet { key, value } => match self.live_string(&key)? {
                Err(e) => e,
                Ok(old) => {
                    self.put(key, Value::string(value))?;
                    old.map_or(Frame::Null, |v| Frame::Bulk(v.data))
                }
            },
            WriteOp::GetDel { key } => match self.live_string(&key)? {
                Err(e) => e,
                Ok(None) => Frame::Null,
                Ok(Some(v)) => {
                    self.delete(&key)?;
                    Frame::Bulk(v.data)
                }
            },
            WriteOp::GetEx { key, expiry } => match self.live_string(&key)? {
                Err(e) => e,
                Ok(None) => Frame::Null,
                Ok(Some(v)) => {
                    let reply = Frame::Bulk(v.data.clone());
                    let expires_at = match expiry {
                        None => 0,
                        Some(e) => self.absolute(e).max(1) as u64,
                    };
                    self.put_string(key, v.data, expires_at)?;
                    reply
                }
            },
            WriteOp::MSet { pairs } => {
                for (key, value) in pairs {
                    self.put(key, Value::string(value))?;
                }
                Frame::ok()
            }
            WriteOp::MSetNx { pairs } => {
                for (key, _) in &pairs {
                    if self.live(key)?.is_some() {
                        return Ok(Frame::Integer(0));
                    }
                }
                for (key, value) in pairs {
                    self.put(key, Value::string(value))?;
                }
                Frame::Integer(1)
            }
            WriteOp::Append { key, value } => match self.live_string(&key)? {
                Err(e) => e,
                Ok(old) => {
                    let (mut data, expires) = match old {
                        Some(v) => (BytesMut::from(&v.data[..]), v.expires_at_ms),
                        None => (BytesMut::new(), 0),
                    };
                    if data.len() as u64 + value.len() as u64 > MAX_STRING_LEN {
                        return Ok(Frame::error(TOO_BIG));
                    }
                    data.extend_from_slice(&value);
                    let len = data.len() as i64;
                    self.put_string(key, data.freeze(), expires)?;
                    Frame::Integer(len)
                }
            },
            WriteOp::SetRange { key, offset, value } => match self.live_string(&key)? {
                Err(e) => e,
                Ok(old) => {
                    let current = old.as_ref().map_or(0, |v| v.data.len());
                    if value.is_empty() {
                        return Ok(Frame::Integer(current as i64));
                    }
                    if offset + value.len() as u64 > MAX_STRING_LEN {
                        return Ok(Frame::error(TOO_BIG));
                    }
                    let offset = offset as usize;
                    let (mut data, expires) = match old {
                        Some(v) => (BytesMut::from(&v.data[..]), v.expires_at_ms),
                        None => (BytesMut::new(), 0),
                    };
                    if data.len() < offset + value.len() {
                        data.resize(offset + value.len(), 0);
                    }
                    data[offset..offset + value.len()].copy_from_slice(&value);
                    let len = data.len() as i64;
                    self.put_string(key, data.freeze(), expires)?;
                    Frame::Integer(len)
                }
            },
            WriteOp::IncrBy { key, delta } => match self.live_string(&key)? {
                Err(e) => e,
                Ok(old) => {
                    let (current, expires) = match &old {
                        Some(v) => match parse_int(&v.data) {
                            Some(n) => (n, v.expires_at_ms),
                            None => return Ok(Frame::error(NOT_INTEGER)),
                        },
                        None => (0, 0),
                    };
                    let Some(next) = current.checked_add(delta) else {
                        return Ok(Frame::error("ERR increment or decrement would overflow"));
                    };
                    self.put_string(key, Bytes::from(next.to_string()), expires)?;
                    Frame::Integer(next)
                }
            },
            WriteOp::IncrByFloat { key, increment } => match self.live_string(&key)? {
                Err(e) => e,
                Ok(old) => {
                    let (current, expires) = match &old {
                        Some(v) => match parse_float(&v.data) {
                            Some(n) => (n, v.expires_at_ms),
                            None => return Ok(Frame::error("ERR value is not a valid float")),
                        },
                        None => (0.0, 0),
                    };
                    let next = current + increment;
                    if !next.is_finite() {
                        return Ok(Frame::error("ERR increment would produce NaN or Infinity"));
                    }
                    let text = Bytes::from(format_float(next));
                    self.put_string(key, text.clone(), expires)?;
                    Frame::Bulk(text)
                }
            },
            WriteOp::Del { keys } => {
                let mut removed = 0;
                for key in &keys {
                    if self.delete_live(key)? {
                        removed += 1;
                    }
                }
                Frame::Integer(removed)
            }
            WriteOp::Rename { from, to, only_if_absent } => {
                let Some(value) = self.live(&from)? else {
                    return Ok(Frame::error("ERR no such key"));
                };
                if from == to {
                    return Ok(if only_if_absent { Frame::Integer(0) } else { Frame::ok() });
                }
                if only_if_absent && self.live(&to)?.is_some() {
                    return Ok(Frame::Integer(0));
                }
                self.remove(&from, true)?;
                self.put(to, value)?;
                if only_if_absent {
                    Frame::Integer(1)
                } else {
                    Frame::ok()
                }
            }
            WriteOp::Copy { from, to, replace } => {
                if from == to {
                    return Ok(Frame::error("ERR source and destination objects are the same"));
                }
                let Some(value) = self.live(&from)? else {
                    return Ok(Frame::Integer(0));
                };
                if self.live(&to)?.is_some() && !replace {
                    return Ok(Frame::Integer(0));
                }
                let value = match Parts::of(&value)? {
                    Some(parts) => Value { data: self.copy_parts(&parts)?, ..value },
                    None => value,
                };
                self.put(to, value)?;
                Frame::Integer(1)
            }
            WriteOp::FlushAll => {
                let mut keys = Vec::new();
                self.for_each_from(0, &mut |_, key, _| {
                    keys.push(Bytes::copy_from_slice(key));
                    true
                })?;
                for key in &keys {
                    self.delete(key)?;
                }
                Frame::ok()
            }
            WriteOp::Expire { key, at, cond } => {
                let Some(value) = self.live(&key)? else {
                    return Ok(Frame::Integer(0));
                };
                let when = self.absolute(at);
                let current = value.expires_at_ms;
                let allowed = match cond {
                    ExpireCond::Always => true,
                    ExpireCond::IfNoExpiry => current == 0,
                    ExpireCond::IfHasExpiry => current != 0,
                    // A key without an expiry counts as expiring never (infinitely late).
                    ExpireCond::IfGreater => current != 0 && when > current as i64,
                    ExpireCond::IfLess => current == 0 || when < current as i64,
                    ExpireCond::IfHasExpiryAndLess => current != 0 && when < current as i64,
                };
                if !allowed {
                    return Ok(Frame::Integer(0));
                }
                if when <= self.now {
                    self.delete(&key)?;
                } else {
                    self.put(key, Value { expires_at_ms: when as u64, ..value })?;
                }
                Frame::Integer(1)
            }
            WriteOp::Persist { key } => match self.live(&key)? {
                Some(v) if v.expires_at_ms != 0 => {
                    self.put(key, Value { expires_at_ms: 0, ..v })?;
                    Frame::Integer(1)
                }
                _ => Frame::Integer(0),
            },
            WriteOp::ExpireKeys { keys } => {
                let mut removed = 0;
                for key in &keys {
                    if matches!(self.value(key)?, Some(v) if !v.alive_at(self.now)) {
                        self.delete(key)?;
                        removed += 1;
                    }
                }
                Frame::Integer(removed)
            }
            op @ (WriteOp::HSet { .. }
            | WriteOp::HSetNx { .. }
            | WriteOp::HDel { .. }
            | WriteOp::HIncrBy { .. }
            | WriteOp::HIncrByFloat { .. }) => self.write_hash(op)?,
            op @ (WriteOp::Push { .. }
            | WriteOp::Pop { .. }
            | WriteOp::LMPop { .. }
            | WriteOp::BPop { .. }
            | WriteOp::LMove { .. }
            | WriteOp::LSet { .. }
            | WriteOp::LInsert { .. }
            | WriteOp::LRem { .. }
            | WriteOp::LTrim { .. }) => self.write_list(op)?,
            op @ (WriteOp::SAdd { .. }
            | WriteOp::SRem { .. }
            | WriteOp::SMove { .. }
            | WriteOp::SPop { .. }
            | WriteOp::SCombineStore { .. }) => self.write_set(op)?,
            op @ (WriteOp::ZAdd { .. }
            | WriteOp::ZRem { .. }
            | WriteOp::ZPop { .. }
            | WriteOp::ZMPop { .. }
            | WriteOp::BZPop { .. }
            | WriteOp::ZCombineStore { .. }
            | WriteOp::ZRangeStore { .. }
            | WriteOp::ZRemRange { .. }) => self.write_zset(op)?,
            op @ WriteOp::GeoSearchStore { .. } => self.write_geo(op)?,
            op @ WriteOp::SortStore { .. } => self.write_sort(op)?,
            WriteOp::Eval(eval) => match &eval.script {
                Script::Body(body) => {
                    // Every replica draws the same random choices for this entry's script.
                    let (now, seed) = (self.now, scripts::seed(self.index, self.now, &eval));
                    let reply = scripts::run(&eval, self, now, seed)?;
                    self.scripts.push(ScriptChange::Load(scripts::sha1_hex(body), body.clone()));
                    reply
                }
                Script::Sha(_) => Frame::error(crate::command::scripting::NO_SCRIPT),
            },
            WriteOp::ScriptLoad { script } => {
                let digest = scripts::sha1_hex(&script);
                self.scripts.push(ScriptChange::Load(digest.clone(), script));
                Frame::bulk(digest)
            }
            WriteOp::ScriptFlush => {
                self.scripts.push(ScriptChange::Flush);
                Frame::ok()
            }
            op @ (WriteOp::SetBit { .. } | WriteOp::BitOp { .. }) => self.write_bits(op)?,
            op @ (WriteOp::PfAdd { .. } | WriteOp::PfMerge { .. }) => self.write_hll(op)?,
            WriteOp::Publish { channel, message, receivers } => {
                self.published.push(Published { channel, message });
                Frame::Integer(receivers as i64)
            }
            WriteOp::Exec { watched, commands } => {
                for (key, version) in &watched {
                    if self.live(key)?.map_or(0, |v| v.version) != *version {
                        return Ok(Frame::NullArray);
                    }
                }
                let mut replies = Vec::with_capacity(commands.len());
                for command in commands {
                    replies.push(match command {
                        Queued::Write(op) => self.write(op)?,
                        Queued::Read(query) => {
                            let now = self.now;
                            execute_read(self, &query, now)?
                        }
                    });
                }
                Frame::Array(replies)
            }
        })
    }
}

/// What a script running inside a log entry reaches: the entry's batch.
impl scripts::ScriptHost for ApplyBatch<'_> {
    fn read(&mut self, query: &ReadQuery) -> Result<Frame> {
        let now = self.now;
        execute_read(self, query, now)
    }

    fn write(&mut self, op: WriteOp) -> Option<Result<Frame>> {
        Some(ApplyBatch::write(self, op))
    }
}

/// What a read-only script (EVAL_RO) reaches: reads at one moment.
struct ReadOnly<'a> {
    ks: &'a dyn KeyRead,
    now: i64,
}

impl scripts::ScriptHost for ReadOnly<'_> {
    fn read(&mut self, query: &ReadQuery) -> Result<Frame> {
        execute_read(self.ks, query, self.now)
    }

    fn write(&mut self, _: WriteOp) -> Option<Result<Frame>> {
        None
    }
}

impl KeyRead for ApplyBatch<'_> {
    fn value(&self, key: &[u8]) -> Result<Option<Value>> {
        if let Some(pending) = self.overlay.get(key) {
            return Ok(pending.clone());
        }
        read_value(self.db, key)
    }

    /// Merges the database with this batch's pending changes, in order, as it goes: a SCAN
    /// inside EXEC reads only about COUNT keys, whatever the size of the keyspace.
    fn for_each_from(&self, from: u64, visit: &mut dyn FnMut(u64, &[u8], &Value) -> bool) -> Result<()> {
        let mut pending: Vec<_> = self
            .overlay
            .iter()
            .map(|(key, value)| ((position(key), &key[..]), value.as_ref()))
            .filter(|((p, _), _)| *p >= from)
            .collect();
        pending.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut pending = pending.into_iter().peekable();
        // Visits a pending value (a pending deletion visits nothing); false once told to stop.
        let mut visit_pending =
            |(p, key): (u64, &[u8]), value: Option<&Value>| value.is_none_or(|v| visit(p, key, v));
        let mut stopped = false;
        DbView { db: self.db, counts: KeyCounts::default() }.for_each_from(from, &mut |p, key, value| {
            // The pending changes that come before this stored key, or replace it.
            while let Some(&(at, pending_value)) = pending.peek() {
                if at > (p, key) {
                    break;
                }
                pending.next();
                if !visit_pending(at, pending_value) {
                    stopped = true;
                    return false;
                }
                if at == (p, key) {
                    return true; // the stored value was overwritten or deleted by this batch
                }
            }
            stopped = !visit_pending((p, key), Some(value));
            !stopped
        })?;
        if !stopped {
            for (at, value) in pending {
                if !visit_pending(at, value) {
                    break;
                }
            }
        }
        Ok(())
    }

    fn counts(&self) -> KeyCounts {
        let add = |base: u64, delta: i64| (base as i64 + delta).max(0) as u64;
        KeyCounts { keys: add(self.base.keys, self.delta.0), expires: add(self.base.expires, self.delta.1) }
    }

    fn part(&self, stored: &[u8]) -> Result<Option<Bytes>> {
        match self.parts.get(stored) {
            Some(pending) => Ok(pending.clone()),
            None => read_part(self.db, stored),
        }
    }
}

fn kv_cf(db: &DB) -> &rocksdb::ColumnFamily {
    db.cf_handle(CF_KV).expect("the kv column family is created at open")
}

fn read_value(db: &DB, key: &[u8]) -> Result<Option<Value>> {
    // `get_pinned_cf` would create and free a C++ `ReadOptions` for every key read: a malloc
    // and a free in glibc's allocator per GET, a tenth of Storage's thread under `-P 16` GET.
    thread_local! {
        static DEFAULT_READ: rocksdb::ReadOptions = rocksdb::ReadOptions::default();
    }
    let raw = DEFAULT_READ.with(|opts| db.get_pinned_cf_opt(kv_cf(db), stored_key(key), opts))?;
    raw.map(|raw| Value::decode(&raw)).transpose()
}

fn read_part(db: &DB, stored: &[u8]) -> Result<Option<Bytes>> {
    Ok(db.get_pinned_cf(kv_cf(db), stored)?.map(|raw| Bytes::copy_from_slice(&raw)))
}

/// Answers reads from the current (applied) state of the keyspace, judging expiry by this
/// node's wall clock, read once for all of them; a read that fails answers its error.
pub fn read(db: &DB, queries: &[ReadQuery], counts: KeyCounts) -> Vec<Frame> {
    let (view, now) = (DbView { db, counts }, now_ms());
    queries.iter().map(|q| execute_read(&view, q, now).unwrap_or_else(|e| e.to_frame())).collect()
}

/// Visits about `count` stored keys from position `from` on (Redis's COUNT: work done, not keys
/// returned), and returns the position to resume at, 0 once the keyspace is exhausted. It never
/// stops between two keys of the same position, so resuming there repeats and skips none. (The
/// position to resume at is never 0: it follows a position already visited.)
fn visit_slice(
    ks: &dyn KeyRead,
    from: u64,
    count: usize,
    visit: &mut dyn FnMut(&[u8], &Value),
) -> Result<u64> {
    let (mut visited, mut last, mut next) = (0, None, 0);
    ks.for_each_from(from, &mut |p, key, v| {
        if visited >= count && last != Some(p) {
            next = p;
            return false;
        }
        visited += 1;
        last = Some(p);
        visit(key, v);
        true
    })?;
    Ok(next)
}

fn scan_matches(key: &[u8], v: &Value, pattern: &Option<Bytes>, kind: &Option<Bytes>) -> bool {
    pattern.as_ref().is_none_or(|p| glob_match(p, key))
        && kind.as_ref().is_none_or(|t| t.eq_ignore_ascii_case(v.type_name().as_bytes()))
}

/// Executes a read against `ks` at time `now`.
pub fn execute_read(ks: &dyn KeyRead, q: &ReadQuery, now: i64) -> Result<Frame> {
    let live = |key: &[u8]| -> Result<Option<Value>> { Ok(ks.value(key)?.filter(|v| v.alive_at(now))) };
    let live_string =
        |key: &[u8]| -> Result<Result<Option<Value>, Frame>> { Ok(of_kind(live(key)?, KIND_STRING)) };
    Ok(match q {
        ReadQuery::Get(key) => match live_string(key)? {
            Err(e) => e,
            Ok(v) => v.map_or(Frame::Null, |v| Frame::Bulk(v.data)),
        },
        ReadQuery::MGet(keys) => {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(match live(key)? {
                    Some(v) if v.kind == KIND_STRING => Frame::Bulk(v.data),
                    _ => Frame::Null,
                });
            }
            Frame::Array(out)
        }
        ReadQuery::StrLen(key) => match live_string(key)? {
            Err(e) => e,
            Ok(v) => Frame::Integer(v.map_or(0, |v| v.data.len() as i64)),
        },
        ReadQuery::PfCount(keys) => hyperloglog::count(live, keys)?,
        ReadQuery::GetBit { key, offset } => match live_string(key)? {
            Err(e) => e,
            Ok(v) => Frame::Integer(v.is_some_and(|v| bitmaps::get_bit(&v.data, *offset)) as i64),
        },
        ReadQuery::BitCount { key, range, error } => match (live_string(key)?, error) {
            (Err(e), _) => e,
            (Ok(None), _) => Frame::Integer(0),
            (Ok(Some(_)), Some(error)) => Frame::Error(error.clone()),
            (Ok(Some(v)), None) => Frame::Integer(bitmaps::count(&v.data, range.as_ref())),
        },
        ReadQuery::BitPos { key, bit, range, error } => match (live_string(key)?, error) {
            (Err(e), _) => e,
            // A missing key is an endless run of zeros.
            (Ok(None), _) => Frame::Integer(if *bit { -1 } else { 0 }),
            (Ok(Some(_)), Some(error)) => Frame::Error(error.clone()),
            (Ok(Some(v)), None) => Frame::Integer(bitmaps::position(&v.data, *bit, range.as_ref())),
        },
        ReadQuery::GetRange { key, start, end } => match live_string(key)? {
            Err(e) => e,
            Ok(v) => Frame::Bulk(substring(&v.map_or_else(Bytes::new, |v| v.data), *start, *end)),
        },
        ReadQuery::Lcs { a, b, mode } => {
            let (a, b) = match (live_string(a)?, live_string(b)?) {
                (Ok(a), Ok(b)) => {
                    (a.map_or_else(Bytes::new, |v| v.data), b.map_or_else(Bytes::new, |v| v.data))
                }
                _ => return Ok(Frame::error("ERR The specified keys must contain string values")),
            };
            lcs(&a, &b, mode)
        }
        ReadQuery::Exists(keys) | ReadQuery::Touch(keys) => {
            let mut n = 0;
            for key in keys {
                if live(key)?.is_some() {
                    n += 1;
                }
            }
            Frame::Integer(n)
        }
        ReadQuery::Type(key) => Frame::Simple(live(key)?.map_or("none", |v| v.type_name()).into()),
        ReadQuery::Keys(pattern) => {
            let mut out = Vec::new();
            ks.for_each_from(0, &mut |_, key, v| {
                if v.alive_at(now) && (&pattern[..] == b"*" || glob_match(pattern, key)) {
                    out.push(Frame::Bulk(Bytes::copy_from_slice(key)));
                }
                true
            })?;
            Frame::Array(out)
        }
        ReadQuery::Scan { cursor, count, pattern, kind } => {
            let mut keys = Vec::new();
            let next = visit_slice(ks, *cursor, *count, &mut |key, v| {
                if v.alive_at(now) && scan_matches(key, v, pattern, kind) {
                    keys.push(Frame::Bulk(Bytes::copy_from_slice(key)));
                }
            })?;
            Frame::Array(vec![Frame::bulk(next.to_string()), Frame::Array(keys)])
        }
        ReadQuery::RandomKey { seed } => random_key(ks, *seed, now)?,
        ReadQuery::DbSize => Frame::Integer(ks.counts().keys as i64),
        ReadQuery::Ttl { key, millis } => match live(key)? {
            None => Frame::Integer(-2),
            Some(v) if v.expires_at_ms == 0 => Frame::Integer(-1),
            Some(v) => {
                let left = (v.expires_at_ms as i64 - now).max(0);
                Frame::Integer(if *millis { left } else { (left + 500) / 1000 })
            }
        },
        ReadQuery::ExpireTime { key, millis } => match live(key)? {
            None => Frame::Integer(-2),
            Some(v) if v.expires_at_ms == 0 => Frame::Integer(-1),
            Some(v) => {
                let at = v.expires_at_ms as i64;
                Frame::Integer(if *millis { at } else { (at + 500) / 1000 })
            }
        },
        ReadQuery::Versions(keys) => {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(Frame::Integer(live(key)?.map_or(0, |v| v.version as i64)));
            }
            Frame::Array(out)
        }
        ReadQuery::ExpiredKeys { from, limit } => {
            // `[position to resume at, 0 when done; expired keys]`.
            let mut expired = Vec::new();
            let next = visit_slice(ks, *from, *limit, &mut |key, v| {
                if !v.alive_at(now) {
                    expired.push(Frame::Bulk(Bytes::copy_from_slice(key)));
                }
            })?;
            Frame::Array(vec![Frame::Integer(next as i64), Frame::Array(expired)])
        }
        ReadQuery::KeyspaceStats => {
            let counts = ks.counts();
            Frame::Array(vec![Frame::Integer(counts.keys as i64), Frame::Integer(counts.expires as i64)])
        }
        ReadQuery::HGet { .. }
        | ReadQuery::HMGet { .. }
        | ReadQuery::HExists { .. }
        | ReadQuery::HStrLen { .. }
        | ReadQuery::HLen(_)
        | ReadQuery::HGetAll { .. }
        | ReadQuery::HRandField { .. }
        | ReadQuery::HScan { .. } => hashes::read_hash(ks, q, now)?,
        ReadQuery::ArgumentError { key, expects, error, if_missing } => {
            match of_kind(live(key)?, kind_of(*expects)) {
                Err(wrongtype) => wrongtype,
                Ok(None) => if_missing.as_ref().map_or(Frame::Null, |e| Frame::Error(e.clone())),
                Ok(Some(_)) => Frame::Error(error.clone()),
            }
        }
        ReadQuery::LLen(_) | ReadQuery::LIndex { .. } | ReadQuery::LRange { .. } | ReadQuery::LPos { .. } => {
            lists::read_list(ks, q, now)?
        }
        ReadQuery::SCard(_)
        | ReadQuery::SIsMember { .. }
        | ReadQuery::SCombine { .. }
        | ReadQuery::SInterCard { .. }
        | ReadQuery::SRandMember { .. }
        | ReadQuery::SScan { .. } => sets::read_set(ks, q, now)?,
        ReadQuery::ZCard(_)
        | ReadQuery::ZScore { .. }
        | ReadQuery::ZRank { .. }
        | ReadQuery::ZCount { .. }
        | ReadQuery::ZRange { .. }
        | ReadQuery::ZRandMember { .. }
        | ReadQuery::ZScan { .. }
        | ReadQuery::ZCombine { .. }
        | ReadQuery::ZInterCard { .. }
        | ReadQuery::ZCombineError { .. } => zsets::read_zset(ks, q, now)?,
        ReadQuery::GeoPos { .. }
        | ReadQuery::GeoHash { .. }
        | ReadQuery::GeoDist { .. }
        | ReadQuery::GeoSearch(_) => geo::read_geo(ks, q, now)?,
        ReadQuery::Sort(spec) => sort::read_sort(ks, spec, now)?,
        ReadQuery::Eval(eval) => {
            scripts::run(eval, &mut ReadOnly { ks, now }, now, scripts::seed(0, now, eval))?
        }
    })
}

/// GETRANGE's index arithmetic, exactly as Redis does it.
fn substring(s: &[u8], start: i64, end: i64) -> Bytes {
    let len = s.len() as i64;
    if start < 0 && end < 0 && start > end {
        return Bytes::new();
    }
    let mut start = if start < 0 { len + start } else { start };
    let mut end = if end < 0 { len + end } else { end };
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return Bytes::new();
    }
    Bytes::copy_from_slice(&s[start as usize..=end as usize])
}

/// A pseudo-random live key: the first one from a random position of the keyspace's order on,
/// wrapping around.
fn random_key(ks: &dyn KeyRead, seed: u64, now: i64) -> Result<Frame> {
    let mut x = seed | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let mut found = None;
    for from in [x, 0] {
        ks.for_each_from(from, &mut |_, key, v| {
            if v.alive_at(now) {
                found = Some(Bytes::copy_from_slice(key));
            }
            found.is_none()
        })?;
        if found.is_some() {
            break;
        }
    }
    Ok(found.map_or(Frame::Null, Frame::Bulk))
}

/// LCS with Redis's tie-breaking, so the same subsequence and ranges come out.
fn lcs(a: &[u8], b: &[u8], mode: &LcsMode) -> Frame {
    let (n, m) = (a.len(), b.len());
    let width = m + 1;
    let mut table = vec![0u32; (n + 1) * (m + 1)];
    for i in 1..=n {
        for j in 1..=m {
            table[i * width + j] = if a[i - 1] == b[j - 1] {
                table[(i - 1) * width + j - 1] + 1
            } else {
                table[(i - 1) * width + j].max(table[i * width + j - 1])
            };
        }
    }
    let len = table[n * width + m] as usize;
    if mode.len_only {
        return Frame::Integer(len as i64);
    }
    let mut result = vec![0u8; len];
    let mut idx = len;
    let mut matches = Vec::new();
    // The current run of matched bytes, as inclusive ranges in a and b.
    let mut run: Option<(usize, usize, usize, usize)> = None;
    let (mut i, mut j) = (n, m);
    let emit = |run: (usize, usize, usize, usize), matches: &mut Vec<Frame>| {
        let (a_start, a_end, b_start, b_end) = run;
        let match_len = a_end - a_start + 1;
        if match_len >= mode.min_match_len {
            let range =
                |s: usize, e: usize| Frame::Array(vec![Frame::Integer(s as i64), Frame::Integer(e as i64)]);
            let mut item = vec![range(a_start, a_end), range(b_start, b_end)];
            if mode.with_match_len {
                item.push(Frame::Integer(match_len as i64));
            }
            matches.push(Frame::Array(item));
        }
    };
    while i > 0 && j > 0 {
        if a[i - 1] == b[j - 1] {
            idx -= 1;
            result[idx] = a[i - 1];
            run = match run {
                Some((a_start, a_end, b_start, b_end)) if a_start == i && b_start == j => {
                    Some((i - 1, a_end, j - 1, b_end))
                }
                Some(previous) => {
                    if mode.idx {
                        emit(previous, &mut matches);
                    }
                    Some((i - 1, i - 1, j - 1, j - 1))
                }
                None => Some((i - 1, i - 1, j - 1, j - 1)),
            };
            i -= 1;
            j -= 1;
        } else if table[(i - 1) * width + j] > table[i * width + j - 1] {
            i -= 1;
        } else {
            j -= 1;
        }
    }
    if !mode.idx {
        return Frame::Bulk(Bytes::from(result));
    }
    if let Some(last) = run {
        emit(last, &mut matches);
    }
    Frame::Map(vec![
        (Frame::bulk("matches"), Frame::Array(matches)),
        (Frame::bulk("len"), Frame::Integer(len as i64)),
    ])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::command::CollectionScan;

    use super::*;

    /// Stored keys at chosen positions (a hash collision, which XXH3 makes too rare to meet).
    struct Positions(Vec<(u64, &'static str)>);

    impl KeyRead for Positions {
        fn value(&self, _: &[u8]) -> Result<Option<Value>> {
            Ok(None)
        }

        fn for_each_from(&self, from: u64, visit: &mut dyn FnMut(u64, &[u8], &Value) -> bool) -> Result<()> {
            let value = Value::string(Bytes::new());
            for &(p, key) in self.0.iter().filter(|(p, _)| *p >= from) {
                if !visit(p, key.as_bytes(), &value) {
                    break;
                }
            }
            Ok(())
        }

        fn counts(&self) -> KeyCounts {
            KeyCounts::default()
        }

        fn part(&self, _: &[u8]) -> Result<Option<Bytes>> {
            Ok(None)
        }
    }

    #[test]
    fn a_scan_slice_never_ends_between_two_keys_of_one_position() {
        let ks = Positions(vec![(3, "a"), (5, "b"), (5, "c"), (5, "d"), (9, "e")]);
        let slice = |from, count| {
            let mut keys = Vec::new();
            let next =
                visit_slice(&ks, from, count, &mut |k, _| keys.push(String::from_utf8(k.to_vec()).unwrap()));
            (next.unwrap(), keys)
        };
        assert_eq!(slice(0, 1), (5, vec!["a".to_owned()]));
        assert_eq!(
            slice(5, 1),
            (9, vec!["b".to_owned(), "c".to_owned(), "d".to_owned()]),
            "the whole position"
        );
        assert_eq!(slice(0, 2), (9, vec!["a".to_owned(), "b".to_owned(), "c".to_owned(), "d".to_owned()]));
        assert_eq!(slice(9, 1), (0, vec!["e".to_owned()]), "exhausted: cursor 0");
        assert_eq!(slice(6, 10), (0, vec!["e".to_owned()]), "a cursor between positions");
    }

    pub(super) const NOW: i64 = 1_000_000;

    /// A scan's every step at once: COUNT beyond any collection of the tests, so that a
    /// collection in parts answers in one call, as a whole one does.
    pub(super) fn every_step(pattern: &str, novalues: bool) -> CollectionScan {
        CollectionScan {
            pattern: Some(Bytes::copy_from_slice(pattern.as_bytes())),
            count: usize::MAX,
            novalues,
        }
    }

    /// A keyspace a test drives: its database, and its key counts as the applies kept them.
    pub(super) struct Replica {
        _dir: tempfile::TempDir,
        db: DB,
        counts: KeyCounts,
        limits: Limits,
    }

    impl Replica {
        pub(super) fn new(limits: Limits) -> Self {
            let (dir, db) = kv_db();
            Replica { _dir: dir, db, counts: KeyCounts::default(), limits }
        }

        /// Applies `steps` as one batch, from log index `index` on, and answers each.
        pub(super) fn apply(&mut self, index: u64, steps: &[Queued]) -> Vec<Frame> {
            let mut batch = ApplyBatch::new(&self.db, self.counts);
            batch.limits = self.limits;
            batch.now = NOW;
            let mut replies = Vec::new();
            for (i, step) in steps.iter().enumerate() {
                batch.index = index + i as u64;
                replies.push(match step.clone() {
                    Queued::Write(op) => batch.write(op).unwrap(),
                    Queued::Read(query) => execute_read(&batch, &query, NOW).unwrap(),
                });
            }
            let (write, counts) = batch.into_write_batch();
            self.db.write(write).unwrap();
            self.counts = counts;
            replies
        }

        pub(super) fn read(&self, query: &ReadQuery) -> Frame {
            execute_read(&DbView { db: &self.db, counts: self.counts }, query, NOW).unwrap()
        }

        /// Checks the stored records: the counts the applies kept are the keys' records; every
        /// part belongs to a stored value, a list has every chunk, a hash's buckets hold its
        /// fields, each in its own bucket, and a sorted set's tree is sound
        /// ([`ztree::check_tree`]).
        pub(super) fn check_records(&self) {
            let (mut counts, mut stored, mut allowed, mut required) =
                (KeyCounts::default(), BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
            let mut bucketed = Vec::new();
            for item in self.db.iterator_cf(kv_cf(&self.db), IteratorMode::Start) {
                let (key, raw) = item.unwrap();
                counts.add_record(&key, &raw);
                if !is_key_record(&key) {
                    stored.insert(key.to_vec());
                    continue;
                }
                let value = Value::decode(&raw).unwrap();
                let Some(parts) = Parts::of(&value).unwrap() else { continue };
                let numbers = parts.numbers(&self.db_view()).unwrap();
                let keys: Vec<Vec<u8>> = numbers.iter().map(|n| parts::part_key(parts.id(), *n)).collect();
                allowed.extend(keys.iter().cloned());
                match parts {
                    Parts::List(_) => required.extend(keys),
                    Parts::Buckets(buckets) => bucketed.push((value.kind, buckets)),
                    Parts::Tree(tree) => ztree::check_tree(&self.db_view(), &tree),
                }
            }
            assert_eq!(counts, self.counts, "the counts kept by the applies");
            assert!(stored.is_subset(&allowed), "a part without its value");
            assert!(required.is_subset(&stored), "a list without all its chunks");
            for (kind, buckets) in bucketed {
                let mut len = 0;
                for bucket in buckets.numbers() {
                    let Some(data) = self.db_view().part(&buckets.key(bucket)).unwrap() else { continue };
                    let keys: Vec<Bytes> = match kind {
                        KIND_HASH => {
                            hashes::HashFields::decode(&data).unwrap().0.into_iter().map(|(f, _)| f).collect()
                        }
                        _ => sets::decode(&data).unwrap(),
                    };
                    assert!(!keys.is_empty(), "an empty bucket is not stored");
                    for key in &keys {
                        assert_eq!(buckets.of(key), bucket, "an item in another bucket than its own");
                    }
                    len += keys.len() as u64;
                }
                assert_eq!(len, buckets.len, "the directory counts the buckets' items");
            }
        }

        pub(super) fn db_view(&self) -> DbView<'_> {
            DbView { db: &self.db, counts: self.counts }
        }
    }

    /// Drives two keyspaces through the same 60 random sequences of `step`s: one whose
    /// collections leave their single record under `limits` (drawn per seed, small, so that
    /// parts are made, grown, shrunk and dropped all the time), and one that keeps every
    /// collection whole. Checks, batch by batch, that both answer alike (each reply through
    /// `normalize`, which takes out what the layout may order differently), that the first's
    /// records are sound, and that `whole` (a read of all of a key) agrees on each key.
    pub(super) fn layouts_agree(
        limits: impl Fn(&mut fastrand::Rng) -> Limits,
        step: impl Fn(&mut fastrand::Rng) -> Queued,
        normalize: impl Fn(&Queued, Frame) -> Frame,
        whole: impl Fn(Bytes) -> ReadQuery,
    ) {
        let kept_whole = Limits { chunk_elements: u32::MAX, whole_fields: usize::MAX, ..Limits::default() };
        for seed in 0..60 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let limits = limits(&mut rng);
            let (mut parted, mut whole_only) = (Replica::new(limits), Replica::new(kept_whole));
            let mut index = 1;
            for _ in 0..60 {
                let steps: Vec<Queued> = (0..rng.usize(1..8)).map(|_| step(&mut rng)).collect();
                let answers = |replica: &mut Replica| -> Vec<Frame> {
                    let replies = replica.apply(index, &steps);
                    steps.iter().zip(replies).map(|(step, reply)| normalize(step, reply)).collect()
                };
                assert_eq!(
                    answers(&mut parted),
                    answers(&mut whole_only),
                    "seed {seed}, {limits:?}: {steps:?}"
                );
                index += steps.len() as u64;
                parted.check_records();
                for key in ["a", "b", "c"] {
                    let query = whole(Bytes::from(key));
                    let read =
                        |replica: &Replica| normalize(&Queued::Read(query.clone()), replica.read(&query));
                    assert_eq!(read(&parted), read(&whole_only), "seed {seed}: {key}");
                }
            }
        }
    }

    /// A RocksDB with the keyspace's column family, in a directory that lives as long as it.
    pub(super) fn kv_db() -> (tempfile::TempDir, DB) {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let db = DB::open_cf(&opts, dir.path(), [CF_KV]).unwrap();
        (dir, db)
    }

    #[test]
    fn a_batch_writes_each_key_it_touched_once_in_its_final_state() {
        let (_dir, db) = kv_db();
        let value = |v: &str| Value::string(Bytes::copy_from_slice(v.as_bytes()));
        let (hot, gone, kept) = (Bytes::from("hot"), Bytes::from("gone"), Bytes::from("kept"));
        let mut first = ApplyBatch::new(&db, KeyCounts::default());
        first.put(gone.clone(), value("old")).unwrap();
        db.write(first.into_write_batch().0).unwrap();

        let mut batch = ApplyBatch::new(&db, KeyCounts { keys: 1, expires: 0 });
        for i in 0..100 {
            batch.index = i;
            batch.put(hot.clone(), value(&format!("v{i}"))).unwrap();
        }
        batch.put(gone.clone(), value("new")).unwrap();
        batch.delete(&gone).unwrap();
        batch.put(kept.clone(), value("x")).unwrap();
        batch.delete(&kept).unwrap();
        batch.put(kept.clone(), value("y")).unwrap();
        let (write, counts) = batch.into_write_batch();
        assert_eq!(write.len(), 3, "one write per key, not one per command");
        assert_eq!(counts, KeyCounts { keys: 2, expires: 0 });
        db.write(write).unwrap();
        let stored = read_value(&db, &hot).unwrap().unwrap();
        assert_eq!((stored.data, stored.version), (Bytes::from("v99"), 99), "the last SET wins");
        assert_eq!(read_value(&db, &gone).unwrap(), None);
        assert_eq!(read_value(&db, &kept).unwrap().unwrap().data, Bytes::from("y"));
    }

    #[test]
    fn a_batch_names_the_lists_and_sorted_sets_it_left_with_elements() {
        let (_dir, db) = kv_db();
        let mut batch = ApplyBatch::new(&db, KeyCounts::default());
        let mut write = |op: WriteOp| batch.write(op).unwrap();
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        write(WriteOp::Push {
            key: b("q"),
            elements: vec![b("a"), b("b")],
            left: true,
            only_if_exists: false,
        });
        write(WriteOp::Push { key: b("q"), elements: vec![b("c")], left: false, only_if_exists: false });
        write(WriteOp::Push { key: b("emptied"), elements: vec![b("x")], left: true, only_if_exists: false });
        write(WriteOp::Pop { key: b("emptied"), left: true, count: None });
        write(WriteOp::Push { key: b("retyped"), elements: vec![b("x")], left: true, only_if_exists: false });
        write(WriteOp::Set { key: b("retyped"), value: b("now a string") });
        write(WriteOp::ZAdd {
            key: b("z"),
            pairs: vec![(1.0, b("m")), (2.0, b("n"))],
            cond: crate::command::ZAddCond::Always,
            cmp: crate::command::ZAddCmp::Any,
            ch: false,
            incr: false,
        });
        write(WriteOp::SAdd { key: b("set"), members: vec![b("m")] });
        write(WriteOp::LMove { from: b("q"), to: b("moved"), from_left: true, to_left: true });
        assert_eq!(
            batch.fed_keys(),
            vec![
                FedKey { key: b("q"), kind: ValueType::List, elements: 2 },
                FedKey { key: b("z"), kind: ValueType::SortedSet, elements: 2 },
                FedKey { key: b("moved"), kind: ValueType::List, elements: 1 },
            ],
            "each key once, as the batch leaves it; not sets, deleted or retyped keys"
        );
        assert_eq!(
            batch.write(WriteOp::BPop { keys: vec![b("none"), b("moved")], left: false }).unwrap(),
            Frame::Array(vec![Frame::bulk("moved"), Frame::bulk("b")])
        );
        assert_eq!(
            batch.write(WriteOp::BZPop { keys: vec![b("z")], max: true }).unwrap(),
            Frame::Array(vec![Frame::bulk("z"), Frame::bulk("n"), Frame::bulk("2")])
        );
        assert_eq!(
            batch.write(WriteOp::ZMPop { keys: vec![b("z")], max: false, count: 9 }).unwrap(),
            Frame::Array(vec![
                Frame::bulk("z"),
                Frame::Array(vec![Frame::Array(vec![Frame::bulk("m"), Frame::bulk("1")])])
            ])
        );
        assert_eq!(batch.write(WriteOp::BZPop { keys: vec![b("z")], max: true }).unwrap(), Frame::NullArray);
        assert!(
            matches!(batch.write(WriteOp::BPop { keys: vec![b("set"), b("q")], left: true }).unwrap(),
                Frame::Error(e) if e.starts_with("WRONGTYPE")),
            "a key of another type before the list is an error"
        );
    }

    #[test]
    fn a_batch_visits_its_pending_changes_merged_into_the_database_in_order() {
        let (_dir, db) = kv_db();
        let key = |i: u32| Bytes::from(format!("k{i}"));
        let value = |v: &str| Value::string(Bytes::copy_from_slice(v.as_bytes()));
        let mut stored = ApplyBatch::new(&db, KeyCounts::default());
        for i in 0..40 {
            stored.put(key(i), value("old")).unwrap();
        }
        db.write(stored.into_write_batch().0).unwrap();
        // Pending in the next batch: new keys, overwrites and deletions, not written yet.
        let mut batch = ApplyBatch::new(&db, KeyCounts { keys: 40, expires: 0 });
        let mut expected: Vec<(u64, Bytes, Bytes)> =
            (0..40).map(|i| (position(&key(i)), key(i), Bytes::from_static(b"old"))).collect();
        for i in (0..40).step_by(3) {
            batch.put(key(i), value("new")).unwrap();
            expected.iter_mut().find(|e| e.1 == key(i)).unwrap().2 = Bytes::from_static(b"new");
        }
        for i in (1..40).step_by(4) {
            batch.delete(&key(i)).unwrap();
            expected.retain(|e| e.1 != key(i));
        }
        for i in 40..50 {
            batch.put(key(i), value("added")).unwrap();
            expected.push((position(&key(i)), key(i), Bytes::from_static(b"added")));
        }
        expected.sort();
        let visit_from = |from: u64, limit: usize| {
            let mut seen = Vec::new();
            batch
                .for_each_from(from, &mut |p, k, v| {
                    seen.push((p, Bytes::copy_from_slice(k), v.data.clone()));
                    seen.len() < limit
                })
                .unwrap();
            seen
        };
        assert_eq!(visit_from(0, usize::MAX), expected, "everything, in order");
        let middle = expected[expected.len() / 2].0;
        let from_middle: Vec<_> = expected.iter().filter(|e| e.0 >= middle).cloned().collect();
        assert_eq!(visit_from(middle, usize::MAX), from_middle);
        for limit in 1..expected.len() {
            assert_eq!(visit_from(0, limit), expected[..limit], "stopped after {limit}");
        }
    }

    #[test]
    fn positions_are_stable() {
        // Stored data and cursors depend on these: a different hash would need a new layout.
        assert_eq!(position(b""), 0x2d06800538d394c2 >> 11);
        assert!(position(b"key:1") < 1 << 53, "a double holds every cursor exactly");
        assert_eq!(position(b"key:1"), position(b"key:1"));
        assert_ne!(position(b"key:1"), position(b"key:2"));
    }
}
