//! The HyperLogLog commands.
//!
//! # Formats
//! - `PFADD key [element ...]`
//! - `PFCOUNT key [key ...]`
//! - `PFMERGE destkey [sourcekey ...]`

use super::{Args, Command, ReadQuery, WriteOp};
use crate::resp::Frame;

/// Parses the HyperLogLog commands; `None` for commands of other families.
pub fn parse(name: &'static str, args: &mut Args) -> Result<Option<Command>, Frame> {
    Ok(Some(match name {
        "pfadd" => {
            let key = args.arg();
            Command::Write(WriteOp::PfAdd { key, elements: args.rest() })
        }
        "pfcount" => Command::Read(ReadQuery::PfCount(args.rest())),
        "pfmerge" => {
            let destination = args.arg();
            Command::Write(WriteOp::PfMerge { destination, keys: args.rest() })
        }
        _ => return Ok(None),
    }))
}
