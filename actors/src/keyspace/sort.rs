//! SORT and SORT_RO, and the apply of SORT ... STORE: Redis's semantics, step by step.
//!
//! The elements are a list's (head first), a set's (in byte order: Redis's is its hash
//! table's) or a sorted set's (by score). Unless a BY pattern without `*` says not to sort,
//! they are sorted as numbers (ties by their bytes), or with ALPHA by their bytes; BY sorts by
//! the string, or the hash field (`pattern->field`), its pattern names for each element (a
//! missing one counts as 0, or first with ALPHA). LIMIT then cuts the answer, and GET patterns
//! replace each element by what they name (`#`: the element; a missing one: null, or an empty
//! string in a stored list).

use bytes::Bytes;

use super::buckets::Layout;
use super::hashes::{HashFields, KIND_HASH};
use super::lists::{self, KIND_LIST};
use super::sets::{self, KIND_SET};
use super::zsets::{Sorted, KIND_ZSET};
use super::ztree::NODE_ENTRIES;
use super::{or_refusal, ApplyBatch, KeyRead, KIND_STRING, WRONGTYPE};
use crate::command::{SortSpec, WriteOp};
use crate::error::Result;
use crate::resp::Frame;

/// The type and the elements of the collection at `key` (an empty list if it is missing); the
/// WRONGTYPE reply for a value that is not a list, a set or a sorted set.
fn elements(ks: &dyn KeyRead, key: &[u8], now: i64) -> Result<std::result::Result<(u8, Vec<Bytes>), Frame>> {
    let Some(value) = ks.value(key)?.filter(|v| v.alive_at(now)) else {
        return Ok(Ok((KIND_LIST, Vec::new())));
    };
    Ok(Ok(match value.kind {
        KIND_LIST => (KIND_LIST, lists::elements_of(ks, &value)?),
        KIND_SET => (KIND_SET, sets::members_of(ks, &value)?),
        KIND_ZSET => {
            let all = Sorted::decode(&value.data, NODE_ENTRIES)?.all(ks)?;
            (KIND_ZSET, all.into_iter().map(|(_, member)| member).collect())
        }
        _ => return Ok(Err(Frame::error(WRONGTYPE))),
    }))
}

/// What a BY or GET pattern names for `element`: the element itself for `#`; else the
/// string at the key the pattern makes by putting the element in place of its first `*`, or
/// the field after `->` of the hash there. None for a pattern without `*`, a missing key or
/// field, or a key of another type.
fn lookup(ks: &dyn KeyRead, pattern: &[u8], element: &Bytes, now: i64) -> Result<Option<Bytes>> {
    if pattern == b"#" {
        return Ok(Some(element.clone()));
    }
    let Some(star) = pattern.iter().position(|&b| b == b'*') else {
        return Ok(None);
    };
    let after = &pattern[star + 1..];
    let (postfix, field) = match after.windows(2).position(|w| w == b"->") {
        Some(arrow) if arrow + 2 < after.len() => (&after[..arrow], Some(&after[arrow + 2..])),
        _ => (after, None),
    };
    let key = [&pattern[..star], &element[..], postfix].concat();
    let Some(value) = ks.value(&key)?.filter(|v| v.alive_at(now)) else {
        return Ok(None);
    };
    match (field, value.kind) {
        (None, KIND_STRING) => Ok(Some(value.data)),
        (Some(field), KIND_HASH) => {
            Layout::<HashFields>::decode(&value.data)?.look(ks, field, |fields| fields.get(field).cloned())
        }
        _ => Ok(None),
    }
}

/// A BY value as SORT reads a number (C's `strtod` over the whole string: leading white space
/// allowed, an empty string is 0; not a number, or out of range: none).
fn number(text: &[u8]) -> Option<f64> {
    if text.is_empty() {
        return Some(0.0);
    }
    let text = std::str::from_utf8(text).ok()?;
    let trimmed = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let value: f64 = trimmed.parse().ok()?;
    let unsigned = trimmed.trim_start_matches(['+', '-']).to_ascii_lowercase();
    let overflowed = value.is_infinite() && !unsigned.starts_with("inf");
    (!value.is_nan() && !overflowed).then_some(value)
}

