//! Sets: how a set is stored, and the set commands' applies and reads.
//!
//! Like a hash or a list, a set is one record of the keyspace: its members, each once, in byte
//! order (so a membership test is a binary search, and every replica holds the same bytes). A
//! write rewrites the whole record: fine for sets of up to some thousands of members, slow for
//! millions.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::{
    as_collection, decode_elements, encode_elements, pick_random, ApplyBatch, Collection, KeyRead, Value,
    XorShift,
};
use crate::command::{ReadQuery, SetOp, WriteOp};
use crate::error::Result;
use crate::glob::glob_match;
use crate::resp::Frame;

/// The type tag of a set record.
pub(super) const KIND_SET: u8 = 3;

/// A set's members, sorted, each once.
type Members = Vec<Bytes>;

pub(super) fn decode(data: &Bytes) -> Result<Members> {
    let members = decode_elements(data)?;
    if !members.windows(2).all(|pair| pair[0] < pair[1]) {
        return Err(crate::Error::Corrupt("set record with members out of order".into()));
    }
    Ok(members)
}

/// The record of `members`; none for an empty set, which is deleted.
fn record(members: &Members) -> Option<Bytes> {
    (!members.is_empty()).then(|| encode_elements(members.len(), members.iter()))
}

/// Adds `member`; true if it is new.
fn insert(members: &mut Members, member: Bytes) -> bool {
    match members.binary_search(&member) {
        Ok(_) => false,
        Err(at) => {
            members.insert(at, member);
            true
        }
    }
}

/// Removes `member`; true if it was there.
fn remove(members: &mut Members, member: &[u8]) -> bool {
    match members.binary_search_by(|m| m[..].cmp(member)) {
        Ok(at) => {
            members.remove(at);
            true
        }
        Err(_) => false,
    }
}

fn contains(members: &Members, member: &[u8]) -> bool {
    members.binary_search_by(|m| m[..].cmp(member)).is_ok()
}

/// SINTER, SUNION or SDIFF of `sets` (`None`: a missing key, an empty set).
fn combine(op: SetOp, sets: Vec<Option<Members>>) -> Members {
    let mut sets = sets.into_iter();
    match op {
        SetOp::Union => sets.flatten().flatten().collect::<BTreeSet<_>>().into_iter().collect(),
        SetOp::Inter => {
            let Some(Some(mut result)) = sets.next() else { return Vec::new() };
            for set in sets {
                let Some(set) = set else { return Vec::new() };
                result.retain(|m| contains(&set, m));
            }
            result
        }
        SetOp::Diff => {
            let Some(Some(mut result)) = sets.next() else { return Vec::new() };
            for set in sets.flatten() {
                result.retain(|m| !contains(&set, m));
            }
            result
        }
    }
}

fn bulks(members: Members) -> Vec<Frame> {
    members.into_iter().map(Frame::Bulk).collect()
}

/// The live sets at `keys` (`None` where a key is missing), or WRONGTYPE if any key holds another
/// type (Redis checks every key before it combines them).
fn live_sets(
    keys: &[Bytes],
    mut live: impl FnMut(&Bytes) -> Result<Option<Value>>,
) -> Result<std::result::Result<Vec<Option<Members>>, Frame>> {
    let mut sets = Vec::with_capacity(keys.len());
    for key in keys {
        match as_collection(live(key)?, KIND_SET, decode)? {
            Err(wrongtype) => return Ok(Err(wrongtype)),
            Ok(found) => sets.push(found.map(|(members, _)| members)),
        }
    }
    Ok(Ok(sets))
}

