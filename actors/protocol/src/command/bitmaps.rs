//! The bitmap commands: bit operations on string values.
//!
//! # Formats
//! - `SETBIT key offset value`, `GETBIT key offset`
//! - `BITCOUNT key [start end [BYTE|BIT]]`
//! - `BITPOS key bit [start [end [BYTE|BIT]]]`
//! - `BITOP AND|OR|XOR|NOT destkey key [key ...]`
//!
//! Redis looks BITCOUNT's and BITPOS's key up before it reads their range, so a wrong range
//! is answered after the key's type (and not at all for a missing key): those errors travel
//! in the read.

use super::{
    int_arg, lower, parse_i64, syntax_error, Args, BitOperation, BitRange, Command, ReadQuery, WriteOp,
};
use crate::resp::Frame;

/// Parses the bitmap commands; `None` for commands of other families.
pub fn parse(name: &'static str, args: &mut Args) -> Result<Option<Command>, Frame> {
    Ok(Some(match name {
        "setbit" => {
            let key = args.arg();
            let offset = bit_offset(&args.arg())?;
            let on = match parse_i64(&args.arg()) {
                Some(bit @ (0 | 1)) => bit == 1,
                _ => return Err(Frame::error("ERR bit is not an integer or out of range")),
            };
            Command::Write(WriteOp::SetBit { key, offset, on })
        }
        "getbit" => {
            let key = args.arg();
            Command::Read(ReadQuery::GetBit { key, offset: bit_offset(&args.arg())? })
        }
        "bitcount" => {
            let key = args.arg();
            let rest = args.rest();
            let range = match rest.len() {
                0 => Ok(None),
                2 | 3 => range(&rest[0], Some(&rest[1]), rest.get(2), false).map(Some),
                _ => Err(syntax_error()),
            };
            let (range, error) = deferred(range);
            Command::Read(ReadQuery::BitCount { key, range: range.flatten(), error })
        }
        "bitpos" => {
            let key = args.arg();
            let bit = match int_arg(&args.arg())? {
                bit @ (0 | 1) => bit == 1,
                _ => return Err(Frame::error("ERR The bit argument must be 1 or 0.")),
            };
            let rest = args.rest();
            let range = match rest.len() {
                0 => Ok(None),
                1..=3 => range(&rest[0], rest.get(1), rest.get(2), true).map(Some),
                _ => Err(syntax_error()),
            };
            let (range, error) = deferred(range);
            Command::Read(ReadQuery::BitPos { key, bit, range: range.flatten(), error })
        }
        "bitop" => {
            let op = match lower(&args.arg()).as_str() {
                "and" => BitOperation::And,
                "or" => BitOperation::Or,
                "xor" => BitOperation::Xor,
                "not" => BitOperation::Not,
                _ => return Err(syntax_error()),
            };
            let destination = args.arg();
            let keys = args.rest();
            if op == BitOperation::Not && keys.len() != 1 {
                return Err(Frame::error("ERR BITOP NOT must be called with a single source key."));
            }
            Command::Write(WriteOp::BitOp { op, destination, keys })
        }
        _ => return Ok(None),
    }))
}

/// SETBIT's and GETBIT's offset: a bit of a string of at most 512 MiB.
fn bit_offset(arg: &[u8]) -> Result<u64, Frame> {
    parse_i64(arg)
        .filter(|&n| (0..1 << 32).contains(&n))
        .map(|n| n as u64)
        .ok_or_else(|| Frame::error("ERR bit offset is not an integer or out of range"))
}

