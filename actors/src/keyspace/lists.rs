//! Lists: how a list is stored, and the list commands' applies and reads.
//!
//! Like a hash ([`super::hashes`]), a list is one record of the keyspace, its elements head
//! first as the payload; every other part of the keyspace (expiry, versions, RENAME, SCAN's
//! TYPE, snapshots) treats it as any value. A write rewrites the whole record, so a push costs
//! in proportion to the list's length: fine for the lists of up to some thousands of elements
//! most applications keep, slow as a queue of millions.

use std::collections::VecDeque;

use bytes::Bytes;

use super::{decode_elements, encode_elements, read_collection, ApplyBatch, Collection, KeyRead};
use crate::command::{ReadQuery, WriteOp};
use crate::error::Result;
use crate::resp::Frame;

/// The type tag of a list record.
pub(super) const KIND_LIST: u8 = 2;

/// A list's elements, head first.
type List = VecDeque<Bytes>;

fn decode(data: &Bytes) -> Result<List> {
    Ok(decode_elements(data)?.into())
}

/// The record of `list`; none for an empty list, which is deleted.
fn record(list: &List) -> Option<Bytes> {
    (!list.is_empty()).then(|| encode_elements(list.len(), list.iter()))
}

/// `index` counted from the head, or from the tail when negative, if it is inside a list of
/// `len` elements.
fn position(index: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let at = if index < 0 { index.checked_add(len)? } else { index };
    (0..len).contains(&at).then_some(at as usize)
}

/// LRANGE's and LTRIM's range, normalized as Redis does: the inclusive positions it covers in a
/// list of `len` elements, none if it covers nothing.
fn range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 { start.saturating_add(len).max(0) } else { start };
    let stop = if stop < 0 { stop.saturating_add(len) } else { stop };
    if start > stop || start >= len {
        return None;
    }
    Some((start as usize, stop.min(len - 1) as usize))
}

fn pop(list: &mut List, left: bool) -> Option<Bytes> {
    if left {
        list.pop_front()
    } else {
        list.pop_back()
    }
}

fn push(list: &mut List, element: Bytes, left: bool) {
    if left {
        list.push_front(element)
    } else {
        list.push_back(element)
    }
}

fn bulks(elements: impl IntoIterator<Item = Bytes>) -> Frame {
    Frame::Array(elements.into_iter().map(Frame::Bulk).collect())
}

