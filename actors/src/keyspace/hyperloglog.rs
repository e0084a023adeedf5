//! HyperLogLog: PFADD, PFCOUNT and PFMERGE, computing what Redis computes.
//!
//! A HyperLogLog is a string in Redis's format, so that one copied from Redis (`GET`, then
//! `SET`) counts the same here and the other way round: the header `HYLL`, the encoding (0
//! dense, 1 sparse), three unused bytes and a cached cardinality (eight bytes, little-endian;
//! the top bit of the last one set when it is stale), then 16 384 registers of 6 bits (dense)
//! or runs of registers (sparse). Elements are hashed with Redis's MurmurHash64A, and the
//! cardinality is estimated from the registers' histogram as Redis does (Ertl's estimator), so
//! the counts are Redis's, element for element. raft-kv reads both encodings and writes the
//! dense one: where Redis keeps a small HyperLogLog sparse (a few hundred bytes), raft-kv's is
//! 12 304 bytes from its first element.

use bytes::Bytes;

use super::{ApplyBatch, Value, KIND_STRING, WRONGTYPE};
use crate::command::WriteOp;
use crate::error::Result;
use crate::resp::Frame;

/// Index bits: 2^14 registers.
const P: u32 = 14;
const REGISTERS: usize = 1 << P;
/// Bits of the hash left to count leading zeros in.
const Q: u32 = 64 - P;
const REGISTER_BITS: usize = 6;
const REGISTER_MAX: u8 = (1 << REGISTER_BITS) - 1;
const HEADER: usize = 16;
const DENSE_SIZE: usize = HEADER + (REGISTERS * REGISTER_BITS).div_ceil(8);
const DENSE: u8 = 0;
const SPARSE: u8 = 1;

const NOT_HLL: &str = "WRONGTYPE Key is not a valid HyperLogLog string value.";
const CORRUPT: &str = "INVALIDOBJ Corrupted HLL object detected";

