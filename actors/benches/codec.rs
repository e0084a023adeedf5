//! Micro-benchmarks of the RESP codec: what a Session does per request before anything reaches
//! Raft, and per reply after.
//!
//! - `decode`: a read buffer holding a pipelined batch (16 requests, like `redis-benchmark -P 16`)
//!   of `SET key value` or `GET key`, decoded into argument vectors.
//! - `decode_and_parse`: the same, each request then parsed into a typed `Command`.
//! - `encode`: the replies to such a batch (`+OK`, or bulk values) encoded into one write buffer.
//!
//! Run: `cargo bench -p actors --bench codec` (or `make microbench` for both micro-benchmarks).

use std::hint::black_box;

use actors::command::Command;
use actors::resp::{encode_request, Frame, RespCodec, RespLimits};
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tokio_util::codec::{Decoder, Encoder};

/// Requests per pipelined batch.
const PIPELINE: usize = 16;

/// `PIPELINE` SETs with `value_len`-byte values, or GETs when `value_len` is `None`, keyed like
/// redis-benchmark's `key:000000000042`.
fn pipelined(value_len: Option<usize>) -> Bytes {
    let value = vec![b'x'; value_len.unwrap_or(0)];
    let mut buf = Vec::new();
    for i in 0..PIPELINE {
        let key = format!("key:{i:012}");
        match value_len {
            Some(_) => buf.extend(encode_request(&[b"SET", key.as_bytes(), &value])),
            None => buf.extend(encode_request(&[b"GET", key.as_bytes()])),
        }
    }
    Bytes::from(buf)
}

fn decode_all(codec: &mut RespCodec, input: &Bytes) -> Vec<Vec<Bytes>> {
    let mut src = BytesMut::from(&input[..]);
    let mut out = Vec::with_capacity(PIPELINE);
    while let Some(args) = codec.decode(&mut src).expect("valid RESP") {
        out.push(args);
    }
    assert_eq!(out.len(), PIPELINE);
    out
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (name, input) in
        [("set_3b", pipelined(Some(3))), ("set_1k", pipelined(Some(1024))), ("get", pipelined(None))]
    {
        group.throughput(Throughput::Elements(PIPELINE as u64));
        group.bench_function(name, |b| {
            let mut codec = RespCodec::new(RespLimits::default());
            b.iter(|| black_box(decode_all(&mut codec, black_box(&input))))
        });
    }
    group.finish();
}

fn decode_and_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_and_parse");
    for (name, input) in [("set_3b", pipelined(Some(3))), ("get", pipelined(None))] {
        group.throughput(Throughput::Elements(PIPELINE as u64));
        group.bench_function(name, |b| {
            let mut codec = RespCodec::new(RespLimits::default());
            b.iter(|| {
                for args in decode_all(&mut codec, black_box(&input)) {
                    black_box(Command::parse(args).expect("a valid command"));
                }
            })
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    let replies: [(&str, Frame); 3] = [
        ("ok", Frame::ok()),
        ("bulk_3b", Frame::bulk(Bytes::from_static(b"xxx"))),
        ("bulk_1k", Frame::bulk(Bytes::from(vec![b'x'; 1024]))),
    ];
    for (name, reply) in replies {
        group.throughput(Throughput::Elements(PIPELINE as u64));
        group.bench_function(name, |b| {
            let mut codec = RespCodec::new(RespLimits::default());
            // The frames are built outside the timing: a Session receives them ready-made.
            b.iter_batched_ref(
                || (vec![reply.clone(); PIPELINE], BytesMut::with_capacity(4096)),
                |(frames, dst)| {
                    for frame in frames.drain(..) {
                        codec.encode(frame, dst).expect("encodable");
                    }
                    black_box(dst.len())
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, decode, decode_and_parse, encode);
criterion_main!(benches);