impl ApplyBatch<'_> {
    fn live_list(&mut self, key: &Bytes) -> Result<Collection<List>> {
        self.live_collection(key, KIND_LIST, decode)
    }

    /// Applies a list write ([`WriteOp::Push`] and the others after it). LMPOP, BLPOP and BRPOP
    /// pop from the first of their keys that holds a list; a key of another type before it is
    /// an error.
    pub(super) fn write_list(&mut self, op: WriteOp) -> Result<Frame> {
        match op {
            WriteOp::LMPop { keys, left, count } => self.pop_first_list(keys, left, count, false),
            WriteOp::BPop { keys, left } => self.pop_first_list(keys, left, 1, true),
            op => self.write_one_list(op),
        }
    }

    /// LMPOP and (`flat`) BLPOP/BRPOP: up to `count` elements from one end of the first of
    /// `keys` that holds a list.
    fn pop_first_list(&mut self, keys: Vec<Bytes>, left: bool, count: u64, flat: bool) -> Result<Frame> {
        let ((key, mut list), expires) = match self.first_collection(keys, KIND_LIST, decode)? {
            Err(wrongtype) => return Ok(wrongtype),
            Ok(None) => return Ok(Frame::NullArray),
            Ok(Some(found)) => found,
        };
        let taken = (list.len() as u64).min(count) as usize;
        let popped: Vec<Bytes> = (0..taken).filter_map(|_| pop(&mut list, left)).collect();
        let reply = match (flat, popped.first()) {
            // BLPOP, BRPOP: `[key, element]`
            (true, Some(element)) => {
                Frame::Array(vec![Frame::Bulk(key.clone()), Frame::Bulk(element.clone())])
            }
            _ => Frame::Array(vec![Frame::Bulk(key.clone()), bulks(popped)]),
        };
        self.put_collection_then(key, KIND_LIST, record(&list), expires, reply)
    }

    /// Applies a list write of one list, or LMOVE's of two.
    fn write_one_list(&mut self, op: WriteOp) -> Result<Frame> {
        if let WriteOp::LMove { from, to, from_left, to_left } = op {
            return self.lmove(from, to, from_left, to_left);
        }
        let key = match &op {
            WriteOp::Push { key, .. }
            | WriteOp::Pop { key, .. }
            | WriteOp::LSet { key, .. }
            | WriteOp::LInsert { key, .. }
            | WriteOp::LRem { key, .. }
            | WriteOp::LTrim { key, .. } => key.clone(),
            other => unreachable!("not a list write: {other:?}"),
        };
        let found = match self.live_list(&key)? {
            Ok(found) => found,
            Err(wrongtype) => return Ok(wrongtype),
        };
        // What a command answers for a missing key, which it leaves missing.
        let (mut list, expires) = match (found, &op) {
            (Some(found), _) => found,
            (None, WriteOp::Push { only_if_exists: false, .. }) => (List::new(), 0),
            (None, WriteOp::Push { .. } | WriteOp::LInsert { .. } | WriteOp::LRem { .. }) => {
                return Ok(Frame::Integer(0))
            }
            (None, WriteOp::Pop { count: None, .. }) => return Ok(Frame::Null),
            (None, WriteOp::Pop { .. }) => return Ok(Frame::NullArray),
            (None, WriteOp::LSet { .. }) => return Ok(Frame::error("ERR no such key")),
            (None, _) => return Ok(Frame::ok()),
        };
        let reply = match op {
            WriteOp::Push { elements, left, .. } => {
                for element in elements {
                    push(&mut list, element, left);
                }
                Frame::Integer(list.len() as i64)
            }
            WriteOp::Pop { left, count: None, .. } => pop(&mut list, left).map_or(Frame::Null, Frame::Bulk),
            WriteOp::Pop { left, count: Some(count), .. } => {
                let taken = (list.len() as u64).min(count) as usize;
                bulks((0..taken).filter_map(|_| pop(&mut list, left)).collect::<Vec<_>>())
            }
            WriteOp::LSet { index, element, .. } => match position(index, list.len()) {
                Some(at) => {
                    list[at] = element;
                    Frame::ok()
                }
                None => return Ok(Frame::error("ERR index out of range")),
            },
            WriteOp::LInsert { before, pivot, element, .. } => match list.iter().position(|e| *e == pivot) {
                Some(at) => {
                    list.insert(if before { at } else { at + 1 }, element);
                    Frame::Integer(list.len() as i64)
                }
                None => return Ok(Frame::Integer(-1)),
            },
            WriteOp::LRem { count, element, .. } => {
                let limit = if count == 0 {
                    usize::MAX
                } else {
                    count.unsigned_abs().min(usize::MAX as u64) as usize
                };
                let positions: Box<dyn Iterator<Item = usize>> =
                    if count >= 0 { Box::new(0..list.len()) } else { Box::new((0..list.len()).rev()) };
                let mut removed = vec![false; list.len()];
                for at in positions.filter(|&at| list[at] == element).take(limit) {
                    removed[at] = true;
                }
                let n = removed.iter().filter(|&&r| r).count();
                if n == 0 {
                    return Ok(Frame::Integer(0));
                }
                let mut flags = removed.into_iter();
                list.retain(|_| !flags.next().unwrap_or(false));
                Frame::Integer(n as i64)
            }
            WriteOp::LTrim { start, stop, .. } => {
                match range(start, stop, list.len()) {
                    Some((first, last)) => {
                        list.truncate(last + 1);
                        list.drain(..first);
                    }
                    None => list.clear(),
                }
                Frame::ok()
            }
            other => unreachable!("not a list write: {other:?}"),
        };
        self.put_collection_then(key, KIND_LIST, record(&list), expires, reply)
    }

    /// LMOVE and RPOPLPUSH: a missing source answers null; a source or destination of another
    /// type answers WRONGTYPE and moves nothing.
    fn lmove(&mut self, from: Bytes, to: Bytes, from_left: bool, to_left: bool) -> Result<Frame> {
        let (mut source, source_expires) = match self.live_list(&from)? {
            Err(wrongtype) => return Ok(wrongtype),
            Ok(None) => return Ok(Frame::Null),
            Ok(Some(found)) => found,
        };
        if from == to {
            let element = pop(&mut source, from_left).expect("a stored list is never empty");
            push(&mut source, element.clone(), to_left);
            return self.put_collection_then(
                from,
                KIND_LIST,
                record(&source),
                source_expires,
                Frame::Bulk(element),
            );
        }
        let (mut destination, destination_expires) = match self.live_list(&to)? {
            Err(wrongtype) => return Ok(wrongtype),
            Ok(found) => found.unwrap_or_default(),
        };
        let element = pop(&mut source, from_left).expect("a stored list is never empty");
        push(&mut destination, element.clone(), to_left);
        // The destination first: if it is too large, nothing has changed yet.
        if let Err(too_big) = self.put_collection(to, KIND_LIST, record(&destination), destination_expires)? {
            return Ok(too_big);
        }
        self.put_collection_then(from, KIND_LIST, record(&source), source_expires, Frame::Bulk(element))
    }
}

