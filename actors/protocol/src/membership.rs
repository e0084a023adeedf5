//! Cluster membership as the nodes record it: who the members are and where to reach them.
//!
//! raft-rs tracks *which* ids vote (raft-rs's `ConfState`); this module adds *where* they
//! are. Every configuration change carries a [`ConfChangeContext`] naming the member it adds,
//! so each node updates its address book when it applies the change, and a snapshot carries the
//! whole book, so a node that catches up by snapshot learns it too.
//!
//! The book also records each member's *store id*, the random id of its data directory, which
//! the member writes in through the log once ([`address_record`]). A node that lost its data
//! and comes back under its old id has another store id, and its peers refuse it.

use serde::{Deserialize, Serialize};

/// One node of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    /// Where its PeerTransport listens.
    pub peer_addr: String,
    /// Where its Redis port listens (empty when unknown, e.g. for the initial members).
    pub redis_addr: String,
    /// The store id of its data directory (0 while unknown). Written after the fields above
    /// ([`encode_members`], [`encode_address`]), so that member lists and records written before
    /// it existed still decode, and configuration changes, which never know it, stay as they were.
    #[serde(skip)]
    pub store_id: u64,
}

/// The payload of a configuration change entry's context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfChangeContext {
    /// The node and request that proposed the change, to answer its client once applied.
    pub origin: Option<(u64, u64, u64)>,
    /// The member being added (its addresses), if any.
    pub member: Option<Member>,
}

impl ConfChangeContext {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a context always serializes")
    }

    pub fn decode(data: &[u8]) -> Option<Self> {
        postcard::from_bytes(data).ok()
    }
}

/// The context of a normal log entry whose data is an address record: a [`Member`] telling
/// every node where that member's Redis port listens ([`encode_address`]). The initial
/// members, whom `--cluster` names by peer address only, add their Redis address this way.
/// It is not a configuration change, so it never waits for, or blocks, a membership change.
pub const ADDRESS_CONTEXT: &[u8] = b"member-address";

pub fn encode_address(member: &Member) -> Vec<u8> {
    let mut data = postcard::to_allocvec(member).expect("a member always serializes");
    data.extend(postcard::to_allocvec(&member.store_id).expect("an id always serializes"));
    data
}

/// The member an entry's `context` and `data` record the address (and store id) of, if it is
/// an address record ([`ADDRESS_CONTEXT`]) that decodes.
pub fn address_record(context: &[u8], data: &[u8]) -> Option<Member> {
    if context != ADDRESS_CONTEXT {
        return None;
    }
    let (mut member, rest) = postcard::take_from_bytes::<Member>(data).ok()?;
    if !rest.is_empty() {
        member.store_id = postcard::from_bytes(rest).ok()?;
    }
    Some(member)
}

/// Applies an address record to the book: the member's Redis address, and its store id if the
/// book has none yet. A store id once recorded never changes: a node with another one lost
/// the data the cluster knew it by. Only a record for the member the book still holds counts
/// (same id and peer address: a removed node's record must not bring it back). Returns whether
/// the book changed.
pub fn apply_address_record(members: &mut [Member], record: &Member) -> bool {
    let Some(member) = members.iter_mut().find(|m| m.id == record.id && m.peer_addr == record.peer_addr)
    else {
        return false;
    };
    let mut changed = false;
    if !record.redis_addr.is_empty() && member.redis_addr != record.redis_addr {
        member.redis_addr.clone_from(&record.redis_addr);
        changed = true;
    }
    if member.store_id == 0 && record.store_id != 0 {
        member.store_id = record.store_id;
        changed = true;
    }
    changed
}

/// The context of a normal log entry recording that the leader refused a membership change a
/// follower forwarded, because another change was pending (raft-rs allows one at a time). Its
/// data is the refused change's [`ConfChangeContext`], so the node that proposed it answers its
/// client `-TRYAGAIN` at once. raft-rs itself would turn the change into an empty entry that
/// names nobody, and the proposer would wait out its timeout.
pub const REFUSED_CHANGE_CONTEXT: &[u8] = b"member-change-refused";

/// The refused change an entry's `context` and `data` record, if it is such a record
/// ([`REFUSED_CHANGE_CONTEXT`]) that decodes.
pub fn refused_change(context: &[u8], data: &[u8]) -> Option<ConfChangeContext> {
    (context == REFUSED_CHANGE_CONTEXT).then(|| ConfChangeContext::decode(data)).flatten()
}

/// Whether a normal entry with this context is a membership record (an address record or a
/// refused change), which RaftNode applies and the keyspace does not.
pub fn is_membership_record(context: &[u8]) -> bool {
    context == ADDRESS_CONTEXT || context == REFUSED_CHANGE_CONTEXT
}

