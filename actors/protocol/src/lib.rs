//! What raft-kv reads from the network, decoded: RESP requests ([`resp`]), the typed commands
//! parsed from them ([`command`]), the peer port's frames and handshake ([`peer_wire`]), and the
//! member list commands and Raft entries carry ([`membership`]).
//!
//! A crate of its own, without RocksDB or actix, because every byte a client or a peer sends
//! passes through it first: the fuzz targets in `fuzz/` build just this crate, with the fuzzer's
//! instrumentation, in a minute instead of rebuilding RocksDB's C++. The `actors` crate
//! re-exports these modules under their old paths.

pub mod command;
pub mod membership;
pub mod peer_wire;
pub mod resp;

/// A stored or received payload that does not decode (a Raft entry, a member list). The
/// `actors` crate turns it into its `Error::Corrupt`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// The wall clock in unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
