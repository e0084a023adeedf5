//! Micro-benchmarks of the write path below Raft, on a temporary RocksDB.
//!
//! - `keyspace_apply/<n>`: a batch of `n` committed `SET` entries (postcard-encoded proposals,
//!   as they sit in the log) decoded and applied through [`ApplyBatch`], then written as one
//!   unsynced `WriteBatch`: the apply half of Storage's work, with no fsync.
//! - `storage_ready/<n>`: the Storage actor doing what one Ready of `n` SET entries costs it:
//!   [`PersistReady`] (the log append, one synced write: the fsync) followed by
//!   [`ApplyCommitted`] (the apply). This is the per-Ready price group commit spreads over the
//!   entries of a Ready, so the per-element time falls as `n` grows.
//!
//! Run: `cargo bench -p actors --bench apply` (or `make microbench` for both micro-benchmarks).

#![allow(clippy::field_reassign_with_default)] // raft-rs's protobuf messages are built field by field

use std::hint::black_box;
use std::time::{Duration, Instant};

use actix::System;
use actors::command::{Proposal, RequestId, WriteOp};
use actors::keyspace::{ApplyBatch, CF_KV};
use actors::membership::Member;
use actors::storage::{ApplyCommitted, PersistReady, Storage};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use raft::eraftpb::{Entry, HardState};
use rocksdb::{Options, DB};

/// Entries per batch: one client, a pipelined/concurrent handful, and a busy Ready.
const BATCH_SIZES: [usize; 3] = [1, 16, 128];
/// Keys cycle through this many names, written in sequence (the keyspace's hash order makes
/// that cost about what random keys do).
const KEYSPACE: u64 = 1_000_000;

/// The log payload of `SET key:<n> xxx`, proposed by node 1 in its first incarnation.
fn set_payload(n: u64) -> Bytes {
    let proposal = Proposal {
        origin: RequestId { node: 1, incarnation: 1, seq: n },
        now_ms: 1_700_000_000_000,
        op: WriteOp::Set {
            key: Bytes::from(format!("key:{:012}", n % KEYSPACE)),
            value: Bytes::from_static(b"xxx"),
        },
    };
    Bytes::from(proposal.encode())
}

fn keyspace_apply(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let db = DB::open_cf(&opts, dir.path(), [CF_KV]).expect("open RocksDB");

    let mut group = c.benchmark_group("keyspace_apply");
    let mut next = 0u64;
    for n in BATCH_SIZES {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(n.to_string(), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let payloads: Vec<(u64, Bytes)> = (0..n)
                        .map(|_| {
                            next += 1;
                            (next, set_payload(next))
                        })
                        .collect();
                    let start = Instant::now();
                    let mut apply = ApplyBatch::new(&db, Default::default());
                    for (index, data) in &payloads {
                        let proposal = Proposal::decode(data).expect("decodes");
                        black_box(apply.apply(*index, proposal).expect("applies"));
                    }
                    db.write(apply.into_write_batch().0).expect("write");
                    spent += start.elapsed();
                }
                spent
            })
        });
    }
    group.finish();
}

fn storage_ready(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let members: Vec<Member> = (1..=3)
        .map(|id| Member { id, peer_addr: format!("127.0.0.1:{}", 10_000 + id), ..Default::default() })
        .collect();
    let (storage, _) = Storage::open(dir.path(), 1, &members, true).expect("open Storage");
    let system = System::new();
    let addr = system.block_on(async move { actors::mailbox::start(storage) });

    let mut group = c.benchmark_group("storage_ready");
    // Every iteration fsyncs: keep the sample count modest.
    group.sample_size(20);
    let mut last_index = 0u64;
    for n in BATCH_SIZES {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(n.to_string(), |b| {
            b.iter_custom(|iters| {
                let mut readies = Vec::with_capacity(iters as usize);
                for _ in 0..iters {
                    let entries: Vec<Entry> = (0..n)
                        .map(|_| {
                            last_index += 1;
                            let mut entry = Entry::default();
                            entry.index = last_index;
                            entry.term = 1;
                            entry.data = set_payload(last_index);
                            entry
                        })
                        .collect();
                    let mut hard_state = HardState::default();
                    hard_state.term = 1;
                    hard_state.vote = 1;
                    hard_state.commit = last_index;
                    readies.push((entries, hard_state));
                }
                let addr = addr.clone();
                system.block_on(async move {
                    let start = Instant::now();
                    for (entries, hard_state) in readies {
                        let persist = PersistReady { entries: entries.clone(), hard_state: Some(hard_state) };
                        let written = addr.send(persist).await.expect("mailbox");
                        written.durable().await.expect("persisted");
                        let apply = ApplyCommitted { entries, conf_state: None, members: None };
                        addr.send(apply).await.expect("mailbox");
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, keyspace_apply, storage_ready);
criterion_main!(benches);
