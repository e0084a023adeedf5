//! Large hashes and sets, stored in buckets.
//!
//! A hash of up to [`WHOLE_FIELDS`] fields (a set of up to as many members) is one record of
//! the keyspace, its fields and values (its members) as the payload ([`super::hashes`],
//! [`super::sets`]). A larger one's record holds a [`Buckets`] directory, and its fields live
//! in bucket records, its *parts* ([`super::parts`]), found by linear hashing: a field's bucket
//! is given by the low bits of a stable hash of the field, and the buckets grow one at a time
//! as the hash does (the next bucket in turn splits in two once the buckets hold
//! [`BUCKET_LOAD`] fields on average) and shrink one at a time as it empties. So a write reads
//! and writes a bucket or two whatever the hash's size, and none rehashes the whole hash. An
//! empty bucket is not stored. A hash that shrinks to [`WHOLE_AGAIN`] fields is stored whole
//! again. A write changes the hash or set through an [`Editing`], which reads each bucket it
//! needs once and writes nothing until [`ApplyBatch::save_items`].
//!
//! HSCAN, SSCAN and ZSCAN go bucket by bucket ([`Layout::scan`]). Their cursor is a *scan
//! position*: a field's hash with its bits reversed ([`scan_position`]). A bucket holds the
//! fields whose hashes end in some bits, so its fields' positions are the ones that start with
//! those bits reversed: one interval of positions, whatever the number of buckets. A scan goes
//! up through the positions, and each call returns the buckets from the one holding the cursor
//! on (only their fields at or past it), so a field present for the whole scan is returned
//! once, however the buckets split or merge meanwhile (the guarantee Redis gives, without its
//! repeats).

use std::collections::btree_map::Entry;
use std::collections::hash_map::Entry as HashEntry;
use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::{Buf, BufMut, Bytes};

use super::parts::{damaged, directory_fields, directory_header, part_key, Parts, PartsId};
use super::{or_refusal, ApplyBatch, KeyRead, Stored, XorShift, MAX_STRING_LEN, TOO_BIG_COLLECTION};
use crate::error::Result;
use crate::resp::Frame;

/// A hash of more fields than this is stored in buckets (Redis's `hash-max-listpack-entries`).
pub(super) const WHOLE_FIELDS: usize = 128;
/// A hash in buckets that shrinks to this many fields is stored whole again.
pub(super) const WHOLE_AGAIN: u64 = 32;
/// The average number of fields per bucket beyond which the buckets grow; they shrink below a
/// quarter of it.
pub(super) const BUCKET_LOAD: u64 = 64;
/// A hash or set in buckets of more items than this picks random items (HRANDFIELD,
/// SRANDMEMBER, SPOP) bucket by bucket ([`Layout::pick_by_bucket`]).
pub(super) const PICK_BY_BUCKET_ABOVE: u64 = 1024;

/// The directory's own fields (after the parts' id): `level`, `split` and `len`.
pub(super) const FIELDS_LEN: usize = 17;
const DIRECTORY_LEN: usize = 16 + FIELDS_LEN;

/// A large hash's record: how many buckets it has and how many fields they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Buckets {
    pub id: PartsId,
    /// There are `2^level + split` buckets: those below `split` have already split at this
    /// level, so a field whose low `level` bits fall below `split` takes one bit more.
    level: u8,
    split: u64,
    /// How many fields the hash holds.
    pub len: u64,
}

impl Buckets {
    /// Enough buckets for `len` fields at about half the load, none split yet.
    pub(super) fn sized_for(id: PartsId, len: u64, load: u64) -> Buckets {
        let mut level = 0;
        while (1u64 << level) * load / 2 < len {
            level += 1;
        }
        Buckets { id, level, split: 0, len }
    }

    /// The directory a hash record's payload holds; none if the payload is a whole hash.
    pub(super) fn decode(data: &[u8]) -> Result<Option<Buckets>> {
        let Some((id, mut r)) = directory_fields(data, DIRECTORY_LEN, "bucket")? else {
            return Ok(None);
        };
        Buckets::decode_fields(id, &mut r).map(Some).ok_or_else(|| damaged("bucket", data))
    }

    /// The buckets named `id` whose fields ([`FIELDS_LEN`] bytes) `r` starts with; none if
    /// they make no sense.
    pub(super) fn decode_fields(id: PartsId, r: &mut &[u8]) -> Option<Buckets> {
        let buckets = Buckets { id, level: r.get_u8(), split: r.get_u64(), len: r.get_u64() };
        (buckets.level < 63 && buckets.split < 1u64 << buckets.level).then_some(buckets)
    }

    pub(super) fn encode(&self) -> Bytes {
        let mut out = directory_header(self.id, DIRECTORY_LEN);
        self.encode_fields(&mut out);
        out.freeze()
    }

    pub(super) fn encode_fields(&self, out: &mut impl BufMut) {
        out.put_u8(self.level);
        out.put_u64(self.split);
        out.put_u64(self.len);
    }

