//! Long lists, stored in chunks.
//!
//! A list of up to a chunk's worth of elements is one record of the keyspace, its elements as
//! the payload, as every collection is ([`super::lists`]). A longer one would make each push
//! rewrite, on every node, a record the size of the whole list, so its record holds a
//! [`Directory`] instead and the elements live in *chunk records* of the same `kv` family, each
//! of at most `cap` elements. Chunks are numbered from head to tail (`first..=last`), and every
//! chunk but the first and the last is full: the chunk holding a position is found by
//! arithmetic (LINDEX, LRANGE, LSET read one or a few chunks), and a push or a pop at either
//! end reads and writes the chunk at that end and the directory, whatever the list's length.
//!
//! Chunks are the list's *parts* ([`super::parts`]): records of the same family, after every
//! key's, named by an id that a RENAME keeps and a COPY replaces; the directory's payload starts
//! with the mark that tells it from a whole list's.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes};

use super::parts::{damaged, directory_fields, directory_header, part_key, PartsId};
use super::{decode_elements, encode_elements, encoded_elements_len, ApplyBatch, KeyRead};
use super::{MAX_STRING_LEN, TOO_BIG_COLLECTION};
use crate::error::{Error, Result};
use crate::resp::Frame;

/// How many elements a chunk of a new chunked list holds; a list of up to this many is stored
/// whole. Each directory records its own, so this may change without touching stored lists.
pub(super) const CHUNK_ELEMENTS: u32 = 128;

const DIRECTORY_LEN: usize = 44;
/// The number of a new chunked list's head chunk: room to grow either way.
const FIRST_CHUNK: u64 = 1 << 62;

/// A chunked list's record: where its elements are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Directory {
    pub id: PartsId,
    /// How many elements a full chunk holds.
    cap: u32,
    /// The numbers of the head and tail chunks (the same chunk for a list of one chunk).
    first: u64,
    last: u64,
    /// How many elements the head and tail chunks hold (equal when they are one chunk).
    first_len: u32,
    last_len: u32,
}

impl Directory {
    /// The directory a list record's payload holds; none if the payload is a whole list.
    pub(super) fn decode(data: &[u8]) -> Result<Option<Directory>> {
        let Some((id, mut r)) = directory_fields(data, DIRECTORY_LEN, "list")? else {
            return Ok(None);
        };
        let directory = Directory {
            id,
            cap: r.get_u32(),
            first: r.get_u64(),
            last: r.get_u64(),
            first_len: r.get_u32(),
            last_len: r.get_u32(),
        };
        let lens = 1..=directory.cap;
        let valid = directory.first <= directory.last
            && lens.contains(&directory.first_len)
            && lens.contains(&directory.last_len)
            && (directory.first != directory.last || directory.first_len == directory.last_len);
        if !valid {
            return Err(damaged("list", data));
        }
        Ok(Some(directory))
    }

    pub(super) fn encode(&self) -> Bytes {
        let mut out = directory_header(self.id, DIRECTORY_LEN);
        out.put_u32(self.cap);
        out.put_u64(self.first);
        out.put_u64(self.last);
        out.put_u32(self.first_len);
        out.put_u32(self.last_len);
        out.freeze()
    }

    /// How many elements the list holds.
    pub(super) fn len(&self) -> u64 {
        match self.last - self.first {
            0 => self.first_len as u64,
            span => self.first_len as u64 + self.last_len as u64 + (span - 1) * self.cap as u64,
        }
    }

    /// How many elements chunk `seq` holds.
    fn len_of(&self, seq: u64) -> u32 {
        if seq == self.first {
            self.first_len
        } else if seq == self.last {
            self.last_len
        } else {
            self.cap
        }
    }

    /// Records that chunk `seq`, the head or the tail chunk, now holds `len` elements.
    fn set_len(&mut self, seq: u64, len: usize) {
        if seq == self.first {
            self.first_len = len as u32;
        }
        if seq == self.last {
            self.last_len = len as u32;
        }
    }

    /// The chunk holding position `at` (counted from the head), and the position in it.
    fn locate(&self, at: u64) -> (u64, usize) {
        if at < self.first_len as u64 {
            return (self.first, at as usize);
        }
        let rest = at - self.first_len as u64;
        (self.first + 1 + rest / self.cap as u64, (rest % self.cap as u64) as usize)
    }