/// Redis's MurmurHash64A (as in its hyperloglog.c), little-endian.
fn murmur64a(data: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (data.len() as u64).wrapping_mul(M);
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut k = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate() {
            h ^= (*byte as u64) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element falls in, and the length of its hash's run of zeros plus one.
fn pattern(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, 0xadc8_3b19);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    let rest = (hash >> P) | (1 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// A HyperLogLog's registers, one byte each.
struct Registers(Vec<u8>);

impl Registers {
    fn new() -> Registers {
        Registers(vec![0; REGISTERS])
    }

    /// The registers of a stored HyperLogLog, and its cached cardinality if that is fresh;
    /// `Err` is the reply to a string that is not one.
    fn decode(data: &[u8]) -> std::result::Result<(Registers, Option<u64>), Frame> {
        if data.len() < HEADER || &data[..4] != b"HYLL" || data[4] > SPARSE {
            return Err(Frame::error(NOT_HLL));
        }
        if data[4] == DENSE && data.len() != DENSE_SIZE {
            return Err(Frame::error(NOT_HLL));
        }
        let cache = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes"));
        let cached = (data[15] & 0x80 == 0).then_some(cache);
        let body = &data[HEADER..];
        let mut registers = Registers::new();
        if data[4] == DENSE {
            for (i, register) in registers.0.iter_mut().enumerate() {
                let (byte, shift) = (i * REGISTER_BITS / 8, i * REGISTER_BITS % 8);
                let low = body[byte] as u16 >> shift;
                let high = body.get(byte + 1).map_or(0, |&b| (b as u16) << (8 - shift));
                *register = ((low | high) as u8) & REGISTER_MAX;
            }
            return Ok((registers, cached));
        }
        // Sparse: runs of zero registers (ZERO, XZERO) and of registers of one value (VAL).
        let (mut at, mut i) = (0, 0);
        while i < body.len() {
            let op = body[i];
            let (run, value) = if op & 0xC0 == 0 {
                i += 1;
                ((op & 0x3F) as usize + 1, 0)
            } else if op & 0xC0 == 0x40 {
                let Some(&low) = body.get(i + 1) else { return Err(Frame::error(CORRUPT)) };
                i += 2;
                ((((op & 0x3F) as usize) << 8 | low as usize) + 1, 0)
            } else {
                i += 1;
                ((op & 0x03) as usize + 1, ((op >> 2) & 0x1F) + 1)
            };
            if at + run > REGISTERS {
                return Err(Frame::error(CORRUPT));
            }
            registers.0[at..at + run].fill(value);
            at += run;
        }
        if at != REGISTERS {
            return Err(Frame::error(CORRUPT));
        }
        Ok((registers, cached))
    }

    /// The dense encoding, its cached cardinality marked stale (`card`: fresh and this value).
    fn encode(&self, card: Option<u64>) -> Bytes {
        let mut out = vec![0u8; DENSE_SIZE];
        out[..4].copy_from_slice(b"HYLL");
        out[4] = DENSE;
        match card {
            Some(card) => out[8..16].copy_from_slice(&card.to_le_bytes()),
            None => out[15] |= 0x80,
        }
        let body = &mut out[HEADER..];
        for (i, &register) in self.0.iter().enumerate() {
            let (byte, shift) = (i * REGISTER_BITS / 8, i * REGISTER_BITS % 8);
            let value = (register as u16) << shift;
            body[byte] |= value as u8;
            if let Some(next) = body.get_mut(byte + 1) {
                *next |= (value >> 8) as u8;
            }
        }
        out.into()
    }

    /// Counts `element`; true if a register grew.
    fn add(&mut self, element: &[u8]) -> bool {
        let (index, count) = pattern(element);
        let grew = count > self.0[index];
        if grew {
            self.0[index] = count;
        }
        grew
    }

    fn merge(&mut self, other: &Registers) {
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            *mine = (*mine).max(*theirs);
        }
    }

    /// The estimated cardinality, as Redis's `hllCount` computes it.
    fn count(&self) -> u64 {
        let m = REGISTERS as f64;
        let mut histogram = [0u32; 64];
        for &register in &self.0 {
            histogram[register as usize] += 1;
        }
        let q = Q as usize;
        let mut z = m * tau((m - histogram[q + 1] as f64) / m);
        for &n in histogram[1..=q].iter().rev() {
            z += n as f64;
            z *= 0.5;
        }
        z += m * sigma(histogram[0] as f64 / m);
        const ALPHA_INF: f64 = 0.721_347_520_444_481_7;
        (ALPHA_INF * m * m / z).round() as u64
    }
}

/// Ertl's σ, as in Redis.
fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if previous == z {
            return z;
        }
    }
}

/// Ertl's τ, as in Redis.
fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if previous == z {
            return z / 3.0;
        }
    }
}

/// The HyperLogLog a live value holds: none for a missing key, the registers (and the fresh
/// cached count) of a valid one, or the reply for anything else.
fn registers_of(value: Option<Value>) -> std::result::Result<Option<(Registers, Option<u64>, Value)>, Frame> {
    match value {
        None => Ok(None),
        Some(v) if v.kind != KIND_STRING => Err(Frame::error(WRONGTYPE)),
        Some(v) => Registers::decode(&v.data).map(|(registers, cached)| Some((registers, cached, v))),
    }
}

impl ApplyBatch<'_> {
    /// Applies [`WriteOp::PfAdd`] and [`WriteOp::PfMerge`]. Both keep the key's expiry.
    pub(super) fn write_hll(&mut self, op: WriteOp) -> Result<Frame> {
        match op {
            WriteOp::PfAdd { key, elements } => {
                let (mut registers, changed, expires, card) = match registers_of(self.live(&key)?) {
                    Err(reply) => return Ok(reply),
                    Ok(Some((registers, cached, v))) => (registers, false, v.expires_at_ms, cached),
                    // A new HyperLogLog: its count, 0, is fresh until an element changes it.
                    Ok(None) => (Registers::new(), true, 0, Some(0)),
                };
                let mut grew = false;
                for element in &elements {
                    grew |= registers.add(element);
                }
                if !(grew || changed) {
                    return Ok(Frame::Integer(0));
                }
                let card = if grew { None } else { card };
                self.put_string(key, registers.encode(card), expires)?;
                Ok(Frame::Integer(1))
            }
            WriteOp::PfMerge { destination, keys } => {
                let (mut merged, expires) = match registers_of(self.live(&destination)?) {
                    Err(reply) => return Ok(reply),
                    Ok(Some((registers, _, v))) => (registers, v.expires_at_ms),
                    Ok(None) => (Registers::new(), 0),
                };
                for key in &keys {
                    match registers_of(self.live(key)?) {
                        Err(reply) => return Ok(reply),
                        Ok(Some((registers, _, _))) => merged.merge(&registers),
                        Ok(None) => {}
                    }
                }
                self.put_string(destination, merged.encode(None), expires)?;
                Ok(Frame::ok())
            }
            other => unreachable!("not a HyperLogLog write: {other:?}"),
        }
    }
}

