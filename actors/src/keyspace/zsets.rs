//! Sorted sets: how one is stored, and the sorted set commands' applies and reads.
//!
//! A sorted set of up to [`super::buckets::WHOLE_FIELDS`] members is one record of the
//! keyspace: its members with their scores, ordered by score and then by member (Redis's order),
//! each member once. A larger one is stored as a tree of its members in order and buckets of
//! their scores ([`super::ztree`]), so that a write of a member, a score or rank lookup and a
//! range read cost a few nodes' reads whatever its size. The commands below work on either
//! through [`Sorted`]; ZUNION and the others that combine whole sorted sets, ZSCAN and
//! ZRANDMEMBER with a large count read every member.

use std::cmp::Ordering;

use bytes::Bytes;

use super::buckets::scan_reply;
use super::sets::{self, KIND_SET};
use super::ztree::{Tree, TreeEdit, NODE_ENTRIES};
use super::{
    decode_elements, encode_elements, or_refusal, random_positions, read_collection, ApplyBatch, Collection,
    KeyRead, Stored, Value, XorShift, WRONGTYPE,
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
pub(super) type Entries = Vec<(f64, Bytes)>;

/// Stored as elements: each member followed by its score's eight bytes (IEEE 754, big-endian).
pub(super) fn decode(data: &Bytes) -> Result<Entries> {
    let entries = decode_pairs(data)?;
    if !entries.windows(2).all(|w| order(&w[0], &w[1]) == Ordering::Less) {
        return Err(crate::Error::Corrupt("sorted set record: members out of order".into()));
    }
    Ok(entries)
}

/// Members with their scores, stored as [`encode`] stores them, in whatever order they are
/// (a tree's bucket of scores keeps none).
pub(super) fn decode_pairs(data: &Bytes) -> Result<Entries> {
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
    Ok(entries)
}

pub(super) fn encode(entries: &Entries) -> Bytes {
    let elements: Vec<Bytes> = entries
        .iter()
        .flat_map(|(score, member)| [member.clone(), Bytes::copy_from_slice(&score.to_be_bytes())])
        .collect();
    encode_elements(elements.len(), elements.iter())
}

/// The record of `entries`; none for an empty sorted set, which is deleted.
pub(super) fn record(entries: &Entries) -> Option<Bytes> {
    (!entries.is_empty()).then(|| encode(entries))
}

/// Redis's order: by score, then by member.
pub(super) fn order(a: &(f64, Bytes), b: &(f64, Bytes)) -> Ordering {
    a.0.partial_cmp(&b.0).expect("scores are never NaN").then_with(|| a.1.cmp(&b.1))
}

/// How many members the sorted set record `data` holds.
pub(super) fn member_count(data: &Bytes) -> Result<u64> {
    Ok(match Tree::decode(data)? {
        Some(tree) => tree.len(),
        None => data.get(..4).map_or(0, |n| u32::from_be_bytes(n.try_into().expect("4 bytes")) as u64 / 2),
    })
}

/// A sorted set as a command goes through it: whole, or a tree (whose nodes it reads once).
pub(super) enum Sorted {
    Whole(Entries),
    Tree(Box<TreeEdit>),
}

impl Sorted {
    /// The sorted set a record's payload holds (a tree's nodes hold up to `node_entries`).
    pub(super) fn decode(data: &Bytes, node_entries: usize) -> Result<Sorted> {
        Ok(match Tree::decode(data)? {
            Some(tree) => Sorted::Tree(Box::new(TreeEdit::new(tree, node_entries))),
            None => Sorted::Whole(decode(data)?),
        })
    }

    fn len(&self) -> u64 {
        match self {
            Sorted::Whole(entries) => entries.len() as u64,
            Sorted::Tree(tree) => tree.len(),
        }
    }

    pub(super) fn score(&mut self, ks: &dyn KeyRead, member: &[u8]) -> Result<Option<f64>> {
        match self {
            Sorted::Whole(entries) => Ok(entries.iter().find(|(_, m)| m == member).map(|(score, _)| *score)),
            Sorted::Tree(tree) => tree.score(ks, member),
        }
    }

    /// Adds `member` with `score` in its place (it must not be there yet). `-0` is stored as
    /// `0`.
    fn insert(&mut self, ks: &dyn KeyRead, score: f64, member: Bytes) -> Result<()> {
        let entry = (score + 0.0, member);
        match self {
            Sorted::Whole(entries) => {
                let at = entries.partition_point(|e| order(e, &entry) == Ordering::Less);
                entries.insert(at, entry);
                Ok(())
            }
            Sorted::Tree(tree) => tree.insert(ks, entry),
        }
    }

    /// Removes `entry`, a member with its score (it must be there).
    fn remove(&mut self, ks: &dyn KeyRead, entry: &(f64, Bytes)) -> Result<()> {
        match self {
            Sorted::Whole(entries) => {
                if let Ok(at) = entries.binary_search_by(|e| order(e, entry)) {
                    entries.remove(at);
                }
                Ok(())
            }
            Sorted::Tree(tree) => tree.remove(ks, entry),
        }
    }

    /// How many members `below` holds for (it holds for a first part of the order).
    pub(super) fn count_below(
        &mut self,
        ks: &dyn KeyRead,
        below: &dyn Fn(&(f64, Bytes)) -> bool,
    ) -> Result<u64> {
        match self {
            Sorted::Whole(entries) => Ok(entries.partition_point(below) as u64),
            Sorted::Tree(tree) => tree.count_below(ks, below),
        }
    }

    /// The members ranked `from..to` (the lowest is 0), in order.
    pub(super) fn ranks(&mut self, ks: &dyn KeyRead, from: u64, to: u64) -> Result<Entries> {
        match self {
            Sorted::Whole(entries) => {
                let to = (to as usize).min(entries.len());
                Ok(entries[(from as usize).min(to)..to].to_vec())
            }
            Sorted::Tree(tree) => tree.ranks(ks, from, to),
        }
    }

    /// Every member, in order; a whole sorted set gives its members up (it is left empty).
    pub(super) fn all(&mut self, ks: &dyn KeyRead) -> Result<Entries> {
        match self {
            Sorted::Whole(entries) => Ok(std::mem::take(entries)),
            Sorted::Tree(tree) => tree.ranks(ks, 0, tree.len()),
        }
    }

    /// The members at `ranks`, in that order.
    fn at_ranks(&mut self, ks: &dyn KeyRead, ranks: &[usize]) -> Result<Entries> {
        if let Sorted::Tree(tree) = self {
            if ranks.len() as u64 * 4 < tree.len() {
                let one = |tree: &mut TreeEdit, at: u64| Ok(tree.ranks(ks, at, at + 1)?.remove(0));
                return ranks.iter().map(|&at| one(tree, at as u64)).collect();
            }
        }
        let all = self.all(ks)?;
        Ok(ranks.iter().map(|&at| all[at].clone()).collect())
    }

    /// The rank of `member`, whose score is `score`.
    fn rank(&mut self, ks: &dyn KeyRead, score: f64, member: &[u8]) -> Result<u64> {
        let entry = (score, Bytes::copy_from_slice(member));
        self.count_below(ks, &|e| order(e, &entry) == Ordering::Less)
    }
}

/// A score as Redis 7.0 writes it (`%.17g`): `0.1` is `0.10000000000000001`.
pub fn format_score(score: f64) -> Bytes {
    if score.is_infinite() {
        return Bytes::from_static(if score > 0.0 { b"inf" } else { b"-inf" });
    }
    if score == 0.0 {
        return Bytes::from_static(b"0");
    }
    Bytes::from(format_g(score, 17))
}

/// A finite, non-zero `value` as C's `printf("%.{precision}g")` writes it.
pub(super) fn format_g(value: f64, precision: usize) -> String {
    let strip = |text: String| -> String {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            text
        }
    };
    let scientific = format!("{value:.*e}", precision - 1);
    let (mantissa, exponent) = scientific.split_once('e').expect("`{:e}` has an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}`'s exponent is a number");
    if !(-4..precision as i32).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", strip(mantissa.to_owned()), exponent.abs())
    } else {
        strip(format!("{value:.*}", (precision as i32 - 1 - exponent) as usize))
    }
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