/// Answers a list read ([`ReadQuery::LLen`] and the others after it) from `ks` at `now`.
pub(super) fn read_list(ks: &dyn KeyRead, q: &ReadQuery, now: i64) -> Result<Frame> {
    let key = match q {
        ReadQuery::LLen(key)
        | ReadQuery::LIndex { key, .. }
        | ReadQuery::LRange { key, .. }
        | ReadQuery::LPos { key, .. } => key,
        other => unreachable!("not a list read: {other:?}"),
    };
    let list = match read_collection(ks, key, now, KIND_LIST, decode)? {
        Err(wrongtype) => return Ok(wrongtype),
        Ok(found) => found.map(|(list, _)| list).unwrap_or_default(),
    };
    Ok(match q {
        ReadQuery::LLen(_) => Frame::Integer(list.len() as i64),
        ReadQuery::LIndex { index, .. } => {
            position(*index, list.len()).map_or(Frame::Null, |at| Frame::Bulk(list[at].clone()))
        }
        ReadQuery::LRange { start, stop, .. } => match range(*start, *stop, list.len()) {
            Some((first, last)) => bulks(list.range(first..=last).cloned()),
            None => Frame::Array(vec![]),
        },
        ReadQuery::LPos { element, rank, count, maxlen, .. } => lpos(&list, element, *rank, *count, *maxlen),
        other => unreachable!("not a list read: {other:?}"),
    })
}

/// LPOS: the positions (from the head) of the matches of `element`, skipping the first
/// `|rank| - 1` of them, searching from the tail for a negative rank, among at most `maxlen`
/// elements (0: all); one position or null without `count`, else up to `count` (0: all).
fn lpos(list: &List, element: &[u8], rank: i64, count: Option<u64>, maxlen: u64) -> Frame {
    let compared = if maxlen == 0 { list.len() } else { (maxlen.min(list.len() as u64)) as usize };
    let positions: Box<dyn Iterator<Item = usize>> =
        if rank > 0 { Box::new(0..list.len()) } else { Box::new((0..list.len()).rev()) };
    let wanted = match count {
        None => 1,
        Some(0) => usize::MAX,
        Some(n) => n.min(usize::MAX as u64) as usize,
    };
    let skip = (rank.unsigned_abs() - 1).min(usize::MAX as u64) as usize;
    let found: Vec<Frame> = positions
        .take(compared)
        .filter(|&at| list[at] == element)
        .skip(skip)
        .take(wanted)
        .map(|at| Frame::Integer(at as i64))
        .collect();
    match count {
        Some(_) => Frame::Array(found),
        None => found.into_iter().next().unwrap_or(Frame::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(elements: &[&str]) -> List {
        elements.iter().map(|e| Bytes::copy_from_slice(e.as_bytes())).collect()
    }

    #[test]
    fn a_list_round_trips_through_its_record() {
        let l = list(&["a", "", "b\r\n"]);
        let encoded = encode_elements(l.len(), l.iter());
        assert_eq!(decode(&encoded).unwrap(), l);
        for cut in 0..encoded.len() {
            assert!(decode(&encoded.slice(..cut)).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn ranges_and_indexes_are_normalized_as_redis_does() {
        assert_eq!(range(0, -1, 3), Some((0, 2)));
        assert_eq!(range(-100, 100, 3), Some((0, 2)));
        assert_eq!(range(2, 1, 3), None);
        assert_eq!(range(3, 5, 3), None);
        assert_eq!(range(-2, -2, 3), Some((1, 1)));
        assert_eq!(range(0, -4, 3), None);
        assert_eq!(range(i64::MIN, i64::MAX, 3), Some((0, 2)));
        assert_eq!(range(0, 0, 0), None);
        assert_eq!(position(-1, 3), Some(2));
        assert_eq!(position(-4, 3), None);
        assert_eq!(position(3, 3), None);
        assert_eq!(position(i64::MIN, 3), None);
    }

    #[test]
    fn lpos_counts_ranks_from_either_end_within_maxlen() {
        let l = list(&["a", "b", "a", "c", "a"]);
        let at = |rank, count, maxlen| lpos(&l, b"a", rank, count, maxlen);
        let ints = |v: &[i64]| Frame::Array(v.iter().map(|&i| Frame::Integer(i)).collect());
        assert_eq!(at(1, None, 0), Frame::Integer(0));
        assert_eq!(at(2, None, 0), Frame::Integer(2));
        assert_eq!(at(-1, None, 0), Frame::Integer(4));
        assert_eq!(at(4, None, 0), Frame::Null);
        assert_eq!(at(1, Some(0), 0), ints(&[0, 2, 4]));
        assert_eq!(at(-2, Some(0), 0), ints(&[2, 0]));
        assert_eq!(at(1, Some(0), 3), ints(&[0, 2]), "only the first three compared");
        assert_eq!(at(i64::MIN, Some(1), 0), ints(&[]));
        assert_eq!(lpos(&l, b"z", 1, Some(2), 0), ints(&[]));
    }
}