/// SORT's rows: each element of the answer, or what each GET pattern names for it (none:
/// missing), LIMIT applied; `Err` is the reply to an error. `storing`: SORT ... STORE, which
/// sorts a set it was told not to sort (by bytes), as Redis does.
fn sort(
    ks: &dyn KeyRead,
    spec: &SortSpec,
    storing: bool,
    now: i64,
) -> Result<std::result::Result<Vec<Option<Bytes>>, Frame>> {
    let (kind, mut items) = match elements(ks, &spec.key, now)? {
        Err(wrongtype) => return Ok(Err(wrongtype)),
        Ok(found) => found,
    };
    let (mut by, mut alpha) = (spec.by.clone(), spec.alpha);
    let mut keep_order = by.as_ref().is_some_and(|by| !by.contains(&b'*'));
    if keep_order && kind == KIND_SET && storing {
        (keep_order, alpha, by) = (false, true, None);
    }
    if keep_order {
        // A list and a sorted set keep their order (reversed by DESC); a set its own.
        if spec.desc && kind != KIND_SET {
            items.reverse();
        }
    } else if alpha {
        let mut keyed = Vec::with_capacity(items.len());
        for item in items {
            let key = match &by {
                Some(by) => lookup(ks, by, &item, now)?,
                None => Some(item.clone()),
            };
            keyed.push((key, item));
        }
        // A missing BY value sorts first.
        keyed.sort_by(|a, b| if spec.desc { b.0.cmp(&a.0) } else { a.0.cmp(&b.0) });
        items = keyed.into_iter().map(|(_, item)| item).collect();
    } else {
        let mut scored = Vec::with_capacity(items.len());
        for item in items {
            let score = match &by {
                Some(by) => match lookup(ks, by, &item, now)? {
                    Some(value) => number(&value),
                    None => Some(0.0),
                },
                None => number(&item),
            };
            let Some(score) = score else {
                return Ok(Err(Frame::error("ERR One or more scores can't be converted into double")));
            };
            scored.push((score, item));
        }
        scored.sort_by(|a, b| {
            let order = a.0.partial_cmp(&b.0).expect("no NaN").then_with(|| a.1.cmp(&b.1));
            if spec.desc {
                order.reverse()
            } else {
                order
            }
        });
        items = scored.into_iter().map(|(_, item)| item).collect();
    }
    // LIMIT, normalized as Redis does.
    let len = items.len() as i64;
    let (offset, count) = spec.limit.unwrap_or((0, -1));
    let mut start = offset.max(0).min(len);
    let count = count.max(-1).min(len);
    let mut end = if count < 0 { len - 1 } else { start + count - 1 };
    if start >= len {
        (start, end) = (len - 1, len - 2);
    }
    end = end.min(len - 1);
    let chosen = if end >= start { &items[start as usize..=end as usize] } else { &[] };
    let mut rows = Vec::with_capacity(chosen.len() * spec.gets.len().max(1));
    for item in chosen {
        if spec.gets.is_empty() {
            rows.push(Some(item.clone()));
        }
        for get in &spec.gets {
            rows.push(lookup(ks, get, item, now)?);
        }
    }
    Ok(Ok(rows))
}

/// Answers SORT (without STORE) and SORT_RO.
pub(super) fn read_sort(ks: &dyn KeyRead, spec: &SortSpec, now: i64) -> Result<Frame> {
    Ok(match sort(ks, spec, false, now)? {
        Err(error) => error,
        Ok(rows) => Frame::Array(rows.into_iter().map(|row| row.map_or(Frame::Null, Frame::Bulk)).collect()),
    })
}

impl ApplyBatch<'_> {
    /// Applies [`WriteOp::SortStore`]: the rows (a missing GET value as an empty string)
    /// replace the destination as a list; replies how many.
    pub(super) fn write_sort(&mut self, op: WriteOp) -> Result<Frame> {
        let WriteOp::SortStore { spec, destination } = op else { unreachable!("not SORT ... STORE: {op:?}") };
        let rows = match sort(self, &spec, true, self.now)? {
            Err(error) => return Ok(error),
            Ok(rows) => rows,
        };
        let stored: Vec<Bytes> = rows.into_iter().map(Option::unwrap_or_default).collect();
        let length = Frame::Integer(stored.len() as i64);
        Ok(or_refusal(self.store_list(destination, stored)?, length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_as_strtod_reads_them() {
        assert_eq!(number(b"1.5"), Some(1.5));
        assert_eq!(number(b" -2"), Some(-2.0));
        assert_eq!(number(b""), Some(0.0));
        assert_eq!(number(b"inf"), Some(f64::INFINITY));
        assert_eq!(number(b"1e400"), None, "out of range");
        assert_eq!(number(b"nan"), None);
        assert_eq!(number(b"1x"), None);
        assert_eq!(number(b" "), None);
    }
}