impl ApplyBatch<'_> {
    fn live_set(&mut self, key: &Bytes) -> Result<Collection<Members>> {
        self.live_collection(key, KIND_SET, decode)
    }

    /// Applies a set write ([`WriteOp::SAdd`] and the others after it).
    pub(super) fn write_set(&mut self, op: WriteOp) -> Result<Frame> {
        match op {
            WriteOp::SAdd { key, members: new } => {
                let (mut members, expires) = match self.live_set(&key)? {
                    Err(wrongtype) => return Ok(wrongtype),
                    Ok(found) => found.unwrap_or_default(),
                };
                let added = new.into_iter().filter(|m| insert(&mut members, m.clone())).count();
                if added == 0 {
                    return Ok(Frame::Integer(0));
                }
                self.put_collection_then(
                    key,
                    KIND_SET,
                    record(&members),
                    expires,
                    Frame::Integer(added as i64),
                )
            }
            WriteOp::SRem { key, members: gone } => {
                let (mut members, expires) = match self.live_set(&key)? {
                    Err(wrongtype) => return Ok(wrongtype),
                    Ok(None) => return Ok(Frame::Integer(0)),
                    Ok(Some(found)) => found,
                };
                let removed = gone.iter().filter(|m| remove(&mut members, m)).count();
                if removed == 0 {
                    return Ok(Frame::Integer(0));
                }
                self.put_collection_then(
                    key,
                    KIND_SET,
                    record(&members),
                    expires,
                    Frame::Integer(removed as i64),
                )
            }
            WriteOp::SMove { from, to, member } => {
                let (mut source, source_expires) = match self.live_set(&from)? {
                    Err(wrongtype) => return Ok(wrongtype),
                    Ok(None) => return Ok(Frame::Integer(0)),
                    Ok(Some(found)) => found,
                };
                let (mut destination, destination_expires) = match self.live_set(&to)? {
                    Err(wrongtype) => return Ok(wrongtype),
                    Ok(found) => found.unwrap_or_default(),
                };
                if from == to {
                    return Ok(Frame::Integer(contains(&source, &member) as i64));
                }
                if !contains(&source, &member) {
                    return Ok(Frame::Integer(0));
                }
                remove(&mut source, &member);
                if insert(&mut destination, member) {
                    if let Err(too_big) =
                        self.put_collection(to, KIND_SET, record(&destination), destination_expires)?
                    {
                        return Ok(too_big);
                    }
                }
                self.put_collection_then(from, KIND_SET, record(&source), source_expires, Frame::Integer(1))
            }
            WriteOp::SPop { key, count, seed } => {
                let (members, expires) = match self.live_set(&key)? {
                    Err(wrongtype) => return Ok(wrongtype),
                    Ok(None) => return Ok(count.map_or(Frame::Null, |_| Frame::Set(vec![]))),
                    Ok(Some(found)) => found,
                };
                let mut rng = XorShift::new(seed);
                let picked = match count {
                    None => vec![members[rng.below(members.len())].clone()],
                    Some(n) => {
                        let n = n.min(i64::MAX as u64) as i64;
                        pick_random(members.clone(), n, &mut rng).expect("a positive count is never refused")
                    }
                };
                if picked.is_empty() {
                    return Ok(Frame::Set(vec![]));
                }
                let mut left = members;
                for member in &picked {
                    remove(&mut left, member);
                }
                let reply = match count {
                    None => Frame::Bulk(picked.into_iter().next().expect("one member was picked")),
                    Some(_) => Frame::Set(bulks(picked)),
                };
                self.put_collection_then(key, KIND_SET, record(&left), expires, reply)
            }
            WriteOp::SCombineStore { op, destination, keys } => {
                let sets = match live_sets(&keys, |key| self.live(key))? {
                    Err(wrongtype) => return Ok(wrongtype),
                    Ok(sets) => sets,
                };
                let result = combine(op, sets);
                // The result replaces whatever the destination held, expiry included.
                self.put_collection_then(
                    destination,
                    KIND_SET,
                    record(&result),
                    0,
                    Frame::Integer(result.len() as i64),
                )
            }
            other => unreachable!("not a set write: {other:?}"),
        }
    }
}