    pub(super) fn count(&self) -> u64 {
        (1u64 << self.level) + self.split
    }

    /// The numbers of its buckets.
    pub(super) fn numbers(&self) -> std::ops::RangeInclusive<u64> {
        0..=self.count() - 1
    }

    /// The bucket that holds `field`.
    pub(super) fn of(&self, field: &[u8]) -> u64 {
        self.of_hash(hash(field))
    }

    /// The bucket that holds fields of this hash.
    fn of_hash(&self, hash: u64) -> u64 {
        let low = hash & ((1u64 << self.level) - 1);
        if low < self.split {
            hash & ((1u64 << (self.level + 1)) - 1)
        } else {
            low
        }
    }

    /// Adds a bucket: the bucket to split, and the new one that takes part of its fields.
    pub(super) fn grow(&mut self) -> (u64, u64) {
        let (from, to) = (self.split, self.split + (1u64 << self.level));
        self.split += 1;
        if self.split == 1u64 << self.level {
            self.level += 1;
            self.split = 0;
        }
        (from, to)
    }

    /// Removes the last bucket: the bucket that takes its fields, and the last one.
    pub(super) fn shrink(&mut self) -> (u64, u64) {
        if self.split == 0 {
            self.level -= 1;
            self.split = 1u64 << self.level;
        }
        self.split -= 1;
        (self.split, self.split + (1u64 << self.level))
    }

    pub(super) fn key(&self, bucket: u64) -> Vec<u8> {
        part_key(self.id, bucket)
    }

    /// The bucket that holds scan position `at`, and the position just past the interval it
    /// holds (none if that is the end).
    pub(super) fn scan_interval(&self, at: u64) -> (u64, Option<u64>) {
        let bucket = self.of_hash(at.reverse_bits());
        // A bucket below `split`, or past the first 2^level, is picked by one bit more.
        let bits = self.level as u32 + (bucket < self.split || bucket >= 1u64 << self.level) as u32;
        if bits == 0 {
            return (bucket, None); // the only bucket
        }
        (bucket, bucket.reverse_bits().checked_add(1u64 << (64 - bits)))
    }
}

/// A scan's reply: the cursor to go on from (0: done), and the items of this call.
pub(super) fn scan_reply(next: u64, items: Vec<Frame>) -> Frame {
    Frame::Array(vec![Frame::Bulk(Bytes::from(next.to_string())), Frame::Array(items)])
}

/// The hash that places a field in its bucket.
fn hash(field: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(field)
}

/// Where a scan meets `field`: its hash, bits reversed.
pub(super) fn scan_position(field: &[u8]) -> u64 {
    hash(field).reverse_bits()
}

/// What a bucket holds, and a whole record too: a hash's fields and values, or a set's members.
/// Each item has a key (a field, a member) that decides its bucket.
pub(super) trait Items: Default + Sized {
    fn decode(data: &Bytes) -> Result<Self>;
    fn encode(&self) -> Bytes;
    fn encoded_len(&self) -> u64;
    fn count(&self) -> usize;
    /// The items spread over buckets by `bucket_of` their key, each bucket's in their order.
    fn spread(self, bucket_of: impl Fn(&[u8]) -> u64) -> BTreeMap<u64, Self>;
    /// Takes in another bucket's items (none of which it holds).
    fn absorb(&mut self, other: Self);
    /// Keeps the items whose key `keep` says.
    fn retain_keys(&mut self, keep: impl Fn(&[u8]) -> bool);
    /// The key of item `i`.
    fn key(&self, i: usize) -> &[u8];
    /// Item `i` alone.
    fn item(&self, i: usize) -> Self;
    /// Every bucket's items together.
    fn gather(all: Vec<Self>) -> Self {
        let mut gathered = Self::default();
        for items in all {
            gathered.absorb(items);
        }
        gathered
    }
}

/// The items of one bucket (none stored: an empty bucket).
pub(super) fn read_items<T: Items>(ks: &dyn KeyRead, buckets: &Buckets, bucket: u64) -> Result<T> {
    match ks.part(&buckets.key(bucket))? {
        Some(data) => T::decode(&data),
        None => Ok(T::default()),
    }
}

/// How a hash or a set is stored: whole in its record, or in buckets.
#[derive(Debug)]
pub(super) enum Layout<T> {
    Whole(T),
    Bucketed(Buckets),
}

impl<T: Items> Default for Layout<T> {
    fn default() -> Self {
        Layout::Whole(T::default())
    }
}

impl<T: Items> Layout<T> {
    /// The layout a record's payload holds.
    pub(super) fn decode(data: &Bytes) -> Result<Self> {
        Ok(match Buckets::decode(data)? {
            Some(buckets) => Layout::Bucketed(buckets),
            None => Layout::Whole(T::decode(data)?),
        })
    }

