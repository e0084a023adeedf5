//! The string commands: parsing, and the number formats they share with the keyspace.
//!
//! # Formats
//! - `SET key value [NX|XX] [GET] [EX seconds|PX milliseconds|EXAT unix-time-seconds|PXAT unix-time-milliseconds|KEEPTTL]`
//! - `GET key`, `GETSET key value`, `GETDEL key`, `GETEX key [EX s|PX ms|EXAT ts|PXAT ms-ts|PERSIST]`
//! - `SETNX key value`, `SETEX key seconds value`, `PSETEX key milliseconds value`
//! - `MGET key [key ...]`, `MSET key value [key value ...]`, `MSETNX key value [key value ...]`
//! - `APPEND key value`, `STRLEN key`, `GETRANGE key start end`, `SUBSTR key start end`,
//!   `SETRANGE key offset value`
//! - `INCR key`, `DECR key`, `INCRBY key increment`, `DECRBY key decrement`,
//!   `INCRBYFLOAT key increment`
//! - `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]`

use bytes::Bytes;

use super::{
    int_arg, lower, syntax_error, Args, Command, Expiry, LcsMode, ReadQuery, SetCond, SetExpiry, ValueType,
    WriteOp,
};
use crate::now_ms;
use crate::resp::Frame;

pub use super::parse_i64 as parse_int;

/// Parses the string commands; `None` for commands of other families.
pub fn parse(name: &'static str, args: &mut Args) -> Result<Option<Command>, Frame> {
    let write = |op| Ok(Some(Command::Write(op)));
    let read = |q| Ok(Some(Command::Read(q)));
    match name {
        "get" => read(ReadQuery::Get(args.arg())),
        "set" => {
            let (key, value) = (args.arg(), args.arg());
            parse_set(key, value, args)
        }
        "setnx" => write(WriteOp::SetNx { key: args.arg(), value: args.arg() }),
        "setex" | "psetex" => {
            let key = args.arg();
            let unit = if name == "setex" { 1000 } else { 1 };
            let ms = relative_expiry(&args.arg(), unit, name)?;
            let value = args.arg();
            let expiry = SetExpiry::At(Expiry::InMs(ms));
            write(WriteOp::SetWith { key, value, cond: SetCond::Always, expiry, get: false })
        }
        "getset" => write(WriteOp::GetSet { key: args.arg(), value: args.arg() }),
        "getdel" => write(WriteOp::GetDel { key: args.arg() }),
        "getex" => parse_getex(args),
        "mget" => read(ReadQuery::MGet(args.rest())),
        "mset" => write(WriteOp::MSet { pairs: args.pairs()? }),
        "msetnx" => write(WriteOp::MSetNx { pairs: args.pairs()? }),
        "append" => write(WriteOp::Append { key: args.arg(), value: args.arg() }),
        "strlen" => read(ReadQuery::StrLen(args.arg())),
        "getrange" | "substr" => {
            let key = args.arg();
            let start = int_arg(&args.arg())?;
            let end = int_arg(&args.arg())?;
            read(ReadQuery::GetRange { key, start, end })
        }
        "setrange" => {
            let key = args.arg();
            let offset = int_arg(&args.arg())?;
            if offset < 0 {
                return Err(Frame::error("ERR offset is out of range"));
            }
            write(WriteOp::SetRange { key, offset: offset as u64, value: args.arg() })
        }
        "incr" => write(WriteOp::IncrBy { key: args.arg(), delta: 1 }),
        "decr" => write(WriteOp::IncrBy { key: args.arg(), delta: -1 }),
        "incrby" => {
            let key = args.arg();
            write(WriteOp::IncrBy { key, delta: int_arg(&args.arg())? })
        }
        "decrby" => {
            let key = args.arg();
            let delta = int_arg(&args.arg())?;
            if delta == i64::MIN {
                return Err(Frame::error("ERR decrement would overflow"));
            }
            write(WriteOp::IncrBy { key, delta: -delta })
        }
        "incrbyfloat" => {
            let key = args.arg();
            match parse_float(&args.arg()) {
                Some(increment) => write(WriteOp::IncrByFloat { key, increment }),
                None => argument_error(key, "ERR value is not a valid float", false),
            }
        }
        "lcs" => parse_lcs(args),
        _ => Ok(None),
    }
}

