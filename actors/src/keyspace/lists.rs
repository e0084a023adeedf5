//! Lists: how a list is stored, and the list commands' applies and reads.
//!
//! A list of up to a chunk's worth of elements ([`super::chunked::CHUNK_ELEMENTS`]) is one record of the
//! keyspace, its elements head first as the payload, like a hash ([`super::hashes`]). A longer
//! one is stored in chunks behind a directory ([`super::chunked`]), so that pushes and pops at
//! either end, LINDEX, LRANGE and LSET cost the same at any length; the commands that search or
//! reshape the middle (LINSERT, LREM, LPOS) read the whole list, as Redis walks it. Every other
//! part of the keyspace (expiry, versions, RENAME, SCAN's TYPE, snapshots) treats a list as any
//! value.

use std::collections::VecDeque;

use bytes::Bytes;

use super::chunked::{read_end, read_range, Directory};
use super::{
    decode_elements, encode_elements, or_refusal, read_collection, ApplyBatch, Collection, KeyRead, Stored,
};
use crate::command::{ReadQuery, WriteOp};
use crate::error::Result;
use crate::resp::Frame;

/// The type tag of a list record.
pub(super) const KIND_LIST: u8 = 2;

/// A list's elements, head first.
type List = VecDeque<Bytes>;

/// How a list is stored: whole in its record, or in chunks.
#[derive(Debug, PartialEq)]
enum Layout {
    Whole(List),
    Chunked(Directory),
}

impl Default for Layout {
    fn default() -> Self {
        Layout::Whole(List::new())
    }
}

impl Layout {
    fn len(&self) -> u64 {
        match self {
            Layout::Whole(list) => list.len() as u64,
            Layout::Chunked(directory) => directory.len(),
        }
    }

    /// The elements at positions `first..=last`.
    fn range(&self, ks: &dyn KeyRead, first: usize, last: usize) -> Result<Vec<Bytes>> {
        match self {
            Layout::Whole(list) => Ok(list.range(first..=last).cloned().collect()),
            Layout::Chunked(directory) => read_range(ks, directory, first as u64, last as u64),
        }
    }

    /// Every element, head first.
    fn elements(&self, ks: &dyn KeyRead) -> Result<List> {
        match self.len() {
            0 => Ok(List::new()),
            len => Ok(self.range(ks, 0, len as usize - 1)?.into()),
        }
    }
}

fn decode(data: &Bytes) -> Result<Layout> {
    Ok(match Directory::decode(data)? {
        Some(directory) => Layout::Chunked(directory),
        None => Layout::Whole(decode_elements(data)?.into()),
    })
}

/// Every element of the list `value` holds, head first.
pub(super) fn elements_of(ks: &dyn KeyRead, value: &super::Value) -> Result<Vec<Bytes>> {
    Ok(decode(&value.data)?.elements(ks)?.into())
}

/// How many elements the list record `data` stands for.
pub(super) fn element_count(data: &Bytes) -> Result<u64> {
    Ok(match Directory::decode(data)? {
        Some(directory) => directory.len(),
        None => data.get(..4).map_or(0, |n| u32::from_be_bytes(n.try_into().expect("4 bytes")) as u64),
    })
}

/// The record of `list`; none for an empty list, which is deleted.
fn record(list: &List) -> Option<Bytes> {
    (!list.is_empty()).then(|| encode_elements(list.len(), list.iter()))
}

/// `index` counted from the head, or from the tail when negative, if it is inside a list of
/// `len` elements.
fn position(index: i64, len: u64) -> Option<usize> {
    let len = len as i64;
    let at = if index < 0 { index.checked_add(len)? } else { index };
    (0..len).contains(&at).then_some(at as usize)
}

/// LRANGE's and LTRIM's range, normalized as Redis does: the inclusive positions it covers in a
/// list of `len` elements, none if it covers nothing.
fn range(start: i64, stop: i64, len: u64) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 { start.saturating_add(len).max(0) } else { start };
    let stop = if stop < 0 { stop.saturating_add(len) } else { stop };
    if start > stop || start >= len {
        return None;
    }
    Some((start as usize, stop.min(len - 1) as usize))
}

fn bulks(elements: impl IntoIterator<Item = Bytes>) -> Frame {
    Frame::Array(elements.into_iter().map(Frame::Bulk).collect())
}