    /// The numbers of its chunks, head to tail.
    pub(super) fn chunks(&self) -> std::ops::RangeInclusive<u64> {
        self.first..=self.last
    }

    fn chunk_key(&self, seq: u64) -> Vec<u8> {
        part_key(self.id, seq)
    }
}

fn missing(seq: u64) -> Error {
    Error::Corrupt(format!("list chunk {seq} is missing"))
}

/// The elements of chunk `seq` of the list `directory` describes.
fn read_chunk(ks: &dyn KeyRead, directory: &Directory, seq: u64) -> Result<Vec<Bytes>> {
    let data = ks.part(&directory.chunk_key(seq))?.ok_or_else(|| missing(seq))?;
    let elements = decode_elements(&data)?;
    if elements.len() != directory.len_of(seq) as usize {
        return Err(Error::Corrupt(format!(
            "list chunk {seq} holds {} elements, its directory says {}",
            elements.len(),
            directory.len_of(seq)
        )));
    }
    Ok(elements)
}

/// The elements at positions `from..=to` (from the head) of the list `directory` describes.
pub(super) fn read_range(ks: &dyn KeyRead, directory: &Directory, from: u64, to: u64) -> Result<Vec<Bytes>> {
    let ((first, first_at), (last, last_at)) = (directory.locate(from), directory.locate(to));
    let mut elements = Vec::with_capacity((to - from + 1) as usize);
    for seq in first..=last {
        let chunk = read_chunk(ks, directory, seq)?;
        let start = if seq == first { first_at } else { 0 };
        let end = if seq == last { last_at + 1 } else { chunk.len() };
        elements.extend_from_slice(&chunk[start..end]);
    }
    Ok(elements)
}

/// The element at the head (`left`) or the tail of the list `directory` describes.
pub(super) fn read_end(ks: &dyn KeyRead, directory: &Directory, left: bool) -> Result<Bytes> {
    let at = if left { 0 } else { directory.len() - 1 };
    Ok(read_range(ks, directory, at, at)?.remove(0))
}

/// The reply to a chunk of more than [`MAX_STRING_LEN`] bytes, if one of `pieces` would be.
fn too_big(pieces: &[&[Bytes]]) -> Option<Frame> {
    pieces
        .iter()
        .any(|piece| encoded_elements_len(piece.iter()) > MAX_STRING_LEN)
        .then(|| Frame::error(TOO_BIG_COLLECTION))
}

/// A change to a chunked list: `Err` is the reply to a chunk that would be too large, and then
/// nothing has changed.
type Change<T> = Result<std::result::Result<T, Frame>>;