/// What a range selects.
#[derive(Debug, PartialEq)]
enum Selected {
    /// The members ranked `lo..hi`.
    Ranks(u64, u64),
    /// These members, in order (a range by member over members of different scores).
    Members(Entries),
}

impl Selected {
    fn len(&self) -> u64 {
        match self {
            Selected::Ranks(lo, hi) => hi - lo,
            Selected::Members(entries) => entries.len() as u64,
        }
    }

    /// The members selected, in order.
    fn entries(self, sorted: &mut Sorted, ks: &dyn KeyRead) -> Result<Entries> {
        match self {
            Selected::Ranks(lo, hi) => sorted.ranks(ks, lo, hi),
            Selected::Members(entries) => Ok(entries),
        }
    }
}

/// What `by` selects; a rank range counts from the top when `rev`. A range by member is a range
/// of ranks when every member has one score (the case Redis documents); otherwise it is every
/// member inside it, found by reading them all (Redis's answer then depends on its skiplist).
fn select(sorted: &mut Sorted, ks: &dyn KeyRead, by: &ZRangeBy, rev: bool) -> Result<Selected> {
    let len = sorted.len();
    if let (ZRangeBy::Lex(min, max), 1..) = (by, len) {
        let (first, last) = (sorted.ranks(ks, 0, 1)?, sorted.ranks(ks, len - 1, len)?);
        if first[0].0 != last[0].0 {
            let mut all = sorted.ranks(ks, 0, len)?;
            all.retain(|(_, m)| lex_above(m, min) && lex_below(m, max));
            return Ok(Selected::Members(all));
        }
    }
    let (lo, hi) = match by {
        ZRangeBy::Rank(start, stop) => {
            let len_i = len as i64;
            let start = if *start < 0 { start.saturating_add(len_i).max(0) } else { *start };
            let stop = if *stop < 0 { stop.saturating_add(len_i) } else { *stop };
            if start > stop || start >= len_i {
                return Ok(Selected::Ranks(0, 0));
            }
            let (first, last) = (start as u64, stop.min(len_i - 1) as u64);
            match rev {
                true => (len - 1 - last, len - first),
                false => (first, last + 1),
            }
        }
        ZRangeBy::Score(min, max) => (
            sorted.count_below(ks, &|e| !above_min(e.0, min))?,
            sorted.count_below(ks, &|e| below_max(e.0, max))?,
        ),
        ZRangeBy::Lex(min, max) => (
            sorted.count_below(ks, &|e| !lex_above(&e.1, min))?,
            sorted.count_below(ks, &|e| lex_below(&e.1, max))?,
        ),
    };
    Ok(Selected::Ranks(lo, hi.max(lo)))
}

