//! Sorted sets: how one is stored, and the sorted set commands' applies and reads.
//!
//! Like the other collections, a sorted set is one record of the keyspace: its members with
//! their scores, ordered by score and then by member (Redis's order), each member once. A write
//! rewrites the whole record: fine for sorted sets of up to some thousands of members (a
//! leaderboard's top, a rate limiter's window), slow for millions.

use std::cmp::Ordering;

use bytes::Bytes;

use super::sets::{self, KIND_SET};
use super::{
    decode_elements, encode_elements, pick_random, read_collection, ApplyBatch, Collection, KeyRead, Value,
    XorShift, WRONGTYPE,
};
use crate::command::{
    LexBound, ReadQuery, SetOp, WriteOp, ZAddCmp, ZAddCond, ZAggregate, ZRangeBy, ZRangeSpec, ZScoreBound,
};
use crate::error::Result;
use crate::glob::glob_match;
use crate::resp::Frame;

/// The type tag of a sorted set record.
pub(super) const KIND_ZSET: u8 = 4;

/// Members with their scores, ordered by score, then member; never a NaN score.
type Entries = Vec<(f64, Bytes)>;

/// Stored as elements: each member followed by its score's eight bytes (IEEE 754, big-endian).
fn decode(data: &Bytes) -> Result<Entries> {
    let corrupt = |what: &str| crate::Error::Corrupt(format!("sorted set record: {what}"));
    let elements = decode_elements(data)?;
    if !elements.len().is_multiple_of(2) {
        return Err(corrupt("a member without its score"));
    }
    let mut entries = Vec::with_capacity(elements.len() / 2);
    for pair in elements.chunks(2) {
        let bits: [u8; 8] = pair[1][..].try_into().map_err(|_| corrupt("a score of the wrong size"))?;
        let score = f64::from_be_bytes(bits);
        if score.is_nan() {
            return Err(corrupt("a NaN score"));
        }
        entries.push((score, pair[0].clone()));
    }
    if !entries.windows(2).all(|w| order(&w[0], &w[1]) == Ordering::Less) {
        return Err(corrupt("members out of order"));
    }
    Ok(entries)
}

fn encode(entries: &Entries) -> Bytes {
    let elements: Vec<Bytes> = entries
        .iter()
        .flat_map(|(score, member)| [member.clone(), Bytes::copy_from_slice(&score.to_be_bytes())])
        .collect();
    encode_elements(elements.len(), elements.iter())
}

/// The record of `entries`; none for an empty sorted set, which is deleted.
fn record(entries: &Entries) -> Option<Bytes> {
    (!entries.is_empty()).then(|| encode(entries))
}

/// Redis's order: by score, then by member.
fn order(a: &(f64, Bytes), b: &(f64, Bytes)) -> Ordering {
    a.0.partial_cmp(&b.0).expect("scores are never NaN").then_with(|| a.1.cmp(&b.1))
}

fn find(entries: &Entries, member: &[u8]) -> Option<usize> {
    entries.iter().position(|(_, m)| m == member)
}

/// Adds `member` with `score` in its place (it must not be there yet). `-0` is stored as `0`.
fn insert(entries: &mut Entries, score: f64, member: Bytes) {
    let entry = (score + 0.0, member);
    let at = entries.binary_search_by(|e| order(e, &entry)).unwrap_or_else(|at| at);
    entries.insert(at, entry);
}