/// The expiry options SET and GETEX share, collected before their values are checked (Redis
/// reports a syntax error before a bad number).
#[derive(Default)]
struct ExpiryOption {
    /// `ex`, `px`, `exat` or `pxat`, with its argument.
    timed: Option<(String, Bytes)>,
    keep_ttl: bool,
    persist: bool,
}

impl ExpiryOption {
    fn is_set(&self) -> bool {
        self.timed.is_some() || self.keep_ttl || self.persist
    }

    /// Tries `option` as an expiry option; false if it is none.
    fn take(&mut self, option: &str, args: &mut Args) -> Result<bool, Frame> {
        match option {
            "ex" | "px" | "exat" | "pxat" if !self.is_set() => {
                self.timed = Some((option.to_owned(), args.value()?));
                Ok(true)
            }
            "ex" | "px" | "exat" | "pxat" => Err(syntax_error()),
            _ => Ok(false),
        }
    }

    /// The checked expiry, with Redis's errors for bad values.
    fn resolve(&self, command: &str) -> Result<Option<Expiry>, Frame> {
        let Some((unit, value)) = &self.timed else {
            return Ok(None);
        };
        Ok(Some(match unit.as_str() {
            "ex" => Expiry::InMs(relative_expiry(value, 1000, command)?),
            "px" => Expiry::InMs(relative_expiry(value, 1, command)?),
            "exat" => Expiry::AtMs(absolute_expiry(value, 1000, command)?),
            _ => Expiry::AtMs(absolute_expiry(value, 1, command)?),
        }))
    }
}

fn invalid_expire(command: &str) -> Frame {
    Frame::error(format!("ERR invalid expire time in '{command}' command"))
}

/// A positive relative time in `unit` ms, checked as Redis does: it must stay an i64 once
/// converted to milliseconds and added to the current time.
fn relative_expiry(value: &[u8], unit: i64, command: &str) -> Result<i64, Frame> {
    let n = int_arg(value)?;
    if n <= 0 || n > i64::MAX / unit {
        return Err(invalid_expire(command));
    }
    let ms = n * unit;
    if ms > i64::MAX - now_ms() {
        return Err(invalid_expire(command));
    }
    Ok(ms)
}

fn absolute_expiry(value: &[u8], unit: i64, command: &str) -> Result<i64, Frame> {
    let n = int_arg(value)?;
    if n <= 0 || n > i64::MAX / unit {
        return Err(invalid_expire(command));
    }
    Ok(n * unit)
}

fn parse_set(key: Bytes, value: Bytes, args: &mut Args) -> Result<Option<Command>, Frame> {
    if args.is_empty() {
        return Ok(Some(Command::Write(WriteOp::Set { key, value })));
    }
    let mut cond = SetCond::Always;
    let mut get = false;
    let mut expiry = ExpiryOption::default();
    while let Some(arg) = args.try_next() {
        let option = lower(&arg);
        if expiry.take(&option, args)? {
            continue;
        }
        match option.as_str() {
            "nx" if cond != SetCond::IfPresent => cond = SetCond::IfAbsent,
            "xx" if cond != SetCond::IfAbsent => cond = SetCond::IfPresent,
            "get" => get = true,
            "keepttl" if !expiry.is_set() => expiry.keep_ttl = true,
            _ => return Err(syntax_error()),
        }
    }
    let expiry = match expiry.resolve("set")? {
        Some(at) => SetExpiry::At(at),
        None if expiry.keep_ttl => SetExpiry::KeepTtl,
        None => SetExpiry::None,
    };
    Ok(Some(Command::Write(WriteOp::SetWith { key, value, cond, expiry, get })))
}

