//! Hashes: how a hash is stored, and the hash commands' applies and reads.
//!
//! A hash of up to [`super::buckets::WHOLE_FIELDS`] fields is one record of the keyspace, like a string: the
//! same key layout, expiry, version (so `WATCH`, `EXPIRE`, `RENAME`, `COPY`, `SCAN ... TYPE hash`
//! and snapshots need nothing of their own), with its fields and values as the payload, in the
//! order the fields were first set (the order Redis keeps for a small hash). A larger hash is
//! stored in buckets ([`super::buckets`]), so that a write of a field, and a read of one, cost
//! the same at any size; HGETALL, HKEYS, HVALS, HRANDFIELD and HSCAN read every bucket, and list
//! the fields bucket by bucket (Redis's order for a large hash is its hash table's).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::buckets::{scan_reply, Editing, Items, Layout};
use super::{
    decode_elements, encode_elements, encoded_elements_len, pick_random, read_collection, ApplyBatch,
    KeyRead, XorShift,
};
use crate::command::strings::{format_float, parse_float, parse_int};
use crate::command::{HashPart, ReadQuery, WriteOp};
use crate::error::Result;
use crate::glob::glob_match;
use crate::resp::Frame;

/// The type tag of a hash record.
pub(super) const KIND_HASH: u8 = 1;

/// A hash's fields and values, in the order the fields were first set. Encoded as a list of
/// elements: each field followed by its value.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct HashFields(pub(super) Vec<(Bytes, Bytes)>);

impl HashFields {
    /// The fields of an encoded hash (its elements: field, value, field, value ...); they share
    /// the record's buffer.
    pub(super) fn decode(data: &Bytes) -> Result<Self> {
        let elements = decode_elements(data)?;
        if !elements.len().is_multiple_of(2) {
            return Err(crate::Error::Corrupt(format!("hash record of {} elements", elements.len())));
        }
        let mut elements = elements.into_iter();
        let mut fields = Vec::with_capacity(elements.len() / 2);
        while let (Some(field), Some(value)) = (elements.next(), elements.next()) {
            fields.push((field, value));
        }
        Ok(HashFields(fields))
    }

    fn elements(&self) -> impl Iterator<Item = &Bytes> + Clone {
        self.0.iter().flat_map(|(f, v)| [f, v])
    }

    fn encode(&self) -> Bytes {
        encode_elements(2 * self.0.len(), self.elements())
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn get(&self, field: &[u8]) -> Option<&Bytes> {
        self.0.iter().find(|(f, _)| f == field).map(|(_, v)| v)
    }

    /// Sets `field`; true if it is new (it then goes last).
    fn set(&mut self, field: Bytes, value: Bytes) -> bool {
        match self.0.iter_mut().find(|(f, _)| *f == field) {
            Some((_, old)) => {
                *old = value;
                false
            }
            None => {
                self.0.push((field, value));
                true
            }
        }
    }

    /// Removes `field`, keeping the others' order; true if it was there.
    fn remove(&mut self, field: &[u8]) -> bool {
        let before = self.0.len();
        self.0.retain(|(f, _)| f != field);
        self.0.len() != before
    }
}

impl Items for HashFields {
    fn decode(data: &Bytes) -> Result<Self> {
        HashFields::decode(data)
    }

    fn encode(&self) -> Bytes {
        HashFields::encode(self)
    }

    fn encoded_len(&self) -> u64 {
        encoded_elements_len(self.elements())
    }

    fn count(&self) -> usize {
        self.len()
    }

    fn spread(self, bucket_of: impl Fn(&[u8]) -> u64) -> BTreeMap<u64, Self> {
        let mut spread: BTreeMap<u64, HashFields> = BTreeMap::new();
        for (field, value) in self.0 {
            spread.entry(bucket_of(&field)).or_default().0.push((field, value));
        }
        spread
    }

    fn absorb(&mut self, other: Self) {
        self.0.extend(other.0);
    }

    fn retain_keys(&mut self, keep: impl Fn(&[u8]) -> bool) {
        self.0.retain(|(field, _)| keep(field));
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.0[i].0
    }