    pub(super) fn len(&self) -> u64 {
        match self {
            Layout::Whole(items) => items.count() as u64,
            Layout::Bucketed(buckets) => buckets.len,
        }
    }

    /// Looks at the items `key` is found with: the whole record's, or its bucket's.
    pub(super) fn look<R>(&self, ks: &dyn KeyRead, key: &[u8], look: impl FnOnce(&T) -> R) -> Result<R> {
        Ok(match self {
            Layout::Whole(items) => look(items),
            Layout::Bucketed(buckets) => look(&read_items(ks, buckets, buckets.of(key))?),
        })
    }

    /// One call of a scan from `cursor`: the items of the buckets from the one holding the
    /// cursor on (those at or past it), until at least `count` are gathered, and the cursor to
    /// go on from (0 when the scan is done). A whole collection is returned whole, with cursor 0,
    /// as Redis answers its small collections.
    pub(super) fn scan(self, ks: &dyn KeyRead, cursor: u64, count: usize) -> Result<(u64, T)> {
        let buckets = match self {
            Layout::Whole(items) => return Ok((0, items)),
            Layout::Bucketed(buckets) => buckets,
        };
        let (mut at, mut found) = (cursor, T::default());
        loop {
            let (bucket, end) = buckets.scan_interval(at);
            let mut items = read_items::<T>(ks, &buckets, bucket)?;
            items.retain_keys(|key| scan_position(key) >= at);
            found.absorb(items);
            match end {
                None => return Ok((0, found)),
                Some(end) => at = end,
            }
            if found.count() >= count {
                return Ok((at, found));
            }
        }
    }

    /// Items picked at random as HRANDFIELD, SRANDMEMBER and SPOP pick them (one for no
    /// `count`; with a positive count that many distinct ones; with a negative one that many
    /// picks, repeats allowed), bucket by bucket: a random bucket, then a random item of it,
    /// drawn again when the bucket is empty or (distinct picks) the item was picked already. So
    /// the cost follows the count, not the size; an item of a fuller bucket is a little less
    /// likely to be picked than one of an emptier bucket (Redis's picks from a large collection
    /// lean too). None when the items should be picked from all of them, as
    /// [`super::pick_random`] does: a collection of up to [`PICK_BY_BUCKET_ABOVE`] items, or a
    /// count of a quarter of them or more.
    pub(super) fn pick_by_bucket(
        &self,
        ks: &dyn KeyRead,
        count: Option<i64>,
        rng: &mut XorShift,
    ) -> Result<Option<T>> {
        let Layout::Bucketed(buckets) = self else {
            return Ok(None);
        };
        let wanted = count.map_or(1, i64::unsigned_abs);
        if buckets.len <= PICK_BY_BUCKET_ABOVE || wanted.saturating_mul(4) >= buckets.len {
            return Ok(None);
        }
        let distinct = count.is_some_and(|count| count > 0);
        let (mut read, mut keys, mut picked) = (HashMap::new(), HashSet::new(), Vec::new());
        while (picked.len() as u64) < wanted {
            let bucket = rng.below(buckets.count() as usize) as u64;
            let items: &T = match read.entry(bucket) {
                HashEntry::Occupied(entry) => entry.into_mut(),
                HashEntry::Vacant(entry) => entry.insert(read_items(ks, buckets, bucket)?),
            };
            if items.count() == 0 {
                continue;
            }
            let at = rng.below(items.count());
            if distinct && !keys.insert(Bytes::copy_from_slice(items.key(at))) {
                continue;
            }
            picked.push(items.item(at));
        }
        Ok(Some(T::gather(picked)))
    }

    /// Every item, a bucket's after another's.
    pub(super) fn into_items(self, ks: &dyn KeyRead) -> Result<T> {
        match self {
            Layout::Whole(items) => Ok(items),
            Layout::Bucketed(buckets) => {
                let all = buckets
                    .numbers()
                    .map(|bucket| read_items(ks, &buckets, bucket))
                    .collect::<Result<_>>()?;
                Ok(T::gather(all))
            }
        }
    }
}

/// A hash or a set as one write changes it: whole, or in buckets, with the buckets it has read
/// (and whether it changed each). Nothing is written until [`ApplyBatch::save_items`].
pub(super) enum Editing<T> {
    Whole(T),
    Bucketed { buckets: Buckets, read: BTreeMap<u64, (T, bool)> },
}

impl<T: Items> Editing<T> {
    pub(super) fn new(layout: Layout<T>) -> Self {
        match layout {
            Layout::Whole(items) => Editing::Whole(items),
            Layout::Bucketed(buckets) => Editing::Bucketed { buckets, read: BTreeMap::new() },
        }
    }

    /// How many items it holds now.
    pub(super) fn len(&self) -> u64 {
        match self {
            Editing::Whole(items) => items.count() as u64,
            Editing::Bucketed { buckets, .. } => buckets.len,
        }
    }