/// A score as Redis 7.0 writes it (`%.17g`): `0.1` is `0.10000000000000001`.
pub fn format_score(score: f64) -> Bytes {
    if score.is_infinite() {
        return Bytes::from_static(if score > 0.0 { b"inf" } else { b"-inf" });
    }
    if score == 0.0 {
        return Bytes::from_static(b"0");
    }
    let strip = |text: String| -> String {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            text
        }
    };
    let scientific = format!("{score:.16e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("`{:e}` has an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}`'s exponent is a number");
    let text = if !(-4..17).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", strip(mantissa.to_owned()), exponent.abs())
    } else {
        strip(format!("{score:.*}", (16 - exponent) as usize))
    };
    Bytes::from(text)
}

fn score_frame(score: f64) -> Frame {
    Frame::Bulk(format_score(score))
}

fn above_min(score: f64, min: &ZScoreBound) -> bool {
    if min.open {
        score > min.value
    } else {
        score >= min.value
    }
}

fn below_max(score: f64, max: &ZScoreBound) -> bool {
    if max.open {
        score < max.value
    } else {
        score <= max.value
    }
}

fn lex_above(member: &[u8], min: &LexBound) -> bool {
    match min {
        LexBound::Min => true,
        LexBound::Max => false,
        LexBound::Included(m) => member >= &m[..],
        LexBound::Excluded(m) => member > &m[..],
    }
}

fn lex_below(member: &[u8], max: &LexBound) -> bool {
    match max {
        LexBound::Min => false,
        LexBound::Max => true,
        LexBound::Included(m) => member <= &m[..],
        LexBound::Excluded(m) => member < &m[..],
    }
}

/// The positions `by` selects, in ascending order; a rank range counts from the top when `rev`.
fn select(entries: &Entries, by: &ZRangeBy, rev: bool) -> Vec<usize> {
    let len = entries.len();
    match by {
        ZRangeBy::Rank(start, stop) => {
            let len_i = len as i64;
            let start = if *start < 0 { start.saturating_add(len_i).max(0) } else { *start };
            let stop = if *stop < 0 { stop.saturating_add(len_i) } else { *stop };
            if start > stop || start >= len_i {
                return Vec::new();
            }
            let (first, last) = (start as usize, stop.min(len_i - 1) as usize);
            if rev {
                (len - 1 - last..=len - 1 - first).collect()
            } else {
                (first..=last).collect()
            }
        }
        ZRangeBy::Score(min, max) => {
            (0..len).filter(|&i| above_min(entries[i].0, min) && below_max(entries[i].0, max)).collect()
        }
        ZRangeBy::Lex(min, max) => {
            (0..len).filter(|&i| lex_above(&entries[i].1, min) && lex_below(&entries[i].1, max)).collect()
        }
    }
}

/// ZRANGE's answer: the selection, top first when reversed, cut by LIMIT (a negative offset
/// selects nothing, a negative count everything after the offset).
fn range(entries: &Entries, spec: &ZRangeSpec) -> Frame {
    with_scores(range_entries(entries, spec).into_iter(), spec.with_scores)
}

/// ZRANGE's selection, in the order it answers.
fn range_entries(entries: &Entries, spec: &ZRangeSpec) -> Vec<(f64, Bytes)> {
    let mut chosen = select(entries, &spec.by, spec.rev);
    if spec.rev {
        chosen.reverse();
    }
    if let Some((offset, count)) = spec.limit {
        if offset < 0 {
            chosen.clear();
        } else {
            let count = if count < 0 { usize::MAX } else { count as usize };
            chosen = chosen.into_iter().skip(offset as usize).take(count).collect();
        }
    }
    chosen.into_iter().map(|i| entries[i].clone()).collect()
}

/// The sorted sets (or sets, read as sorted sets whose members all score 1) at `keys`, `None`
/// for a missing key, as ZUNION and the others take them; the WRONGTYPE reply if a key holds
/// another type.
fn live_inputs(
    ks: &dyn KeyRead,
    values: Vec<Option<Value>>,
) -> Result<std::result::Result<Vec<Option<Entries>>, Frame>> {
    let mut inputs = Vec::with_capacity(values.len());
    for value in values {
        inputs.push(match value {
            None => None,
            Some(v) if v.kind == KIND_ZSET => Some(decode(&v.data)?),
            // Members in byte order, all of one score: already in a sorted set's order.
            Some(v) if v.kind == KIND_SET => {
                Some(sets::members_of(ks, &v)?.into_iter().map(|m| (1.0, m)).collect())
            }
            Some(_) => return Ok(Err(Frame::error(WRONGTYPE))),
        });
    }
    Ok(Ok(inputs))
}

/// Adds `value` into a member's combined score, as Redis's `zunionInterAggregate` does (a sum
/// that is not a number, `inf + -inf`, is 0).
fn aggregate(target: &mut f64, value: f64, how: ZAggregate) {
    match how {
        ZAggregate::Sum => {
            *target += value;
            if target.is_nan() {
                *target = 0.0;
            }
        }
        ZAggregate::Min if value < *target => *target = value,
        ZAggregate::Max if value > *target => *target = value,
        _ => {}
    }
}

/// ZUNION, ZINTER and ZDIFF of `inputs` (`weights`: one per input, or none for all 1), in a
/// sorted set's order. Like Redis, union and intersection combine the inputs from the smallest
/// to the largest (which decides how a sum of several scores rounds), a weighted score that is
/// not a number (`0 * inf`) counts as 0, and the difference keeps the first input's scores.
fn combine(op: SetOp, mut inputs: Vec<Option<Entries>>, weights: &[f64], how: ZAggregate) -> Entries {
    let weight = |i: usize| weights.get(i).copied().unwrap_or(1.0);
    let weighted = |i: usize, score: f64| {
        let value = weight(i) * score;
        if value.is_nan() {
            0.0
        } else {
            value
        }
    };
    let mut result: Entries = match op {
        SetOp::Diff => {
            let first = inputs[0].take().unwrap_or_default();
            let others: std::collections::HashSet<&Bytes> =
                inputs[1..].iter().flatten().flat_map(|e| e.iter().map(|(_, m)| m)).collect();
            return first.into_iter().filter(|(_, m)| !others.contains(m)).collect();
        }
        SetOp::Union => {
            let mut order: Vec<usize> = (0..inputs.len()).collect();
            order.sort_by_key(|&i| inputs[i].as_ref().map_or(0, Vec::len));
            let mut scores: std::collections::HashMap<Bytes, f64> = std::collections::HashMap::new();
            for i in order {
                for (score, member) in inputs[i].take().unwrap_or_default() {
                    let value = weighted(i, score);
                    match scores.entry(member) {
                        std::collections::hash_map::Entry::Vacant(e) => {
                            e.insert(value);
                        }
                        std::collections::hash_map::Entry::Occupied(mut e) => {
                            aggregate(e.get_mut(), value, how)
                        }
                    }
                }
            }
            scores.into_iter().map(|(member, score)| (score, member)).collect()
        }
        SetOp::Inter => {
            if inputs.iter().any(|input| input.as_ref().is_none_or(Vec::is_empty)) {
                return Vec::new();
            }
            let mut order: Vec<usize> = (0..inputs.len()).collect();
            order.sort_by_key(|&i| inputs[i].as_ref().map_or(0, Vec::len));
            let others: Vec<(usize, std::collections::HashMap<&Bytes, f64>)> = order[1..]
                .iter()
                .map(|&i| (i, inputs[i].iter().flatten().map(|(s, m)| (m, *s)).collect()))
                .collect();
            let mut result = Vec::new();
            'members: for (score, member) in inputs[order[0]].iter().flatten() {
                let mut combined = weighted(order[0], *score);
                for (i, scores) in &others {
                    let Some(score) = scores.get(member) else { continue 'members };
                    aggregate(&mut combined, weight(*i) * score, how);
                }
                result.push((combined, member.clone()));
            }
            result
        }
    };
    for entry in &mut result {
        if entry.0 == 0.0 {
            entry.0 = 0.0; // no -0
        }
    }
    result.sort_by(order);
    result
}

/// Takes up to `count` members from the top (`max`) or the bottom, in the order popped.
fn pop_ends(entries: &mut Entries, max: bool, count: u64) -> Vec<(f64, Bytes)> {
    let n = count.min(entries.len() as u64) as usize;
    if max {
        entries.drain(entries.len() - n..).rev().collect()
    } else {
        entries.drain(..n).collect()
    }
}

/// Members, or members with their scores (pairs: RESP3 nests them).
fn with_scores(entries: impl Iterator<Item = (f64, Bytes)>, scores: bool) -> Frame {
    if scores {
        Frame::Pairs(entries.map(|(s, m)| (Frame::Bulk(m), score_frame(s))).collect())
    } else {
        Frame::Array(entries.map(|(_, m)| Frame::Bulk(m)).collect())
    }
}

impl ApplyBatch<'_> {
    fn live_zset(&mut self, key: &Bytes) -> Result<Collection<Entries>> {
        self.live_collection(key, KIND_ZSET, decode)
    }

    /// Applies a sorted set write ([`WriteOp::ZAdd`] and the others after it). ZMPOP,
    /// BZPOPMIN and BZPOPMAX pop from the first of their keys that holds a sorted set; a key of
    /// another type before it is an error.
    pub(super) fn write_zset(&mut self, op: WriteOp) -> Result<Frame> {
        match op {
            WriteOp::ZMPop { keys, max, count } => self.pop_first_zset(keys, max, count, false),
            WriteOp::BZPop { keys, max } => self.pop_first_zset(keys, max, 1, true),
            WriteOp::ZCombineStore { op, destination, keys, weights, aggregate } => {
                let values = keys.iter().map(|key| self.live(key)).collect::<Result<Vec<_>>>()?;
                let inputs = match live_inputs(self, values)? {
                    Err(wrongtype) => return Ok(wrongtype),
                    Ok(inputs) => inputs,
                };
                let result = combine(op, inputs, &weights, aggregate);
                self.store_result(destination, result)
            }
            WriteOp::ZRangeStore { destination, source, spec } => {
                let entries = match self.live_zset(&source)? {
                    Err(wrongtype) => return Ok(wrongtype),
                    Ok(found) => found.map(|(entries, _)| entries).unwrap_or_default(),
                };
                let mut result = range_entries(&entries, &spec);
                result.sort_by(order);
                self.store_result(destination, result)
            }
            op => self.write_one_zset(op),
        }
    }

    /// ZMPOP and (`flat`) BZPOPMIN/BZPOPMAX: up to `count` members from the top (`max`) or the
    /// bottom of the first of `keys` that holds a sorted set.
    fn pop_first_zset(&mut self, keys: Vec<Bytes>, max: bool, count: u64, flat: bool) -> Result<Frame> {
        let ((key, mut entries), expires) = match self.first_collection(keys, KIND_ZSET, decode)? {
            Err(wrongtype) => return Ok(wrongtype),
            Ok(None) => return Ok(Frame::NullArray),
            Ok(Some(found)) => found,
        };
        let popped = pop_ends(&mut entries, max, count);
        let name = Frame::Bulk(key.clone());
        let reply = match (flat, popped.first()) {
            // BZPOPMIN, BZPOPMAX: `[key, member, score]`
            (true, Some((score, member))) => {
                Frame::Array(vec![name, Frame::Bulk(member.clone()), score_frame(*score)])
            }
            // ZMPOP: `[key, [[member, score] ...]]`, nested in RESP2 as well
            _ => {
                let pairs = popped
                    .into_iter()
                    .map(|(score, member)| Frame::Array(vec![Frame::Bulk(member), score_frame(score)]));
                Frame::Array(vec![name, Frame::Array(pairs.collect())])
            }
        };
        self.put_collection_then(key, KIND_ZSET, record(&entries), expires, reply)
    }

    /// A result that replaces whatever `destination` held, expiry included (an empty one
    /// deletes it); replies its size.
    fn store_result(&mut self, destination: Bytes, result: Entries) -> Result<Frame> {
        let size = Frame::Integer(result.len() as i64);
        self.put_collection_then(destination, KIND_ZSET, record(&result), 0, size)
    }

    /// Applies a sorted set write of one key.
    fn write_one_zset(&mut self, op: WriteOp) -> Result<Frame> {
        let key = match &op {
            WriteOp::ZAdd { key, .. }
            | WriteOp::ZRem { key, .. }
            | WriteOp::ZPop { key, .. }
            | WriteOp::ZRemRange { key, .. } => key.clone(),
            other => unreachable!("not a sorted set write: {other:?}"),
        };
        let (mut entries, expires) = match self.live_zset(&key)? {
            Err(wrongtype) => return Ok(wrongtype),
            Ok(found) => found.unwrap_or_default(),
        };
        match op {
            WriteOp::ZAdd { pairs, cond, cmp, ch, incr, .. } => {
                let (mut added, mut changed, mut result) = (0, 0, None);
                for (score, member) in pairs {
                    result = None;
                    let new = match find(&entries, &member) {
                        Some(_) if cond == ZAddCond::IfAbsent => continue,
                        None if cond == ZAddCond::IfPresent => continue,
                        None => {
                            insert(&mut entries, score, member);
                            added += 1;
                            result = Some(score);
                            continue;
                        }
                        Some(at) => (at, if incr { entries[at].0 + score } else { score }),
                    };
                    let (at, score) = new;
                    if score.is_nan() {
                        return Ok(Frame::error("ERR resulting score is not a number (NaN)"));
                    }
                    let current = entries[at].0;
                    let allowed = match cmp {
                        ZAddCmp::Any => true,
                        ZAddCmp::Greater => score > current,
                        ZAddCmp::Less => score < current,
                    };
                    if !allowed {
                        continue;
                    }
                    result = Some(score);
                    if score != current {
                        let (_, member) = entries.remove(at);
                        insert(&mut entries, score, member);
                        changed += 1;
                    }
                }
                let reply = if incr {
                    result.map_or(Frame::Null, score_frame)
                } else {
                    Frame::Integer(added + if ch { changed } else { 0 })
                };
                if added + changed == 0 {
                    return Ok(reply);
                }
                self.put_collection_then(key, KIND_ZSET, record(&entries), expires, reply)
            }
            WriteOp::ZRem { members, .. } => {
                let before = entries.len();
                entries.retain(|(_, m)| !members.contains(m));
                let removed = (before - entries.len()) as i64;
                if removed == 0 {
                    return Ok(Frame::Integer(0));
                }
                self.put_collection_then(key, KIND_ZSET, record(&entries), expires, Frame::Integer(removed))
            }
            WriteOp::ZPop { max, count, .. } => {
                let popped = pop_ends(&mut entries, max, count.unwrap_or(1));
                if popped.is_empty() {
                    return Ok(Frame::Array(vec![]));
                }
                let reply = match count {
                    Some(_) => with_scores(popped.into_iter(), true),
                    None => {
                        let (score, member) = popped.into_iter().next().expect("one popped");
                        Frame::Array(vec![Frame::Bulk(member), score_frame(score)])
                    }
                };
                self.put_collection_then(key, KIND_ZSET, record(&entries), expires, reply)
            }
            WriteOp::ZRemRange { by, .. } => {
                let chosen = select(&entries, &by, false);
                if chosen.is_empty() {
                    return Ok(Frame::Integer(0));
                }
                let mut index = 0;
                let mut next = chosen.iter().peekable();
                entries.retain(|_| {
                    let removed = next.peek() == Some(&&index);
                    if removed {
                        next.next();
                    }
                    index += 1;
                    !removed
                });
                self.put_collection_then(
                    key,
                    KIND_ZSET,
                    record(&entries),
                    expires,
                    Frame::Integer(chosen.len() as i64),
                )
            }
            other => unreachable!("not a sorted set write: {other:?}"),
        }
    }
}

/// Answers a sorted set read ([`ReadQuery::ZCard`] and the others after it) from `ks` at `now`.
pub(super) fn read_zset(ks: &dyn KeyRead, q: &ReadQuery, now: i64) -> Result<Frame> {
    let live = |key: &Bytes| Ok(ks.value(key)?.filter(|v| v.alive_at(now)));
    match q {
        ReadQuery::ZCombine { keys, .. }
        | ReadQuery::ZInterCard { keys, .. }
        | ReadQuery::ZCombineError { keys, .. } => {
            let values = keys.iter().map(live).collect::<Result<Vec<_>>>()?;
            let inputs = match live_inputs(ks, values)? {
                Err(wrongtype) => return Ok(wrongtype),
                Ok(inputs) => inputs,
            };
            return Ok(match q {
                ReadQuery::ZCombine { op, weights, aggregate, with_scores: scores, .. } => {
                    with_scores(combine(*op, inputs, weights, *aggregate).into_iter(), *scores)
                }
                ReadQuery::ZInterCard { limit, .. } => {
                    let n = combine(SetOp::Inter, inputs, &[], ZAggregate::Sum).len() as u64;
                    Frame::Integer(if *limit == 0 { n } else { n.min(*limit) } as i64)
                }
                ReadQuery::ZCombineError { error, .. } => Frame::Error(error.clone()),
                _ => unreachable!("matched above"),
            });
        }
        _ => {}
    }
    let key = match q {
        ReadQuery::ZCard(key)
        | ReadQuery::ZScore { key, .. }
        | ReadQuery::ZRank { key, .. }
        | ReadQuery::ZCount { key, .. }
        | ReadQuery::ZRange { key, .. }
        | ReadQuery::ZRandMember { key, .. }
        | ReadQuery::ZScan { key, .. } => key,
        other => unreachable!("not a sorted set read: {other:?}"),
    };
    let entries = match read_collection(ks, key, now, KIND_ZSET, decode)? {
        Err(wrongtype) => return Ok(wrongtype),
        Ok(found) => found.map(|(entries, _)| entries).unwrap_or_default(),
    };
    Ok(match q {
        ReadQuery::ZCard(_) => Frame::Integer(entries.len() as i64),
        ReadQuery::ZScore { members, many, .. } => {
            let mut scores = members
                .iter()
                .map(|m| find(&entries, m).map_or(Frame::Null, |at| score_frame(entries[at].0)));
            match many {
                true => Frame::Array(scores.collect()),
                false => scores.next().expect("ZSCORE asks about one member"),
            }
        }
        ReadQuery::ZRank { member, rev, .. } => match find(&entries, member) {
            Some(at) => Frame::Integer(if *rev { entries.len() - 1 - at } else { at } as i64),
            None => Frame::Null,
        },
        ReadQuery::ZCount { by, .. } => Frame::Integer(select(&entries, by, false).len() as i64),
        ReadQuery::ZRange { spec, .. } => range(&entries, spec),
        ReadQuery::ZRandMember { count, with_scores: scores, seed, .. } => {
            let mut rng = XorShift::new(*seed);
            match count {
                None if entries.is_empty() => Frame::Null,
                None => Frame::Bulk(entries[rng.below(entries.len())].1.clone()),
                Some(count) => match pick_random(entries, *count, &mut rng) {
                    Ok(picked) => with_scores(picked.into_iter(), *scores),
                    Err(too_many) => too_many,
                },
            }
        }
        ReadQuery::ZScan { pattern, .. } => {
            let mut out = Vec::new();
            for (score, member) in entries {
                if pattern.as_ref().is_none_or(|p| glob_match(p, &member)) {
                    out.push(Frame::Bulk(member));
                    out.push(score_frame(score));
                }
            }
            Frame::Array(vec![Frame::bulk("0"), Frame::Array(out)])
        }
        other => unreachable!("not a sorted set read: {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_and_intersection_weigh_and_aggregate_scores_as_redis_does() {
        let z = |pairs: &[(f64, &str)]| -> Option<Entries> {
            Some(pairs.iter().map(|(s, m)| (*s, Bytes::copy_from_slice(m.as_bytes()))).collect())
        };
        let (a, b) = (z(&[(1.0, "x"), (2.0, "y"), (3.0, "z")]), z(&[(10.0, "y"), (20.0, "z"), (30.0, "w")]));
        let got = |op, weights: &[f64], how| combine(op, vec![a.clone(), b.clone()], weights, how);
        assert_eq!(
            got(SetOp::Union, &[], ZAggregate::Sum),
            z(&[(1.0, "x"), (12.0, "y"), (23.0, "z"), (30.0, "w")]).unwrap()
        );
        assert_eq!(
            got(SetOp::Union, &[2.0, 0.5], ZAggregate::Max),
            z(&[(2.0, "x"), (5.0, "y"), (10.0, "z"), (15.0, "w")]).unwrap()
        );
        assert_eq!(got(SetOp::Inter, &[], ZAggregate::Min), z(&[(2.0, "y"), (3.0, "z")]).unwrap());
        assert_eq!(got(SetOp::Diff, &[], ZAggregate::Sum), z(&[(1.0, "x")]).unwrap());
        // inf + -inf is no number: 0, as in Redis; so is a weight of 0 times inf.
        assert_eq!(
            got(SetOp::Union, &[f64::INFINITY, f64::NEG_INFINITY], ZAggregate::Sum),
            z(&[(f64::NEG_INFINITY, "w"), (0.0, "y"), (0.0, "z"), (f64::INFINITY, "x")]).unwrap()
        );
        let infinite = z(&[(f64::INFINITY, "x")]);
        assert_eq!(combine(SetOp::Union, vec![infinite], &[0.0], ZAggregate::Sum), z(&[(0.0, "x")]).unwrap());
        assert_eq!(combine(SetOp::Inter, vec![a.clone(), None], &[], ZAggregate::Sum), vec![]);
    }

    #[test]
    fn scores_print_as_redis_7_0_prints_them() {
        let cases: &[(f64, &str)] = &[
            (0.1, "0.10000000000000001"),
            (1.5, "1.5"),
            (3.0, "3"),
            (-2.0, "-2"),
            (0.30000000000000004, "0.30000000000000004"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1e20, "1e+20"),
            (1e16, "10000000000000000"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (-0.0, "0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for &(score, text) in cases {
            assert_eq!(format_score(score), text, "{score:e}");
        }
    }

    #[test]
    fn entries_keep_redis_order_and_a_damaged_record_is_refused() {
        let mut entries = Entries::new();
        for (score, member) in [(2.0, "b"), (1.0, "z"), (2.0, "a"), (-0.0, "m")] {
            insert(&mut entries, score, Bytes::from(member));
        }
        let members: Vec<&[u8]> = entries.iter().map(|(_, m)| &m[..]).collect();
        assert_eq!(members, [&b"m"[..], b"z", b"a", b"b"]);
        assert!(entries[0].0.is_sign_positive(), "-0 is stored as 0");
        assert_eq!(decode(&encode(&entries)).unwrap(), entries);
        let mut swapped = entries.clone();
        swapped.swap(0, 1);
        assert!(decode(&encode(&swapped)).is_err(), "out of order");
    }

    #[test]
    fn ranges_select_by_rank_score_and_member() {
        let entries: Entries = [(1.0, "a"), (2.0, "b"), (3.0, "c"), (4.0, "d")]
            .into_iter()
            .map(|(s, m)| (s, Bytes::from(m)))
            .collect();
        let bound = |value, open| ZScoreBound { value, open };
        assert_eq!(select(&entries, &ZRangeBy::Rank(0, 1), true), [2, 3], "the top two");
        assert_eq!(select(&entries, &ZRangeBy::Rank(-2, -1), false), [2, 3]);
        assert_eq!(select(&entries, &ZRangeBy::Score(bound(1.0, true), bound(3.0, false)), false), [1, 2]);
        let inf = ZRangeBy::Score(bound(f64::NEG_INFINITY, false), bound(f64::INFINITY, false));
        assert_eq!(select(&entries, &inf, false), [0, 1, 2, 3]);
        let lex = ZRangeBy::Lex(LexBound::Excluded("a".into()), LexBound::Included("c".into()));
        assert_eq!(select(&entries, &lex, false), [1, 2]);
        let spec = ZRangeSpec { by: inf, rev: true, limit: Some((1, 2)), with_scores: false };
        assert_eq!(range(&entries, &spec), Frame::Array(vec![Frame::bulk("c"), Frame::bulk("b")]));
    }
}