    fn item(&self, i: usize) -> Self {
        HashFields(vec![self.0[i].clone()])
    }
}

/// The value of `field` in a hash being changed.
fn get(fields: &mut Editing<HashFields>, ks: &dyn KeyRead, field: &[u8]) -> Result<Option<Bytes>> {
    fields.look(ks, field, |fields| fields.get(field).cloned())
}

/// Sets `field` in a hash being changed; true if it is new.
fn set(fields: &mut Editing<HashFields>, ks: &dyn KeyRead, field: Bytes, value: Bytes) -> Result<bool> {
    let key = field.clone();
    fields.change(ks, &key, |fields| (fields.set(field, value), true))
}

/// A live hash (empty if the key is absent) as a write changes it, and its expiry; or the
/// WRONGTYPE reply.
type EditingOrWrongType = std::result::Result<(Editing<HashFields>, u64), Frame>;

impl ApplyBatch<'_> {
    fn live_hash(&mut self, key: &Bytes) -> Result<EditingOrWrongType> {
        Ok(self.live_collection(key, KIND_HASH, Layout::decode)?.map(|found| {
            found.map_or((Editing::Whole(HashFields::default()), 0), |(l, e)| (Editing::new(l), e))
        }))
    }

    /// Applies a hash write ([`WriteOp::HSet`] and the others after it).
    pub(super) fn write_hash(&mut self, op: WriteOp) -> Result<Frame> {
        let key = match &op {
            WriteOp::HSet { key, .. }
            | WriteOp::HSetNx { key, .. }
            | WriteOp::HDel { key, .. }
            | WriteOp::HIncrBy { key, .. }
            | WriteOp::HIncrByFloat { key, .. } => key.clone(),
            other => unreachable!("not a hash write: {other:?}"),
        };
        let (mut fields, expires) = match self.live_hash(&key)? {
            Ok(hash) => hash,
            Err(wrongtype) => return Ok(wrongtype),
        };
        let reply = match op {
            WriteOp::HSet { pairs, reply_ok, .. } => {
                let mut added = 0;
                for (field, value) in pairs {
                    added += set(&mut fields, self, field, value)? as i64;
                }
                if reply_ok {
                    Frame::ok()
                } else {
                    Frame::Integer(added)
                }
            }
            WriteOp::HSetNx { field, value, .. } => {
                if get(&mut fields, self, &field)?.is_some() {
                    return Ok(Frame::Integer(0));
                }
                set(&mut fields, self, field, value)?;
                Frame::Integer(1)
            }
            WriteOp::HDel { fields: names, .. } => {
                let mut removed = 0;
                for name in &names {
                    removed += fields.change(self, name, |fields| (fields.remove(name), true))? as i64;
                }
                if removed == 0 {
                    return Ok(Frame::Integer(0));
                }
                Frame::Integer(removed)
            }
            WriteOp::HIncrBy { field, delta, .. } => {
                let current = match get(&mut fields, self, &field)? {
                    None => 0,
                    Some(v) => match parse_int(&v) {
                        Some(n) => n,
                        None => return Ok(Frame::error("ERR hash value is not an integer")),
                    },
                };
                let Some(next) = current.checked_add(delta) else {
                    return Ok(Frame::error("ERR increment or decrement would overflow"));
                };
                set(&mut fields, self, field, Bytes::from(next.to_string()))?;
                Frame::Integer(next)
            }
            WriteOp::HIncrByFloat { field, increment, .. } => {
                let current = match get(&mut fields, self, &field)? {
                    None => 0.0,
                    Some(v) => match parse_float(&v) {
                        Some(n) => n,
                        None => return Ok(Frame::error("ERR hash value is not a float")),
                    },
                };
                let next = current + increment;
                if !next.is_finite() {
                    return Ok(Frame::error("ERR increment would produce NaN or Infinity"));
                }
                let text = Bytes::from(format_float(next));
                set(&mut fields, self, field, text.clone())?;
                Frame::Bulk(text)
            }
            other => unreachable!("not a hash write: {other:?}"),
        };
        self.save_items_then(KIND_HASH, key, fields, expires, reply)
    }
}

