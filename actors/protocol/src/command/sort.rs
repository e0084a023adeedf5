//! `SORT key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]] [ASC|DESC]
//! [ALPHA] [STORE destination]` and `SORT_RO` (the same without STORE).

use bytes::Bytes;

use super::{int_arg, lower, syntax_error, Args, Command, ReadQuery, SortSpec, WriteOp};
use crate::resp::Frame;

/// Parses SORT and SORT_RO; `None` for other commands. Options are read as Redis reads them:
/// the last of ASC/DESC, BY and LIMIT counts, and an option missing its values is a syntax
/// error.
pub fn parse(name: &'static str, args: &mut Args) -> Result<Option<Command>, Frame> {
    if name != "sort" && name != "sort_ro" {
        return Ok(None);
    }
    let key = args.arg();
    let mut spec = SortSpec { key, by: None, limit: None, gets: Vec::new(), desc: false, alpha: false };
    let mut store: Option<Bytes> = None;
    let rest = args.rest();
    let mut at = 0;
    while at < rest.len() {
        let left = rest.len() - at - 1;
        match lower(&rest[at]).as_str() {
            "asc" => spec.desc = false,
            "desc" => spec.desc = true,
            "alpha" => spec.alpha = true,
            "limit" if left >= 2 => {
                spec.limit = Some((int_arg(&rest[at + 1])?, int_arg(&rest[at + 2])?));
                at += 2;
            }
            "store" if left >= 1 && name == "sort" => {
                store = Some(rest[at + 1].clone());
                at += 1;
            }
            "by" if left >= 1 => {
                spec.by = Some(rest[at + 1].clone());
                at += 1;
            }
            "get" if left >= 1 => {
                spec.gets.push(rest[at + 1].clone());
                at += 1;
            }
            _ => return Err(syntax_error()),
        }
        at += 1;
    }
    Ok(Some(match store {
        None => Command::Read(ReadQuery::Sort(spec)),
        Some(destination) => Command::Write(WriteOp::SortStore { spec, destination }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Command, Frame> {
        Command::parse(line.split(' ').map(|a| Bytes::copy_from_slice(a.as_bytes())).collect())
    }

    #[test]
    fn sort_options_are_read_as_redis_reads_them() {
        let Ok(Command::Write(WriteOp::SortStore { spec, destination })) =
            parse_line("SORT k BY w_* LIMIT 1 2 GET # GET o_*->f DESC ASC ALPHA STORE d")
        else {
            panic!("a SORT with STORE is a write")
        };
        assert_eq!(destination, "d");
        assert_eq!(spec.by.as_deref(), Some(&b"w_*"[..]));
        assert_eq!(spec.limit, Some((1, 2)));
        assert_eq!(spec.gets, vec![Bytes::from("#"), Bytes::from("o_*->f")]);
        assert!(!spec.desc && spec.alpha);
        assert!(matches!(parse_line("SORT_RO k DESC"), Ok(Command::Read(ReadQuery::Sort(_)))));
        let error = |line| match parse_line(line) {
            Err(Frame::Error(e)) => e,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(error("SORT_RO k STORE d"), "ERR syntax error");
        assert_eq!(error("SORT k LIMIT 1"), "ERR syntax error");
        assert_eq!(error("SORT k LIMIT x 1"), "ERR value is not an integer or out of range");
        assert_eq!(error("SORT k BY"), "ERR syntax error");
    }
}
