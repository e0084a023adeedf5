//! Bitmaps: SETBIT, GETBIT, BITCOUNT, BITPOS and BITOP on string values, with Redis's bit
//! order (bit 0 is the most significant bit of the first byte).

use bytes::{Bytes, BytesMut};

use super::ApplyBatch;
use crate::command::{BitOperation, BitRange, WriteOp};
use crate::error::Result;
use crate::resp::Frame;

impl ApplyBatch<'_> {
    /// Applies [`WriteOp::SetBit`] and [`WriteOp::BitOp`].
    pub(super) fn write_bits(&mut self, op: WriteOp) -> Result<Frame> {
        match op {
            WriteOp::SetBit { key, offset, on } => {
                let old = match self.live_string(&key)? {
                    Err(wrongtype) => return Ok(wrongtype),
                    Ok(old) => old,
                };
                // The string grows with zero bytes; it keeps its expiry.
                let (mut data, expires) = match old {
                    Some(v) => (BytesMut::from(&v.data[..]), v.expires_at_ms),
                    None => (BytesMut::new(), 0),
                };
                let byte = (offset / 8) as usize;
                if data.len() <= byte {
                    data.resize(byte + 1, 0);
                }
                let mask = 0x80 >> (offset % 8);
                let was = data[byte] & mask != 0;
                if on {
                    data[byte] |= mask;
                } else {
                    data[byte] &= !mask;
                }
                self.put_string(key, data.freeze(), expires)?;
                Ok(Frame::Integer(was as i64))
            }
            WriteOp::BitOp { op, destination, keys } => {
                let mut inputs = Vec::with_capacity(keys.len());
                for key in &keys {
                    match self.live_string(key)? {
                        Err(wrongtype) => return Ok(wrongtype),
                        Ok(v) => inputs.push(v.map_or_else(Bytes::new, |v| v.data)),
                    }
                }
                let result = bitop(op, &inputs);
                let len = result.len() as i64;
                // The result replaces the destination, expiry included; an empty one deletes it.
                if result.is_empty() {
                    self.delete(&destination)?;
                } else {
                    self.put_string(destination, result, 0)?;
                }
                Ok(Frame::Integer(len))
            }
            other => unreachable!("not a bitmap write: {other:?}"),
        }
    }
}

/// GETBIT: the bit at `offset`, 0 past the end.
pub(super) fn get_bit(data: &[u8], offset: u64) -> bool {
    data.get((offset / 8) as usize).is_some_and(|byte| byte & (0x80 >> (offset % 8)) != 0)
}

/// The bits `[first, last]` that `range` covers in a string of `len` bytes (all of it without
/// a range; to its end without an end), with negative positions counted from the end and the
/// range cut to the string, as Redis computes it; `None` when that leaves nothing.
fn bit_span(len: usize, range: Option<&BitRange>) -> Option<(u64, u64)> {
    let Some(range) = range else {
        return (len > 0).then(|| (0, len as u64 * 8 - 1));
    };
    let total = len as i64 * if range.bits { 8 } else { 1 };
    let (mut start, mut end) = (range.start, range.end.unwrap_or(i64::MAX));
    if start < 0 {
        start += total;
    }
    if end < 0 {
        end += total;
    }
    let (start, end) = (start.max(0), end.max(0).min(total - 1));
    if start > end {
        return None;
    }
    let (start, end) = (start as u64, end as u64);
    Some(if range.bits { (start, end) } else { (start * 8, end * 8 + 7) })
}

/// BITCOUNT: how many bits are set in `range`.
pub(super) fn count(data: &[u8], range: Option<&BitRange>) -> i64 {
    let Some((first, last)) = bit_span(data.len(), range) else { return 0 };
    let (first_byte, last_byte) = ((first / 8) as usize, (last / 8) as usize);
    let all: u32 = data[first_byte..=last_byte].iter().map(|b| b.count_ones()).sum();
    // The edge bytes' bits outside the range: the high ones before `first`, the low ones after
    // `last`.
    let before = data[first_byte] & !(0xFF >> (first % 8));
    let after = data[last_byte] & ((1u16 << (7 - last % 8)) - 1) as u8;
    (all - before.count_ones() - after.count_ones()) as i64
}