fn parse_getex(args: &mut Args) -> Result<Option<Command>, Frame> {
    let key = args.arg();
    let mut expiry = ExpiryOption::default();
    while let Some(arg) = args.try_next() {
        let option = lower(&arg);
        if expiry.take(&option, args)? {
            continue;
        }
        match option.as_str() {
            "persist" if !expiry.is_set() => expiry.persist = true,
            _ => return Err(syntax_error()),
        }
    }
    Ok(Some(match expiry.resolve("getex") {
        Ok(Some(at)) => Command::Write(WriteOp::GetEx { key, expiry: Some(at) }),
        Ok(None) if expiry.persist => Command::Write(WriteOp::GetEx { key, expiry: None }),
        Ok(None) => Command::Read(ReadQuery::Get(key)),
        // Redis looks the key up before it checks the time.
        Err(Frame::Error(error)) => return argument_error(key, &error, true),
        Err(other) => return Err(other),
    }))
}

/// The command for an argument error Redis reports only once it found `key` to hold a string
/// ([`ReadQuery::ArgumentError`]): a missing key answers null, or the same error.
fn argument_error(key: Bytes, error: &str, null_if_missing: bool) -> Result<Option<Command>, Frame> {
    let if_missing = (!null_if_missing).then(|| error.to_owned());
    let (expects, error) = (ValueType::String, error.to_owned());
    Ok(Some(Command::Read(ReadQuery::ArgumentError { key, expects, error, if_missing })))
}

fn parse_lcs(args: &mut Args) -> Result<Option<Command>, Frame> {
    let (a, b) = (args.arg(), args.arg());
    let mut mode = LcsMode::default();
    while let Some(arg) = args.try_next() {
        match lower(&arg).as_str() {
            "len" => mode.len_only = true,
            "idx" => mode.idx = true,
            "withmatchlen" => mode.with_match_len = true,
            "minmatchlen" => mode.min_match_len = int_arg(&args.value()?)?.max(0) as usize,
            _ => return Err(syntax_error()),
        }
    }
    if mode.len_only && mode.idx {
        return Err(Frame::error("ERR If you want both the length and indexes, please just use IDX."));
    }
    Ok(Some(Command::Read(ReadQuery::Lcs { a, b, mode })))
}

/// A float as Redis's `string2ld` accepts it: no surrounding spaces, no NaN, and no value
/// that only overflows to infinity (an explicit `inf` is accepted).
pub fn parse_float(s: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(s).ok()?;
    if text.is_empty() || text.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    if value.is_nan() {
        return None;
    }
    if value.is_infinite() && !text.to_ascii_lowercase().contains("inf") {
        return None;
    }
    Some(value)
}