impl ApplyBatch<'_> {
    fn live_list(&mut self, key: &Bytes) -> Result<Collection<Layout>> {
        self.live_collection(key, KIND_LIST, decode)
    }

    /// Pushes `elements` one by one at the head (`left`) or the tail. `Err` is the reply to a
    /// chunk too large, and then nothing has changed.
    fn push_list(&mut self, layout: &mut Layout, elements: Vec<Bytes>, left: bool) -> Result<Stored> {
        match layout {
            Layout::Chunked(directory) => self.push_chunked(directory, elements, left),
            Layout::Whole(list) => {
                for element in elements {
                    if left {
                        list.push_front(element);
                    } else {
                        list.push_back(element);
                    }
                }
                Ok(Ok(())) // chunked when saved, if it outgrew its record
            }
        }
    }

    /// Pops up to `count` elements from the head (`left`) or the tail, in the order popped.
    fn pop_list(&mut self, layout: &mut Layout, count: u64, left: bool) -> Result<Vec<Bytes>> {
        match layout {
            Layout::Whole(list) => {
                let taken = (list.len() as u64).min(count) as usize;
                Ok(if left {
                    list.drain(..taken).collect()
                } else {
                    list.drain(list.len() - taken..).rev().collect()
                })
            }
            Layout::Chunked(directory) => {
                let (len, popped) = (directory.len(), self.pop_chunked(directory, count, left)?);
                if popped.len() as u64 == len {
                    *layout = Layout::default(); // its chunks are gone
                }
                Ok(popped)
            }
        }
    }

    /// Stores the list at `key` (a list left empty is deleted); a whole list longer than a
    /// chunk is chunked. `Err` is the reply to a record too large, and then nothing is stored.
    fn save_list(&mut self, key: Bytes, layout: Layout, expires: u64) -> Result<Stored> {
        let data = match layout {
            Layout::Whole(list) if list.len() > self.limits.chunk_elements as usize => {
                match self.chunk_list(list.into())? {
                    Ok(directory) => Some(directory.encode()),
                    Err(too_big) => return Ok(Err(too_big)),
                }
            }
            Layout::Whole(list) => record(&list),
            Layout::Chunked(directory) => Some(directory.encode()),
        };
        self.put_collection(key, KIND_LIST, data, expires)
    }

    /// Stores `elements` as the list at `key`, replacing whatever it held, expiry included (none
    /// deletes it). `Err` is the reply to a record too large, and then nothing is stored.
    pub(super) fn store_list(&mut self, key: Bytes, elements: Vec<Bytes>) -> Result<Stored> {
        self.save_list(key, Layout::Whole(elements.into()), 0)
    }

    /// [`Self::save_list`], then `reply`, or the error of a record too large.
    fn save_list_then(&mut self, key: Bytes, layout: Layout, expires: u64, reply: Frame) -> Result<Frame> {
        Ok(or_refusal(self.save_list(key, layout, expires)?, reply))
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
        let ((key, mut layout), expires) = match self.first_collection(keys, KIND_LIST, decode)? {
            Err(wrongtype) => return Ok(wrongtype),
            Ok(None) => return Ok(Frame::NullArray),
            Ok(Some(found)) => found,
        };
        let popped = self.pop_list(&mut layout, count, left)?;
        let reply = match (flat, popped.first()) {
            // BLPOP, BRPOP: `[key, element]`
            (true, Some(element)) => {
                Frame::Array(vec![Frame::Bulk(key.clone()), Frame::Bulk(element.clone())])
            }
            _ => Frame::Array(vec![Frame::Bulk(key.clone()), bulks(popped)]),
        };
        self.save_list_then(key, layout, expires, reply)
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
        let (mut layout, expires) = match (found, &op) {
            (Some(found), _) => found,
            (None, WriteOp::Push { only_if_exists: false, .. }) => (Layout::default(), 0),
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
                if let Err(too_big) = self.push_list(&mut layout, elements, left)? {
                    return Ok(too_big);
                }
                Frame::Integer(layout.len() as i64)
            }
            WriteOp::Pop { left, count: None, .. } => {
                self.pop_list(&mut layout, 1, left)?.pop().map_or(Frame::Null, Frame::Bulk)
            }
            WriteOp::Pop { left, count: Some(count), .. } => {
                bulks(self.pop_list(&mut layout, count, left)?)
            }
            WriteOp::LSet { index, element, .. } => {
                let Some(at) = position(index, layout.len()) else {
                    return Ok(Frame::error("ERR index out of range"));
                };
                match &mut layout {
                    Layout::Whole(list) => list[at] = element,
                    Layout::Chunked(directory) => {
                        if let Err(too_big) = self.set_chunked(directory, at as u64, element)? {
                            return Ok(too_big);
                        }
                    }
                }
                Frame::ok()
            }
            WriteOp::LInsert { before, pivot, element, .. } => {
                let mut list = layout.elements(self)?;
                let Some(at) = list.iter().position(|e| *e == pivot) else {
                    return Ok(Frame::Integer(-1));
                };
                list.insert(if before { at } else { at + 1 }, element);
                layout = Layout::Whole(list);
                Frame::Integer(layout.len() as i64)
            }
            WriteOp::LRem { count, element, .. } => {
                let mut list = layout.elements(self)?;
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
                layout = Layout::Whole(list);
                Frame::Integer(n as i64)
            }
            // Trimming pops from both ends, so a long list's kept chunks stay as they are.
            WriteOp::LTrim { start, stop, .. } => {
                let len = layout.len();
                match range(start, stop, len) {
                    Some((first, last)) => {
                        self.pop_list(&mut layout, first as u64, true)?;
                        self.pop_list(&mut layout, len - 1 - last as u64, false)?;
                    }
                    None => layout = Layout::default(), // deleted with its chunks
                }
                Frame::ok()
            }
            other => unreachable!("not a list write: {other:?}"),
        };
        self.save_list_then(key, layout, expires, reply)
    }

    /// LMOVE and RPOPLPUSH: a missing source answers null; a source or destination of another
    /// type answers WRONGTYPE and moves nothing. The element is pushed before it is popped, so
    /// that a destination too large leaves both lists as they were.
    fn lmove(&mut self, from: Bytes, to: Bytes, from_left: bool, to_left: bool) -> Result<Frame> {
        let (mut source, source_expires) = match self.live_list(&from)? {
            Err(wrongtype) => return Ok(wrongtype),
            Ok(None) => return Ok(Frame::Null),
            Ok(Some(found)) => found,
        };
        let element = match &source {
            Layout::Whole(list) => {
                let end = if from_left { list.front() } else { list.back() };
                end.expect("a stored list is never empty").clone()
            }
            Layout::Chunked(directory) => read_end(self, directory, from_left)?,
        };
        if from != to {
            let (mut destination, destination_expires) = match self.live_list(&to)? {
                Err(wrongtype) => return Ok(wrongtype),
                Ok(found) => found.unwrap_or_default(),
            };
            if let Err(too_big) = self.push_list(&mut destination, vec![element.clone()], to_left)? {
                return Ok(too_big);
            }
            if let Err(too_big) = self.save_list(to, destination, destination_expires)? {
                return Ok(too_big);
            }
        } else if let Err(too_big) = self.push_list(&mut source, vec![element.clone()], to_left)? {
            return Ok(too_big);
        }
        self.pop_list(&mut source, 1, from_left)?;
        self.save_list_then(from, source, source_expires, Frame::Bulk(element))
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
    let layout = match read_collection(ks, key, now, KIND_LIST, decode)? {
        Err(wrongtype) => return Ok(wrongtype),
        Ok(found) => found.map(|(layout, _)| layout).unwrap_or_default(),
    };
    Ok(match q {
        ReadQuery::LLen(_) => Frame::Integer(layout.len() as i64),
        ReadQuery::LIndex { index, .. } => match position(*index, layout.len()) {
            Some(at) => Frame::Bulk(layout.range(ks, at, at)?.remove(0)),
            None => Frame::Null,
        },
        ReadQuery::LRange { start, stop, .. } => match range(*start, *stop, layout.len()) {
            Some((first, last)) => bulks(layout.range(ks, first, last)?),
            None => Frame::Array(vec![]),
        },
        ReadQuery::LPos { element, rank, count, maxlen, .. } => {
            lpos(layout.elements(ks)?.make_contiguous(), element, *rank, *count, *maxlen)
        }
        other => unreachable!("not a list read: {other:?}"),
    })
}

/// LPOS: the positions (from the head) of the matches of `element`, skipping the first
/// `|rank| - 1` of them, searching from the tail for a negative rank, among at most `maxlen`
/// elements (0: all); one position or null without `count`, else up to `count` (0: all).
fn lpos(list: &[Bytes], element: &[u8], rank: i64, count: Option<u64>, maxlen: u64) -> Frame {
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
        assert_eq!(decode(&encoded).unwrap(), Layout::Whole(l));
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
        let l = Vec::from(list(&["a", "b", "a", "c", "a"]));
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