/// Answers a hash read ([`ReadQuery::HGet`] and the others after it) from `ks` at `now`.
pub(super) fn read_hash(ks: &dyn KeyRead, q: &ReadQuery, now: i64) -> Result<Frame> {
    let key = match q {
        ReadQuery::HGet { key, .. }
        | ReadQuery::HMGet { key, .. }
        | ReadQuery::HExists { key, .. }
        | ReadQuery::HStrLen { key, .. }
        | ReadQuery::HLen(key)
        | ReadQuery::HGetAll { key, .. }
        | ReadQuery::HRandField { key, .. }
        | ReadQuery::HScan { key, .. } => key,
        other => unreachable!("not a hash read: {other:?}"),
    };
    let layout = match read_collection(ks, key, now, KIND_HASH, Layout::<HashFields>::decode)? {
        Err(wrongtype) => return Ok(wrongtype),
        Ok(found) => found.map(|(layout, _)| layout).unwrap_or_default(),
    };
    let bulk_or_null = |value: Option<Bytes>| value.map_or(Frame::Null, Frame::Bulk);
    let get = |field: &[u8]| layout.look(ks, field, |fields| fields.get(field).cloned());
    Ok(match q {
        ReadQuery::HGet { field, .. } => bulk_or_null(get(field)?),
        ReadQuery::HMGet { fields: names, .. } => {
            let mut values = Vec::with_capacity(names.len());
            for name in names {
                values.push(bulk_or_null(get(name)?));
            }
            Frame::Array(values)
        }
        ReadQuery::HExists { field, .. } => Frame::Integer(get(field)?.is_some() as i64),
        ReadQuery::HStrLen { field, .. } => Frame::Integer(get(field)?.map_or(0, |v| v.len() as i64)),
        ReadQuery::HLen(_) => Frame::Integer(layout.len() as i64),
        ReadQuery::HGetAll { part, .. } => {
            let pairs = layout.into_items(ks)?.0.into_iter();
            match part {
                HashPart::Pairs => Frame::Map(pairs.map(|(f, v)| (Frame::Bulk(f), Frame::Bulk(v))).collect()),
                HashPart::Fields => Frame::Array(pairs.map(|(f, _)| Frame::Bulk(f)).collect()),
                HashPart::Values => Frame::Array(pairs.map(|(_, v)| Frame::Bulk(v)).collect()),
            }
        }
        ReadQuery::HRandField { count, with_values, seed, .. } => {
            let mut rng = XorShift::new(*seed);
            match layout.pick_by_bucket(ks, *count, &mut rng)? {
                Some(picked) => fields_frame(picked.0, *count, *with_values),
                None => random_fields(layout.into_items(ks)?, *count, *with_values, &mut rng),
            }
        }
        ReadQuery::HScan { cursor, scan, .. } => {
            let (next, fields) = layout.scan(ks, *cursor, scan.count)?;
            let mut out = Vec::new();
            for (field, value) in fields.0 {
                if scan.pattern.as_ref().is_none_or(|p| glob_match(p, &field)) {
                    out.push(Frame::Bulk(field));
                    if !scan.novalues {
                        out.push(Frame::Bulk(value));
                    }
                }
            }
            scan_reply(next, out)
        }
        other => unreachable!("not a hash read: {other:?}"),
    })
}

/// HRANDFIELD: without a count one field (null for a missing key), else [`pick_random`]'s
/// fields. The picks follow `seed`, so a replica applying the same EXEC picks the same.
fn random_fields(fields: HashFields, count: Option<i64>, with_values: bool, rng: &mut XorShift) -> Frame {
    let Some(n) = count else {
        return match fields.len() {
            0 => Frame::Null,
            len => Frame::Bulk(fields.0[rng.below(len)].0.clone()),
        };
    };
    match pick_random(fields.0, n, rng) {
        Ok(picked) => fields_frame(picked, count, with_values),
        Err(too_many) => too_many,
    }
}