/// BITPOS: the position of the first bit equal to `bit` in `range`. None found: -1, except
/// for a clear bit without an explicit end, where Redis sees the string as followed by zeros
/// and answers the first position after its last byte.
pub(super) fn position(data: &[u8], bit: bool, range: Option<&BitRange>) -> i64 {
    let end_given = range.is_some_and(|r| r.end.is_some());
    let Some((first, last)) = bit_span(data.len(), range) else { return -1 };
    let skip = if bit { 0x00 } else { 0xFF };
    let mut at = first;
    while at <= last {
        let byte = data[(at / 8) as usize];
        if at % 8 == 0 && at + 7 <= last && byte == skip {
            at += 8;
            continue;
        }
        if (byte & (0x80 >> (at % 8)) != 0) == bit {
            return at as i64;
        }
        at += 1;
    }
    if bit || end_given {
        -1
    } else {
        ((last / 8 + 1) * 8) as i64
    }
}

/// BITOP: the inputs combined byte by byte, the shorter ones padded with zero bytes.
fn bitop(op: BitOperation, inputs: &[Bytes]) -> Bytes {
    let len = inputs.iter().map(Bytes::len).max().unwrap_or(0);
    let byte = |input: &Bytes, i: usize| input.get(i).copied().unwrap_or(0);
    let combined: Vec<u8> = (0..len)
        .map(|i| match op {
            BitOperation::Not => !byte(&inputs[0], i),
            BitOperation::And => inputs.iter().fold(0xFF, |acc, input| acc & byte(input, i)),
            BitOperation::Or => inputs.iter().fold(0, |acc, input| acc | byte(input, i)),
            BitOperation::Xor => inputs.iter().fold(0, |acc, input| acc ^ byte(input, i)),
        })
        .collect();
    combined.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_range(start: i64, end: Option<i64>) -> Option<BitRange> {
        Some(BitRange { start, end, bits: false })
    }

    fn bits_range(start: i64, end: Option<i64>) -> Option<BitRange> {
        Some(BitRange { start, end, bits: true })
    }

    #[test]
    fn counts_cover_byte_and_bit_ranges_as_redis_does() {
        let s = b"foobar";
        assert_eq!(count(s, None), 26);
        assert_eq!(count(s, bytes_range(1, Some(1)).as_ref()), 6);
        assert_eq!(count(s, bits_range(5, Some(30)).as_ref()), 17);
        assert_eq!(count(s, bytes_range(-100, Some(-50)).as_ref()), 4);
        assert_eq!(count(s, bytes_range(-1, Some(-5)).as_ref()), 0);
        assert_eq!(count(s, bits_range(i64::MIN, Some(-1)).as_ref()), 26);
        assert_eq!(count(s, bits_range(i64::MAX, Some(-1)).as_ref()), 0);
        assert_eq!(count(b"", None), 0);
        assert_eq!(count(b"", bytes_range(0, Some(-1)).as_ref()), 0);
    }

    #[test]
    fn positions_follow_redis_for_found_and_missing_bits() {
        let s = b"foobar";
        assert_eq!(position(s, true, None), 1);
        assert_eq!(position(s, false, None), 0);
        assert_eq!(position(s, true, bytes_range(2, None).as_ref()), 17);
        assert_eq!(position(s, true, bits_range(2, Some(-1)).as_ref()), 2);
        assert_eq!(position(s, true, bytes_range(100, None).as_ref()), -1);
        let ones = [0xFF, 0xFF, 0xF0];
        assert_eq!(position(&ones, false, None), 20);
        assert_eq!(position(&ones, false, bytes_range(0, Some(1)).as_ref()), -1, "an explicit end");
        assert_eq!(position(&ones[..2], false, bytes_range(0, None).as_ref()), 16, "zeros after the end");
        assert_eq!(position(&ones[..2], false, bits_range(3, None).as_ref()), 16);
        assert_eq!(position(&ones[..2], false, bits_range(3, Some(12)).as_ref()), -1);
        assert_eq!(position(&[0, 0, 1], true, None), 23);
        assert_eq!(position(b"", false, None), -1);
    }

    #[test]
    fn get_bit_and_bitop_use_redis_bit_order_and_zero_padding() {
        assert!(get_bit(&[0x80], 0));
        assert!(!get_bit(&[0x80], 1));
        assert!(!get_bit(&[0x80], 100));
        let (a, b) = (Bytes::from_static(b"\xF0\x0F"), Bytes::from_static(b"\xFF"));
        assert_eq!(bitop(BitOperation::And, &[a.clone(), b.clone()]), Bytes::from_static(b"\xF0\x00"));
        assert_eq!(bitop(BitOperation::Or, &[a.clone(), b.clone()]), Bytes::from_static(b"\xFF\x0F"));
        assert_eq!(bitop(BitOperation::Xor, &[a.clone(), b]), Bytes::from_static(b"\x0F\x0F"));
        assert_eq!(bitop(BitOperation::Not, &[a]), Bytes::from_static(b"\x0F\xF0"));
        assert_eq!(bitop(BitOperation::Or, &[Bytes::new()]), Bytes::new());
    }
}