/// `start [end] [BYTE|BIT]` in Redis's order of checks: the start, then the end and the unit
/// (BITCOUNT), or the unit and the end (BITPOS, `unit_first`).
fn range(
    start: &[u8],
    end: Option<&bytes::Bytes>,
    unit: Option<&bytes::Bytes>,
    unit_first: bool,
) -> Result<BitRange, Frame> {
    let start = int_arg(start)?;
    let unit = || match unit.map(|u| lower(u)) {
        None => Ok(false),
        Some(u) if u == "byte" => Ok(false),
        Some(u) if u == "bit" => Ok(true),
        Some(_) => Err(syntax_error()),
    };
    let (end, bits) = if unit_first {
        let bits = unit()?;
        (end.map(|e| int_arg(e)).transpose()?, bits)
    } else {
        (end.map(|e| int_arg(e)).transpose()?, unit()?)
    };
    Ok(BitRange { start, end, bits })
}

/// A range, or the error the read answers once the key is found to hold a string.
fn deferred(range: Result<Option<BitRange>, Frame>) -> (Option<Option<BitRange>>, Option<String>) {
    match range {
        Ok(range) => (Some(range), None),
        Err(Frame::Error(e)) => (None, Some(e)),
        Err(other) => unreachable!("a refusal is an error: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{test_err as err, test_parse as parse};

    #[test]
    fn offsets_bits_and_operations_are_checked_first() {
        assert_eq!(
            parse(&["setbit", "k", "4294967295", "1"]).unwrap(),
            Command::Write(WriteOp::SetBit { key: "k".into(), offset: (1 << 32) - 1, on: true })
        );
        assert_eq!(
            err(&["setbit", "k", "4294967296", "1"]),
            "ERR bit offset is not an integer or out of range"
        );
        assert_eq!(err(&["setbit", "k", "-1", "1"]), "ERR bit offset is not an integer or out of range");
        assert_eq!(err(&["setbit", "k", "1", "2"]), "ERR bit is not an integer or out of range");
        assert_eq!(err(&["getbit", "k", "x"]), "ERR bit offset is not an integer or out of range");
        assert_eq!(err(&["bitpos", "k", "2"]), "ERR The bit argument must be 1 or 0.");
        assert_eq!(err(&["bitpos", "k", "x"]), "ERR value is not an integer or out of range");
        assert_eq!(err(&["bitop", "nand", "d", "a"]), "ERR syntax error");
        assert_eq!(
            err(&["bitop", "not", "d", "a", "b"]),
            "ERR BITOP NOT must be called with a single source key."
        );
    }

    #[test]
    fn a_wrong_range_is_answered_after_the_key_is_read() {
        let count = |words: &[&str]| match parse(words).unwrap() {
            Command::Read(ReadQuery::BitCount { range, error, .. }) => (range, error),
            other => panic!("{other:?}"),
        };
        assert_eq!(count(&["bitcount", "k"]), (None, None));
        assert_eq!(
            count(&["bitcount", "k", "1", "-1", "BIT"]),
            (Some(BitRange { start: 1, end: Some(-1), bits: true }), None)
        );
        assert_eq!(count(&["bitcount", "k", "1"]), (None, Some("ERR syntax error".into())));
        assert_eq!(
            count(&["bitcount", "k", "x", "1"]),
            (None, Some("ERR value is not an integer or out of range".into()))
        );
        assert_eq!(count(&["bitcount", "k", "0", "1", "bits"]), (None, Some("ERR syntax error".into())));
        // BITCOUNT reads the end before the unit.
        assert_eq!(
            count(&["bitcount", "k", "0", "x", "bits"]),
            (None, Some("ERR value is not an integer or out of range".into()))
        );
        let pos = |words: &[&str]| match parse(words).unwrap() {
            Command::Read(ReadQuery::BitPos { range, error, .. }) => (range, error),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            pos(&["bitpos", "k", "1", "2"]),
            (Some(BitRange { start: 2, end: None, bits: false }), None)
        );
        // The unit is read before the end.
        assert_eq!(pos(&["bitpos", "k", "1", "0", "x", "nope"]), (None, Some("ERR syntax error".into())));
        assert_eq!(pos(&["bitpos", "k", "1", "0", "1", "2", "3"]), (None, Some("ERR syntax error".into())));
    }
}
