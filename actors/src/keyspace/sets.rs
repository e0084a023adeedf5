//! Sets: how a set is stored, and the set commands' applies and reads.
//!
//! A set of up to [`super::buckets::WHOLE_FIELDS`] members is one record of the keyspace: its
//! members, each once, in byte order (so a membership test is a binary search, and every replica
//! holds the same bytes). A larger set is stored in buckets, like a large hash
//! ([`super::buckets`]), each bucket's members in byte order: adding, removing or testing a
//! member costs the same at any size, and SCARD reads the directory alone; the commands that
//! take the whole set (SMEMBERS, SINTER and the others, SPOP, SRANDMEMBER, SSCAN) read every
//! bucket and sort the members.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::buckets::{scan_reply, Editing, Items, Layout};
use super::{
    decode_elements, encode_elements, encoded_elements_len, pick_random, read_collection, ApplyBatch,
    Collection, KeyRead, Value, XorShift,
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

impl Items for Members {
    fn decode(data: &Bytes) -> Result<Self> {
        decode(data)
    }

    fn encode(&self) -> Bytes {
        encode_elements(self.len(), self.iter())
    }

    fn encoded_len(&self) -> u64 {
        encoded_elements_len(self.iter())
    }

    fn count(&self) -> usize {
        self.len()
    }

    fn spread(self, bucket_of: impl Fn(&[u8]) -> u64) -> BTreeMap<u64, Self> {
        let mut spread: BTreeMap<u64, Members> = BTreeMap::new();
        for member in self {
            spread.entry(bucket_of(&member)).or_default().push(member);
        }
        spread
    }

    fn absorb(&mut self, other: Self) {
        self.extend(other);
        self.sort_unstable();
    }

    fn retain_keys(&mut self, keep: impl Fn(&[u8]) -> bool) {
        self.retain(|member| keep(member));
    }

    fn key(&self, i: usize) -> &[u8] {
        &self[i]
    }

    fn item(&self, i: usize) -> Self {
        vec![self[i].clone()]
    }

    fn gather(all: Vec<Self>) -> Self {
        let mut members: Members = all.into_iter().flatten().collect();
        members.sort_unstable();
        members
    }
}

/// Every member of the set `value` holds (whole, or in buckets), in byte order.
pub(super) fn members_of(ks: &dyn KeyRead, value: &Value) -> Result<Members> {
    Layout::<Members>::decode(&value.data)?.into_items(ks)
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

/// The sets `values` hold (`None` where a key is missing), or WRONGTYPE if any holds another type
/// (Redis checks every key before it combines them).
fn sets_of(
    ks: &dyn KeyRead,
    values: Vec<Option<Value>>,
) -> Result<std::result::Result<Vec<Option<Members>>, Frame>> {
    if values.iter().flatten().any(|value| value.kind != KIND_SET) {
        return Ok(Err(Frame::error(super::WRONGTYPE)));
    }
    values
        .into_iter()
        .map(|value| value.map(|v| members_of(ks, &v)).transpose())
        .collect::<Result<_>>()
        .map(Ok)
}

/// Adds `member` to a set being changed; true if it is new.
fn add(set: &mut Editing<Members>, ks: &dyn KeyRead, member: Bytes) -> Result<bool> {
    let key = member.clone();
    set.change(ks, &key, |members| {
        let new = insert(members, member);
        (new, new)
    })
}

/// Removes `member` from a set being changed; true if it was there.
fn take(set: &mut Editing<Members>, ks: &dyn KeyRead, member: &[u8]) -> Result<bool> {
    set.change(ks, member, |members| {
        let gone = remove(members, member);
        (gone, gone)
    })
}

impl ApplyBatch<'_> {
    fn live_set(&mut self, key: &Bytes) -> Result<Collection<Editing<Members>>> {
        Ok(self
            .live_collection(key, KIND_SET, Layout::decode)?
            .map(|found| found.map(|(l, e)| (Editing::new(l), e))))
    }

    /// Applies a set write ([`WriteOp::SAdd`] and the others after it).
    pub(super) fn write_set(&mut self, op: WriteOp) -> Result<Frame> {
        match op {
            WriteOp::SAdd { key, members: new } => {
                let (mut set, expires) = match self.live_set(&key)? {
                    Err(wrongtype) => return Ok(wrongtype),
                    Ok(found) => found.unwrap_or((Editing::Whole(Members::new()), 0)),
                };
                let mut added = 0;
                for member in new {
                    added += add(&mut set, self, member)? as i64;
                }
                if added == 0 {
                    return Ok(Frame::Integer(0));
                }
                self.save_items_then(KIND_SET, key, set, expires, Frame::Integer(added))
            }
            WriteOp::SRem { key, members: gone } => {
                let (mut set, expires) = match self.live_set(&key)? {
                    Err(wrongtype) => return Ok(wrongtype),
                    Ok(None) => return Ok(Frame::Integer(0)),
                    Ok(Some(found)) => found,
                };
                let mut removed = 0;
                for member in &gone {
                    removed += take(&mut set, self, member)? as i64;
                }
                if removed == 0 {
                    return Ok(Frame::Integer(0));
                }
                self.save_items_then(KIND_SET, key, set, expires, Frame::Integer(removed))
            }
            WriteOp::SMove { from, to, member } => {
                let (mut source, source_expires) = match self.live_set(&from)? {
                    Err(wrongtype) => return Ok(wrongtype),
                    Ok(None) => return Ok(Frame::Integer(0)),
                    Ok(Some(found)) => found,
                };
                let (mut destination, destination_expires) = match self.live_set(&to)? {
                    Err(wrongtype) => return Ok(wrongtype),
                    Ok(found) => found.unwrap_or((Editing::Whole(Members::new()), 0)),
                };
                let present = source.look(self, &member, |members| contains(members, &member))?;
                if from == to {
                    return Ok(Frame::Integer(present as i64));
                }
                if !present {
                    return Ok(Frame::Integer(0));
                }
                take(&mut source, self, &member)?;
                if add(&mut destination, self, member)? {
                    if let Err(too_big) = self.save_items(to, KIND_SET, destination, destination_expires)? {
                        return Ok(too_big);
                    }
                }
                self.save_items_then(KIND_SET, from, source, source_expires, Frame::Integer(1))
            }
            WriteOp::SPop { key, count, seed } => {
                let (layout, expires) =
                    match self.live_collection(&key, KIND_SET, Layout::<Members>::decode)? {
                        Err(wrongtype) => return Ok(wrongtype),
                        Ok(None) => return Ok(count.map_or(Frame::Null, |_| Frame::Set(vec![]))),
                        Ok(Some(found)) => found,
                    };
                let mut rng = XorShift::new(seed);
                let count = count.map(|n| n.min(i64::MAX as u64) as i64);
                let picked = match layout.pick_by_bucket(self, count, &mut rng)? {
                    Some(picked) => picked,
                    None => {
                        let members = match &layout {
                            Layout::Whole(members) => members.clone(),
                            Layout::Bucketed(buckets) => {
                                Layout::<Members>::Bucketed(*buckets).into_items(self)?
                            }
                        };
                        match count {
                            None => vec![members[rng.below(members.len())].clone()],
                            Some(n) => {
                                pick_random(members, n, &mut rng).expect("a positive count is never refused")
                            }
                        }
                    }
                };
                if picked.is_empty() {
                    return Ok(Frame::Set(vec![]));
                }
                let mut set = Editing::new(layout);
                for member in &picked {
                    take(&mut set, self, member)?;
                }
                let reply = match count {
                    None => Frame::Bulk(picked.into_iter().next().expect("one member was picked")),
                    Some(_) => Frame::Set(bulks(picked)),
                };
                self.save_items_then(KIND_SET, key, set, expires, reply)
            }
            WriteOp::SCombineStore { op, destination, keys } => {
                let values = keys.iter().map(|key| self.live(key)).collect::<Result<Vec<_>>>()?;
                let sets = match sets_of(self, values)? {
                    Err(wrongtype) => return Ok(wrongtype),
                    Ok(sets) => sets,
                };
                let result = combine(op, sets);
                let stored = result.len() as i64;
                // The result replaces whatever the destination held, expiry included.
                self.save_items_then(KIND_SET, destination, Editing::Whole(result), 0, Frame::Integer(stored))
            }
            other => unreachable!("not a set write: {other:?}"),
        }
    }
}

/// Answers a set read ([`ReadQuery::SCard`] and the others after it) from `ks` at `now`.
pub(super) fn read_set(ks: &dyn KeyRead, q: &ReadQuery, now: i64) -> Result<Frame> {
    // One member, the count, a scan's step or random members: the set's directory and a bucket
    // or a few (random members from a small set: every bucket).
    if let ReadQuery::SCard(key)
    | ReadQuery::SIsMember { key, .. }
    | ReadQuery::SScan { key, .. }
    | ReadQuery::SRandMember { key, .. } = q
    {
        let layout = match read_collection(ks, key, now, KIND_SET, Layout::<Members>::decode)? {
            Err(wrongtype) => return Ok(wrongtype),
            Ok(found) => found.map(|(layout, _)| layout).unwrap_or_default(),
        };
        let (asked, many) = match q {
            ReadQuery::SIsMember { members, many, .. } => (members, many),
            ReadQuery::SScan { cursor, scan, .. } => {
                let (next, members) = layout.scan(ks, *cursor, scan.count)?;
                let matching =
                    members.into_iter().filter(|m| scan.pattern.as_ref().is_none_or(|p| glob_match(p, m)));
                return Ok(scan_reply(next, matching.map(Frame::Bulk).collect()));
            }
            ReadQuery::SRandMember { count, seed, .. } => {
                let mut rng = XorShift::new(*seed);
                if let Some(mut picked) = layout.pick_by_bucket(ks, *count, &mut rng)? {
                    return Ok(match count {
                        None => Frame::Bulk(picked.swap_remove(0)),
                        Some(_) => Frame::Array(bulks(picked)),
                    });
                }
                let members = layout.into_items(ks)?;
                return Ok(match count {
                    None if members.is_empty() => Frame::Null,
                    None => Frame::Bulk(members[rng.below(members.len())].clone()),
                    Some(count) => match pick_random(members, *count, &mut rng) {
                        Ok(picked) => Frame::Array(bulks(picked)),
                        Err(too_many) => too_many,
                    },
                });
            }
            _ => return Ok(Frame::Integer(layout.len() as i64)),
        };
        let mut answers = Vec::with_capacity(asked.len());
        for member in asked {
            answers
                .push(Frame::Integer(layout.look(ks, member, |members| contains(members, member))? as i64));
        }
        return Ok(match many {
            true => Frame::Array(answers),
            false => answers.into_iter().next().expect("SISMEMBER asks about one member"),
        });
    }
    let live = |key: &Bytes| Ok(ks.value(key)?.filter(|v| v.alive_at(now)));
    let keys: &[Bytes] = match q {
        ReadQuery::SCombine { keys, .. } | ReadQuery::SInterCard { keys, .. } => keys,
        other => unreachable!("not a set read: {other:?}"),
    };
    let values = keys.iter().map(live).collect::<Result<Vec<_>>>()?;
    let sets = match sets_of(ks, values)? {
        Err(wrongtype) => return Ok(wrongtype),
        Ok(sets) => sets,
    };
    Ok(match q {
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