/// ZRANGE's answer: the selection, top first when reversed, cut by LIMIT.
fn range(sorted: &mut Sorted, ks: &dyn KeyRead, spec: &ZRangeSpec) -> Result<Frame> {
    Ok(with_scores(range_entries(sorted, ks, spec)?.into_iter(), spec.with_scores))
}

/// ZRANGE's selection, in the order it answers: top first when reversed, cut by LIMIT (a
/// negative offset selects nothing, a negative count everything after the offset).
fn range_entries(sorted: &mut Sorted, ks: &dyn KeyRead, spec: &ZRangeSpec) -> Result<Entries> {
    let selected = select(sorted, ks, &spec.by, spec.rev)?;
    let total = selected.len();
    let (skip, take) = match spec.limit {
        None => (0, total),
        Some((offset, _)) if offset < 0 => return Ok(Vec::new()),
        Some((offset, count)) => (offset as u64, if count < 0 { total } else { count as u64 }),
    };
    let skip = skip.min(total);
    let n = take.min(total - skip);
    // The selection's members from `skip` to `skip + n` in the answer's order.
    let (from, to) = if spec.rev { (total - skip - n, total - skip) } else { (skip, skip + n) };
    let mut entries = match selected {
        Selected::Ranks(lo, _) => sorted.ranks(ks, lo + from, lo + to)?,
        Selected::Members(entries) => entries[from as usize..to as usize].to_vec(),
    };
    if spec.rev {
        entries.reverse();
    }
    Ok(entries)
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
            Some(v) if v.kind == KIND_ZSET => Some(Sorted::decode(&v.data, NODE_ENTRIES)?.all(ks)?),
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
fn pop_ends(sorted: &mut Sorted, ks: &dyn KeyRead, max: bool, count: u64) -> Result<Entries> {
    let len = sorted.len();
    let n = count.min(len);
    let popped = match max {
        true => sorted.ranks(ks, len - n, len)?.into_iter().rev().collect(),
        false => sorted.ranks(ks, 0, n)?,
    };
    remove_all(sorted, ks, &popped)?;
    Ok(popped)
}

fn remove_all(sorted: &mut Sorted, ks: &dyn KeyRead, removed: &Entries) -> Result<()> {
    match sorted {
        Sorted::Whole(entries) => {
            let removed: std::collections::HashSet<&Bytes> = removed.iter().map(|(_, m)| m).collect();
            entries.retain(|(_, m)| !removed.contains(m));
        }
        Sorted::Tree(_) => {
            for entry in removed {
                sorted.remove(ks, entry)?;
            }
        }
    }
    Ok(())
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
    fn live_zset(&mut self, key: &Bytes) -> Result<Collection<Sorted>> {
        let node_entries = self.limits.tree_node;
        self.live_collection(key, KIND_ZSET, |data| Sorted::decode(data, node_entries))
    }

    /// Stores the sorted set at `key` as a write left it (one left empty is deleted): a whole
    /// one that outgrew its record as a new tree, a tree with what the write changed.
    fn save_sorted(&mut self, key: Bytes, sorted: Sorted, expires: u64) -> Result<Stored> {
        let data = match sorted {
            Sorted::Whole(entries) if entries.len() > self.limits.whole_fields => {
                match self.build_tree(entries)? {
                    Ok(tree) => Some(tree.encode()),
                    Err(too_big) => return Ok(Err(too_big)),
                }
            }
            Sorted::Whole(entries) => record(&entries),
            Sorted::Tree(edit) => match self.save_tree(*edit)? {
                Ok(data) => data,
                Err(too_big) => return Ok(Err(too_big)),
            },
        };
        self.put_collection(key, KIND_ZSET, data, expires)
    }

    /// [`Self::save_sorted`], then `reply`, or the error of a record too large.
    fn save_sorted_then(&mut self, key: Bytes, sorted: Sorted, expires: u64, reply: Frame) -> Result<Frame> {
        Ok(or_refusal(self.save_sorted(key, sorted, expires)?, reply))
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
                let mut result = match self.live_zset(&source)? {
                    Err(wrongtype) => return Ok(wrongtype),
                    Ok(None) => Vec::new(),
                    Ok(Some((mut sorted, _))) => range_entries(&mut sorted, self, &spec)?,
                };
                result.sort_by(order);
                self.store_result(destination, result)
            }
            op => self.write_one_zset(op),
        }
    }

    /// ZMPOP and (`flat`) BZPOPMIN/BZPOPMAX: up to `count` members from the top (`max`) or the
    /// bottom of the first of `keys` that holds a sorted set.
    fn pop_first_zset(&mut self, keys: Vec<Bytes>, max: bool, count: u64, flat: bool) -> Result<Frame> {
        let node_entries = self.limits.tree_node;
        let decode = |data: &Bytes| Sorted::decode(data, node_entries);
        let ((key, mut sorted), expires) = match self.first_collection(keys, KIND_ZSET, decode)? {
            Err(wrongtype) => return Ok(wrongtype),
            Ok(None) => return Ok(Frame::NullArray),
            Ok(Some(found)) => found,
        };
        let popped = pop_ends(&mut sorted, self, max, count)?;
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
        self.save_sorted_then(key, sorted, expires, reply)
    }

    /// A result that replaces whatever `destination` held, expiry included (an empty one
    /// deletes it); replies its size.
    pub(super) fn store_result(&mut self, destination: Bytes, result: Entries) -> Result<Frame> {
        let size = Frame::Integer(result.len() as i64);
        self.save_sorted_then(destination, Sorted::Whole(result), 0, size)
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
        let (mut sorted, expires) = match self.live_zset(&key)? {
            Err(wrongtype) => return Ok(wrongtype),
            Ok(found) => found.unwrap_or((Sorted::Whole(Vec::new()), 0)),
        };
        match op {
            WriteOp::ZAdd { pairs, cond, cmp, ch, incr, .. } => {
                let (mut added, mut changed, mut result) = (0, 0, None);
                for (score, member) in pairs {
                    result = None;
                    let current = match sorted.score(self, &member)? {
                        Some(_) if cond == ZAddCond::IfAbsent => continue,
                        None if cond == ZAddCond::IfPresent => continue,
                        None => {
                            sorted.insert(self, score, member)?;
                            added += 1;
                            result = Some(score);
                            continue;
                        }
                        Some(current) => current,
                    };
                    let score = if incr { current + score } else { score };
                    if score.is_nan() {
                        return Ok(Frame::error("ERR resulting score is not a number (NaN)"));
                    }
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
                        sorted.remove(self, &(current, member.clone()))?;
                        sorted.insert(self, score, member)?;
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
                self.save_sorted_then(key, sorted, expires, reply)
            }
            WriteOp::ZRem { members, .. } => {
                let mut removed = 0;
                for member in members {
                    if let Some(score) = sorted.score(self, &member)? {
                        sorted.remove(self, &(score, member))?;
                        removed += 1;
                    }
                }
                if removed == 0 {
                    return Ok(Frame::Integer(0));
                }
                self.save_sorted_then(key, sorted, expires, Frame::Integer(removed))
            }
            WriteOp::ZPop { max, count, .. } => {
                let popped = pop_ends(&mut sorted, self, max, count.unwrap_or(1))?;
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
                self.save_sorted_then(key, sorted, expires, reply)
            }
            WriteOp::ZRemRange { by, .. } => {
                let removed = select(&mut sorted, self, &by, false)?.entries(&mut sorted, self)?;
                if removed.is_empty() {
                    return Ok(Frame::Integer(0));
                }
                remove_all(&mut sorted, self, &removed)?;
                self.save_sorted_then(key, sorted, expires, Frame::Integer(removed.len() as i64))
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
    let mut sorted =
        match read_collection(ks, key, now, KIND_ZSET, |data| Sorted::decode(data, NODE_ENTRIES))? {
            Err(wrongtype) => return Ok(wrongtype),
            Ok(found) => found.map_or(Sorted::Whole(Vec::new()), |(sorted, _)| sorted),
        };
    let len = sorted.len();
    Ok(match q {
        ReadQuery::ZCard(_) => Frame::Integer(len as i64),
        ReadQuery::ZScore { members, many, .. } => {
            let mut scores = Vec::with_capacity(members.len());
            for member in members {
                scores.push(sorted.score(ks, member)?.map_or(Frame::Null, score_frame));
            }
            match many {
                true => Frame::Array(scores),
                false => scores.pop().expect("ZSCORE asks about one member"),
            }
        }
        ReadQuery::ZRank { member, rev, .. } => match sorted.score(ks, member)? {
            Some(score) => {
                let rank = sorted.rank(ks, score, member)?;
                Frame::Integer(if *rev { len - 1 - rank } else { rank } as i64)
            }
            None => Frame::Null,
        },
        ReadQuery::ZCount { by, .. } => Frame::Integer(select(&mut sorted, ks, by, false)?.len() as i64),
        ReadQuery::ZRange { spec, .. } => range(&mut sorted, ks, spec)?,
        ReadQuery::ZRandMember { count, with_scores: scores, seed, .. } => {
            let mut rng = XorShift::new(*seed);
            match count {
                None if len == 0 => Frame::Null,
                None => {
                    let at = rng.below(len as usize) as u64;
                    Frame::Bulk(sorted.ranks(ks, at, at + 1)?.remove(0).1)
                }
                Some(count) => match random_positions(len as usize, *count, &mut rng) {
                    Ok(ranks) => with_scores(sorted.at_ranks(ks, &ranks)?.into_iter(), *scores),
                    Err(too_many) => too_many,
                },
            }
        }
        ReadQuery::ZScan { cursor, scan, .. } => {
            // A tree is scanned by its buckets of scores; a whole sorted set is answered whole.
            let (next, found) = match &mut sorted {
                Sorted::Tree(tree) => tree.scan(ks, *cursor, scan.count)?,
                Sorted::Whole(entries) => (0, std::mem::take(entries)),
            };
            let mut out = Vec::new();
            for (score, member) in found {
                if scan.pattern.as_ref().is_none_or(|p| glob_match(p, &member)) {
                    out.push(Frame::Bulk(member));
                    out.push(score_frame(score));
                }
            }
            scan_reply(next, out)
        }
        other => unreachable!("not a sorted set read: {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::tests::Replica;
    use crate::keyspace::Limits;

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
        let replica = Replica::new(Limits::default());
        let mut sorted = Sorted::Whole(Entries::new());
        for (score, member) in [(2.0, "b"), (1.0, "z"), (2.0, "a"), (-0.0, "m")] {
            sorted.insert(&replica.db_view(), score, Bytes::from(member)).unwrap();
        }
        let Sorted::Whole(entries) = sorted else { unreachable!("whole") };
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
        let replica = Replica::new(Limits::default());
        let ks = replica.db_view();
        let select =
            |by: &ZRangeBy, rev| match select(&mut Sorted::Whole(entries.clone()), &ks, by, rev).unwrap() {
                Selected::Ranks(lo, hi) => (lo, hi),
                Selected::Members(_) => panic!("ranks"),
            };
        let bound = |value, open| ZScoreBound { value, open };
        assert_eq!(select(&ZRangeBy::Rank(0, 1), true), (2, 4), "the top two");
        assert_eq!(select(&ZRangeBy::Rank(-2, -1), false), (2, 4));
        assert_eq!(select(&ZRangeBy::Rank(3, 1), false), (0, 0));
        assert_eq!(select(&ZRangeBy::Score(bound(1.0, true), bound(3.0, false)), false), (1, 3));
        assert_eq!(select(&ZRangeBy::Score(bound(3.0, false), bound(1.0, false)), false), (2, 2));
        let inf = ZRangeBy::Score(bound(f64::NEG_INFINITY, false), bound(f64::INFINITY, false));
        assert_eq!(select(&inf, false), (0, 4));
        let lex = ZRangeBy::Lex(LexBound::Excluded("a".into()), LexBound::Included("c".into()));
        let selected = crate::keyspace::zsets::select(&mut Sorted::Whole(entries.clone()), &ks, &lex, false);
        let members =
            |names: &[&str]| names.iter().map(|m| Bytes::copy_from_slice(m.as_bytes())).collect::<Vec<_>>();
        let Selected::Members(found) = selected.unwrap() else {
            panic!("scores differ: every member looked at")
        };
        assert_eq!(found.into_iter().map(|(_, m)| m).collect::<Vec<_>>(), members(&["b", "c"]));
        let one_score: Entries = entries.iter().map(|(_, m)| (0.0, m.clone())).collect();
        let selected = crate::keyspace::zsets::select(&mut Sorted::Whole(one_score), &ks, &lex, false);
        assert_eq!(selected.unwrap(), Selected::Ranks(1, 3), "one score: a range of ranks");
        let spec = ZRangeSpec { by: inf, rev: true, limit: Some((1, 2)), with_scores: false };
        let got = range(&mut Sorted::Whole(entries.clone()), &ks, &spec).unwrap();
        assert_eq!(got, Frame::Array(vec![Frame::bulk("c"), Frame::bulk("b")]));
    }
}