/// PFCOUNT: one key's cardinality (its cached count when fresh, as Redis answers), or that of
/// the union of several.
pub(super) fn count(mut live: impl FnMut(&[u8]) -> Result<Option<Value>>, keys: &[Bytes]) -> Result<Frame> {
    let mut merged = Registers::new();
    for key in keys {
        match registers_of(live(key)?) {
            Err(reply) => return Ok(reply),
            Ok(Some((_, Some(cached), _))) if keys.len() == 1 => return Ok(Frame::Integer(cached as i64)),
            Ok(Some((registers, _, _))) => merged.merge(&registers),
            Ok(None) => {}
        }
    }
    Ok(Frame::Integer(merged.count() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_fall_in_the_registers_redis_puts_them_in() {
        // `PFADD t <element>`, then `PFDEBUG GETREG t` on redis-server 7.0: the one register
        // set, and its value.
        let expected: &[(&[u8], usize, u8)] = &[
            (b"a", 12711, 2),
            (b"hello", 9216, 1),
            (b"element:42", 9122, 3),
            (b"12345678", 10579, 3),
            (b"", 5938, 2),
        ];
        for &(element, index, count) in expected {
            assert_eq!(pattern(element), (index, count), "{:?}", String::from_utf8_lossy(element));
        }
    }

    #[test]
    fn dense_and_sparse_encodings_round_trip_and_count_alike() {
        let mut registers = Registers::new();
        for i in 0..1000 {
            registers.add(format!("element:{i}").as_bytes());
        }
        let dense = registers.encode(None);
        assert_eq!(dense.len(), DENSE_SIZE);
        let (decoded, cached) = Registers::decode(&dense).unwrap();
        assert_eq!(decoded.0, registers.0);
        assert_eq!(cached, None, "stale after a change");
        // The same registers, sparse: a zero run (XZERO) then value runs.
        let mut sparse = b"HYLL\x01\0\0\0\0\0\0\0\0\0\0\x80".to_vec();
        sparse.extend([0x40 | 0x3F, 0xFD]); // XZERO: 16 382 zeros
        sparse.push(0x80 | (2 << 2) | 1); // VAL: two registers of 3
        let (sparse, _) = Registers::decode(&sparse).unwrap();
        assert_eq!(sparse.0[..REGISTERS - 2], [0; REGISTERS - 2]);
        assert_eq!(sparse.0[REGISTERS - 2..], [3, 3]);
        assert!(
            matches!(Registers::decode(b"HYLL\x01\0\0\0\0\0\0\0\0\0\0\0\x00"), Err(Frame::Error(e)) if e.starts_with("INVALIDOBJ"))
        );
        assert!(
            matches!(Registers::decode(b"not a hyperloglog"), Err(Frame::Error(e)) if e.starts_with("WRONGTYPE"))
        );
        assert!(
            matches!(Registers::decode(&dense[..DENSE_SIZE - 1]), Err(Frame::Error(e)) if e.starts_with("WRONGTYPE"))
        );
    }

    #[test]
    fn estimates_stay_within_redis_error_bounds() {
        assert_eq!(Registers::new().count(), 0);
        for n in [1u64, 10, 100, 1000, 20_000] {
            let mut registers = Registers::new();
            for i in 0..n {
                registers.add(format!("{i}").as_bytes());
            }
            let estimate = registers.count() as f64;
            assert!((estimate - n as f64).abs() <= (n as f64 * 0.03).max(1.0), "{n}: {estimate}");
        }
    }
}