    /// Looks at the items `key` is found with (its bucket is read once per write).
    pub(super) fn look<R>(&mut self, ks: &dyn KeyRead, key: &[u8], look: impl FnOnce(&T) -> R) -> Result<R> {
        self.change(ks, key, |items| (look(items), false))
    }

    /// Changes the items `key` is found with; `change` says whether it changed them.
    pub(super) fn change<R>(
        &mut self,
        ks: &dyn KeyRead,
        key: &[u8],
        change: impl FnOnce(&mut T) -> (R, bool),
    ) -> Result<R> {
        Ok(match self {
            Editing::Whole(items) => change(items).0,
            Editing::Bucketed { buckets, read } => {
                let bucket = buckets.of(key);
                let (items, changed) = match read.entry(bucket) {
                    Entry::Occupied(entry) => entry.into_mut(),
                    Entry::Vacant(entry) => entry.insert((read_items(ks, buckets, bucket)?, false)),
                };
                let before = items.count();
                let (result, now_changed) = change(items);
                *changed |= now_changed;
                buckets.len = buckets.len + items.count() as u64 - before as u64;
                result
            }
        })
    }
}

impl ApplyBatch<'_> {
    fn write_items<T: Items>(&mut self, buckets: &Buckets, bucket: u64, items: &T) {
        let data = (items.count() > 0).then(|| items.encode());
        self.parts.insert(buckets.key(bucket), data);
    }

    /// Spreads a whole record's items over new buckets named `id`; the reply to a bucket too
    /// large, if one would be (then nothing is written).
    pub(super) fn spread_into_buckets<T: Items>(
        &mut self,
        id: PartsId,
        items: T,
    ) -> Result<std::result::Result<Buckets, Frame>> {
        let buckets = Buckets::sized_for(id, items.count() as u64, self.limits.bucket_load);
        let spread = items.spread(|key| buckets.of(key));
        if spread.values().any(|items| items.encoded_len() > MAX_STRING_LEN) {
            return Ok(Err(Frame::error(TOO_BIG_COLLECTION)));
        }
        for (bucket, items) in &spread {
            self.write_items(&buckets, *bucket, items);
        }
        Ok(Ok(buckets))
    }

    /// Adds buckets while they hold more than the load on average, and removes them while they
    /// hold less than a quarter of it, one bucket at a time.
    fn resize_buckets<T: Items>(&mut self, buckets: &mut Buckets) -> Result<()> {
        let load = self.limits.bucket_load;
        while buckets.len > load * buckets.count() {
            let (from, to) = buckets.grow();
            let mut spread = read_items::<T>(self, buckets, from)?.spread(|key| buckets.of(key));
            for bucket in [from, to] {
                self.write_items(buckets, bucket, &spread.remove(&bucket).unwrap_or_default());
            }
        }
        while buckets.count() > 1 && buckets.len * 4 < load * buckets.count() {
            let (into, last) = buckets.shrink();
            let mut merged = read_items::<T>(self, buckets, into)?;
            merged.absorb(read_items(self, buckets, last)?);
            if merged.encoded_len() > MAX_STRING_LEN {
                buckets.grow(); // too large to merge: the buckets stay as they are
                break;
            }
            self.write_items(buckets, into, &merged);
            self.write_items(buckets, last, &T::default());
        }
        Ok(())
    }

    /// Writes the buckets a write changed (`read`: those it read, and whether it changed each),
    /// then grows or shrinks them; the buckets as they are now, or the reply to a bucket too
    /// large (then nothing is written).
    pub(super) fn save_buckets<T: Items>(
        &mut self,
        mut buckets: Buckets,
        read: BTreeMap<u64, (T, bool)>,
    ) -> Result<std::result::Result<Buckets, Frame>> {
        let changed: Vec<(u64, T)> =
            read.into_iter().filter(|(_, (_, changed))| *changed).map(|(b, (items, _))| (b, items)).collect();
        if changed.iter().any(|(_, items)| items.encoded_len() > MAX_STRING_LEN) {
            return Ok(Err(Frame::error(TOO_BIG_COLLECTION)));
        }
        for (bucket, items) in &changed {
            self.write_items(&buckets, *bucket, items);
        }
        self.resize_buckets::<T>(&mut buckets)?;
        Ok(Ok(buckets))
    }

    /// [`Self::save_items`], then `reply`, or the error of a record too large.
    pub(super) fn save_items_then<T: Items>(
        &mut self,
        kind: u8,
        key: Bytes,
        editing: Editing<T>,
        expires: u64,
        reply: Frame,
    ) -> Result<Frame> {
        Ok(or_refusal(self.save_items(key, kind, editing, expires)?, reply))
    }

    /// Stores the hash or set (of `kind`) at `key` as a write left it (one left empty is
    /// deleted): a whole record that outgrew it goes into buckets, buckets grow or shrink with
    /// the items, and one in buckets that shrank to [`WHOLE_AGAIN`] items is stored whole again.
    /// `Err` is the reply to a record too large; nothing is stored then.
    pub(super) fn save_items<T: Items>(
        &mut self,
        key: Bytes,
        kind: u8,
        editing: Editing<T>,
        expires: u64,
    ) -> Result<Stored> {
        let data = match editing {
            Editing::Whole(items) if items.count() > self.limits.whole_fields => {
                let id = self.new_parts_id();
                match self.spread_into_buckets(id, items)? {
                    Ok(buckets) => Some(buckets.encode()),
                    Err(too_big) => return Ok(Err(too_big)),
                }
            }
            Editing::Whole(items) => (items.count() > 0).then(|| items.encode()),
            Editing::Bucketed { buckets, read } => {
                let buckets = match self.save_buckets(buckets, read)? {
                    Ok(buckets) => buckets,
                    Err(too_big) => return Ok(Err(too_big)),
                };
                let whole = match buckets.len <= self.limits.whole_again {
                    true => Some(Layout::<T>::Bucketed(buckets).into_items(self)?),
                    false => None,
                };
                match whole {
                    Some(items) if items.encoded_len() <= MAX_STRING_LEN => {
                        self.drop_parts(&Parts::Buckets(buckets))?;
                        (items.count() > 0).then(|| items.encode())
                    }
                    _ => Some(buckets.encode()),
                }
            }
        };
        self.put_collection(key, kind, data, expires)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CollectionScan, ExpireCond, Expiry, HashPart, Queued, ReadQuery, WriteOp};
    use crate::keyspace::tests::{every_step, layouts_agree, Replica};
    use crate::keyspace::Limits;
    use crate::resp::Frame;
    use std::collections::BTreeSet;

    /// A random hash command (or, now and then, another command on the same keys).
    fn random_step(rng: &mut fastrand::Rng) -> Queued {
        let b = |s: String| Bytes::from(s);
        let key = |rng: &mut fastrand::Rng| b(["a", "b", "c"][rng.usize(..3)].to_owned());
        let field = |rng: &mut fastrand::Rng| b(format!("f{}", rng.u8(..60)));
        let value = |rng: &mut fastrand::Rng| b(format!("{}", rng.i8(..)));
        let write = Queued::Write;
        let read = Queued::Read;
        match rng.u8(..100) {
            0..=29 => write(WriteOp::HSet {
                key: key(rng),
                pairs: (0..rng.usize(1..10)).map(|_| (field(rng), value(rng))).collect(),
                reply_ok: rng.bool(),
            }),
            30..=34 => write(WriteOp::HSetNx { key: key(rng), field: field(rng), value: value(rng) }),
            35..=49 => write(WriteOp::HDel {
                key: key(rng),
                fields: (0..rng.usize(1..12)).map(|_| field(rng)).collect(),
            }),
            50..=54 => write(WriteOp::HIncrBy { key: key(rng), field: field(rng), delta: rng.i64(-5..5) }),
            55..=56 => write(WriteOp::HIncrByFloat { key: key(rng), field: field(rng), increment: 0.5 }),
            57 => write(WriteOp::Rename { from: key(rng), to: key(rng), only_if_absent: rng.bool() }),
            58 => write(WriteOp::Copy { from: key(rng), to: key(rng), replace: rng.bool() }),
            59 => write(WriteOp::Del { keys: vec![key(rng)] }),
            60 => write(WriteOp::Set { key: key(rng), value: value(rng) }),
            61 => write(WriteOp::Expire {
                key: key(rng),
                at: Expiry::InMs(if rng.bool() { 10_000 } else { -1 }),
                cond: ExpireCond::Always,
            }),
            62 if rng.u8(..10) == 0 => write(WriteOp::FlushAll),
            62..=71 => read(ReadQuery::HGet { key: key(rng), field: field(rng) }),
            72..=76 => read(ReadQuery::HMGet { key: key(rng), fields: (0..4).map(|_| field(rng)).collect() }),
            77..=79 => read(ReadQuery::HExists { key: key(rng), field: field(rng) }),
            80..=81 => read(ReadQuery::HStrLen { key: key(rng), field: field(rng) }),
            82..=86 => read(ReadQuery::HLen(key(rng))),
            87..=92 => read(ReadQuery::HGetAll {
                key: key(rng),
                part: [HashPart::Pairs, HashPart::Fields, HashPart::Values][rng.usize(..3)],
            }),
            // A scan's every step at once (its steps are tested below).
            93..=95 => read(ReadQuery::HScan {
                key: key(rng),
                cursor: 0,
                scan: CollectionScan {
                    pattern: rng.bool().then(|| Bytes::from("f1*")),
                    ..every_step("", rng.bool())
                },
            }),
            96 => read(ReadQuery::Keys(Bytes::from("*"))),
            97 => read(ReadQuery::DbSize),
            _ => read(ReadQuery::HRandField { key: key(rng), count: None, with_values: false, seed: 1 }),
        }
    }

    /// A reply with the order of a hash's fields taken out: a hash in buckets lists them bucket
    /// by bucket, a whole one in the order they were set. HRANDFIELD's pick depends on that
    /// order, so only whether it found a field is kept.
    fn unordered(step: &Queued, reply: Frame) -> Frame {
        let sort = |mut items: Vec<Frame>| {
            items.sort_by_key(|f| format!("{f:?}"));
            items
        };
        match (step, reply) {
            (Queued::Read(ReadQuery::HGetAll { .. }), Frame::Map(mut pairs)) => {
                pairs.sort_by_key(|pair| format!("{pair:?}"));
                Frame::Map(pairs)
            }
            (Queued::Read(ReadQuery::HGetAll { .. }), Frame::Array(items)) => Frame::Array(sort(items)),
            (Queued::Read(ReadQuery::HScan { scan, .. }), Frame::Array(mut parts)) => {
                let Some(Frame::Array(items)) = parts.pop() else { panic!("HSCAN's reply") };
                let items = match scan.novalues {
                    true => sort(items),
                    false => sort(items.chunks(2).map(|pair| Frame::Array(pair.to_vec())).collect()),
                };
                parts.push(Frame::Array(items));
                Frame::Array(parts)
            }
            (Queued::Read(ReadQuery::HRandField { .. }), reply) => Frame::Boolean(reply != Frame::Null),
            (_, reply) => reply,
        }
    }

    /// Small buckets, split, merged and made whole again all the time.
    fn small_buckets(rng: &mut fastrand::Rng) -> Limits {
        Limits {
            whole_fields: rng.usize(1..6),
            whole_again: rng.u64(0..3),
            bucket_load: rng.u64(1..5),
            ..Limits::default()
        }
    }

    /// Hashes in buckets answer every hash command as whole hashes do (but for the order of
    /// their fields).
    #[test]
    fn hashes_in_buckets_answer_as_whole_hashes_do() {
        layouts_agree(small_buckets, random_step, unordered, |key| ReadQuery::HGetAll {
            key,
            part: HashPart::Pairs,
        });
    }

    /// A random set command (or, now and then, another command on the same keys).
    fn random_set_step(rng: &mut fastrand::Rng) -> Queued {
        use crate::command::SetOp;
        let key = |rng: &mut fastrand::Rng| Bytes::from(["a", "b", "c"][rng.usize(..3)]);
        let member = |rng: &mut fastrand::Rng| Bytes::from(format!("m{}", rng.u8(..60)));
        let members = |rng: &mut fastrand::Rng, n: usize| (0..rng.usize(1..n)).map(|_| member(rng)).collect();
        let op = |rng: &mut fastrand::Rng| [SetOp::Inter, SetOp::Union, SetOp::Diff][rng.usize(..3)];
        let (write, read) = (Queued::Write, Queued::Read);
        match rng.u8(..100) {
            0..=29 => write(WriteOp::SAdd { key: key(rng), members: members(rng, 12) }),
            30..=44 => write(WriteOp::SRem { key: key(rng), members: members(rng, 14) }),
            45..=49 => write(WriteOp::SMove { from: key(rng), to: key(rng), member: member(rng) }),
            50..=54 => write(WriteOp::SPop {
                key: key(rng),
                count: rng.bool().then(|| rng.u64(0..8)),
                seed: rng.u64(..),
            }),
            55..=57 => write(WriteOp::SCombineStore {
                op: op(rng),
                destination: key(rng),
                keys: vec![key(rng), key(rng)],
            }),
            58 => write(WriteOp::Rename { from: key(rng), to: key(rng), only_if_absent: rng.bool() }),
            59 => write(WriteOp::Copy { from: key(rng), to: key(rng), replace: rng.bool() }),
            60 => write(WriteOp::Del { keys: vec![key(rng)] }),
            61 => write(WriteOp::Set { key: key(rng), value: member(rng) }),
            62 if rng.u8(..10) == 0 => write(WriteOp::FlushAll),
            62..=69 => {
                read(ReadQuery::SIsMember { key: key(rng), members: members(rng, 5), many: rng.bool() })
            }
            70..=76 => read(ReadQuery::SCard(key(rng))),
            77..=84 => read(ReadQuery::SCombine { op: op(rng), keys: vec![key(rng), key(rng)] }),
            85..=87 => read(ReadQuery::SInterCard { keys: vec![key(rng), key(rng)], limit: rng.u64(0..5) }),
            88..=91 => read(ReadQuery::SRandMember {
                key: key(rng),
                count: rng.bool().then(|| rng.i64(-5..5)),
                seed: rng.u64(..),
            }),
            92..=94 => read(ReadQuery::SScan { key: key(rng), cursor: 0, scan: every_step("m1*", false) }),
            95..=96 => read(ReadQuery::Keys(Bytes::from("*"))),
            _ => read(ReadQuery::DbSize),
        }
    }

    /// Sets in buckets answer every set command as whole sets do, reply for reply: a whole set
    /// is read in byte order, so even SPOP and SRANDMEMBER pick the same.
    #[test]
    fn sets_in_buckets_answer_as_whole_sets_do() {
        let all = |key| ReadQuery::SCombine { op: crate::command::SetOp::Union, keys: vec![key] };
        layouts_agree(small_buckets, random_set_step, |_, reply| reply, all);
    }

    #[test]
    fn scan_intervals_tile_every_position_whatever_the_buckets() {
        let mut buckets = Buckets::sized_for(PartsId { index: 1, n: 0 }, 0, 64);
        let fields: Vec<String> = (0..500).map(|i| format!("f{i}")).collect();
        for _ in 0..40 {
            // From position 0, the intervals follow one another to the end, each bucket once.
            let (mut at, mut seen) = (0u64, BTreeSet::new());
            loop {
                let (bucket, end) = buckets.scan_interval(at);
                assert!(seen.insert(bucket), "bucket {bucket} twice in {buckets:?}");
                match end {
                    Some(end) => {
                        assert!(end > at);
                        assert_eq!(buckets.scan_interval(end - 1).0, bucket, "an interval is one bucket's");
                        at = end;
                    }
                    None => break,
                }
            }
            assert_eq!(seen.len() as u64, buckets.count());
            for field in &fields {
                let position = scan_position(field.as_bytes());
                assert_eq!(buckets.scan_interval(position).0, buckets.of(field.as_bytes()), "{field}");
            }
            buckets.grow();
        }
    }

    /// Scans a hash (or a set) in small steps while other fields come and go, splitting and
    /// merging the buckets: every field there for the whole scan is returned, and once.
    #[test]
    fn a_scan_returns_each_lasting_item_once_while_buckets_split_and_merge() {
        let limits = Limits { whole_fields: 4, whole_again: 2, bucket_load: 2, ..Limits::default() };
        for (kind, seed) in [("hash", 1), ("set", 2), ("hash", 3), ("set", 4)] {
            let mut replica = Replica::new(limits);
            let mut rng = fastrand::Rng::with_seed(seed);
            let key = Bytes::from("k");
            let add = |names: Vec<Bytes>| match kind {
                "hash" => Queued::Write(WriteOp::HSet {
                    key: key.clone(),
                    pairs: names.into_iter().map(|n| (n, Bytes::from("v"))).collect(),
                    reply_ok: false,
                }),
                _ => Queued::Write(WriteOp::SAdd { key: key.clone(), members: names }),
            };
            let remove = |names: Vec<Bytes>| match kind {
                "hash" => Queued::Write(WriteOp::HDel { key: key.clone(), fields: names }),
                _ => Queued::Write(WriteOp::SRem { key: key.clone(), members: names }),
            };
            let lasting: Vec<Bytes> = (0..150).map(|i| Bytes::from(format!("keep{i}"))).collect();
            let mut index = 1;
            replica.apply(index, &[add(lasting.clone())]);
            let (mut cursor, mut seen, mut steps) = (0, Vec::new(), 0);
            loop {
                let count = if rng.bool() { 1 } else { rng.usize(2..8) };
                let scan = CollectionScan { pattern: None, count, novalues: true };
                let query = match kind {
                    "hash" => ReadQuery::HScan { key: key.clone(), cursor, scan },
                    _ => ReadQuery::SScan { key: key.clone(), cursor, scan },
                };
                let Frame::Array(reply) = replica.read(&query) else { panic!("a scan's reply") };
                let [Frame::Bulk(next), Frame::Array(items)] = &reply[..] else { panic!("{reply:?}") };
                seen.extend(items.iter().map(|item| match item {
                    Frame::Bulk(name) => name.clone(),
                    other => panic!("{other:?}"),
                }));
                cursor = std::str::from_utf8(next).unwrap().parse().unwrap();
                if cursor == 0 {
                    break;
                }
                steps += 1;
                // Churn: many fields in (the buckets split), then most out (they merge).
                index += 1;
                // Three steps of growth by some hundreds of fields, then back to the lasting
                // ones (the buckets merge by the hundred).
                let step = match steps % 4 {
                    0..=2 => add((0..300).map(|_| Bytes::from(format!("c{}", rng.u16(..1500)))).collect()),
                    _ => remove((0..1500).map(|i| Bytes::from(format!("c{i}"))).collect()),
                };
                replica.apply(index, &[step]);
            }
            assert!(steps > 20, "{kind}: a scan of many steps ({steps})");
            for name in &lasting {
                assert_eq!(seen.iter().filter(|s| *s == name).count(), 1, "{kind}: {name:?}");
            }
            let mut unique = seen.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), seen.len(), "{kind}: nothing twice");
        }
    }

    /// Random members of a large set, and fields of a large hash, are picked bucket by bucket:
    /// members of it, distinct when they must be, every one of them now and then, and SPOP
    /// removes what it picked, the same on every replica.
    #[test]
    fn random_picks_from_large_collections_come_bucket_by_bucket() {
        let (mut one, mut other) = (Replica::new(Limits::default()), Replica::new(Limits::default()));
        let key = Bytes::from("s");
        let members: Vec<Bytes> = (0..3000).map(|i| Bytes::from(format!("m{i}"))).collect();
        let hash = WriteOp::HSet {
            key: Bytes::from("h"),
            pairs: members.iter().map(|m| (m.clone(), Bytes::from(format!("v{m:?}")))).collect(),
            reply_ok: false,
        };
        let steps = [
            Queued::Write(WriteOp::SAdd { key: key.clone(), members: members.clone() }),
            Queued::Write(hash),
        ];
        for replica in [&mut one, &mut other] {
            replica.apply(1, &steps);
        }
        let names = |reply: Frame| -> Vec<Bytes> {
            match reply {
                Frame::Array(items) | Frame::Set(items) => items
                    .into_iter()
                    .map(|item| match item {
                        Frame::Bulk(name) => name,
                        other => panic!("{other:?}"),
                    })
                    .collect(),
                Frame::Bulk(name) => vec![name],
                other => panic!("{other:?}"),
            }
        };
        let distinct = |picked: &[Bytes]| picked.iter().collect::<BTreeSet<_>>().len();
        let random = |count, seed| ReadQuery::SRandMember { key: key.clone(), count, seed };
        assert_eq!(names(one.read(&random(None, 1))).len(), 1);
        let picked = names(one.read(&random(Some(100), 2)));
        assert_eq!((picked.len(), distinct(&picked)), (100, 100));
        let picked = names(one.read(&random(Some(-200), 3)));
        assert_eq!(picked.len(), 200, "repeats allowed");
        let picked = names(one.read(&random(Some(1000), 4)));
        assert_eq!((picked.len(), distinct(&picked)), (1000, 1000), "a third of the set: from all of it");
        let mut counts: BTreeMap<Bytes, u32> = BTreeMap::new();
        for seed in 0..300 {
            for member in names(one.read(&random(Some(-1000), seed))) {
                assert!(member.starts_with(b"m"));
                *counts.entry(member).or_default() += 1;
            }
        }
        assert_eq!(counts.len(), 3000, "in 300 000 picks, every member of 3 000 at least once");
        assert!(counts.values().all(|&n| n < 1000), "no member picked ten times its share");
        let fields = one.read(&ReadQuery::HRandField {
            key: Bytes::from("h"),
            count: Some(5),
            with_values: true,
            seed: 9,
        });
        let Frame::Pairs(pairs) = fields else { panic!("{fields:?}") };
        assert_eq!(pairs.len(), 5);
        for (field, value) in pairs {
            let (Frame::Bulk(field), Frame::Bulk(value)) = (field, value) else { panic!("a pair of bulks") };
            assert_eq!(value, Bytes::from(format!("v{field:?}")), "a field with its own value");
        }
        let pop = [Queued::Write(WriteOp::SPop { key: key.clone(), count: Some(100), seed: 77 })];
        let popped = names(one.apply(2, &pop).remove(0));
        assert_eq!(names(other.apply(2, &pop).remove(0)), popped, "every replica pops the same");
        assert_eq!(distinct(&popped), 100);
        assert_eq!(one.read(&ReadQuery::SCard(key.clone())), Frame::Integer(2900));
        let asked = ReadQuery::SIsMember { key: key.clone(), members: popped, many: true };
        assert_eq!(one.read(&asked), Frame::Array(vec![Frame::Integer(0); 100]), "popped members are gone");
        one.check_records();
    }

    #[test]
    fn buckets_grow_and_shrink_one_at_a_time_and_every_field_has_one() {
        let id = PartsId { index: 1, n: 0 };
        let mut buckets = Buckets::sized_for(id, 0, 64);
        let fields: Vec<String> = (0..2000).map(|i| format!("f{i}")).collect();
        for count in 1..40 {
            assert_eq!(buckets.count(), count);
            assert_eq!(Buckets::decode(&buckets.encode()).unwrap(), Some(buckets));
            for field in &fields {
                assert!(buckets.of(field.as_bytes()) < count);
            }
            // Growing moves fields only from the bucket split to the new one.
            let before: Vec<u64> = fields.iter().map(|f| buckets.of(f.as_bytes())).collect();
            let mut grown = buckets;
            let (from, to) = grown.grow();
            for (field, was) in fields.iter().zip(&before) {
                let now = grown.of(field.as_bytes());
                assert!(now == *was || (*was == from && now == to), "{field}: {was} -> {now}");
            }
            let mut shrunk = grown;
            assert_eq!(shrunk.shrink(), (from, to));
            assert_eq!(shrunk, buckets, "shrinking undoes growing");
            buckets = grown;
        }
        assert_eq!(Buckets::sized_for(id, 129, 64).count(), 8, "129 fields at 32 per bucket");
        assert!(Buckets::decode(&buckets.encode()[..20]).is_err());
    }
}