/// Answers a set read ([`ReadQuery::SCard`] and the others after it) from `ks` at `now`.
pub(super) fn read_set(ks: &dyn KeyRead, q: &ReadQuery, now: i64) -> Result<Frame> {
    let live = |key: &Bytes| Ok(ks.value(key)?.filter(|v| v.alive_at(now)));
    let keys: &[Bytes] = match q {
        ReadQuery::SCard(key)
        | ReadQuery::SIsMember { key, .. }
        | ReadQuery::SRandMember { key, .. }
        | ReadQuery::SScan { key, .. } => std::slice::from_ref(key),
        ReadQuery::SCombine { keys, .. } | ReadQuery::SInterCard { keys, .. } => keys,
        other => unreachable!("not a set read: {other:?}"),
    };
    let mut sets = match live_sets(keys, live)? {
        Err(wrongtype) => return Ok(wrongtype),
        Ok(sets) => sets,
    };
    let mut first = || sets[0].take().unwrap_or_default();
    Ok(match q {
        ReadQuery::SCard(_) => Frame::Integer(first().len() as i64),
        ReadQuery::SIsMember { members: asked, many, .. } => {
            let members = first();
            let answers: Vec<Frame> =
                asked.iter().map(|m| Frame::Integer(contains(&members, m) as i64)).collect();
            match many {
                true => Frame::Array(answers),
                false => answers.into_iter().next().expect("SISMEMBER asks about one member"),
            }
        }
        ReadQuery::SRandMember { count, seed, .. } => {
            let (members, mut rng) = (first(), XorShift::new(*seed));
            match count {
                None if members.is_empty() => Frame::Null,
                None => Frame::Bulk(members[rng.below(members.len())].clone()),
                Some(count) => match pick_random(members, *count, &mut rng) {
                    Ok(picked) => Frame::Array(bulks(picked)),
                    Err(too_many) => too_many,
                },
            }
        }
        ReadQuery::SScan { pattern, .. } => {
            let matching = first().into_iter().filter(|m| pattern.as_ref().is_none_or(|p| glob_match(p, m)));
            Frame::Array(vec![Frame::bulk("0"), Frame::Array(matching.map(Frame::Bulk).collect())])
        }
        ReadQuery::SCombine { op, .. } => Frame::Set(bulks(combine(*op, sets))),
        ReadQuery::SInterCard { limit, .. } => {
            let n = combine(SetOp::Inter, sets).len() as u64;
            Frame::Integer(if *limit == 0 { n } else { n.min(*limit) } as i64)
        }
        other => unreachable!("not a set read: {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(members: &[&str]) -> Members {
        let mut out: Members = members.iter().map(|m| Bytes::copy_from_slice(m.as_bytes())).collect();
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn members_stay_sorted_and_unique_and_a_record_out_of_order_is_refused() {
        let mut s = set(&["b", "d"]);
        assert!(insert(&mut s, "c".into()));
        assert!(insert(&mut s, "a".into()));
        assert!(!insert(&mut s, "c".into()));
        assert_eq!(s, set(&["a", "b", "c", "d"]));
        assert!(remove(&mut s, b"b"));
        assert!(!remove(&mut s, b"b"));
        assert_eq!(decode(&encode_elements(s.len(), s.iter())).unwrap(), s);
        let unsorted = set(&["a", "b"]).into_iter().rev().collect::<Vec<_>>();
        assert!(decode(&encode_elements(2, unsorted.iter())).is_err());
        let twice = [Bytes::from("a"), Bytes::from("a")];
        assert!(decode(&encode_elements(2, twice.iter())).is_err());
    }

    #[test]
    fn sets_combine_like_redis() {
        let (a, b) = (Some(set(&["1", "2", "3"])), Some(set(&["2", "3", "4"])));
        assert_eq!(combine(SetOp::Inter, vec![a.clone(), b.clone()]), set(&["2", "3"]));
        assert_eq!(combine(SetOp::Inter, vec![a.clone(), None]), set(&[]), "a missing key is an empty set");
        assert_eq!(combine(SetOp::Union, vec![a.clone(), None, b.clone()]), set(&["1", "2", "3", "4"]));
        assert_eq!(combine(SetOp::Diff, vec![a.clone(), b.clone()]), set(&["1"]));
        assert_eq!(combine(SetOp::Diff, vec![a.clone(), None]), set(&["1", "2", "3"]));
        assert_eq!(combine(SetOp::Diff, vec![None, a]), set(&[]));
    }
}