/// HRANDFIELD's reply of the fields picked (one field alone for no `count`).
fn fields_frame(picked: Vec<(Bytes, Bytes)>, count: Option<i64>, with_values: bool) -> Frame {
    if count.is_none() {
        return picked.into_iter().next().map_or(Frame::Null, |(field, _)| Frame::Bulk(field));
    }
    if with_values {
        Frame::Pairs(picked.into_iter().map(|(f, v)| (Frame::Bulk(f), Frame::Bulk(v))).collect())
    } else {
        Frame::Array(picked.into_iter().map(|(f, _)| Frame::Bulk(f)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(pairs: &[(&str, &str)]) -> HashFields {
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        HashFields(pairs.iter().map(|(f, v)| (b(f), b(v))).collect())
    }

    #[test]
    fn a_hash_round_trips_through_its_record_and_a_damaged_record_is_an_error() {
        let h = hash(&[("a", "1"), ("", ""), ("b\r\n", "\0\u{ff}")]);
        let encoded = h.encode();
        assert_eq!(HashFields::decode(&encoded).unwrap(), h);
        assert_eq!(HashFields::decode(&HashFields::default().encode()).unwrap(), HashFields::default());
        for cut in 0..encoded.len() {
            assert!(HashFields::decode(&encoded.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut longer = encoded.to_vec();
        longer.push(0);
        assert!(HashFields::decode(&Bytes::from(longer)).is_err(), "trailing bytes");
        // A count far beyond the record must not allocate for it.
        assert!(HashFields::decode(&Bytes::from_static(&[0xff, 0xff, 0xff, 0xff])).is_err());
        // A field without its value.
        assert!(HashFields::decode(&Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 0])).is_err());
    }

    #[test]
    fn fields_keep_the_order_they_were_first_set_in() {
        let mut h = hash(&[("a", "1"), ("b", "2"), ("c", "3")]);
        assert!(!h.set("a".into(), "9".into()), "an existing field");
        assert!(h.set("d".into(), "4".into()));
        assert!(h.remove(b"b"));
        assert!(!h.remove(b"b"));
        assert_eq!(h, hash(&[("a", "9"), ("c", "3"), ("d", "4")]));
    }

    #[test]
    fn random_fields_follow_the_count_and_the_seed() {
        let h = hash(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]);
        let names = |frame: Frame| match frame {
            Frame::Array(items) => items
                .into_iter()
                .map(|f| match f {
                    Frame::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        for seed in 0..50 {
            let mut distinct = names(random_fields(h.clone(), Some(3), false, &mut XorShift::new(seed)));
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), 3, "seed {seed}: distinct fields");
            let repeated = names(random_fields(h.clone(), Some(-10), false, &mut XorShift::new(seed)));
            assert_eq!(repeated.len(), 10);
            assert!(repeated.iter().all(|f| ["a", "b", "c", "d"].contains(&f.as_str())));
            assert_eq!(
                random_fields(h.clone(), Some(-10), false, &mut XorShift::new(seed)),
                random_fields(h.clone(), Some(-10), false, &mut XorShift::new(seed)),
                "the same seed picks the same"
            );
        }
        assert_eq!(
            names(random_fields(h.clone(), Some(9), false, &mut XorShift::new(1))),
            ["a", "b", "c", "d"],
            "the whole hash"
        );
        assert_eq!(random_fields(h.clone(), Some(0), false, &mut XorShift::new(1)), Frame::Array(vec![]));
        assert_eq!(random_fields(HashFields::default(), None, false, &mut XorShift::new(1)), Frame::Null);
        assert_eq!(
            random_fields(HashFields::default(), Some(-3), true, &mut XorShift::new(1)),
            Frame::Pairs(vec![]),
            "`*0`"
        );
        let Frame::Pairs(pairs) = random_fields(h.clone(), Some(-2), true, &mut XorShift::new(7)) else {
            panic!("pairs")
        };
        assert_eq!(pairs.len(), 2);
        for pair in pairs {
            let (Frame::Bulk(field), Frame::Bulk(value)) = pair else { panic!("two bulk strings") };
            assert_eq!(h.get(&field), Some(&value), "a field with its own value");
        }
        let too_many = -(crate::keyspace::MAX_RANDOM_PICKS as i64) - 1;
        assert!(matches!(random_fields(h, Some(too_many), false, &mut XorShift::new(1)), Frame::Error(_)));
    }
}
