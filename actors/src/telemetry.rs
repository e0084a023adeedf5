//! The Prometheus metrics a node exports (with `--metrics-addr`), named in one place.
//!
//! The actors record through the `metrics` facade; the binary installs the Prometheus exporter.
//! Without an exporter the records go nowhere and cost next to nothing.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub const RAFT_TERM: &str = "raftkv_raft_term";
pub const RAFT_IS_LEADER: &str = "raftkv_raft_is_leader";
pub const RAFT_LEADER_ID: &str = "raftkv_raft_leader_id";
pub const RAFT_COMMIT_INDEX: &str = "raftkv_raft_commit_index";
pub const RAFT_APPLIED_INDEX: &str = "raftkv_raft_applied_index";
pub const WRITES: &str = "raftkv_writes_total";
pub const WRITE_SECONDS: &str = "raftkv_write_seconds";
pub const READS: &str = "raftkv_reads_total";
pub const READ_INDEX_SECONDS: &str = "raftkv_read_index_seconds";
pub const FSYNC_SECONDS: &str = "raftkv_fsync_seconds";
pub const READIES_PER_FSYNC: &str = "raftkv_readies_per_fsync";
pub const SNAPSHOTS_SENT: &str = "raftkv_snapshots_sent_total";
pub const PEER_CONNECTED: &str = "raftkv_peer_connected";
pub const CLIENT_CONNECTIONS: &str = "raftkv_client_connections";
pub const KEYS: &str = "raftkv_keys";

/// Registers the help text of every metric with the installed recorder.
pub fn describe() {
    describe_gauge!(RAFT_TERM, "Current Raft term.");
    describe_gauge!(RAFT_IS_LEADER, "1 while this node is the Raft leader.");
    describe_gauge!(RAFT_LEADER_ID, "The leader this node knows (0: none).");
    describe_gauge!(RAFT_COMMIT_INDEX, "Raft commit index.");
    describe_gauge!(RAFT_APPLIED_INDEX, "Raft applied index.");
    describe_counter!(WRITES, "Writes proposed through this node, by result (ok, refused, timeout, lost).");
    describe_histogram!(WRITE_SECONDS, Unit::Seconds, "From proposal to the reply of an applied write.");
    describe_counter!(READS, "Linearizable reads on this node, by result (ok, error).");
    describe_histogram!(READ_INDEX_SECONDS, Unit::Seconds, "Time to confirm a read index with the leader.");
    describe_histogram!(FSYNC_SECONDS, Unit::Seconds, "One sync of RocksDB's write-ahead log.");
    describe_histogram!(READIES_PER_FSYNC, "Raft Readies made durable by one sync (group commit).");
    describe_counter!(SNAPSHOTS_SENT, "Snapshots sent to peers, by result (delivered, failed).");
    describe_gauge!(PEER_CONNECTED, "1 while the outbound connection to a peer is up.");
    describe_gauge!(CLIENT_CONNECTIONS, "Open client connections.");
    describe_gauge!(KEYS, "Keys in the keyspace (including expired keys not yet deleted).");
}