/// The members, then their store ids in the same order.
pub fn encode_members(members: &[Member]) -> Vec<u8> {
    let mut data = postcard::to_allocvec(members).expect("members always serialize");
    let stores: Vec<u64> = members.iter().map(|m| m.store_id).collect();
    data.extend(postcard::to_allocvec(&stores).expect("ids always serialize"));
    data
}

pub fn decode_members(data: &[u8]) -> Result<Vec<Member>, crate::DecodeError> {
    let bad = |e: &dyn std::fmt::Display| crate::DecodeError(format!("member list: {e}"));
    let (mut members, rest) = postcard::take_from_bytes::<Vec<Member>>(data).map_err(|e| bad(&e))?;
    if !rest.is_empty() {
        let stores: Vec<u64> = postcard::from_bytes(rest).map_err(|e| bad(&e))?;
        if stores.len() != members.len() {
            return Err(bad(&format!("{} store ids for {} members", stores.len(), members.len())));
        }
        for (member, store) in members.iter_mut().zip(stores) {
            member.store_id = store;
        }
    }
    Ok(members)
}

/// Adds or replaces `member` in `members`, keeping them ordered by id.
pub fn upsert(members: &mut Vec<Member>, member: Member) {
    members.retain(|m| m.id != member.id);
    members.push(member);
    members.sort_by_key(|m| m.id);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, store_id: u64) -> Member {
        Member {
            id,
            peer_addr: format!("10.0.0.{id}:12379"),
            redis_addr: format!("10.0.0.{id}:6379"),
            store_id,
        }
    }

    #[test]
    fn an_address_record_is_recognized_by_its_context_only() {
        let member = member(2, 0xabcd_ef01_2345_6789);
        let data = encode_address(&member);
        assert_eq!(address_record(ADDRESS_CONTEXT, &data), Some(member.clone()));
        assert_eq!(address_record(b"batch", &data), None, "another entry's context");
        assert_eq!(address_record(b"", &data), None);
        assert_eq!(address_record(ADDRESS_CONTEXT, &data[..data.len() - 1]), None, "a truncated record");
        // A record written before store ids existed names none.
        let old = postcard::to_allocvec(&member).unwrap();
        assert_eq!(address_record(ADDRESS_CONTEXT, &old), Some(Member { store_id: 0, ..member }));
    }

    #[test]
    fn member_lists_keep_their_store_ids_and_old_lists_still_decode() {
        let members = vec![member(1, 11), member(2, 0), member(3, u64::MAX)];
        assert_eq!(decode_members(&encode_members(&members)), Ok(members.clone()));
        assert_eq!(decode_members(&encode_members(&[])), Ok(vec![]));
        let old = postcard::to_allocvec(&members).unwrap();
        let unknown: Vec<Member> = members.iter().map(|m| Member { store_id: 0, ..m.clone() }).collect();
        assert_eq!(decode_members(&old), Ok(unknown));
        let mut short = postcard::to_allocvec(&members).unwrap();
        short.extend(postcard::to_allocvec(&vec![1u64, 2]).unwrap());
        assert!(decode_members(&short).is_err(), "two store ids for three members");
        // A configuration change's member never carries one.
        let context = ConfChangeContext { origin: None, member: Some(member(4, 44)) };
        assert_eq!(ConfChangeContext::decode(&context.encode()).unwrap().member, Some(member(4, 0)));
    }

    #[test]
    fn a_store_id_is_recorded_once_and_never_replaced() {
        let mut book = vec![Member { redis_addr: String::new(), ..member(1, 0) }, member(2, 0)];
        assert!(apply_address_record(&mut book, &member(1, 0)), "the Redis address alone");
        assert_eq!(book[0], member(1, 0));
        assert!(apply_address_record(&mut book, &member(1, 7)), "the store id");
        assert!(!apply_address_record(&mut book, &member(1, 7)), "the same again");
        assert!(!apply_address_record(&mut book, &member(1, 8)), "another data directory");
        assert_eq!(book[0], member(1, 7));
        let moved = Member { peer_addr: "10.0.0.9:12379".into(), ..member(2, 9) };
        assert!(!apply_address_record(&mut book, &moved), "a record for an earlier member 2");
        assert!(!apply_address_record(&mut book, &member(3, 3)), "not a member");
        assert_eq!(book[1], member(2, 0));
    }

    #[test]
    fn a_refused_change_names_its_origin() {
        let change = ConfChangeContext { origin: Some((2, 5, 9)), member: None };
        let data = change.encode();
        assert_eq!(refused_change(REFUSED_CHANGE_CONTEXT, &data), Some(change));
        assert_eq!(refused_change(ADDRESS_CONTEXT, &data), None, "another record");
        assert!(is_membership_record(REFUSED_CHANGE_CONTEXT) && is_membership_record(ADDRESS_CONTEXT));
        assert!(!is_membership_record(b"") && !is_membership_record(b"batch"));
    }
}