/// INCRBYFLOAT's result text. Redis computes in `long double` and prints 17 decimals with the
/// trailing zeros removed, which shows the decimal a user expects (`0.1 + 0.2` gives `0.3`).
/// raft-kv computes in IEEE double, identically on every replica, and prints the shortest text
/// of the value rounded to 15 significant digits, which gives the same text whenever the
/// result has at most 15 significant digits; integral results print exactly.
pub fn format_float(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e38 {
        // Integral values print exactly, every digit, as `%.17Lf` does for them.
        return (value as i128).to_string();
    }
    let rounded: f64 = format!("{value:.14e}").parse().unwrap_or(value);
    format!("{rounded}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{test_err as err, test_parse as parse};

    #[test]
    fn set_options_parse_into_one_write() {
        assert_eq!(
            parse(&["set", "k", "v", "nx", "px", "100", "get"]).unwrap(),
            Command::Write(WriteOp::SetWith {
                key: "k".into(),
                value: "v".into(),
                cond: SetCond::IfAbsent,
                expiry: SetExpiry::At(Expiry::InMs(100)),
                get: true
            })
        );
        assert_eq!(
            parse(&["set", "k", "v", "PXAT", "5"]).unwrap(),
            Command::Write(WriteOp::SetWith {
                key: "k".into(),
                value: "v".into(),
                cond: SetCond::Always,
                expiry: SetExpiry::At(Expiry::AtMs(5)),
                get: false
            })
        );
    }

    #[test]
    fn set_option_conflicts_are_syntax_errors_before_bad_numbers() {
        assert_eq!(err(&["set", "k", "v", "nx", "xx"]), "ERR syntax error");
        assert_eq!(err(&["set", "k", "v", "ex", "10", "px", "10"]), "ERR syntax error");
        assert_eq!(err(&["set", "k", "v", "ex", "10", "keepttl"]), "ERR syntax error");
        assert_eq!(err(&["set", "k", "v", "ex"]), "ERR syntax error");
        assert_eq!(err(&["set", "k", "v", "ex", "abc", "bogus"]), "ERR syntax error");
        assert_eq!(err(&["set", "k", "v", "ex", "abc"]), "ERR value is not an integer or out of range");
        assert_eq!(err(&["set", "k", "v", "ex", "0"]), "ERR invalid expire time in 'set' command");
        assert_eq!(
            err(&["set", "k", "v", "ex", "9999999999999999"]),
            "ERR invalid expire time in 'set' command"
        );
        assert_eq!(err(&["setex", "k", "-1", "v"]), "ERR invalid expire time in 'setex' command");
        assert_eq!(err(&["getex", "k", "persist", "ex", "1"]), "ERR syntax error");
    }

    #[test]
    fn counters_reject_what_redis_rejects() {
        assert_eq!(err(&["incrby", "k", "1.5"]), "ERR value is not an integer or out of range");
        assert_eq!(err(&["decrby", "k", "-9223372036854775808"]), "ERR decrement would overflow");
        assert_eq!(err(&["setrange", "k", "-1", "x"]), "ERR offset is out of range");
        assert_eq!(
            err(&["lcs", "a", "b", "len", "idx"]),
            "ERR If you want both the length and indexes, please just use IDX."
        );
    }

    #[test]
    fn argument_errors_redis_reports_after_the_type_check_wait_for_the_key() {
        let refused = |parts: &[&str], error: &str, null_if_missing: bool| {
            let if_missing = (!null_if_missing).then(|| error.to_owned());
            assert_eq!(
                parse(parts).unwrap(),
                Command::Read(ReadQuery::ArgumentError {
                    key: "k".into(),
                    expects: ValueType::String,
                    error: error.into(),
                    if_missing
                }),
                "{parts:?}"
            );
        };
        refused(&["incrbyfloat", "k", "abc"], "ERR value is not a valid float", false);
        refused(&["incrbyfloat", "k", "nan"], "ERR value is not a valid float", false);
        refused(&["incrbyfloat", "k", "1e400"], "ERR value is not a valid float", false);
        refused(&["getex", "k", "ex", "0"], "ERR invalid expire time in 'getex' command", true);
        refused(&["getex", "k", "px", "x"], "ERR value is not an integer or out of range", true);
    }

    #[test]
    fn getex_without_options_is_a_plain_read() {
        assert_eq!(parse(&["getex", "k"]).unwrap(), Command::Read(ReadQuery::Get("k".into())));
    }

    #[test]
    fn float_results_print_the_expected_decimal() {
        assert_eq!(format_float(0.1 + 0.2), "0.3");
        assert_eq!(format_float(10.5 + 0.1), "10.6");
        assert_eq!(format_float(3.0), "3");
        assert_eq!(format_float(-0.5), "-0.5");
        assert_eq!(format_float(5.0e3), "5000");
        assert_eq!(format_float(1e20), "100000000000000000000");
        assert_eq!(format_float(9223372036854775807.0 + 0.5), "9223372036854775808");
    }
}