impl ApplyBatch<'_> {
    fn write_chunk(&mut self, directory: &Directory, seq: u64, elements: &[Bytes]) {
        self.parts.insert(directory.chunk_key(seq), Some(encode_elements(elements.len(), elements.iter())));
    }

    /// Stores `elements` (at least one) in the chunks of a new list, all full but the tail.
    pub(super) fn chunk_list(&mut self, elements: Vec<Bytes>) -> Change<Directory> {
        let cap = self.limits.chunk_elements;
        let pieces: Vec<&[Bytes]> = elements.chunks(cap as usize).collect();
        if let Some(too_big) = too_big(&pieces) {
            return Ok(Err(too_big));
        }
        let (head, tail) = (pieces[0], pieces[pieces.len() - 1]);
        let directory = Directory {
            id: self.new_parts_id(),
            cap,
            first: FIRST_CHUNK,
            last: FIRST_CHUNK + pieces.len() as u64 - 1,
            first_len: head.len() as u32,
            last_len: tail.len() as u32,
        };
        for (seq, piece) in (FIRST_CHUNK..).zip(&pieces) {
            self.write_chunk(&directory, seq, piece);
        }
        Ok(Ok(directory))
    }

    /// Pushes `elements` one by one at the head (`left`) or the tail. Only the chunk at that end
    /// is rewritten; new chunks follow it, and every chunk but the new end one is full.
    pub(super) fn push_chunked(
        &mut self,
        directory: &mut Directory,
        elements: Vec<Bytes>,
        left: bool,
    ) -> Change<()> {
        let end = if left { directory.first } else { directory.last };
        let mut segment: VecDeque<Bytes> = read_chunk(self, directory, end)?.into();
        for element in elements {
            if left {
                segment.push_front(element);
            } else {
                segment.push_back(element);
            }
        }
        let segment = Vec::from(segment);
        let cap = directory.cap as usize;
        let pieces: Vec<&[Bytes]> =
            if left { segment.rchunks(cap).rev().collect() } else { segment.chunks(cap).collect() };
        if let Some(too_big) = too_big(&pieces) {
            return Ok(Err(too_big));
        }
        let (one_chunk, added) = (directory.first == directory.last, pieces.len() as u64 - 1);
        let (head, tail) = (pieces[0].len() as u32, pieces[pieces.len() - 1].len() as u32);
        if left {
            directory.first = end - added;
            directory.first_len = head;
            if one_chunk {
                directory.last_len = tail;
            }
        } else {
            directory.last = end + added;
            directory.last_len = tail;
            if one_chunk {
                directory.first_len = head;
            }
        }
        let from = if left { directory.first } else { end };
        for (seq, piece) in (from..).zip(&pieces) {
            self.write_chunk(directory, seq, piece);
        }
        Ok(Ok(()))
    }

    /// Pops up to `count` elements from the head (`left`) or the tail, reading only the chunks
    /// they come from; a chunk left empty is deleted. Once every element is popped, every chunk
    /// is deleted and `directory` describes nothing: the caller deletes the key.
    pub(super) fn pop_chunked(
        &mut self,
        directory: &mut Directory,
        count: u64,
        left: bool,
    ) -> Result<Vec<Bytes>> {
        let count = count.min(directory.len()) as usize;
        let mut popped = Vec::with_capacity(count);
        while popped.len() < count {
            let end = if left { directory.first } else { directory.last };
            let mut chunk: VecDeque<Bytes> = read_chunk(self, directory, end)?.into();
            while popped.len() < count {
                match if left { chunk.pop_front() } else { chunk.pop_back() } {
                    Some(element) => popped.push(element),
                    None => break,
                }
            }
            if !chunk.is_empty() {
                self.write_chunk(directory, end, chunk.make_contiguous());
                directory.set_len(end, chunk.len());
                break;
            }
            self.parts.insert(directory.chunk_key(end), None);
            if directory.first == directory.last {
                break; // that was the last element
            }
            // The next chunk in is full, unless it is the other end.
            if left {
                directory.first += 1;
                directory.first_len =
                    if directory.first == directory.last { directory.last_len } else { directory.cap };
            } else {
                directory.last -= 1;
                directory.last_len =
                    if directory.last == directory.first { directory.first_len } else { directory.cap };
            }
        }
        Ok(popped)
    }

    /// Replaces the element at position `at` (LSET), rewriting the chunk that holds it.
    pub(super) fn set_chunked(&mut self, directory: &Directory, at: u64, element: Bytes) -> Change<()> {
        let (seq, i) = directory.locate(at);
        let mut chunk = read_chunk(self, directory, seq)?;
        chunk[i] = element;
        if let Some(too_big) = too_big(&[&chunk]) {
            return Ok(Err(too_big));
        }
        self.write_chunk(directory, seq, &chunk);
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{ExpireCond, Expiry, Queued, ReadQuery, WriteOp};
    use crate::keyspace::tests::layouts_agree;
    use crate::keyspace::Limits;

    /// A random list command (or, now and then, another command on the same keys).
    fn random_step(rng: &mut fastrand::Rng) -> Queued {
        let b = |s: String| Bytes::from(s);
        let key = |rng: &mut fastrand::Rng| b(["a", "b", "c"][rng.usize(..3)].to_owned());
        let element = |rng: &mut fastrand::Rng| b(format!("e{}", rng.u8(..6)));
        let index = |rng: &mut fastrand::Rng| rng.i64(-25..25);
        let write = Queued::Write;
        match rng.u8(..100) {
            0..=29 => write(WriteOp::Push {
                key: key(rng),
                elements: (0..rng.usize(1..12)).map(|_| element(rng)).collect(),
                left: rng.bool(),
                only_if_exists: rng.u8(..5) == 0,
            }),
            30..=44 => write(WriteOp::Pop {
                key: key(rng),
                left: rng.bool(),
                count: rng.bool().then(|| rng.u64(0..14)),
            }),
            45..=49 => write(WriteOp::LSet { key: key(rng), index: index(rng), element: element(rng) }),
            50..=52 => write(WriteOp::LInsert {
                key: key(rng),
                before: rng.bool(),
                pivot: element(rng),
                element: element(rng),
            }),
            53..=55 => write(WriteOp::LRem { key: key(rng), count: rng.i64(-3..4), element: element(rng) }),
            56..=58 => write(WriteOp::LTrim { key: key(rng), start: index(rng), stop: index(rng) }),
            59..=64 => write(WriteOp::LMove {
                from: key(rng),
                to: key(rng),
                from_left: rng.bool(),
                to_left: rng.bool(),
            }),
            65..=67 => write(WriteOp::LMPop {
                keys: vec![key(rng), key(rng)],
                left: rng.bool(),
                count: rng.u64(1..14),
            }),
            68..=69 => write(WriteOp::BPop { keys: vec![key(rng), key(rng)], left: rng.bool() }),
            70 => write(WriteOp::Rename { from: key(rng), to: key(rng), only_if_absent: rng.bool() }),
            71 => write(WriteOp::Copy { from: key(rng), to: key(rng), replace: rng.bool() }),
            72 => write(WriteOp::Del { keys: vec![key(rng)] }),
            73 => write(WriteOp::Set { key: key(rng), value: element(rng) }),
            74 => write(WriteOp::Expire {
                key: key(rng),
                at: Expiry::InMs(if rng.bool() { 10_000 } else { -1 }),
                cond: ExpireCond::Always,
            }),
            75 if rng.u8(..10) == 0 => write(WriteOp::FlushAll),
            75..=84 => Queued::Read(ReadQuery::LRange { key: key(rng), start: index(rng), stop: index(rng) }),
            85..=89 => Queued::Read(ReadQuery::LIndex { key: key(rng), index: index(rng) }),
            90..=94 => Queued::Read(ReadQuery::LPos {
                key: key(rng),
                element: element(rng),
                rank: if rng.bool() { rng.i64(1..4) } else { rng.i64(-3..0) },
                count: rng.bool().then(|| rng.u64(0..4)),
                maxlen: rng.u64(0..20),
            }),
            95 => Queued::Read(ReadQuery::Keys(Bytes::from("*"))),
            96 => Queued::Read(ReadQuery::Scan { cursor: 0, count: 2, pattern: None, kind: None }),
            97 => Queued::Read(ReadQuery::DbSize),
            _ => Queued::Read(ReadQuery::LLen(key(rng))),
        }
    }

    /// Lists chunked with one to five elements per chunk answer every list command as lists
    /// stored whole do, batch by batch, read inside the batch and from the database after it.
    #[test]
    fn chunked_lists_answer_as_whole_lists_do() {
        layouts_agree(
            |rng| Limits { chunk_elements: rng.u32(1..=5), ..Limits::default() },
            random_step,
            |_, reply| reply,
            |key| ReadQuery::LRange { key, start: 0, stop: -1 },
        );
    }

    #[test]
    fn a_directory_round_trips_and_a_damaged_one_is_refused() {
        let directory = Directory {
            id: PartsId { index: 7, n: 2 },
            cap: 4,
            first: 10,
            last: 12,
            first_len: 1,
            last_len: 3,
        };
        assert_eq!(directory.len(), 8);
        assert_eq!(Directory::decode(&directory.encode()).unwrap(), Some(directory));
        assert_eq!(Directory::decode(&encode_elements(0, [].iter())).unwrap(), None, "a whole list");
        assert!(
            Directory::decode(&Directory { first_len: 5, ..directory }.encode()).is_err(),
            "over the cap"
        );
        assert!(Directory::decode(&Directory { last: 9, ..directory }.encode()).is_err(), "reversed");
        assert!(
            Directory::decode(&Directory { last: 10, ..directory }.encode()).is_err(),
            "one chunk, two lengths"
        );
        assert!(Directory::decode(&directory.encode()[..40]).is_err(), "cut short");
        assert_eq!(directory.locate(0), (10, 0));
        assert_eq!(directory.locate(1), (11, 0));
        assert_eq!(directory.locate(4), (11, 3));
        assert_eq!(directory.locate(7), (12, 2));
    }
}
