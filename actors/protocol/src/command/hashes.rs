//! The hash commands.
//!
//! # Formats
//! - `HSET key field value [field value ...]`, `HMSET key field value [field value ...]`,
//!   `HSETNX key field value`, `HDEL key field [field ...]`
//! - `HGET key field`, `HMGET key field [field ...]`, `HEXISTS key field`, `HSTRLEN key field`,
//!   `HLEN key`, `HGETALL key`, `HKEYS key`, `HVALS key`
//! - `HINCRBY key field increment`, `HINCRBYFLOAT key field increment`
//! - `HRANDFIELD key [count [WITHVALUES]]`
//! - `HSCAN key cursor [MATCH pattern] [COUNT count] [NOVALUES]`

use super::strings::parse_float;
use super::{collection_scan_options, cursor_arg};
use super::{int_arg, lower, syntax_error, Args, Command, HashPart, ReadQuery, WriteOp};
use crate::resp::Frame;

/// Parses the hash commands; `None` for commands of other families.
pub fn parse(name: &'static str, args: &mut Args) -> Result<Option<Command>, Frame> {
    let write = |op| Ok(Some(Command::Write(op)));
    let read = |q| Ok(Some(Command::Read(q)));
    match name {
        "hset" | "hmset" => {
            let key = args.arg();
            write(WriteOp::HSet { key, pairs: args.pairs()?, reply_ok: name == "hmset" })
        }
        "hsetnx" => write(WriteOp::HSetNx { key: args.arg(), field: args.arg(), value: args.arg() }),
        "hdel" => {
            let key = args.arg();
            write(WriteOp::HDel { key, fields: args.rest() })
        }
        "hincrby" => {
            let (key, field) = (args.arg(), args.arg());
            write(WriteOp::HIncrBy { key, field, delta: int_arg(&args.arg())? })
        }
        "hincrbyfloat" => {
            let (key, field) = (args.arg(), args.arg());
            let increment =
                parse_float(&args.arg()).ok_or_else(|| Frame::error("ERR value is not a valid float"))?;
            if increment.is_infinite() {
                return Err(Frame::error("ERR value is NaN or Infinity"));
            }
            write(WriteOp::HIncrByFloat { key, field, increment })
        }
        "hget" => read(ReadQuery::HGet { key: args.arg(), field: args.arg() }),
        "hmget" => {
            let key = args.arg();
            read(ReadQuery::HMGet { key, fields: args.rest() })
        }
        "hexists" => read(ReadQuery::HExists { key: args.arg(), field: args.arg() }),
        "hstrlen" => read(ReadQuery::HStrLen { key: args.arg(), field: args.arg() }),
        "hlen" => read(ReadQuery::HLen(args.arg())),
        "hgetall" => read(ReadQuery::HGetAll { key: args.arg(), part: HashPart::Pairs }),
        "hkeys" => read(ReadQuery::HGetAll { key: args.arg(), part: HashPart::Fields }),
        "hvals" => read(ReadQuery::HGetAll { key: args.arg(), part: HashPart::Values }),
        "hrandfield" => parse_hrandfield(args),
        "hscan" => parse_hscan(args),
        _ => Ok(None),
    }
}

fn parse_hrandfield(args: &mut Args) -> Result<Option<Command>, Frame> {
    let key = args.arg();
    let count = args.try_next().map(|c| int_arg(&c)).transpose()?;
    let with_values = match args.try_next() {
        None => false,
        Some(option) if lower(&option) == "withvalues" && args.is_empty() => true,
        Some(_) => return Err(syntax_error()),
    };
    if let Some(count) = count {
        // Redis's bounds: the count's magnitude must fit, doubled when values come with it.
        if count == i64::MIN {
            return Err(Frame::error(
                "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
            ));
        }
        if with_values && count < -(i64::MAX / 2) {
            return Err(Frame::error("ERR value is out of range"));
        }
    }
    let seed = super::keys::random_seed();
    Ok(Some(Command::Read(ReadQuery::HRandField { key, count, with_values, seed })))
}

fn parse_hscan(args: &mut Args) -> Result<Option<Command>, Frame> {
    let (key, cursor) = (args.arg(), cursor_arg(&args.arg())?);
    let scan = collection_scan_options(args, true)?;
    Ok(Some(Command::Read(ReadQuery::HScan { key, cursor, scan })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CollectionScan;
    use crate::command::{test_err as err, test_parse as parse};

    #[test]
    fn hset_takes_pairs_and_hmset_replies_ok() {
        assert_eq!(
            parse(&["HSET", "h", "a", "1", "b", "2"]).unwrap(),
            Command::Write(WriteOp::HSet {
                key: "h".into(),
                pairs: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
                reply_ok: false
            })
        );
        assert!(matches!(
            parse(&["hmset", "h", "a", "1"]).unwrap(),
            Command::Write(WriteOp::HSet { reply_ok: true, .. })
        ));
        assert_eq!(err(&["hset", "h", "a"]), "ERR wrong number of arguments for 'hset' command");
        assert_eq!(err(&["hset", "h", "a", "1", "b"]), "ERR wrong number of arguments for 'hset' command");
        assert_eq!(err(&["hmset", "h", "a", "1", "b"]), "ERR wrong number of arguments for 'hmset' command");
    }

    #[test]
    fn increments_are_checked_before_they_reach_the_log() {
        assert_eq!(err(&["hincrby", "h", "f", "x"]), "ERR value is not an integer or out of range");
        assert_eq!(err(&["hincrbyfloat", "h", "f", "abc"]), "ERR value is not a valid float");
        assert_eq!(err(&["hincrbyfloat", "h", "f", "inf"]), "ERR value is NaN or Infinity");
        assert_eq!(
            parse(&["hincrbyfloat", "h", "f", "-1.5"]).unwrap(),
            Command::Write(WriteOp::HIncrByFloat { key: "h".into(), field: "f".into(), increment: -1.5 })
        );
    }

    #[test]
    fn hrandfield_options_are_checked_like_redis() {
        assert_eq!(err(&["hrandfield", "h", "x"]), "ERR value is not an integer or out of range");
        assert_eq!(err(&["hrandfield", "h", "1", "foo"]), "ERR syntax error");
        assert_eq!(err(&["hrandfield", "h", "1", "withvalues", "x"]), "ERR syntax error");
        assert_eq!(
            err(&["hrandfield", "h", "-4611686018427387904", "withvalues"]),
            "ERR value is out of range"
        );
        assert!(err(&["hrandfield", "h", "-9223372036854775808"]).starts_with("ERR value is out of range, "));
        assert!(matches!(
            parse(&["hrandfield", "h", "-3", "WITHVALUES"]).unwrap(),
            Command::Read(ReadQuery::HRandField { count: Some(-3), with_values: true, .. })
        ));
    }

    #[test]
    fn hscan_options_are_checked_like_redis() {
        assert_eq!(err(&["hscan", "h", "x"]), "ERR invalid cursor");
        assert_eq!(err(&["hscan", "h", "0", "count", "0"]), "ERR syntax error");
        assert_eq!(err(&["hscan", "h", "0", "match"]), "ERR syntax error");
        assert_eq!(err(&["hscan", "h", "0", "type", "string"]), "ERR syntax error");
        assert_eq!(
            parse(&["hscan", "h", "7", "MATCH", "a*", "COUNT", "5", "NOVALUES"]).unwrap(),
            Command::Read(ReadQuery::HScan {
                key: "h".into(),
                cursor: 7,
                scan: CollectionScan { pattern: Some("a*".into()), count: 5, novalues: true }
            })
        );
    }
}
